//! Inodes live until the kernel forgets them. With the writeback cache the kernel
//! writes a file's timestamps back (SETATTR) after the file was closed, also after its
//! last name went; `syncfs` then reported the server's ENOENT to the caller
//! (`sync -f DIR` failed after `git commit`). Every removal is followed here by
//! `syncfs`, through the `sync` program and the system call, and removed-but-open files
//! keep working by inode number.

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `syncfs(2)` on the file system holding `dir`.
fn syncfs(dir: &Path) -> std::io::Result<()> {
    let f = File::open(dir)?;
    // SAFETY: syncfs on an open fd.
    cvt(unsafe { libc::syncfs(f.as_raw_fd()) }).map(|_| ())
}

/// `sync -f DIR` (coreutils) and the system call must both succeed.
fn assert_syncfs(m: &Mount, what: &str) {
    let out = Command::new("sync")
        .arg("-f")
        .arg(m.dir())
        .output()
        .expect("running sync");
    assert!(
        out.status.success(),
        "sync -f after {what}: {}\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        m.server_log()
    );
    if let Err(e) = syncfs(m.dir()) {
        panic!("syncfs after {what}: {e}\nserver log:\n{}", m.server_log());
    }
}

/// Runs `script` with `sh -e` in `dir`.
fn sh(dir: &Path, script: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("running sh")
}

fn assert_sh(m: &Mount, dir: &Path, script: &str) {
    let out = sh(dir, script);
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\nstdout: {}\nstderr: {}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.server_log()
    );
}

/// Bytes the volume reports as used (`df`).
fn used(dir: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(dir).expect("statvfs");
    (st.blocks() - st.blocks_free()) * st.fragment_size()
}

/// Waits until the volume's used bytes are at most `limit`: the kernel forgets a removed
/// inode when it evicts it, asynchronously.
fn wait_used_at_most(m: &Mount, limit: u64, what: &str) {
    let mut now = used(m.dir());
    if !wait_for_kernel(|| {
        now = used(m.dir());
        now <= limit
    }) {
        panic!(
            "{what}: {now} bytes still used (want at most {limit}) {KERNEL_ASYNC_WAIT:?} later; \
             server log:\n{}",
            m.server_log()
        );
    }
}

fn write_file(p: &Path, data: &[u8]) {
    let mut f = File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    f.write_all(data).unwrap();
}

#[test]
fn the_reported_reproductions() {
    let m = Mount::default_mount();
    assert_sh(&m, m.dir(), "echo a > f1");
    // Each line of the report, then `sync -f .` must succeed.
    assert_sh(&m, m.dir(), "echo b > f2 && rm f2 && sync -f .");
    assert_sh(&m, m.dir(), "echo c > f3 && mv f3 f1 && sync -f .");
    assert_sh(&m, m.dir(), "sync -f .");
    assert_eq!(fs::read(m.path("f1")).unwrap(), b"c\n");
    assert!(!m.path("f2").exists() && !m.path("f3").exists());
}

#[test]
fn syncfs_after_every_kind_of_removal() {
    let m = Mount::default_mount();
    let mut rng = Prng::new(16);
    // Several rounds, so that removals meet inodes the kernel still has dirty
    // timestamps for and inodes it has written back already.
    for round in 0..3 {
        let d = m.path(format!("r{round}"));
        fs::create_dir(&d).unwrap();

        write_file(&d.join("unlinked"), &rng.bytes(70_000));
        fs::remove_file(d.join("unlinked")).unwrap();
        assert_syncfs(&m, "unlink of a written file");

        write_file(&d.join("target"), b"old");
        write_file(&d.join("new"), &rng.bytes(5_000));
        fs::rename(d.join("new"), d.join("target")).unwrap();
        assert_syncfs(&m, "rename over a written file");
        assert_eq!(fs::read(d.join("target")).unwrap().len(), 5_000);

        write_file(&d.join("h1"), b"linked");
        fs::hard_link(d.join("h1"), d.join("h2")).unwrap();
        fs::remove_file(d.join("h1")).unwrap();
        assert_syncfs(&m, "unlink of one hard link");
        assert_eq!(fs::read(d.join("h2")).unwrap(), b"linked");
        fs::remove_file(d.join("h2")).unwrap();
        assert_syncfs(&m, "unlink of the last hard link");

        write_file(&d.join("truncated"), &rng.bytes(300_000));
        let f = OpenOptions::new()
            .write(true)
            .open(d.join("truncated"))
            .unwrap();
        f.set_len(10).unwrap();
        drop(f);
        assert_syncfs(&m, "truncate");
        fs::remove_file(d.join("truncated")).unwrap();
        assert_syncfs(&m, "unlink of a truncated file");

        fs::create_dir(d.join("sub")).unwrap();
        write_file(&d.join("sub/f"), b"in a directory");
        fs::remove_file(d.join("sub/f")).unwrap();
        fs::remove_dir(d.join("sub")).unwrap();
        assert_syncfs(&m, "rmdir");

        fs::create_dir(d.join("from")).unwrap();
        write_file(&d.join("from/f"), b"moved with its directory");
        fs::create_dir(d.join("empty")).unwrap();
        fs::rename(d.join("from"), d.join("empty")).unwrap();
        assert_syncfs(&m, "rename of a directory over an empty one");
        assert_eq!(
            fs::read(d.join("empty/f")).unwrap(),
            b"moved with its directory"
        );

        write_file(&d.join("x"), b"x");
        write_file(&d.join("y"), b"y");
        let (x, y) = (cstr(d.join("x")), cstr(d.join("y")));
        // SAFETY: valid C strings; renameat2 with AT_FDCWD.
        cvt(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                x.as_ptr(),
                libc::AT_FDCWD,
                y.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        })
        .unwrap();
        assert_syncfs(&m, "rename exchange");
        assert_eq!(fs::read(d.join("x")).unwrap(), b"y");

        // Many at once, the way `git commit` or `rm -r` do it.
        for i in 0..200 {
            write_file(&d.join(format!("many{i}")), &rng.bytes(100 + i * 10));
        }
        for i in (0..200).step_by(2) {
            fs::rename(d.join(format!("many{i}")), d.join(format!("many{}", i + 1))).unwrap();
        }
        assert_sh(&m, &d, "rm -f many*");
        assert_syncfs(&m, "many renames over files and unlinks");
    }
    assert_sh(&m, m.dir(), "rm -r r0 r1 r2 && sync -f .");
    let mut m = m;
    m.unmount();
    m.assert_fsck_clean("after the removals");
}

