//! File I/O through a real mount: open/create flags (O_EXCL, O_TRUNC, O_APPEND),
//! read/write at chunk boundaries, fsync/fdatasync, truncate, sparse files, fallocate
//! (allocate, KEEP_SIZE, PUNCH_HOLE), lseek SEEK_DATA/SEEK_HOLE and copy_file_range.

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

fn fallocate(f: &File, mode: i32, off: u64, len: u64) -> std::io::Result<()> {
    // SAFETY: valid fd.
    cvt(unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) }).map(drop)
}

fn lseek(f: &File, off: u64, whence: i32) -> std::io::Result<u64> {
    // SAFETY: valid fd.
    cvt(unsafe { libc::lseek(f.as_raw_fd(), off as i64, whence) }).map(|v| v as u64)
}

fn copy_file_range(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: usize,
) -> std::io::Result<usize> {
    let mut so = src_off as i64;
    let mut d = dst_off as i64;
    // SAFETY: valid fds and offset pointers.
    cvt(unsafe { libc::copy_file_range(src.as_raw_fd(), &mut so, dst.as_raw_fd(), &mut d, len, 0) })
        .map(|n| n as usize)
}

fn rw(p: &std::path::Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

/// Reads `len` bytes at `off` (short at EOF).
fn read_at(f: &File, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f
            .read_at(&mut buf[done..], off + done as u64)
            .expect("pread");
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    buf
}

#[test]
fn open_flags_excl_trunc_append() {
    let m = Mount::default_mount();
    let p = m.path("f");

    // O_CREAT|O_EXCL creates once, then fails with EEXIST.
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap();
    f.write_all(b"0123456789").unwrap();
    drop(f);
    assert_errno(
        OpenOptions::new().write(true).create_new(true).open(&p),
        libc::EEXIST,
        "O_CREAT|O_EXCL on an existing file",
    );
    // O_EXCL also refuses a dangling symlink.
    std::os::unix::fs::symlink("nowhere", m.path("dangling")).unwrap();
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.path("dangling")),
        libc::EEXIST,
        "O_CREAT|O_EXCL on a dangling symlink",
    );
    // Plain O_CREAT opens the existing file without truncating.
    drop(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .unwrap(),
    );
    assert_content(&p, b"0123456789");

    // O_APPEND: every write lands at the end, whatever the file offset.
    let mut a = OpenOptions::new().append(true).open(&p).unwrap();
    a.seek(SeekFrom::Start(0)).unwrap();
    a.write_all(b"AB").unwrap();
    let mut a2 = OpenOptions::new().append(true).open(&p).unwrap();
    a2.write_all(b"CD").unwrap();
    a.write_all(b"EF").unwrap();
    drop((a, a2));
    assert_content(&p, b"0123456789ABCDEF");

    // O_TRUNC empties it (and an O_RDONLY open does not).
    drop(File::open(&p).unwrap());
    assert_eq!(fs::metadata(&p).unwrap().len(), 16);
    let mut t = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    assert_eq!(t.metadata().unwrap().len(), 0);
    t.write_all(b"xy").unwrap();
    drop(t);
    assert_content(&p, b"xy");

    // O_TRUNC of a big multi-chunk file really drops the old data.
    let big = pattern(7, 3 * MIB as usize);
    write_file(&p, &big);
    drop(
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap(),
    );
    assert_eq!(fs::metadata(&p).unwrap().len(), 0);
    let f = rw(&p);
    f.set_len(2 * MIB).unwrap();
    assert!(
        read_at(&f, 0, 2 * MIB as usize).iter().all(|b| *b == 0),
        "old data reappeared after O_TRUNC + extend"
    );

    // O_RDONLY forbids writes, O_WRONLY forbids reads (EBADF from the kernel).
    let mut ro = File::open(&p).unwrap();
    assert_errno(ro.write(b"x"), libc::EBADF, "write on O_RDONLY");
    let mut wo = OpenOptions::new().write(true).open(&p).unwrap();
    let mut b = [0u8; 1];
    assert_errno(wo.read(&mut b), libc::EBADF, "read on O_WRONLY");

    // O_DIRECTORY on a file, O_CREAT on a directory.
    assert_errno(
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&p),
        libc::ENOTDIR,
        "O_DIRECTORY on a file",
    );
    fs::create_dir(m.path("d")).unwrap();
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(m.path("d")),
        libc::EISDIR,
        "O_CREAT|O_WRONLY on a directory",
    );
}

