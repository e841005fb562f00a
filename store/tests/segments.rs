//! Chunk bodies in segment files: damage is detected, torn tails are cut, GC gives space back.
mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tessera_store::*;

const MIB: u64 = 1 << 20;

fn segment_files(pool_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(pool_dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn segment_bytes_on_disk(pool_dir: &Path) -> u64 {
    segment_files(pool_dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// A pool with one file `f` holding `data` (incompressible, 1 MiB chunks), synced and closed.
fn pool_with_file(data: &[u8]) -> (tempfile::TempDir, Ino) {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(dir.path()).unwrap();
    pool.create_volume("v", opts(1 << 40, MIB as u32)).unwrap();
    let v = pool.open_volume("v").unwrap();
    let ino = create(&v, ROOT_INO, "f").ino;
    write_all(&v, ino, 0, data);
    v.sync().unwrap();
    (dir, ino)
}

#[test]
fn a_flipped_byte_fails_that_block_with_eio_and_fsck_names_it() {
    let data = noise(11, 2 * MIB as usize);
    // Chunk 1 first, so chunk 0's record is the last of the active segment: a bad
    // record there that the index references is damage, not a torn tail to cut.
    let dir = tempfile::tempdir().unwrap();
    let ino = {
        let pool = Pool::open(dir.path()).unwrap();
        pool.create_volume("v", opts(1 << 40, MIB as u32)).unwrap();
        let v = pool.open_volume("v").unwrap();
        let ino = create(&v, ROOT_INO, "f").ino;
        write_all(&v, ino, MIB, &data[MIB as usize..]);
        v.flush(ino).unwrap();
        write_all(&v, ino, 0, &data[..MIB as usize]);
        v.sync().unwrap();
        ino
    };
    // Flip a byte 10 KiB into the payload of chunk 0 (block 2). Chunks are sealed
    // by parallel workers, so find its payload by content, not by position.
    let seg = &segment_files(dir.path())[0];
    let bytes = std::fs::read(seg).unwrap();
    let payload = bytes
        .windows(64)
        .position(|w| w == &data[..64])
        .expect("chunk 0's payload is in the segment") as u64;
    let at = payload + 10 * 1024;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    drop(f);

    let pool = Pool::open(dir.path()).unwrap();
    let v = pool.open_volume("v").unwrap();
    let err = v.read(ino, 8192, 4096).unwrap_err();
    assert!(matches!(err, StoreError::Damaged(_)), "{err:?}");
    assert_eq!(err.errno(), libc::EIO);
    // Other blocks of the same chunk and the other chunk still read back.
    assert_eq!(v.read(ino, 0, 8192).unwrap(), &data[..8192]);
    assert_eq!(
        v.read(ino, MIB, MIB as u32).unwrap(),
        &data[MIB as usize..2 * MIB as usize]
    );
    // A whole-file read does not return wrong bytes either.
    assert!(matches!(
        v.read(ino, 0, 2 * MIB as u32),
        Err(StoreError::Damaged(_))
    ));
    drop(v);

    let report = pool.fsck(false).unwrap();
    assert_eq!(report.damaged_chunks, 1, "{report:?}");
    assert!(!report.is_clean());
    assert!(
        report.problems.iter().any(|p| p.contains("damaged")),
        "{:?}",
        report.problems
    );
}

#[test]
fn verify_data_finds_a_chunk_whose_bytes_do_not_hash_to_its_name() {
    // A small chunk lives inline in the chunk index, protected by RocksDB's own block
    // checksums only: bytes changed through the engine pass every record check, and
    // only rehashing (`--verify-data`) finds them.
    use tessera_store::engine::{Batch, Engine, RocksEngine};
    let data = noise(12, 3000);
    let (dir, _ino) = pool_with_file(&data);
    {
        let e = RocksEngine::open(&dir.path().join("db")).unwrap();
        let mut entries = Vec::new();
        e.scan(keys::Cf::ChunkIndex, &[], &[0xff; 33], &mut |k, v| {
            entries.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
        assert_eq!(entries.len(), 1);
        let (k, mut v) = entries.pop().unwrap();
        *v.last_mut().unwrap() ^= 1;
        let mut b = Batch::default();
        b.put(keys::Cf::ChunkIndex, k, v);
        e.write(b, true).unwrap();
    }
    let pool = Pool::open(dir.path()).unwrap();
    let quick = pool.fsck(false).unwrap();
    assert!(quick.is_clean(), "{quick:?}");
    let full = pool.fsck_full(false, true, &mut |_, _| {}).unwrap();
    assert_eq!(full.damaged_chunks, 1, "{full:?}");
    assert!(
        full.problems.iter().any(|p| p.contains("does not hash")),
        "{:?}",
        full.problems
    );
}

#[test]
fn a_torn_tail_is_cut_at_open_and_appends_continue() {
    let data = noise(13, 3 * MIB as usize);
    let (dir, ino) = pool_with_file(&data);
    let seg = segment_files(dir.path()).pop().unwrap();
    let good_len = std::fs::metadata(&seg).unwrap().len();
    // A crash mid-append: half a record header and some payload, never synced or referenced.
    let f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all_at(b"TCR1\0\0\0\0garbage-after-a-crash", good_len)
        .unwrap();
    f.write_all_at(&noise(14, 70_000), good_len + 30).unwrap();
    drop(f);

    {
        let pool = Pool::open(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
        let v = pool.open_volume("v").unwrap();
        assert_eq!(read_all(&v, ino), data);
        let more = noise(15, 2 * MIB as usize);
        let g = create(&v, ROOT_INO, "g").ino;
        write_all(&v, g, 0, &more);
        v.sync().unwrap();
        assert!(pool.fsck(false).unwrap().is_clean());
    }
    let pool = Pool::open(dir.path()).unwrap();
    let v = pool.open_volume("v").unwrap();
    assert_eq!(read_all(&v, ino), data);
    let g = v.lookup(ROOT_INO, name("g")).unwrap().ino;
    assert_eq!(read_all(&v, g), noise(15, 2 * MIB as usize));
    drop(v);
    let report = pool.fsck_full(false, true, &mut |_, _| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn gc_gives_deleted_data_back_to_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(dir.path()).unwrap();
    pool.create_volume("v", opts(1 << 40, MIB as u32)).unwrap();
    let v = pool.open_volume("v").unwrap();
    // 200 MiB in 20 files, then a small file that stays.
    for i in 0..20 {
        let ino = create(&v, ROOT_INO, &format!("f{i}")).ino;
        write_all(&v, ino, 0, &noise(100 + i, 10 * MIB as usize));
    }
    let keep = noise(99, 3 * MIB as usize);
    let k = create(&v, ROOT_INO, "keep").ino;
    write_all(&v, k, 0, &keep);
    v.sync().unwrap();
    let full = segment_bytes_on_disk(dir.path());
    assert!(full >= 200 * MIB, "{full}");

    for i in 0..20 {
        v.unlink(ROOT_INO, name(&format!("f{i}"))).unwrap();
    }
    v.sync().unwrap();
    let before = pool.usage().unwrap();
    assert!(before.garbage_bytes >= 200 * MIB, "{before:?}");

    let report = pool.gc().unwrap();
    assert_eq!(report.chunks_deleted, 200, "{report:?}");
    assert!(report.segments_deleted >= 2, "{report:?}");
    let after_disk = segment_bytes_on_disk(dir.path());
    // What stays: the live 3 MiB and at most the active segment's dead part.
    assert!(
        after_disk <= 3 * MIB + 64 * MIB,
        "segments hold {after_disk} bytes after gc (were {full})"
    );
    assert_eq!(report.bytes_freed, full - after_disk, "{report:?}");
    let after = pool.usage().unwrap();
    assert_eq!(after.segment_bytes, after_disk, "{after:?}");
    assert!(after.live_bytes >= 3 * MIB, "{after:?}");
    assert_eq!(read_all(&v, k), keep);

    // A second gc finds nothing to do and keeps the data.
    let again = pool.gc().unwrap();
    assert_eq!(again.chunks_deleted, 0, "{again:?}");
    drop(v);
    drop(pool);
    let pool = Pool::open(dir.path()).unwrap();
    let report = pool.fsck_full(false, true, &mut |_, _| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let v = pool.open_volume("v").unwrap();
    assert_eq!(read_all(&v, k), keep);
}

#[test]
fn gc_moves_live_chunks_out_of_sparse_segments() {
    // Interleave a kept file with deleted ones so every sealed segment is mostly dead but
    // not empty: gc must copy the live chunks and still free the space.
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(dir.path()).unwrap();
    pool.create_volume("v", opts(1 << 40, MIB as u32)).unwrap();
    let v = pool.open_volume("v").unwrap();
    let k = create(&v, ROOT_INO, "keep").ino;
    let mut keep = Vec::new();
    for i in 0..160u64 {
        let chunk = noise(1000 + i, MIB as usize);
        let ino = if i % 8 == 0 {
            write_all(&v, k, keep.len() as u64, &chunk);
            keep.extend_from_slice(&chunk);
            k
        } else {
            let ino = create(&v, ROOT_INO, &format!("d{i}")).ino;
            write_all(&v, ino, 0, &chunk);
            ino
        };
        v.flush(ino).unwrap();
    }
    v.sync().unwrap();
    // Read it once first, so what the read path caches about each chunk's place is
    // stale after gc moved it.
    assert_eq!(read_all(&v, k), keep);
    let full = segment_bytes_on_disk(dir.path());
    for i in 0..160u64 {
        if i % 8 != 0 {
            v.unlink(ROOT_INO, name(&format!("d{i}"))).unwrap();
        }
    }
    v.sync().unwrap();
    let report = pool.gc().unwrap();
    assert!(report.bytes_moved >= 10 * MIB, "{report:?}");
    let after = segment_bytes_on_disk(dir.path());
    assert!(
        after <= 20 * MIB + 64 * MIB,
        "{after} of {full} left: {report:?}"
    );
    assert_eq!(read_all(&v, k), keep);
    drop(v);
    drop(pool);
    let pool = Pool::open(dir.path()).unwrap();
    let v = pool.open_volume("v").unwrap();
    assert_eq!(read_all(&v, k), keep);
    drop(v);
    let report = pool.fsck_full(false, true, &mut |_, _| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn small_chunks_live_in_the_index_and_cost_no_segment_bytes() {
    let (dir, pool) = pool();
    pool.create_volume("v", opts(1 << 30, 64 << 10)).unwrap();
    let v = pool.open_volume("v").unwrap();
    for i in 0..50u64 {
        let ino = create(&v, ROOT_INO, &format!("s{i}")).ino;
        write_all(&v, ino, 0, &noise(i, 3000));
    }
    v.sync().unwrap();
    let u = pool.usage().unwrap();
    assert_eq!(u.chunks, 50);
    assert_eq!(segment_bytes_on_disk(dir.path()), u.segment_bytes, "{u:?}");
    assert_eq!(u.live_bytes, 0, "{u:?}");
    for i in 0..50u64 {
        let ino = v.lookup(ROOT_INO, name(&format!("s{i}"))).unwrap().ino;
        assert_eq!(read_all(&v, ino), noise(i, 3000));
    }
}

#[test]
fn the_background_cleaner_collects_garbage_once_it_is_worth_it() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(dir.path()).unwrap();
    pool.create_volume("v", opts(1 << 40, 64 << 10)).unwrap();
    let v = pool.open_volume("v").unwrap();
    let keep = noise(7, 2 * MIB as usize);
    let k = create(&v, ROOT_INO, "keep").ino;
    write_all(&v, k, 0, &keep);
    let gone = create(&v, ROOT_INO, "gone").ino;
    write_all(&v, gone, 0, &noise(8, 24 * MIB as usize));
    v.sync().unwrap();
    // Nothing to collect yet: the cleaner runs and leaves the pool alone.
    assert!(pool.clean_if(0.25, MIB).unwrap().is_none());

    pool.start_cleaner(std::time::Duration::from_millis(20), 0.25, MIB);
    v.unlink(ROOT_INO, name("gone")).unwrap();
    v.sync().unwrap();
    // The cleaner's next look finds 24 MiB of garbage in 26 MiB of segments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while pool.usage().unwrap().garbage_bytes >= MIB {
        assert!(
            std::time::Instant::now() < deadline,
            "the cleaner did not run: {:?}",
            pool.usage().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(segment_bytes_on_disk(dir.path()) < 4 * MIB);
    assert_eq!(read_all(&v, k), keep);
    drop(v);
    pool.stop_cleaner();
    drop(pool);
    let pool = Pool::open(dir.path()).unwrap();
    assert!(pool.fsck(false).unwrap().is_clean());
}
