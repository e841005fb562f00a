//! Error cases through a real mount: ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ELOOP,
//! ENAMETOOLONG, EINVAL, EXDEV, EACCES/EPERM for an unprivileged process, EROFS on a
//! read-only mount, and ENOSPC at the volume quota (and recovery from it).

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;

#[test]
fn enoent_eexist_enotdir_eisdir_enotempty() {
    let m = Mount::default_mount();
    write_file(&m.path("file"), b"f");
    fs::create_dir_all(m.path("dir/sub")).unwrap();

    // ENOENT
    assert_errno(File::open(m.path("missing")), libc::ENOENT, "open missing");
    assert_errno(
        fs::metadata(m.path("missing")),
        libc::ENOENT,
        "stat missing",
    );
    assert_errno(
        File::create(m.path("nodir/x")),
        libc::ENOENT,
        "create in a missing dir",
    );
    assert_errno(
        fs::remove_file(m.path("missing")),
        libc::ENOENT,
        "unlink missing",
    );
    assert_errno(
        fs::remove_dir(m.path("missing")),
        libc::ENOENT,
        "rmdir missing",
    );
    assert_errno(
        fs::rename(m.path("missing"), m.path("x")),
        libc::ENOENT,
        "rename missing",
    );
    assert_errno(
        fs::read_link(m.path("missing")),
        libc::ENOENT,
        "readlink missing",
    );
    assert_errno(
        fs::hard_link(m.path("missing"), m.path("x")),
        libc::ENOENT,
        "link missing",
    );
    assert_errno(
        getxattr(&m.path("missing"), "user.x"),
        libc::ENOENT,
        "getxattr missing file",
    );
    assert_errno(
        fs::create_dir(m.path("a/b/c")),
        libc::ENOENT,
        "mkdir without parent",
    );

    // EEXIST
    assert_errno(
        fs::create_dir(m.path("dir")),
        libc::EEXIST,
        "mkdir existing dir",
    );
    assert_errno(
        fs::create_dir(m.path("file")),
        libc::EEXIST,
        "mkdir over a file",
    );
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.path("file")),
        libc::EEXIST,
        "O_EXCL",
    );
    assert_errno(
        fs::hard_link(m.path("file"), m.path("dir")),
        libc::EEXIST,
        "link onto a dir",
    );
    assert_errno(
        symlink("t", m.path("file")),
        libc::EEXIST,
        "symlink over a file",
    );
    assert_errno(
        mkfifo(&m.path("dir"), 0o644),
        libc::EEXIST,
        "mkfifo over a dir",
    );

    // ENOTDIR
    assert_errno(
        File::open(m.path("file/x")),
        libc::ENOTDIR,
        "file used as a directory",
    );
    assert_errno(
        File::create(m.path("file/x")),
        libc::ENOTDIR,
        "create under a file",
    );
    assert_errno(
        fs::read_dir(m.path("file")),
        libc::ENOTDIR,
        "opendir a file",
    );
    assert_errno(
        fs::remove_dir(m.path("file")),
        libc::ENOTDIR,
        "rmdir a file",
    );
    assert_errno(
        fs::rename(m.path("dir"), m.path("file")),
        libc::ENOTDIR,
        "dir over file",
    );
    assert_errno(
        fs::metadata(m.path("file/")),
        libc::ENOTDIR,
        "trailing slash on a file",
    );

    // EISDIR
    assert_errno(
        OpenOptions::new().write(true).open(m.path("dir")),
        libc::EISDIR,
        "open dir for writing",
    );
    assert_errno(fs::remove_file(m.path("dir")), libc::EISDIR, "unlink a dir");
    assert_errno(
        fs::rename(m.path("file"), m.path("dir")),
        libc::EISDIR,
        "file over dir",
    );
    let d = File::open(m.path("dir")).unwrap();
    let mut buf = [0u8; 8];
    // SAFETY: valid fd and buffer.
    let rc = unsafe { libc::read(d.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_errno(cvt(rc), libc::EISDIR, "read(2) on a directory");

    // ENOTEMPTY
    assert_errno(
        fs::remove_dir(m.path("dir")),
        libc::ENOTEMPTY,
        "rmdir non-empty",
    );
    fs::create_dir(m.path("other")).unwrap();
    write_file(&m.path("other/x"), b"x");
    let r = fs::rename(m.path("dir/sub"), m.path("other"));
    let e = errno(r);
    assert!(
        e == libc::ENOTEMPTY || e == libc::EEXIST,
        "rename over non-empty dir: {}",
        errno_name(e)
    );

    // EINVAL
    assert_errno(
        fs::rename(m.path("dir"), m.path("dir/sub/inside")),
        libc::EINVAL,
        "dir into itself",
    );
    assert_errno(fs::remove_dir(m.path("dir/.")), libc::EINVAL, "rmdir '.'");
    assert_errno(
        fs::read_link(m.path("file")),
        libc::EINVAL,
        "readlink a file",
    );

    // EXDEV: rename out of the mount.
    let outside = m.dir().parent().unwrap().join("outside");
    assert_errno(
        fs::rename(m.path("file"), &outside),
        libc::EXDEV,
        "rename across file systems",
    );
    assert_errno(
        fs::hard_link(m.path("file"), &outside),
        libc::EXDEV,
        "link across file systems",
    );
}

#[test]
fn eloop_and_enametoolong() {
    let m = Mount::default_mount();
    symlink("b", m.path("a")).unwrap();
    symlink("a", m.path("b")).unwrap();
    symlink("self", m.path("self")).unwrap();
    assert_errno(File::open(m.path("a")), libc::ELOOP, "open a symlink loop");
    assert_errno(File::open(m.path("self")), libc::ELOOP, "open a self-loop");
    assert_errno(
        fs::metadata(m.path("a")),
        libc::ELOOP,
        "stat a symlink loop",
    );
    assert_errno(
        File::create(m.path("a/x")),
        libc::ELOOP,
        "loop as a path component",
    );
    // O_NOFOLLOW on a symlink.
    write_file(&m.path("target"), b"t");
    symlink("target", m.path("link")).unwrap();
    assert_errno(
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(m.path("link")),
        libc::ELOOP,
        "O_NOFOLLOW on a symlink",
    );
    // A chain of 41 links exceeds the kernel's 40.
    write_file(&m.path("end"), b"end");
    symlink("end", m.path("chain0")).unwrap();
    for i in 1..=40 {
        symlink(format!("chain{}", i - 1), m.path(format!("chain{i}"))).unwrap();
    }
    assert_content(&m.path("chain39"), b"end");
    assert_errno(
        File::open(m.path("chain40")),
        libc::ELOOP,
        "41 chained symlinks",
    );

    // 255 bytes is the limit for a name; 256 is ENAMETOOLONG everywhere.
    let ok = "n".repeat(255);
    let long = "n".repeat(256);
    write_file(&m.path(&ok), b"ok");
    assert_errno(
        File::create(m.path(&long)),
        libc::ENAMETOOLONG,
        "create 256-byte name",
    );
    assert_errno(
        File::open(m.path(&long)),
        libc::ENAMETOOLONG,
        "lookup 256-byte name",
    );
    assert_errno(
        fs::create_dir(m.path(&long)),
        libc::ENAMETOOLONG,
        "mkdir 256-byte name",
    );
    assert_errno(
        symlink("t", m.path(&long)),
        libc::ENAMETOOLONG,
        "symlink 256-byte name",
    );
    assert_errno(
        fs::rename(m.path(&ok), m.path(&long)),
        libc::ENAMETOOLONG,
        "rename to 256-byte name",
    );
    assert_errno(
        fs::hard_link(m.path(&ok), m.path(&long)),
        libc::ENAMETOOLONG,
        "link 256-byte name",
    );
    assert_errno(
        mkfifo(&m.path(&long), 0o644),
        libc::ENAMETOOLONG,
        "mkfifo 256-byte name",
    );
    // A symlink target longer than PATH_MAX.
    let huge = "t".repeat(5000);
    assert_errno(
        symlink(&huge, m.path("huge")),
        libc::ENAMETOOLONG,
        "symlink target > PATH_MAX",
    );
    assert_eq!(names(m.dir()).iter().filter(|n| n.len() > 255).count(), 0);
}

#[test]
fn eacces_for_an_unprivileged_process() {
    let m = Mount::default_mount();
    let secret = m.path("secret");
    write_file(&secret, b"root's data");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();

    // Through a real program run as uid/gid 65534 with no supplementary groups.
    let out = Command::new("cat")
        .arg(&secret)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("running cat as nobody");
    assert!(
        !out.status.success(),
        "nobody could read a 0600 root file: {:?}",
        out
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "cat said: {err}");
    assert!(out.stdout.is_empty());
    // And through setpriv, as the issue suggests (clear groups too).
    if std::path::Path::new("/usr/bin/setpriv").exists() {
        let out = Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(&secret)
            .output()
            .expect("running setpriv");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    }
    // The same file is readable by root and, once 0644, by nobody.
    assert_content(&secret, b"root's data");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("cat")
        .arg(&secret)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
    assert_eq!(out.stdout, b"root's data");

    // Exact errnos from a forked child.
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Open(secret.clone(), libc::O_RDONLY)),
        Err(libc::EACCES)
    );
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Unlink(secret.clone())),
        Err(libc::EACCES)
    );
    let d = m.path("locked");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
    write_file(&d.join("inside"), b"i");
    assert_eq!(
        as_user(
            NOBODY,
            NOBODY,
            UserOp::Open(d.join("inside"), libc::O_RDONLY)
        ),
        Err(libc::EACCES)
    );
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Rmdir(d.clone())),
        Err(libc::EACCES)
    );
    assert_eq!(
        as_user(
            NOBODY,
            NOBODY,
            UserOp::Rename(d.join("inside"), m.path("stolen"))
        ),
        Err(libc::EACCES)
    );
    assert!(d.join("inside").exists());
}