#[test]
fn read_write_across_chunk_boundaries_and_sync() {
    let m = Mount::default_mount();
    let p = m.path("data");
    let mut model = pattern(11, (3 * MIB + 12345) as usize);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all(&model).unwrap();
    f.sync_all().unwrap();
    assert_eq!(f.metadata().unwrap().len(), model.len() as u64);

    // Overwrites straddling chunk boundaries (1 MiB chunks).
    let mut rng = Prng::new(5);
    for (off, len) in [
        (MIB - 100, 200u64),
        (2 * MIB - 1, 2),
        (0, 1),
        (MIB, MIB),
        (3 * MIB, 12345),
        (17, 3 * MIB - 34),
    ] {
        let data = rng.bytes(len as usize);
        f.write_at(&data, off).unwrap();
        model[off as usize..(off + len) as usize].copy_from_slice(&data);
    }
    f.sync_data().unwrap(); // fdatasync
    assert_same_bytes(
        &read_at(&f, 0, model.len() + 10),
        &model,
        "after overwrites",
    );

    // Many small overwrites (the hard case for content addressing), then fsync.
    for _ in 0..500 {
        let off = rng.below(model.len() as u64 - 4096);
        let len = rng.range(1, 4097);
        let data = rng.bytes(len as usize);
        f.write_at(&data, off).unwrap();
        model[off as usize..(off + len) as usize].copy_from_slice(&data);
    }
    // SAFETY: valid fd.
    cvt(unsafe { libc::fdatasync(f.as_raw_fd()) }).unwrap();
    cvt(unsafe { libc::fsync(f.as_raw_fd()) }).unwrap();
    assert_same_bytes(
        &read_at(&f, 0, model.len()),
        &model,
        "after small overwrites",
    );

    // Reads at and past EOF.
    let len = model.len() as u64;
    assert_eq!(read_at(&f, len - 3, 100), model[model.len() - 3..].to_vec());
    assert_eq!(read_at(&f, len, 100), Vec::<u8>::new());
    assert_eq!(read_at(&f, len + MIB, 100), Vec::<u8>::new());

    // Writing past EOF leaves a zero-filled gap.
    f.write_at(b"tail", len + 5000).unwrap();
    model.resize((len + 5000) as usize, 0);
    model.extend_from_slice(b"tail");
    f.sync_all().unwrap();
    drop(f);
    assert_content(&p, &model);
    // Also through a fresh descriptor after dropping the kernel's caches for it.
    let mut again = Vec::new();
    File::open(&p).unwrap().read_to_end(&mut again).unwrap();
    assert_same_bytes(&again, &model, "fresh open");
}

#[test]
fn small_chunk_volume_random_writes() {
    // 64 KiB chunks: many chunks per file, lz4 off, created with `volume create`.
    let mut m = Mount::new(
        MountOpts::default()
            .size("1GiB")
            .chunk_size("64KiB")
            .compression("none")
            .precreate(),
    );
    let p = m.path("f");
    let size = 5 * MIB as usize + 333;
    let mut model = vec![0u8; size];
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.set_len(size as u64).unwrap();
    let mut rng = Prng::new(99);
    for _ in 0..400 {
        let off = rng.below(size as u64 - 1) as usize;
        let len = (rng.range(1, 200_000) as usize).min(size - off);
        let data = rng.bytes(len);
        f.write_at(&data, off as u64).unwrap();
        model[off..off + len].copy_from_slice(&data);
    }
    f.sync_all().unwrap();
    drop(f);
    assert_content(&p, &model);
    m.remount();
    assert_content(&m.path("f"), &model);
}

