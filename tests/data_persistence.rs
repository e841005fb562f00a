//! Persistence across a clean unmount and remount: content (including sparse holes and
//! multi-chunk files), modes, owners, times, xattrs, symlinks, hard links, special
//! files and empty directories; plus data written without fsync (the server flushes on
//! SIGTERM).

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{symlink, FileExt, FileTypeExt, MetadataExt, PermissionsExt};

#[test]
fn everything_survives_a_remount() {
    let mut m = Mount::default_mount();
    let big = pattern(100, (5 * MIB + 777) as usize);
    write_file(&m.path("big"), &big);
    write_file(&m.path("empty"), b"");
    fs::create_dir_all(m.path("a/b/c")).unwrap();
    fs::create_dir(m.path("emptydir")).unwrap();
    write_file(&m.path("a/b/c/deep"), b"deep file");

    // Modes, owners, times.
    write_file(&m.path("modes"), b"m");
    fs::set_permissions(m.path("modes"), fs::Permissions::from_mode(0o4751)).unwrap();
    chown(&m.path("a"), 1234, 5678).unwrap();
    fs::set_permissions(m.path("a"), fs::Permissions::from_mode(0o2750)).unwrap();
    utimensat(
        &m.path("modes"),
        ts(1_234_567_890, 111),
        ts(1_300_000_000, 222),
        0,
    )
    .unwrap();

    // xattrs.
    setxattr(&m.path("big"), "user.one", b"1", 0).unwrap();
    setxattr(&m.path("big"), "user.bin", &[0, 255, 0], 0).unwrap();
    setxattr(&m.path("a/b"), "user.dir", b"dir attr", 0).unwrap();
    setxattr(&m.path("modes"), "trusted.t", b"trusted", 0).unwrap();

    // Symlinks and hard links.
    symlink("a/b/c/deep", m.path("link")).unwrap();
    symlink("/absolute/dangling", m.path("dangling")).unwrap();
    fs::hard_link(m.path("big"), m.path("a/big-link")).unwrap();
    fs::hard_link(m.path("big"), m.path("a/b/big-link2")).unwrap();

    // Special files.
    mkfifo(&m.path("fifo"), 0o620).unwrap();
    mknod(&m.path("chr"), libc::S_IFCHR | 0o600, libc::makedev(5, 1)).unwrap();

    // Sparse file with holes at both ends of a data block.
    let sp = File::create(m.path("sparse")).unwrap();
    sp.write_at(b"middle", 64 * MIB).unwrap();
    sp.set_len(200 * MIB).unwrap();
    sp.sync_all().unwrap();
    drop(sp);

    // Written but never fsync'ed, still open at unmount time: must be flushed on SIGTERM.
    let mut unsynced = File::create(m.path("unsynced")).unwrap();
    let unsynced_data = pattern(101, (3 * MIB + 5) as usize);
    unsynced.write_all(&unsynced_data).unwrap();
    drop(unsynced);
    let before = snapshot(&m);

    m.remount();
    let after = snapshot(&m);
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "attributes changed across remount");
    }

    assert_content(&m.path("big"), &big);
    assert_content(&m.path("a/big-link"), &big);
    assert_content(&m.path("empty"), b"");
    assert_content(&m.path("a/b/c/deep"), b"deep file");
    assert_content(&m.path("unsynced"), &unsynced_data);
    assert_eq!(names(&m.path("emptydir")), Vec::<String>::new());

    let md = fs::metadata(m.path("modes")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4751);
    assert_eq!((md.atime(), md.atime_nsec()), (1_234_567_890, 111));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_300_000_000, 222));
    let md = fs::metadata(m.path("a")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1234, 5678, 0o2750)
    );

    assert_eq!(
        listxattr(&m.path("big")).unwrap(),
        vec!["user.bin", "user.one"]
    );
    assert_eq!(
        getxattr(&m.path("big"), "user.bin").unwrap(),
        vec![0, 255, 0]
    );
    assert_eq!(getxattr(&m.path("a/b"), "user.dir").unwrap(), b"dir attr");
    assert_eq!(getxattr(&m.path("modes"), "trusted.t").unwrap(), b"trusted");

    assert_eq!(
        fs::read_link(m.path("link")).unwrap(),
        std::path::Path::new("a/b/c/deep")
    );
    assert_content(&m.path("link"), b"deep file");
    assert_eq!(
        fs::read_link(m.path("dangling")).unwrap(),
        std::path::Path::new("/absolute/dangling")
    );
    let (i1, i2, i3) = (
        fs::metadata(m.path("big")).unwrap(),
        fs::metadata(m.path("a/big-link")).unwrap(),
        fs::metadata(m.path("a/b/big-link2")).unwrap(),
    );
    assert_eq!((i1.ino(), i1.nlink()), (i2.ino(), 3));
    assert_eq!(i3.ino(), i1.ino());

    assert!(fs::symlink_metadata(m.path("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let chr = fs::symlink_metadata(m.path("chr")).unwrap();
    assert!(chr.file_type().is_char_device());
    assert_eq!(chr.rdev(), libc::makedev(5, 1));

    let sp = File::open(m.path("sparse")).unwrap();
    assert_eq!(sp.metadata().unwrap().len(), 200 * MIB);
    assert!(
        sp.metadata().unwrap().blocks() * 512 <= 4 * MIB,
        "holes were filled in"
    );
    let mut buf = vec![0u8; 16];
    sp.read_exact_at(&mut buf, 64 * MIB - 5).unwrap();
    assert_eq!(&buf, b"\0\0\0\0\0middle\0\0\0\0\0");

    // Changes after a remount persist too (the second generation of the pool).
    fs::remove_file(m.path("a/big-link")).unwrap();
    fs::rename(m.path("a/b/c/deep"), m.path("emptydir/moved")).unwrap();
    let mut f = OpenOptions::new().write(true).open(m.path("big")).unwrap();
    f.write_all(b"HEAD").unwrap();
    f.sync_all().unwrap();
    drop(f);
    m.remount();
    let mut big2 = big.clone();
    big2[..4].copy_from_slice(b"HEAD");
    assert_content(&m.path("big"), &big2);
    assert_eq!(fs::metadata(m.path("big")).unwrap().nlink(), 2);
    assert_content(&m.path("emptydir/moved"), b"deep file");
    assert_eq!(names(&m.path("a/b/c")), Vec::<String>::new());
    m.unmount();
    m.assert_fsck_clean("after the persistence test");
}

/// Everything `ls -lR --full-time` plus inode numbers would show, sorted by path.
fn snapshot(m: &Mount) -> Vec<String> {
    let mut out = Vec::new();
    walk(m.dir(), m.dir(), &mut out);
    out.sort();
    out
}

fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let size = if md.is_dir() { 0 } else { md.len() };
        out.push(format!(
            "{rel} ino={} mode={:o} nlink={} uid={} gid={} size={size} mtime={}.{} rdev={}",
            md.ino(),
            md.mode(),
            md.nlink(),
            md.uid(),
            md.gid(),
            md.mtime(),
            md.mtime_nsec(),
            md.rdev()
        ));
        if md.is_dir() {
            walk(root, &p, out);
        }
    }
}

