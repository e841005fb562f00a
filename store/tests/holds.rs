//! Inode lifetimes with holds (a mount's kernel lookup counts): an inode without links
//! lives while a hold or a handle keeps it, and goes with the last of them.

mod common;
use common::*;
use tessera_store::*;

fn gone(v: &Volume, ino: Ino) -> bool {
    matches!(v.getattr(ino), Err(StoreError::NotFound(_)))
}

#[test]
fn a_held_inode_outlives_its_last_link_until_forgotten() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let holds = v.holds();
    let f = create(&v, ROOT_INO, "f").ino;
    holds.retain(f, 1);
    write_all(&v, f, 0, &noise(1, 300_000));
    v.setxattr(f, name("user.k"), b"v", XattrFlags::Any)
        .unwrap();
    v.sync().unwrap();
    let used = v.statfs().unwrap().used;
    assert!(used >= 300_000);

    v.unlink(ROOT_INO, name("f")).unwrap();
    // Everything the kernel may still do by inode number keeps working.
    let a = v.getattr(f).unwrap();
    assert_eq!(a.nlink, 0);
    let t = Timestamp {
        secs: 1_700_000_000,
        nsecs: 5,
    };
    let set = SetAttr {
        mtime: Some(TimeSet::At(t)),
        mode: Some(0o600),
        ..Default::default()
    };
    assert_eq!(v.setattr(f, &set).unwrap().mtime, t);
    assert_eq!(read_all(&v, f), noise(1, 300_000));
    write_all(&v, f, 300_000, b"tail");
    assert_eq!(v.getxattr(f, name("user.k")).unwrap(), b"v");
    v.fsync(f).unwrap();
    v.sync().unwrap();
    assert!(v.lookup(ROOT_INO, name("f")).is_err(), "the name is gone");
    assert!(matches!(
        v.link(f, ROOT_INO, name("again")),
        Err(StoreError::NotFound(_))
    ));

    holds.retain(f, 2);
    holds.forget(f, 2).unwrap();
    assert!(!gone(&v, f), "one hold is left");
    assert_eq!(holds.count(f), 1);
    holds.forget(f, 1).unwrap();
    assert!(gone(&v, f), "the last hold went");
    assert!(holds.is_empty());
    assert_eq!(v.statfs().unwrap().used, 0, "its chunks are released");
    holds.forget(f, 1).unwrap();
    drop(v);
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn handles_and_holds_both_keep_an_inode() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let holds = v.holds();
    // Forget first, release last.
    let f = create(&v, ROOT_INO, "f").ino;
    holds.retain(f, 1);
    v.open(f).unwrap();
    v.unlink(ROOT_INO, name("f")).unwrap();
    holds.forget(f, 1).unwrap();
    assert!(!gone(&v, f), "still open");
    v.release(f).unwrap();
    assert!(gone(&v, f));
    // Release first, forget last.
    let g = create(&v, ROOT_INO, "g").ino;
    holds.retain(g, 1);
    v.open(g).unwrap();
    v.unlink(ROOT_INO, name("g")).unwrap();
    v.release(g).unwrap();
    assert!(!gone(&v, g), "still held");
    holds.forget(g, 1).unwrap();
    assert!(gone(&v, g));
    // A second holder keeps it too.
    let h = create(&v, ROOT_INO, "h").ino;
    let other = v.holds();
    holds.retain(h, 3);
    other.retain(h, 1);
    v.rename(
        ROOT_INO,
        name("h"),
        ROOT_INO,
        name("h2"),
        RenameFlags::default(),
    )
    .unwrap();
    let over = create(&v, ROOT_INO, "over").ino;
    v.rename(
        ROOT_INO,
        name("over"),
        ROOT_INO,
        name("h2"),
        RenameFlags::default(),
    )
    .unwrap();
    assert_eq!(v.lookup(ROOT_INO, name("h2")).unwrap().ino, over);
    holds.forget(h, 10).unwrap();
    assert!(!gone(&v, h), "the other holder holds it");
    drop(other);
    assert!(gone(&v, h), "a holder that goes drops its holds");
    drop(v);
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn removed_directories_stay_while_held() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let holds = v.holds();
    let d = v.mkdir(ROOT_INO, name("d"), 0o755, 0, 0).unwrap().ino;
    let e = v.mkdir(ROOT_INO, name("e"), 0o755, 0, 0).unwrap().ino;
    let target = v.mkdir(ROOT_INO, name("t"), 0o755, 0, 0).unwrap().ino;
    holds.retain(d, 1);
    holds.retain(target, 1);
    v.rmdir(ROOT_INO, name("d")).unwrap();
    let a = v.getattr(d).unwrap();
    assert_eq!((a.kind, a.nlink), (FileKind::Dir, 0));
    assert!(v.readdir(d, 0, 10).unwrap().is_empty());
    assert!(matches!(
        v.mkdir(d, name("x"), 0o755, 0, 0),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        v.mknod(d, name("x"), FileKind::File, 0o644, 0, 0, 0),
        Err(StoreError::NotFound(_))
    ));
    // A directory renamed over an empty one: the replaced one is held.
    v.rename(
        ROOT_INO,
        name("e"),
        ROOT_INO,
        name("t"),
        RenameFlags::default(),
    )
    .unwrap();
    assert_eq!(v.getattr(target).unwrap().nlink, 0);
    assert_eq!(v.lookup(ROOT_INO, name("t")).unwrap().ino, e);
    assert_eq!(v.getattr(ROOT_INO).unwrap().nlink, 3, "root, ., t");
    holds.forget(d, 1).unwrap();
    holds.forget(target, 1).unwrap();
    assert!(gone(&v, d) && gone(&v, target));
    assert_eq!(v.statfs().unwrap().inodes, 2);
    drop(v);
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn release_all_deletes_what_nothing_else_keeps() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let holds = v.holds();
    let [f, g, h] = ["f", "g", "h"].map(|n| create(&v, ROOT_INO, n).ino);
    for (i, ino) in [f, g, h].into_iter().enumerate() {
        write_all(&v, ino, 0, &noise(i as u64, 100_000));
        holds.retain(ino, 1);
    }
    v.open(h).unwrap();
    v.unlink(ROOT_INO, name("g")).unwrap();
    v.unlink(ROOT_INO, name("h")).unwrap();
    v.sync().unwrap();
    let report = pool.fsck(false).unwrap();
    assert!(report.is_clean(), "held orphans are no problem: {report:?}");
    holds.release_all().unwrap();
    assert!(holds.is_empty());
    assert!(gone(&v, g), "an unreferenced orphan goes");
    assert!(!gone(&v, f), "a linked inode stays");
    assert!(!gone(&v, h), "an open orphan stays");
    v.release(h).unwrap();
    assert!(gone(&v, h));
    assert_eq!(v.statfs().unwrap().used, 100_000);
    drop((holds, v));
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn snapshots_and_clones_leave_held_orphans_out() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let holds = v.holds();
    let keep = create(&v, ROOT_INO, "keep").ino;
    write_all(&v, keep, 0, &noise(4, 200_000));
    let f = create(&v, ROOT_INO, "f").ino;
    write_all(&v, f, 0, &noise(5, 300_000));
    v.setxattr(f, name("user.k"), b"v", XattrFlags::Any)
        .unwrap();
    holds.retain(f, 1);
    v.unlink(ROOT_INO, name("f")).unwrap();
    pool.create_snapshot("v", "s").unwrap();
    pool.clone_volume("v", "c").unwrap();
    for copy in ["v@s", "c"] {
        let info = pool.volume_info(copy).unwrap();
        assert_eq!(info.used, 200_000, "{copy}: only the linked file's bytes");
        assert_eq!(info.inodes, 2, "{copy}: root and keep");
        let c = pool.open_volume(copy).unwrap();
        assert!(gone(&c, f), "{copy}");
        assert_eq!(read_all(&c, keep), noise(4, 200_000));
    }
    assert!(!gone(&v, f), "the source still holds its orphan");
    let report = pool.fsck(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    holds.forget(f, 1).unwrap();
    assert!(gone(&v, f));
    drop((holds, v));
    pool.gc().unwrap();
    let report = pool.fsck(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn read_only_volumes_count_no_holds() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    {
        let v = pool.open_volume("v").unwrap();
        create(&v, ROOT_INO, "f");
    }
    pool.create_snapshot("v", "s").unwrap();
    let s = pool.open_volume("v@s").unwrap();
    let holds = s.holds();
    let f = s.lookup(ROOT_INO, name("f")).unwrap().ino;
    holds.retain(f, 5);
    assert!(holds.is_empty());
    holds.forget(f, 5).unwrap();
    assert!(s.getattr(f).is_ok());
}
