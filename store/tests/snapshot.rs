mod common;
use common::*;
use std::ffi::OsStr;
use tessera_store::*;

fn populate(v: &Volume) -> (Ino, Ino) {
    let d = v
        .mkdir(ROOT_INO, name("dir"), 0o2750, 1000, 100)
        .unwrap()
        .ino;
    let f = v
        .mknod(d, name("file"), FileKind::File, 0o4640, 0, 1000, 100)
        .unwrap()
        .ino;
    write_all(v, f, 0, &noise(1, 300_000));
    write_all(v, f, 5 << 20, b"after a hole");
    v.link(f, ROOT_INO, name("hard")).unwrap();
    v.setxattr(f, name("user.tag"), b"blue", XattrFlags::Any)
        .unwrap();
    v.symlink(ROOT_INO, name("sym"), OsStr::new("dir/file"), 1000, 100)
        .unwrap();
    let t = Timestamp {
        secs: 1_600_000_000,
        nsecs: 42,
    };
    v.setattr(
        f,
        &SetAttr {
            atime: Some(TimeSet::At(t)),
            mtime: Some(TimeSet::At(t)),
            ..Default::default()
        },
    )
    .unwrap();
    (d, f)
}

fn assert_same_tree(a: &Volume, b: &Volume) {
    let fa = a
        .lookup(a.lookup(ROOT_INO, name("dir")).unwrap().ino, name("file"))
        .unwrap();
    let fb = b
        .lookup(b.lookup(ROOT_INO, name("dir")).unwrap().ino, name("file"))
        .unwrap();
    assert_eq!(
        (fa.perm, fa.uid, fa.gid, fa.size, fa.nlink, fa.mtime, fa.atime, fa.blocks),
        (fb.perm, fb.uid, fb.gid, fb.size, fb.nlink, fb.mtime, fb.atime, fb.blocks)
    );
    assert_eq!(read_all(a, fa.ino), read_all(b, fb.ino));
    assert_eq!(b.getxattr(fb.ino, name("user.tag")).unwrap(), b"blue");
    assert_eq!(b.lookup(ROOT_INO, name("hard")).unwrap().ino, fb.ino);
    assert_eq!(
        b.readlink(b.lookup(ROOT_INO, name("sym")).unwrap().ino)
            .unwrap(),
        b"dir/file"
    );
    assert_eq!(
        b.seek(fb.ino, 300_000, Whence::Hole).unwrap(),
        300_000u64.next_multiple_of(b.chunk_size() as u64),
        "hole preserved"
    );
    let da = a.lookup(ROOT_INO, name("dir")).unwrap();
    let db = b.lookup(ROOT_INO, name("dir")).unwrap();
    assert_eq!((da.perm, da.gid, da.nlink), (db.perm, db.gid, db.nlink));
}