#[test]
fn removed_files_that_are_open_keep_working() {
    let mut m = Mount::default_mount();
    let base = used(m.dir());
    let p = m.path("open-then-removed");
    let data = Prng::new(7).bytes(300_000);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all(&data).unwrap();
    fs::remove_file(&p).unwrap();
    assert_errno(fs::metadata(&p), libc::ENOENT, "the name is gone");
    assert_syncfs(&m, "unlink of an open file");

    let md = f.metadata().unwrap();
    assert_eq!((md.nlink(), md.len()), (0, 300_000));
    let mut back = vec![0; data.len()];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, data, "reads after syncfs");
    f.write_all_at(b"appended", 300_000).unwrap();
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000))
        .unwrap();
    let (name, value) = (cstr("user.kept"), b"yes");
    // SAFETY: valid fd, C string and buffer.
    cvt(unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .unwrap();
    let mut got = [0u8; 16];
    // SAFETY: as above.
    let n = cvt(unsafe {
        libc::fgetxattr(
            f.as_raw_fd(),
            name.as_ptr(),
            got.as_mut_ptr().cast(),
            got.len(),
        )
    })
    .unwrap();
    assert_eq!(&got[..n as usize], value);
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    assert_syncfs(&m, "writes, chmod, utimes and xattrs on a removed file");

    // A second open through /proc reaches the same inode by number.
    let mut again = File::open(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    let mut tail = Vec::new();
    again.seek(SeekFrom::Start(300_000)).unwrap();
    again.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, b"appended");
    let md = again.metadata().unwrap();
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!(md.mtime(), 1_600_000_000);
    f.set_len(1000).unwrap();
    assert_eq!(again.metadata().unwrap().len(), 1000);
    assert_syncfs(&m, "truncate of a removed file");
    drop(again);
    assert_syncfs(&m, "closing one of two handles");
    drop(f);
    assert_syncfs(&m, "closing the last handle");
    // Its space comes back once the kernel forgets it.
    wait_used_at_most(&m, base, "after the last close of a removed file");

    // Same again without writes after the unlink, and a plain removal.
    let q = m.path("big");
    write_file(&q, &Prng::new(8).bytes(8 << 20));
    assert!(used(m.dir()) >= base + (8 << 20));
    fs::remove_file(&q).unwrap();
    assert_syncfs(&m, "removal of a big closed file");
    wait_used_at_most(&m, base, "after removing a closed file");

    m.unmount();
    m.assert_fsck_clean("after the removed files were forgotten");
}

#[test]
fn a_removed_working_directory_behaves_as_on_ext4() {
    let m = Mount::default_mount();
    fs::create_dir(m.path("d")).unwrap();
    // A child process (the working directory is per process): stat of the removed
    // directory works, creating in it fails with ENOENT, listing it is empty.
    let script = "cd d && echo x > f && rm f && rmdir ../d && \
                  stat -c '%h' . && \
                  if touch new 2>/dev/null; then echo created; fi && \
                  ls -a | wc -l && sync -f .";
    let out = sh(m.dir(), script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {}\n{stdout}\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        m.server_log()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["0", "0"],
        "nlink 0, nothing created, nothing listed"
    );
    assert!(!m.path("d").exists());
    assert_syncfs(&m, "rmdir of a working directory");
}

#[test]
fn orphans_left_by_a_crash_are_purged_at_the_next_mount() {
    let mut m = Mount::default_mount();
    let base = used(m.dir());
    let p = m.path("held");
    let mut f = File::create(&p).unwrap();
    f.write_all(&Prng::new(9).bytes(2 << 20)).unwrap();
    f.sync_all().unwrap();
    fs::remove_file(&p).unwrap();
    assert_syncfs(&m, "unlink of an open file");
    assert!(used(m.dir()) >= base + (2 << 20), "still open: still used");
    let stale = m.crash();
    drop(f);
    m.mount_after_crash(&stale);
    assert_eq!(used(m.dir()), base, "the orphan was purged at mount");
    m.unmount();
    m.assert_fsck_clean("after the crash orphan was purged");
}