#[test]
fn truncate_up_and_down() {
    let m = Mount::default_mount();
    let p = m.path("t");
    let data = pattern(3, (3 * MIB) as usize);
    write_file(&p, &data);

    // Down to an unaligned size inside the second chunk.
    let down = (MIB + MIB / 2 + 7) as usize;
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(down as u64)
        .unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), down as u64);
    assert_content(&p, &data[..down]);

    // Up again: the cut-off bytes must read back as zeros, not as stale data.
    let f = rw(&p);
    f.set_len(5 * MIB).unwrap();
    let mut want = data[..down].to_vec();
    want.resize((5 * MIB) as usize, 0);
    assert_same_bytes(&read_at(&f, 0, want.len()), &want, "after truncate up");
    f.sync_all().unwrap();
    drop(f);
    assert_content(&p, &want);

    // Truncate via path (truncate(2)) to a chunk boundary, then extend by writing.
    let c = cstr(&p);
    // SAFETY: valid C string.
    cvt(unsafe { libc::truncate(c.as_ptr(), MIB as i64) }).unwrap();
    want.truncate(MIB as usize);
    let f = rw(&p);
    f.write_at(b"after", 2 * MIB).unwrap();
    want.resize((2 * MIB) as usize, 0);
    want.extend_from_slice(b"after");
    f.sync_all().unwrap();
    assert_same_bytes(
        &read_at(&f, 0, want.len() + 1),
        &want,
        "truncate + extend by write",
    );

    // Truncate to zero and to the same size.
    f.set_len(want.len() as u64).unwrap();
    assert_same_bytes(&read_at(&f, 0, want.len() + 1), &want, "same-size truncate");
    f.set_len(0).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 0);
    assert_eq!(read_at(&f, 0, 10), Vec::<u8>::new());
    drop(f);
    assert_eq!(
        fs::metadata(&p).unwrap().blocks(),
        0,
        "an empty file has no blocks"
    );
}

#[test]
fn sparse_files() {
    let m = Mount::default_mount();
    let p = m.path("sparse");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    let far = 100 * MIB + 3;
    f.write_at(b"start", 0).unwrap();
    f.write_at(b"end", far).unwrap();
    f.sync_all().unwrap();
    let md = f.metadata().unwrap();
    assert_eq!(md.len(), far + 3);
    assert!(
        md.blocks() * 512 <= 4 * MIB,
        "a 100 MiB file with 8 bytes of data uses {} bytes of blocks",
        md.blocks() * 512
    );
    assert_eq!(read_at(&f, 0, 5), b"start");
    assert!(read_at(&f, 5, MIB as usize).iter().all(|b| *b == 0));
    assert!(read_at(&f, 50 * MIB, MIB as usize).iter().all(|b| *b == 0));
    assert_eq!(read_at(&f, far - 2, 10), b"\0\0end");

    // A file made only of a hole (ftruncate up).
    let h = m.path("hole-only");
    let g = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&h)
        .unwrap();
    g.set_len(GIB).unwrap();
    assert_eq!(g.metadata().unwrap().blocks(), 0);
    assert!(read_at(&g, GIB - 4096, 8192).iter().all(|b| *b == 0));
    assert_eq!(read_at(&g, GIB - 4096, 8192).len(), 4096);
    // statfs usage does not count the hole.
    let st = statfs(m.dir()).unwrap();
    let used = (st.f_blocks - st.f_bfree) * st.f_bsize as u64;
    assert!(used < 64 * MIB, "holes counted as used space: {used} bytes");
}