#[test]
fn erofs_on_a_read_only_mount() {
    let mut m = Mount::default_mount();
    write_file(&m.path("file"), b"written before");
    fs::create_dir(m.path("dir")).unwrap();
    symlink("file", m.path("link")).unwrap();
    setxattr(&m.path("file"), "user.k", b"v", 0).unwrap();
    m.remount_with(|o| o.read_only = true);
    assert!(
        m.info().is_read_only(),
        "mount options lack ro: {:?}",
        m.info()
    );

    // Reads work.
    assert_content(&m.path("file"), b"written before");
    assert_eq!(
        fs::read_link(m.path("link")).unwrap(),
        std::path::Path::new("file")
    );
    assert_eq!(getxattr(&m.path("file"), "user.k").unwrap(), b"v");
    assert_eq!(names(m.dir()), vec!["dir", "file", "link"]);
    statfs(m.dir()).unwrap();

    // Every mutation is EROFS.
    let p = m.path("file");
    assert_errno(
        OpenOptions::new().write(true).open(&p),
        libc::EROFS,
        "open for writing",
    );
    assert_errno(
        OpenOptions::new().append(true).open(&p),
        libc::EROFS,
        "open for appending",
    );
    assert_errno(File::create(m.path("new")), libc::EROFS, "create");
    assert_errno(fs::create_dir(m.path("newdir")), libc::EROFS, "mkdir");
    assert_errno(fs::remove_file(&p), libc::EROFS, "unlink");
    assert_errno(fs::remove_dir(m.path("dir")), libc::EROFS, "rmdir");
    assert_errno(fs::rename(&p, m.path("moved")), libc::EROFS, "rename");
    assert_errno(symlink("x", m.path("l2")), libc::EROFS, "symlink");
    assert_errno(fs::hard_link(&p, m.path("h")), libc::EROFS, "link");
    assert_errno(
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)),
        libc::EROFS,
        "chmod",
    );
    assert_errno(chown(&p, 1, 1), libc::EROFS, "chown");
    assert_errno(setxattr(&p, "user.k", b"w", 0), libc::EROFS, "setxattr");
    assert_errno(removexattr(&p, "user.k"), libc::EROFS, "removexattr");
    assert_errno(mkfifo(&m.path("fifo"), 0o644), libc::EROFS, "mkfifo");
    assert_errno(
        utimensat(&p, ts(1, 0), ts(1, 0), 0),
        libc::EROFS,
        "utimensat",
    );
    let c = cstr(&p);
    // SAFETY: valid C string.
    assert_errno(
        cvt(unsafe { libc::truncate(c.as_ptr(), 0) }),
        libc::EROFS,
        "truncate",
    );

    // Nothing changed, and after a read-write remount it is all still there.
    m.remount_with(|o| o.read_only = false);
    assert_content(&m.path("file"), b"written before");
    assert_eq!(names(m.dir()), vec!["dir", "file", "link"]);
    write_file(&m.path("new"), b"writable again");
}