#[test]
fn remount_of_a_volume_created_by_volume_create() {
    let mut m = Mount::new(
        MountOpts::default()
            .size("256MiB")
            .compression("zstd")
            .precreate(),
    );
    let data = pattern(5, (2 * MIB) as usize);
    write_file(&m.path("z"), &data);
    let text: Vec<u8> = b"compressible "
        .iter()
        .cycle()
        .take(3 * MIB as usize)
        .copied()
        .collect();
    write_file(&m.path("text"), &text);
    m.remount();
    assert_content(&m.path("z"), &data);
    assert_content(&m.path("text"), &text);
    let st = statfs(m.dir()).unwrap();
    assert!((st.f_blocks * st.f_bsize as u64).abs_diff(256 * MIB) <= 4 * MIB);
    m.unmount();
    // While unmounted the CLI can open the pool: the volume is listed with its size.
    let out = m.tessera(&["--json", "volume", "info", "vol"]);
    assert!(
        out.status.success(),
        "volume info: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("volume info --json");
    assert_eq!(v["capacity"].as_u64(), Some(256 * MIB), "volume info: {v}");
    assert_eq!(v["compression"].as_str(), Some("zstd"), "volume info: {v}");
    // And the pool is consistent.
    m.assert_fsck_clean("after unmount");
    m.mount_again();
    assert_content(&m.path("z"), &data);
}

#[test]
fn fsynced_data_survives_kill_9_and_the_stale_mount_is_cleaned() {
    let mut m = Mount::default_mount();
    let synced = pattern(200, (3 * MIB + 3) as usize);
    fs::create_dir(m.path("dir")).unwrap();
    write_file(&m.path("dir/synced"), &synced);
    setxattr(&m.path("dir/synced"), "user.k", b"v", 0).unwrap();
    fs::rename(m.path("dir/synced"), m.path("dir/renamed")).unwrap();
    let syncfs = File::open(m.dir()).unwrap();
    // SAFETY: valid fd. syncfs makes the namespace changes durable too.
    cvt(unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&syncfs)) }).unwrap();
    drop(syncfs);

    // In-flight, never fsync'ed writes at the moment of the crash.
    let mut pending = File::create(m.path("pending")).unwrap();
    pending
        .write_all(&pattern(201, (5 * MIB) as usize))
        .unwrap();

    let stale = m.crash();
    // The kernel now fails requests on the dead connection.
    let e = statfs(m.dir()).expect_err("statfs on a dead mount succeeded");
    assert!(
        matches!(
            e.raw_os_error(),
            Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)
        ),
        "statfs on a dead mount: {e}"
    );
    drop(pending);

    m.mount_after_crash(&stale);
    assert_content(&m.path("dir/renamed"), &synced);
    assert_eq!(getxattr(&m.path("dir/renamed"), "user.k").unwrap(), b"v");
    assert!(!m.path("dir/synced").exists());
    // Unsynced data may be lost but what is there must be readable and no longer than written.
    if let Ok(md) = fs::metadata(m.path("pending")) {
        assert!(md.len() <= 5 * MIB);
        let _ = fs::read(m.path("pending")).expect("reading a file cut by the crash");
    }
    // And the volume keeps working.
    write_file(&m.path("after-crash"), b"fine");
    assert_content(&m.path("after-crash"), b"fine");
    m.unmount();
    m.assert_fsck_clean("after kill -9 and recovery");
}

#[test]
fn harness_cleans_up_a_stopped_server_without_hanging() {
    // A hung server (SIGSTOP) must not hang the test run: Drop aborts the connection,
    // kills the server and detaches the mount point.
    let m = Mount::default_mount();
    write_file(&m.path("f"), b"x");
    let dir = m.dir().to_path_buf();
    m.signal_server(libc::SIGSTOP);
    drop(m);
    assert!(
        find_mount(&dir).is_none(),
        "{} still mounted",
        dir.display()
    );
}
