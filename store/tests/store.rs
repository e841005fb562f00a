mod common;
use common::*;
use std::ffi::OsStr;
use tessera_store::*;

const MIB: u64 = 1 << 20;

#[test]
fn second_open_of_a_pool_names_the_holder() {
    let (dir, _pool) = pool();
    match Pool::open(dir.path()) {
        Err(e @ StoreError::PoolInUse { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("is in use by process"), "{msg}");
            assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("second open succeeded"),
    }
}

#[test]
fn other_formats_are_refused_by_name() {
    // 1 is the format that kept chunks in RocksDB's BlobDB; 99 is from a newer build.
    for found in [1u32, 2, 99] {
        let dir = tempfile::tempdir().unwrap();
        drop(Pool::open(dir.path()).unwrap());
        {
            use tessera_store::engine::{Batch, Engine, RocksEngine};
            let e = RocksEngine::open(&dir.path().join("db")).unwrap();
            let mut b = Batch::default();
            b.put(
                keys::Cf::Meta,
                keys::FORMAT_KEY,
                found.to_be_bytes().to_vec(),
            );
            e.write(b, true).unwrap();
        }
        match Pool::open(dir.path()) {
            Err(e @ StoreError::UnsupportedFormat { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&found.to_string()), "{msg}");
                assert!(msg.contains(&FORMAT_VERSION.to_string()), "{msg}");
            }
            other => panic!("expected UnsupportedFormat, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn volume_names_are_validated() {
    let (_d, pool) = pool();
    for bad in ["", "Bad", "-x", ".x", "a/b", "a b", "a@b", &"x".repeat(129)] {
        assert!(
            matches!(
                pool.create_volume(bad, VolumeOptions::default()),
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    for good in ["a", "vol-1", "v.2_x", &"x".repeat(128)] {
        pool.create_volume(good, VolumeOptions::default()).unwrap();
    }
    assert!(matches!(
        pool.create_volume("a", VolumeOptions::default()),
        Err(StoreError::Exists(_))
    ));
    for bad_chunk in [1000, 32 << 10, 8 << 20, 3 << 20] {
        assert!(matches!(
            pool.create_volume("c", opts(MIB, bad_chunk)),
            Err(StoreError::Invalid(_))
        ));
    }
}

#[test]
fn volumes_list_info_and_delete() {
    let (_d, pool) = pool();
    let a = pool
        .create_volume("b-vol", opts(5 * MIB, 64 << 10))
        .unwrap();
    pool.create_volume("a-vol", VolumeOptions::default())
        .unwrap();
    let names: Vec<String> = pool
        .list_volumes()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["a-vol", "b-vol"]);
    let info = pool.volume_info("b-vol").unwrap();
    assert_eq!(
        (info.id, info.capacity, info.chunk_size),
        (a.id, 5 * MIB, 64 << 10)
    );
    {
        let v = pool.open_volume("b-vol").unwrap();
        let f = create(&v, ROOT_INO, "f");
        write_all(&v, f.ino, 0, &noise(1, 300_000));
        v.sync().unwrap();
        assert!(matches!(
            pool.delete_volume("b-vol"),
            Err(StoreError::InUse(_))
        ));
    }
    assert!(pool.usage().unwrap().chunks > 0);
    pool.delete_volume("b-vol").unwrap();
    assert!(matches!(
        pool.volume_info("b-vol"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        pool.delete_volume("b-vol"),
        Err(StoreError::NotFound(_))
    ));
    let gc = pool.gc().unwrap();
    assert!(gc.chunks_deleted >= 5);
    assert_eq!(pool.usage().unwrap().chunks, 0);
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn data_round_trips_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(7, 3 * MIB as usize + 12345);
    let ino;
    {
        let pool = Pool::open(dir.path()).unwrap();
        pool.create_volume("v", VolumeOptions::default()).unwrap();
        let v = pool.open_volume("v").unwrap();
        ino = create(&v, ROOT_INO, "f").ino;
        write_all(&v, ino, 0, &data);
        assert_eq!(read_all(&v, ino), data, "read from dirty buffers");
        v.flush(ino).unwrap();
        assert_eq!(read_all(&v, ino), data, "read from chunks");
    }
    let pool = Pool::open(dir.path()).unwrap();
    let v = pool.open_volume("v").unwrap();
    assert_eq!(v.lookup(ROOT_INO, name("f")).unwrap().ino, ino);
    assert_eq!(read_all(&v, ino), data);
    assert_eq!(v.getattr(ino).unwrap().size, data.len() as u64);
}

#[test]
fn small_overwrites_read_back_and_cost_one_chunk() {
    let (_d, pool) = pool();
    // Counts chunks: 1 MiB ones, whatever the default.
    pool.create_volume("v", opts(DEFAULT_CAPACITY, 1 << 20))
        .unwrap();
    let v = pool.open_volume("v").unwrap();
    let f = create(&v, ROOT_INO, "f").ino;
    let mut model = noise(3, MIB as usize);
    write_all(&v, f, 0, &model);
    v.flush(f).unwrap();
    for i in 0..200u64 {
        let off = (i * 7919 * 4096) % (MIB - 4096);
        let block = noise(100 + i, 4096);
        write_all(&v, f, off, &block);
        model[off as usize..off as usize + 4096].copy_from_slice(&block);
    }
    assert_eq!(read_all(&v, f), model);
    v.flush(f).unwrap();
    assert_eq!(read_all(&v, f), model);
    pool.gc().unwrap();
    assert_eq!(pool.usage().unwrap().chunks, 1, "one live chunk after GC");
}

#[test]
fn small_writes_into_stored_chunks_buffer_only_their_bytes() {
    let (d, pool) = pool();
    pool.create_volume("v", opts(DEFAULT_CAPACITY, 256 << 10))
        .unwrap();
    let v = pool.open_volume("v").unwrap();
    let f = create(&v, ROOT_INO, "f").ino;
    let mut model = noise(5, 4 * MIB as usize);
    write_all(&v, f, 0, &model);
    v.flush(f).unwrap();
    assert_eq!(pool.dirty_bytes(), 0);
    // 64 writes of 1 KiB spread over all 16 chunks, some overlapping and touching.
    for i in 0..64u64 {
        let off = (i * 65_537 + (i % 3) * 512) % (4 * MIB - 1024);
        let block = noise(200 + i, 1024);
        write_all(&v, f, off, &block);
        model[off as usize..off as usize + 1024].copy_from_slice(&block);
    }
    // Patches hold the written bytes, not the 16 chunks (4 MiB) they touch.
    assert!(
        pool.dirty_bytes() <= 64 << 10,
        "{} bytes buffered",
        pool.dirty_bytes()
    );
    assert_eq!(read_all(&v, f), model);
    let mut part = vec![0u8; 3000];
    for (k, at) in [0u64, 65_000, 1_000_000, 4 * MIB - 3000]
        .into_iter()
        .enumerate()
    {
        let got = v.read(f, at, 3000).unwrap();
        part.copy_from_slice(&model[at as usize..at as usize + 3000]);
        assert_eq!(got, part, "read {k} at {at}");
    }
    // fsync journals the patches; a larger write into a patched chunk merges it.
    v.fsync(f).unwrap();
    let big = noise(9, 100_000);
    write_all(&v, f, 300_000, &big);
    model[300_000..400_000].copy_from_slice(&big);
    assert_eq!(read_all(&v, f), model);
    // Truncating into a patched chunk, then growing it back, reads zeros past the cut.
    v.setattr(
        f,
        &SetAttr {
            size: Some(3 * MIB + 5_000),
            ..Default::default()
        },
    )
    .unwrap();
    model.truncate(3 * MIB as usize + 5_000);
    write_all(&v, f, 3 * MIB + 10_000, b"end");
    model.resize(3 * MIB as usize + 10_000, 0);
    model.extend_from_slice(b"end");
    assert_eq!(read_all(&v, f), model);
    drop(v);
    drop(pool);
    let pool = Pool::open(d.path()).unwrap();
    let v = pool.open_volume("v").unwrap();
    assert_eq!(read_all(&v, f), model);
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn sparse_files_store_no_chunks_for_holes() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let f = create(&v, ROOT_INO, "sparse").ino;
    write_all(&v, f, 100 * MIB, b"tail");
    v.flush(f).unwrap();
    let a = v.getattr(f).unwrap();
    assert_eq!(a.size, 100 * MIB + 4);
    assert_eq!(a.blocks, 1, "only the tail chunk is stored");
    assert_eq!(pool.usage().unwrap().chunks, 1);
    let mid = v.read(f, 50 * MIB, 4096).unwrap();
    assert!(mid.iter().all(|&b| b == 0) && mid.len() == 4096);
    assert_eq!(v.seek(f, 0, Whence::Data).unwrap(), 100 * MIB);
    assert_eq!(v.seek(f, 0, Whence::Hole).unwrap(), 0);
    assert_eq!(v.seek(f, 100 * MIB, Whence::Hole).unwrap(), 100 * MIB + 4);
    assert!(matches!(
        v.seek(f, 200 * MIB, Whence::Data),
        Err(StoreError::NoSuchOffset)
    ));
    // Zeros written explicitly become holes too.
    let z = create(&v, ROOT_INO, "zeros").ino;
    write_all(&v, z, 0, &vec![0u8; 3 * MIB as usize]);
    v.flush(z).unwrap();
    assert_eq!(v.getattr(z).unwrap().blocks, 0);
    assert_eq!(v.statfs().unwrap().used, 4);
}

#[test]
fn truncate_down_then_up_reads_zeros() {
    let (_d, pool) = pool();
    pool.create_volume("v", opts(100 * MIB, 64 << 10)).unwrap();
    let v = pool.open_volume("v").unwrap();
    let f = create(&v, ROOT_INO, "f").ino;
    let data = noise(9, 500_000);
    write_all(&v, f, 0, &data);
    v.flush(f).unwrap();
    v.setattr(
        f,
        &SetAttr {
            size: Some(100_001),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(v.statfs().unwrap().used, 100_001);
    v.setattr(
        f,
        &SetAttr {
            size: Some(400_000),
            ..Default::default()
        },
    )
    .unwrap();
    let back = read_all(&v, f);
    assert_eq!(&back[..100_001], &data[..100_001]);
    assert!(back[100_001..].iter().all(|&b| b == 0));
    // Truncating buffered data behaves the same.
    write_all(&v, f, 0, &data);
    v.setattr(
        f,
        &SetAttr {
            size: Some(70_000),
            ..Default::default()
        },
    )
    .unwrap();
    v.setattr(
        f,
        &SetAttr {
            size: Some(200_000),
            ..Default::default()
        },
    )
    .unwrap();
    let back = read_all(&v, f);
    assert_eq!(&back[..70_000], &data[..70_000]);
    assert!(back[70_000..].iter().all(|&b| b == 0));
    v.setattr(
        f,
        &SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    v.sync().unwrap();
    assert_eq!(v.statfs().unwrap().used, 0);
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn punch_hole_frees_whole_chunks_and_zeroes_parts() {
    let (_d, pool) = pool();
    pool.create_volume("v", opts(100 * MIB, 64 << 10)).unwrap();
    let v = pool.open_volume("v").unwrap();
    let f = create(&v, ROOT_INO, "f").ino;
    let mut model = noise(4, 640 << 10);
    write_all(&v, f, 0, &model);
    v.flush(f).unwrap();
    v.punch_hole(f, 100_000, 300_000).unwrap();
    model[100_000..400_000].fill(0);
    assert_eq!(read_all(&v, f), model);
    assert_eq!(v.getattr(f).unwrap().size, 640 << 10);
    // Chunks 2..=5 (128 KiB..384 KiB) are fully inside the hole.
    assert_eq!(v.statfs().unwrap().used, (640 - 4 * 64) << 10);
    assert_eq!(v.seek(f, 150_000, Whence::Hole).unwrap(), 150_000);
    assert_eq!(v.seek(f, 131_072, Whence::Data).unwrap(), 384 << 10);
}

#[test]
fn quota_gives_partial_writes_then_no_space_and_resizes_online() {
    let (_d, pool) = pool();
    pool.create_volume("q", opts(MIB, 64 << 10)).unwrap();
    let v = pool.open_volume("q").unwrap();
    let f = create(&v, ROOT_INO, "f").ino;
    let n = v.write(f, 0, &noise(1, 2 * MIB as usize)).unwrap();
    assert_eq!(n as u64, MIB, "partial write up to the quota");
    match v.write(f, MIB, b"x") {
        Err(e @ StoreError::NoSpace { .. }) => assert_eq!(e.errno(), libc::ENOSPC),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    // Overwrites in place still work at the quota.
    v.write(f, 10, b"hello").unwrap();
    assert!(matches!(
        pool.resize_volume("q", MIB / 2),
        Err(StoreError::Invalid(_))
    ));
    pool.resize_volume("q", 2 * MIB).unwrap();
    assert_eq!(v.statfs().unwrap().capacity, 2 * MIB);
    assert_eq!(v.write(f, MIB, b"more").unwrap(), 4);
    // Deleting frees quota.
    v.unlink(ROOT_INO, name("f")).unwrap();
    assert_eq!(v.statfs().unwrap().used, 0);
    let g = create(&v, ROOT_INO, "g").ino;
    assert_eq!(v.write(g, 0, &noise(2, MIB as usize)).unwrap() as u64, MIB);
}

#[test]
fn identical_data_in_two_volumes_is_stored_once() {
    let (_d, pool) = pool();
    let data = noise(42, 64 * MIB as usize);
    for vol in ["one", "two"] {
        pool.create_volume(vol, VolumeOptions::default()).unwrap();
        let v = pool.open_volume(vol).unwrap();
        let f = create(&v, ROOT_INO, "big").ino;
        write_all(&v, f, 0, &data);
        v.sync().unwrap();
    }
    let u = pool.usage().unwrap();
    assert_eq!(u.logical_bytes, 128 * MIB);
    assert!(
        u.physical_bytes as f64 <= 1.02 * (64 * MIB) as f64,
        "physical {}",
        u.physical_bytes
    );
    assert!(
        (u.dedup_ratio - 2.0).abs() < 0.01,
        "dedup {}",
        u.dedup_ratio
    );
}

#[test]
fn hard_links_and_open_unlinked_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let pool = Pool::open(dir.path()).unwrap();
        pool.create_volume("v", VolumeOptions::default()).unwrap();
        let v = pool.open_volume("v").unwrap();
        let f = create(&v, ROOT_INO, "a").ino;
        write_all(&v, f, 0, b"linked");
        assert_eq!(v.link(f, ROOT_INO, name("b")).unwrap().nlink, 2);
        let d = v.mkdir(ROOT_INO, name("d"), 0o755, 0, 0).unwrap().ino;
        v.link(f, d, name("c")).unwrap();
        assert_eq!(v.getattr(f).unwrap().nlink, 3);
        assert!(matches!(
            v.link(d, ROOT_INO, name("dl")),
            Err(StoreError::NotPermitted(_))
        ));
        v.unlink(ROOT_INO, name("a")).unwrap();
        v.unlink(d, name("c")).unwrap();
        assert_eq!(v.getattr(f).unwrap().nlink, 1);
        v.open(f).unwrap();
        v.unlink(ROOT_INO, name("b")).unwrap();
        assert_eq!(
            v.read(f, 0, 100).unwrap(),
            b"linked",
            "open file survives unlink"
        );
        let g = create(&v, ROOT_INO, "g").ino;
        write_all(&v, g, 0, &noise(5, 200_000));
        v.open(g).unwrap();
        v.unlink(ROOT_INO, name("g")).unwrap();
        v.sync().unwrap();
        v.release(f).unwrap();
        assert!(matches!(v.getattr(f), Err(StoreError::NotFound(_))));
        assert!(v.getattr(g).is_ok());
        // The pool closes with g still open: the next open purges it.
    }
    let pool = Pool::open(dir.path()).unwrap();
    let v = pool.open_volume("v").unwrap();
    assert_eq!(v.statfs().unwrap().used, 0);
    assert_eq!(v.statfs().unwrap().inodes, 2, "root and d");
    drop(v);
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn directory_errors_and_nlink() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let d = v.mkdir(ROOT_INO, name("d"), 0o755, 0, 0).unwrap();
    assert_eq!(v.getattr(ROOT_INO).unwrap().nlink, 3);
    let f = create(&v, d.ino, "f");
    assert!(matches!(
        v.mkdir(ROOT_INO, name("d"), 0o755, 0, 0),
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        v.rmdir(ROOT_INO, name("d")),
        Err(StoreError::NotEmpty)
    ));
    assert!(matches!(
        v.unlink(ROOT_INO, name("d")),
        Err(StoreError::IsDir)
    ));
    assert!(matches!(v.rmdir(d.ino, name("f")), Err(StoreError::NotDir)));
    assert!(matches!(
        v.lookup(f.ino, name("x")),
        Err(StoreError::NotDir)
    ));
    assert!(matches!(
        v.lookup(ROOT_INO, name("nope")),
        Err(StoreError::NotFound(_))
    ));
    let long = "n".repeat(256);
    assert!(matches!(
        v.mkdir(ROOT_INO, name(&long), 0o755, 0, 0),
        Err(StoreError::NameTooLong)
    ));
    assert!(matches!(
        v.lookup(ROOT_INO, name(&long)),
        Err(StoreError::NameTooLong)
    ));
    v.unlink(d.ino, name("f")).unwrap();
    v.rmdir(ROOT_INO, name("d")).unwrap();
    assert_eq!(v.getattr(ROOT_INO).unwrap().nlink, 2);
    let s = v
        .symlink(ROOT_INO, name("s"), OsStr::new("target/path"), 0, 0)
        .unwrap();
    assert_eq!(s.size, 11);
    assert_eq!(v.readlink(s.ino).unwrap(), b"target/path");
    let fifo = v
        .mknod(ROOT_INO, name("p"), FileKind::Fifo, 0o600, 0, 0, 0)
        .unwrap();
    assert_eq!(fifo.kind, FileKind::Fifo);
    let dev = v
        .mknod(ROOT_INO, name("c"), FileKind::CharDev, 0o600, 0x0103, 0, 0)
        .unwrap();
    assert_eq!(v.getattr(dev.ino).unwrap().rdev, 0x0103);
}

#[test]
fn rename_flags_and_directory_moves() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let none = RenameFlags::default();
    let a = v.mkdir(ROOT_INO, name("a"), 0o755, 0, 0).unwrap().ino;
    let b = v.mkdir(ROOT_INO, name("b"), 0o755, 0, 0).unwrap().ino;
    let x = create(&v, a, "x").ino;
    let y = create(&v, b, "y").ino;
    // Moving a directory below itself.
    let sub = v.mkdir(a, name("sub"), 0o755, 0, 0).unwrap().ino;
    assert!(matches!(
        v.rename(ROOT_INO, name("a"), sub, name("a2"), none),
        Err(StoreError::Invalid(_))
    ));
    // No-replace.
    let noreplace = RenameFlags {
        noreplace: true,
        exchange: false,
    };
    v.link(y, a, name("y")).unwrap();
    assert!(matches!(
        v.rename(a, name("x"), a, name("y"), noreplace),
        Err(StoreError::Exists(_))
    ));
    v.unlink(a, name("y")).unwrap();
    // Exchange across directories.
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    v.rename(a, name("x"), b, name("y"), exchange).unwrap();
    assert_eq!(v.lookup(a, name("x")).unwrap().ino, y);
    assert_eq!(v.lookup(b, name("y")).unwrap().ino, x);
    assert!(matches!(
        v.rename(a, name("x"), b, name("zz"), exchange),
        Err(StoreError::NotFound(_))
    ));
    // Replace a file, then an empty directory; a non-empty one refuses.
    v.rename(a, name("x"), b, name("y"), none).unwrap();
    assert!(matches!(v.getattr(x), Err(StoreError::NotFound(_))));
    let empty = v.mkdir(b, name("empty"), 0o755, 0, 0).unwrap().ino;
    assert!(matches!(
        v.rename(ROOT_INO, name("a"), b, name("y"), none),
        Err(StoreError::NotDir)
    ));
    assert!(matches!(
        v.rename(b, name("y"), b, name("empty"), none),
        Err(StoreError::IsDir)
    ));
    v.rename(a, name("sub"), b, name("empty"), none).unwrap();
    assert!(matches!(v.getattr(empty), Err(StoreError::NotFound(_))));
    assert_eq!(v.parent_of(sub).unwrap(), b);
    assert_eq!(v.getattr(a).unwrap().nlink, 2);
    assert_eq!(v.getattr(b).unwrap().nlink, 3);
    assert!(matches!(
        v.rename(ROOT_INO, name("a"), ROOT_INO, name("b"), none),
        Err(StoreError::NotEmpty)
    ));
    v.sync().unwrap();
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn readdir_cursor_is_stable_under_changes() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    for i in 0..100 {
        create(&v, ROOT_INO, &format!("f{i:03}"));
    }
    let first = v.readdir(ROOT_INO, 0, 40).unwrap();
    assert_eq!(first.len(), 40);
    // Remove some already listed and some not yet listed; add new ones.
    for i in (0..100).step_by(3) {
        v.unlink(ROOT_INO, name(&format!("f{i:03}"))).unwrap();
    }
    for i in 0..10 {
        create(&v, ROOT_INO, &format!("new{i}"));
    }
    let mut seen: Vec<Vec<u8>> = first.iter().map(|e| e.name.clone()).collect();
    let mut after = first.last().unwrap().cookie;
    loop {
        let page = v.readdir(ROOT_INO, after, 17).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().cookie;
        seen.extend(page.into_iter().map(|e| e.name));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no entry listed twice");
    for i in 0..100 {
        let n = format!("f{i:03}").into_bytes();
        if i % 3 != 0 {
            assert!(seen.contains(&n), "{i} kept but not listed");
        }
    }
    for i in 0..10 {
        assert!(seen.contains(&format!("new{i}").into_bytes()));
    }
}

#[test]
fn xattrs_follow_linux_rules() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let f = create(&v, ROOT_INO, "f").ino;
    let n = name("user.k");
    assert!(matches!(v.getxattr(f, n), Err(StoreError::NoXattr)));
    assert!(matches!(
        v.setxattr(f, n, b"v", XattrFlags::Replace),
        Err(StoreError::NoXattr)
    ));
    v.setxattr(f, n, b"v1", XattrFlags::Create).unwrap();
    assert!(matches!(
        v.setxattr(f, n, b"v", XattrFlags::Create),
        Err(StoreError::Exists(_))
    ));
    v.setxattr(f, n, b"v2", XattrFlags::Replace).unwrap();
    v.setxattr(f, name("user.a"), b"", XattrFlags::Any).unwrap();
    assert_eq!(v.getxattr(f, n).unwrap(), b"v2");
    assert_eq!(
        v.listxattr(f).unwrap(),
        vec![b"user.a".to_vec(), b"user.k".to_vec()]
    );
    assert!(matches!(
        v.setxattr(f, name(&"u".repeat(256)), b"", XattrFlags::Any),
        Err(StoreError::Range)
    ));
    assert!(matches!(
        v.setxattr(f, n, &vec![0; 65537], XattrFlags::Any),
        Err(StoreError::TooBig)
    ));
    v.setxattr(f, n, &vec![1; 65536], XattrFlags::Any).unwrap();
    v.removexattr(f, n).unwrap();
    assert!(matches!(v.removexattr(f, n), Err(StoreError::NoXattr)));
    v.unlink(ROOT_INO, name("f")).unwrap();
    assert!(matches!(
        v.getxattr(f, name("user.a")),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn setattr_rules_setgid_and_chown() {
    let (_d, pool) = pool();
    pool.create_volume("v", VolumeOptions::default()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let d = v.mkdir(ROOT_INO, name("shared"), 0o2775, 0, 500).unwrap();
    let f = v
        .mknod(d.ino, name("f"), FileKind::File, 0o6755, 0, 1000, 1000)
        .unwrap();
    assert_eq!(f.gid, 500, "setgid directory passes its group on");
    let sub = v.mkdir(d.ino, name("sub"), 0o755, 1000, 1000).unwrap();
    assert_eq!((sub.gid, sub.perm & 0o2000), (500, 0o2000));
    let before = v.getattr(f.ino).unwrap().ctime;
    std::thread::sleep(std::time::Duration::from_millis(5));
    let a = v
        .setattr(
            f.ino,
            &SetAttr {
                uid: Some(2000),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.perm & 0o6000, 0, "chown clears setuid and setgid");
    assert!(a.ctime > before);
    let t = Timestamp {
        secs: 1_000_000,
        nsecs: 5,
    };
    let a = v
        .setattr(
            f.ino,
            &SetAttr {
                atime: Some(TimeSet::At(t)),
                mtime: Some(TimeSet::Now),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.atime, t);
    assert!(a.mtime.secs > 1_000_000);
    assert!(matches!(
        v.setattr(
            d.ino,
            &SetAttr {
                size: Some(0),
                ..Default::default()
            }
        ),
        Err(StoreError::IsDir)
    ));
}

#[test]
fn copy_range_shares_aligned_chunks() {
    let (_d, pool) = pool();
    pool.create_volume("v", opts(100 * MIB, 64 << 10)).unwrap();
    let v = pool.open_volume("v").unwrap();
    let src = create(&v, ROOT_INO, "src").ino;
    let data = noise(11, 1 << 20);
    write_all(&v, src, 0, &data);
    v.sync().unwrap();
    let physical = pool.usage().unwrap().physical_bytes;
    let dst = create(&v, ROOT_INO, "dst").ino;
    assert_eq!(v.copy_range(src, 0, dst, 0, 1 << 20).unwrap(), 1 << 20);
    v.sync().unwrap();
    assert_eq!(read_all(&v, dst), data);
    assert_eq!(
        pool.usage().unwrap().physical_bytes,
        physical,
        "no new chunk bytes"
    );
    // Unaligned copies copy bytes.
    let odd = create(&v, ROOT_INO, "odd").ino;
    assert_eq!(v.copy_range(src, 100, odd, 7, 200_000).unwrap(), 200_000);
    assert_eq!(v.read(odd, 7, 200_000).unwrap(), &data[100..200_100]);
    assert_eq!(v.statfs().unwrap().used, 2 * (1 << 20) + 200_007);
    // As copy_file_range(2): overlapping ranges of one file are refused, untouched.
    assert!(matches!(
        v.copy_range(src, 1000, src, 1001, 5000),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(read_all(&v, src), data);
    // Disjoint ranges of one file copy.
    assert_eq!(v.copy_range(src, 0, src, 1 << 20, 4096).unwrap(), 4096);
    assert_eq!(v.read(src, 1 << 20, 4096).unwrap(), &data[..4096]);
    v.sync().unwrap();
    assert!(pool.fsck(false).unwrap().is_clean());
}

#[test]
fn fsck_finds_and_repairs_bad_refcounts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let pool = Pool::open(dir.path()).unwrap();
        pool.create_volume("v", VolumeOptions::default()).unwrap();
        let v = pool.open_volume("v").unwrap();
        let f = create(&v, ROOT_INO, "f").ino;
        write_all(&v, f, 0, &noise(1, 100_000));
        v.sync().unwrap();
    }
    {
        use tessera_store::engine::{Batch, Engine, RocksEngine};
        let e = RocksEngine::open(&dir.path().join("db")).unwrap();
        let mut hashes = Vec::new();
        e.scan(keys::Cf::Refs, &[], &[0xff; 33], &mut |k, _| {
            hashes.push(k.to_vec());
            Ok(true)
        })
        .unwrap();
        assert_eq!(hashes.len(), 1);
        let mut b = Batch::default();
        b.add_ref(&hashes[0], 5);
        // A one-byte raw chunk inline in the index (tag 1, codec 0, raw and stored length 1).
        b.put(
            keys::Cf::ChunkIndex,
            vec![7u8; 32],
            vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0x42],
        );
        e.write(b, true).unwrap();
    }
    let pool = Pool::open(dir.path()).unwrap();
    let r = pool.fsck(true).unwrap();
    assert_eq!(
        (r.wrong_refcounts, r.leaked_chunks),
        (1, 1),
        "{:?}",
        r.problems
    );
    assert!(r.repaired);
    assert!(pool.fsck(false).unwrap().is_clean());
    assert_eq!(pool.gc().unwrap().chunks_deleted, 1);
    let v = pool.open_volume("v").unwrap();
    assert_eq!(
        read_all(&v, v.lookup(ROOT_INO, name("f")).unwrap().ino),
        noise(1, 100_000)
    );
}

#[test]
fn random_overwrites_stay_buffered_until_flush() {
    let (_d, pool) = pool();
    // Counts chunks: 1 MiB ones, whatever the default.
    pool.create_volume("v", opts(DEFAULT_CAPACITY, 1 << 20))
        .unwrap();
    let v = pool.open_volume("v").unwrap();
    let f = create(&v, ROOT_INO, "f").ino;
    write_all(&v, f, 0, &noise(1, 16 << 20));
    v.sync().unwrap();
    for round in 0..2u64 {
        let mut x = 0x2545F4914F6CDD1Du64 + round;
        for _ in 0..1024 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = (x % ((16 << 20) / 4096)) * 4096;
            write_all(&v, f, off, &noise(x, 4096));
        }
        v.fsync(f).unwrap();
    }
    // Each flush rewrites at most the 16 chunks once: 16 live + at most 32 dead.
    let chunks = pool.usage().unwrap().chunks;
    assert!(
        chunks <= 16 + 32,
        "{chunks} chunks: writes were flushed one by one"
    );
}

/// A full backing file system is ENOSPC (not EIO) for the writer. Mounts a small tmpfs
/// under the pool, so it needs root like the FUSE tests (CI runs as root).
#[test]
fn a_full_backing_disk_is_enospc() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "a_full_backing_disk_is_enospc mounts a tmpfs and must run as root; refusing to skip"
    );
    struct Tmpfs(std::path::PathBuf);
    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let base = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tessera-full"])
        .arg(base.path())
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs");
    let _mounted = Tmpfs(base.path().to_path_buf());
    let pool = Pool::open(&base.path().join("pool")).unwrap();
    let v = pool.create_volume("v", opts(1 << 30, 1 << 20)).unwrap();
    let v = pool.open_volume(&v.name).unwrap();
    let f = create(&v, ROOT_INO, "big");
    let mut failure = None;
    for k in 0..200u64 {
        // Distinct, incompressible chunks: neither dedup nor lz4 can make them fit.
        let block = noise(k, MIB as usize);
        let r = v.write(f.ino, k * MIB, &block).and_then(|_| v.fsync(f.ino));
        if let Err(e) = r {
            failure = Some(e);
            break;
        }
    }
    let e = failure.expect("200 MiB fit into a 48 MiB file system");
    assert_eq!(e.errno(), libc::ENOSPC, "{e}");
    assert!(
        e.to_string().contains("disk holding the pool is full"),
        "{e}"
    );
}