#[test]
fn fallocate_allocate_keep_size_and_punch_hole() {
    let m = Mount::default_mount();
    let p = m.path("fa");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();

    // Mode 0 extends the size; the new range reads as zeros.
    fallocate(&f, 0, 0, 3 * MIB).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 3 * MIB);
    assert!(read_at(&f, 0, 3 * MIB as usize).iter().all(|b| *b == 0));

    // KEEP_SIZE past EOF leaves the size alone.
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 3 * MIB, 2 * MIB).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 3 * MIB);
    assert_eq!(read_at(&f, 3 * MIB, 10), Vec::<u8>::new());

    // Fill with data, then punch holes: aligned (whole chunk) and unaligned.
    let mut model = pattern(21, (4 * MIB) as usize);
    f.write_at(&model, 0).unwrap();
    f.sync_all().unwrap();
    // With the writeback cache the kernel refreshes st_blocks on close, not on fsync.
    drop(f);
    let blocks_before = fs::metadata(&p).unwrap().blocks();
    assert!(
        blocks_before >= 4 * MIB / 512,
        "4 MiB of data in {blocks_before} blocks"
    );
    let f = rw(&p);
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(&f, punch, MIB, MIB).unwrap();
    model[MIB as usize..(2 * MIB) as usize].fill(0);
    fallocate(&f, punch, 3 * MIB - 1000, 5000).unwrap();
    model[(3 * MIB - 1000) as usize..(3 * MIB + 4000) as usize].fill(0);
    fallocate(&f, punch, 10, 20).unwrap();
    model[10..30].fill(0);
    // Punching past EOF changes nothing.
    fallocate(&f, punch, 10 * MIB, MIB).unwrap();
    assert_eq!(
        f.metadata().unwrap().len(),
        4 * MIB,
        "PUNCH_HOLE|KEEP_SIZE changed the size"
    );
    assert_same_bytes(
        &read_at(&f, 0, model.len() + 1),
        &model,
        "after punching holes",
    );
    f.sync_all().unwrap();
    drop(f);
    let blocks_after = fs::metadata(&p).unwrap().blocks();
    assert!(
        blocks_after + (MIB / 512) <= blocks_before,
        "punching a whole 1 MiB chunk should free its blocks: {blocks_before} -> {blocks_after}"
    );
    assert_content(&p, &model);

    // PUNCH_HOLE without KEEP_SIZE and unsupported modes are refused by the kernel or us.
    let f = rw(&p);
    assert_errno(
        fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE, 0, 10),
        libc::EOPNOTSUPP,
        "PUNCH_HOLE without KEEP_SIZE",
    );
    assert_errno(
        fallocate(&f, libc::FALLOC_FL_COLLAPSE_RANGE, 0, MIB),
        libc::EOPNOTSUPP,
        "COLLAPSE_RANGE",
    );
    // fallocate on a read-only descriptor.
    let ro = File::open(&p).unwrap();
    assert_errno(
        fallocate(&ro, 0, 0, 10),
        libc::EBADF,
        "fallocate on O_RDONLY",
    );
}

#[test]
fn lseek_data_and_hole() {
    let m = Mount::default_mount();
    let p = m.path("holes");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    // data [0, 4096), hole until 8 MiB, data [8 MiB, 8 MiB + 4096), hole until 16 MiB.
    f.write_at(&pattern(1, 4096), 0).unwrap();
    f.write_at(&pattern(2, 4096), 8 * MIB).unwrap();
    f.set_len(16 * MIB).unwrap();
    f.sync_all().unwrap();
    // While a writer has the file open, holes are not reported (the kernel may
    // hold pages the server has not seen): everything is data.
    assert_eq!(lseek(&f, 5 * MIB, libc::SEEK_DATA).unwrap(), 5 * MIB);
    assert_eq!(lseek(&f, 0, libc::SEEK_HOLE).unwrap(), 16 * MIB);
    drop(f);
    // With no writer left, the store's holes show.
    let f = File::open(&p).unwrap();

    assert_eq!(lseek(&f, 0, libc::SEEK_DATA).unwrap(), 0);
    let hole = lseek(&f, 0, libc::SEEK_HOLE).unwrap();
    assert!(
        (4096..=MIB).contains(&hole),
        "first hole at {hole}, expected within [4096, 1 MiB]"
    );
    let data = lseek(&f, hole, libc::SEEK_DATA).unwrap();
    assert!(
        (7 * MIB..=8 * MIB).contains(&data),
        "SEEK_DATA from {hole} found {data}, expected the block at 8 MiB (or its chunk start)"
    );
    let hole2 = lseek(&f, 8 * MIB, libc::SEEK_HOLE).unwrap();
    assert!(
        (8 * MIB + 4096..=9 * MIB).contains(&hole2),
        "second hole at {hole2}"
    );
    // The tail up to EOF is a hole: no more data.
    assert_errno(
        lseek(&f, 9 * MIB, libc::SEEK_DATA),
        libc::ENXIO,
        "SEEK_DATA in the trailing hole",
    );
    assert_eq!(lseek(&f, 12 * MIB, libc::SEEK_HOLE).unwrap(), 12 * MIB);
    // At or past EOF: ENXIO for both.
    assert_errno(
        lseek(&f, 16 * MIB, libc::SEEK_DATA),
        libc::ENXIO,
        "SEEK_DATA at EOF",
    );
    assert_errno(
        lseek(&f, 16 * MIB, libc::SEEK_HOLE),
        libc::ENXIO,
        "SEEK_HOLE at EOF",
    );
    // SEEK_SET / SEEK_CUR / SEEK_END still work.
    assert_eq!(lseek(&f, 5, libc::SEEK_SET).unwrap(), 5);
    assert_eq!(lseek(&f, 5, libc::SEEK_CUR).unwrap(), 10);
    assert_eq!(lseek(&f, 0, libc::SEEK_END).unwrap(), 16 * MIB);
}