#[test]
fn snapshot_is_point_in_time_read_only_and_shares_chunks() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let (_, f) = populate(&v);
    let before = pool.usage().unwrap();
    let info = pool.create_snapshot("v", "s1").unwrap();
    assert_eq!(info.name, "v@s1");
    assert!(info.read_only);
    let after = pool.usage().unwrap();
    assert_eq!(
        after.physical_bytes,
        before.physical_bytes.max(after.physical_bytes)
    );
    // Writes after the snapshot do not show in it.
    write_all(&v, f, 0, b"CHANGED");
    v.sync().unwrap();
    let s = pool.open_volume("v@s1").unwrap();
    assert!(s.is_read_only());
    let sf = s
        .lookup(s.lookup(ROOT_INO, name("dir")).unwrap().ino, name("file"))
        .unwrap()
        .ino;
    assert_eq!(&s.read(sf, 0, 7).unwrap(), &noise(1, 7));
    assert!(matches!(s.write(sf, 0, b"x"), Err(StoreError::ReadOnly)));
    assert!(matches!(
        s.mkdir(ROOT_INO, name("n"), 0o755, 0, 0),
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(
        s.unlink(ROOT_INO, name("hard")),
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(
        pool.create_snapshot("v", "s1"),
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        pool.create_snapshot("nope", "s"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        pool.create_snapshot("v", "Bad"),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(pool.list_snapshots(Some("v")).unwrap().len(), 1);
    assert_eq!(
        pool.volume_info("v@s1").unwrap().used,
        pool.volume_info("v").unwrap().used
    );
}

#[test]
fn clone_keeps_every_attribute_and_is_isolated_both_ways() {
    let (_d, pool) = pool();
    pool.create_volume("src", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("src").unwrap();
    let (_, f) = populate(&v);
    v.sync().unwrap();
    let physical = pool.usage().unwrap().physical_bytes;
    pool.clone_volume("src", "copy").unwrap();
    assert_eq!(
        pool.usage().unwrap().physical_bytes,
        physical,
        "clone copies no data"
    );
    let c = pool.open_volume("copy").unwrap();
    assert_same_tree(&v, &c);
    let cf = c.lookup(ROOT_INO, name("hard")).unwrap().ino;
    write_all(&c, cf, 0, b"clone-only");
    write_all(&v, f, 10, b"source-only");
    c.sync().unwrap();
    v.sync().unwrap();
    assert_eq!(&c.read(cf, 0, 10).unwrap(), b"clone-only");
    assert_eq!(&c.read(cf, 10, 11).unwrap(), &noise(1, 21)[10..21]);
    assert_eq!(&v.read(f, 0, 10).unwrap(), &noise(1, 10));
    assert_eq!(&v.read(f, 10, 11).unwrap(), b"source-only");
    c.unlink(ROOT_INO, name("hard")).unwrap();
    assert!(v.lookup(ROOT_INO, name("hard")).is_ok());
    // A clone from a snapshot.
    pool.create_snapshot("src", "snap").unwrap();
    pool.clone_volume("src@snap", "from-snap").unwrap();
    let fs = pool.open_volume("from-snap").unwrap();
    assert!(!fs.is_read_only());
    assert_eq!(
        &fs.read(fs.lookup(ROOT_INO, name("hard")).unwrap().ino, 10, 11)
            .unwrap(),
        b"source-only"
    );
}

fn refs_exact(pool: &Pool) {
    let r = pool.fsck(false).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

#[test]
fn every_deletion_order_keeps_refcounts_exact() {
    for order in 0..3 {
        let (_d, pool) = pool();
        pool.create_volume("a", VolumeOptions::default()).unwrap();
        {
            let v = pool.open_volume("a").unwrap();
            populate(&v);
            v.sync().unwrap();
        }
        pool.create_snapshot("a", "s1").unwrap();
        pool.clone_volume("a@s1", "b").unwrap();
        pool.create_snapshot("b", "s2").unwrap();
        pool.clone_volume("b@s2", "c").unwrap();
        refs_exact(&pool);
        let mut names = vec!["a", "a@s1", "b", "b@s2", "c"];
        match order {
            0 => {}
            1 => names.reverse(),
            _ => names = vec!["b", "a", "c", "a@s1", "b@s2"],
        }
        for (i, n) in names.iter().enumerate() {
            pool.delete_volume(n).unwrap();
            refs_exact(&pool);
            for rest in &names[i + 1..] {
                let v = pool.open_volume(rest).unwrap();
                let file = v
                    .lookup(v.lookup(ROOT_INO, name("dir")).unwrap().ino, name("file"))
                    .unwrap();
                assert_eq!(
                    &v.read(file.ino, 0, 1000).unwrap(),
                    &noise(1, 1000),
                    "{rest} after deleting {n}"
                );
            }
        }
        pool.gc().unwrap();
        assert_eq!(pool.usage().unwrap().chunks, 0, "order {order}");
    }
}

#[test]
fn restore_rolls_back_and_refuses_an_open_volume() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    {
        let v = pool.open_volume("v").unwrap();
        let f = create(&v, ROOT_INO, "f").ino;
        write_all(&v, f, 0, b"version one");
        v.sync().unwrap();
        pool.create_snapshot("v", "one").unwrap();
        write_all(&v, f, 0, b"version two");
        create(&v, ROOT_INO, "extra");
        v.sync().unwrap();
        assert!(matches!(
            pool.restore_volume("v", "one"),
            Err(StoreError::InUse(_))
        ));
    }
    assert!(matches!(
        pool.restore_volume("v", "nope"),
        Err(StoreError::NotFound(_))
    ));
    pool.restore_volume("v", "one").unwrap();
    let v = pool.open_volume("v").unwrap();
    let f = v.lookup(ROOT_INO, name("f")).unwrap().ino;
    assert_eq!(v.read(f, 0, 100).unwrap(), b"version one");
    assert!(v.lookup(ROOT_INO, name("extra")).is_err());
    drop(v);
    assert_eq!(pool.list_volumes().unwrap().len(), 2);
    refs_exact(&pool);
}

#[test]
fn snapshot_during_sustained_writes_is_consistent() {
    let (_d, pool) = pool();
    pool.create_volume("v", opts(1 << 40, 64 << 10)).unwrap();
    let v = pool.open_volume("v").unwrap();
    let f = create(&v, ROOT_INO, "counter").ino;
    let writer = {
        let v = v.clone();
        std::thread::spawn(move || {
            // Each write stamps the whole 256 KiB file with one generation number.
            for gen in 0u32..400 {
                let block: Vec<u8> = gen
                    .to_le_bytes()
                    .iter()
                    .cycle()
                    .take(256 << 10)
                    .copied()
                    .collect();
                write_all(&v, f, 0, &block);
            }
        })
    };
    let mut snaps = 0;
    while !writer.is_finished() || snaps < 3 {
        pool.create_snapshot("v", &format!("s{snaps}")).unwrap();
        snaps += 1;
    }
    writer.join().unwrap();
    for i in 0..snaps {
        let s = pool.open_volume(&format!("v@s{i}")).unwrap();
        let data = read_all(&s, f);
        if data.is_empty() {
            continue;
        }
        assert_eq!(data.len(), 256 << 10);
        let first = &data[..4];
        assert!(
            data.chunks(4).all(|c| c == first),
            "snapshot {i} mixes generations"
        );
    }
}

#[test]
fn usage_figures_are_exact() {
    let (_d, pool) = pool();
    pool.create_volume("a", opts(1 << 40, 64 << 10)).unwrap();
    pool.create_volume("b", opts(1 << 40, 64 << 10)).unwrap();
    let shared = noise(1, 128 << 10);
    let only_a = noise(2, 64 << 10);
    {
        let a = pool.open_volume("a").unwrap();
        let f = create(&a, ROOT_INO, "f").ino;
        write_all(&a, f, 0, &shared);
        write_all(&a, f, 128 << 10, &only_a);
        a.sync().unwrap();
        let b = pool.open_volume("b").unwrap();
        let g = create(&b, ROOT_INO, "g").ino;
        write_all(&b, g, 0, &shared);
        b.sync().unwrap();
    }
    pool.create_snapshot("b", "s").unwrap();
    let u = pool.usage().unwrap();
    assert_eq!(u.chunks, 3);
    assert_eq!(u.unique_bytes, 192 << 10);
    assert_eq!(u.logical_bytes, (192 + 128 + 128) << 10);
    assert_eq!(
        u.physical_bytes,
        3 * (64 << 10),
        "incompressible chunks are stored raw, without framing"
    );
    let per: std::collections::HashMap<String, VolumeUsage> = pool
        .volume_usage()
        .unwrap()
        .into_iter()
        .map(|v| (v.name.clone(), v))
        .collect();
    assert_eq!(per["a"].exclusive_bytes, 64 << 10);
    assert_eq!(per["a"].logical_bytes, 192 << 10);
    assert_eq!(per["b"].exclusive_bytes, 0);
    assert_eq!(per["b"].snapshots, 1);
    assert_eq!(per["a"].snapshots, 0);
}