#[test]
fn enospc_at_the_quota_and_recovery() {
    let m = Mount::new(MountOpts::default().size("8MiB").precreate());
    let st = statfs(m.dir()).unwrap();
    assert!(
        (st.f_blocks * st.f_bsize as u64).abs_diff(8 * MIB) <= 64 * KIB,
        "8 MiB volume reports {} bytes",
        st.f_blocks * st.f_bsize as u64
    );

    let p = m.path("filler");
    let mut f = File::create(&p).unwrap();
    let block = pattern(77, MIB as usize);
    let mut accepted = 0u64;
    let mut failure = None;
    for _ in 0..32 {
        match f.write_all(&block) {
            Ok(()) => accepted += MIB,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // With the writeback cache the error may only surface at fsync.
    let failure = match failure {
        Some(e) => e,
        None => f
            .sync_all()
            .expect_err("wrote 32 MiB into an 8 MiB volume and fsync succeeded"),
    };
    assert_eq!(
        failure.raw_os_error(),
        Some(libc::ENOSPC),
        "expected ENOSPC at the quota, got {failure} after {accepted} bytes"
    );
    drop(f);
    let st = statfs(m.dir()).unwrap();
    assert!(
        st.f_bavail * (st.f_bsize as u64) < MIB,
        "a full volume still reports free space"
    );

    // fallocate past the quota is refused up front.
    let g = File::create(m.path("prealloc")).unwrap();
    // SAFETY: valid fd.
    let rc = unsafe { libc::fallocate(g.as_raw_fd(), 0, 0, (64 * MIB) as i64) };
    assert_errno(cvt(rc), libc::ENOSPC, "fallocate beyond the quota");
    drop(g);
    fs::remove_file(m.path("prealloc")).unwrap();

    // Deleting the file gives the space back and the volume works normally.
    fs::remove_file(&p).unwrap();
    // A removed file's space comes back when the kernel has released it (FUSE RELEASE,
    // sent asynchronously after a close) and forgotten it (FORGET, after the unlink).
    let mut st = statfs(m.dir()).unwrap();
    wait_for_kernel(|| {
        st = statfs(m.dir()).unwrap();
        st.f_bavail * (st.f_bsize as u64) >= 7 * MIB
    });
    assert!(
        st.f_bavail * (st.f_bsize as u64) >= 7 * MIB,
        "space not released after deleting: {} bytes free",
        st.f_bavail * st.f_bsize as u64
    );
    let data = pattern(78, (6 * MIB) as usize);
    write_file(&m.path("after"), &data);
    assert_content(&m.path("after"), &data);
    fs::create_dir(m.path("still-works")).unwrap();
    let mut h = File::create(m.path("still-works/small")).unwrap();
    h.write_all(b"ok").unwrap();
    h.sync_all().unwrap();
    drop(h);
    assert_content(&m.path("still-works/small"), b"ok");
}