/// SEEK_DATA must see data that is still in the kernel's page cache (writeback cache):
/// `cp --sparse`, tar and rsync use it to skip holes, so a miss loses data in copies.
/// The window is a race with the kernel's writeback, hence many attempts; a correct
/// implementation never fails.
#[test]
fn seek_data_sees_unflushed_writes() {
    let m = Mount::default_mount();
    let mut misses = Vec::new();
    for i in 0..200 {
        let q = m.path(format!("unsynced{i}"));
        let g = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&q)
            .unwrap();
        g.set_len(4 * MIB).unwrap();
        g.write_at(b"late data", 3 * MIB).unwrap();
        match lseek(&g, 0, libc::SEEK_DATA) {
            Ok(d) if d <= 3 * MIB => {}
            other => misses.push((i, other.map_err(|e| e.to_string()))),
        }
    }
    assert!(
        misses.is_empty(),
        "SEEK_DATA missed data written (not yet fsync'ed) at 3 MiB in {} of 200 files: {:?}",
        misses.len(),
        &misses[..misses.len().min(5)]
    );
}

#[test]
fn copy_file_range_copies_data() {
    let m = Mount::default_mount();
    let src_p = m.path("src");
    let dst_p = m.path("dst");
    let src_data = pattern(31, (3 * MIB + 500) as usize);
    write_file(&src_p, &src_data);
    let dst_init = pattern(32, (2 * MIB) as usize);
    write_file(&dst_p, &dst_init);

    let src = File::open(&src_p).unwrap();
    let dst = rw(&dst_p);
    // Unaligned source and destination, crossing several chunks, extending dst.
    let (so, doff, len) = (100u64, 4096 + 3, (MIB + MIB / 2) as usize);
    let mut copied = 0;
    while copied < len {
        let n = copy_file_range(
            &src,
            so + copied as u64,
            &dst,
            doff + copied as u64,
            len - copied,
        )
        .unwrap();
        assert!(
            n > 0,
            "copy_file_range returned 0 before the end of the source"
        );
        copied += n;
    }
    let mut want = dst_init.clone();
    want[doff as usize..doff as usize + len]
        .copy_from_slice(&src_data[so as usize..so as usize + len]);
    assert_same_bytes(
        &read_at(&dst, 0, want.len() + 1),
        &want,
        "copy into the middle",
    );

    // Past the end of dst: it grows, the gap is zeros.
    let far = 5 * MIB;
    let n = copy_file_range(&src, 0, &dst, far, 1000).unwrap();
    assert_eq!(n, 1000);
    want.resize(far as usize, 0);
    want.extend_from_slice(&src_data[..1000]);
    // Reading beyond the source's EOF copies nothing.
    assert_eq!(
        copy_file_range(&src, src_data.len() as u64, &dst, 0, 100).unwrap(),
        0
    );
    // A range running past the source's EOF is short.
    let tail = copy_file_range(&src, src_data.len() as u64 - 10, &dst, 0, 100).unwrap();
    assert_eq!(tail, 10);
    want[..10].copy_from_slice(&src_data[src_data.len() - 10..]);
    dst.sync_all().unwrap();
    drop(dst);
    assert_content(&dst_p, &want);
    assert_content(&src_p, &src_data);

    // Within one file, non-overlapping ranges.
    let f = rw(&src_p);
    let n = copy_file_range(&f, 0, &f, 2 * MIB, 4096).unwrap();
    assert_eq!(n, 4096);
    let mut want_src = src_data.clone();
    want_src.copy_within(0..4096, (2 * MIB) as usize);
    drop(f);
    assert_content(&src_p, &want_src);

    // Unwritten (just written, not yet flushed) source data is copied too.
    let s2 = m.path("fresh");
    let mut g = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&s2)
        .unwrap();
    g.write_all(b"fresh bytes in the page cache").unwrap();
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("out"))
        .unwrap();
    let n = copy_file_range(&g, 0, &out, 0, 100).unwrap();
    assert_eq!(n, 29);
    drop((g, out));
    assert_content(&m.path("out"), b"fresh bytes in the page cache");
}
