//! Attributes through a real mount: getattr/setattr (chmod, chown, truncate, utimensat
//! with UTIME_NOW/UTIME_OMIT), ctime/mtime bookkeeping, st_blocks, statfs, extended
//! attributes, access(2), setgid directory inheritance, the sticky bit, and chown
//! clearing setuid/setgid.

mod common;

use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", m, p.display()));
}

/// (seconds, nanoseconds) of ctime / mtime / atime.
fn ctime(p: &Path) -> (i64, i64) {
    let md = fs::symlink_metadata(p).unwrap();
    (md.ctime(), md.ctime_nsec())
}
fn mtime(p: &Path) -> (i64, i64) {
    let md = fs::symlink_metadata(p).unwrap();
    (md.mtime(), md.mtime_nsec())
}
fn atime(p: &Path) -> (i64, i64) {
    let md = fs::symlink_metadata(p).unwrap();
    (md.atime(), md.atime_nsec())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Lets the clock move on, so that "changed" timestamps can be told apart from old
/// ones (a precondition, not a timing assertion).
fn tick() {
    std::thread::sleep(Duration::from_millis(30));
}

#[test]
fn chmod_chown_truncate_and_ctime() {
    let m = Mount::default_mount();
    let p = m.path("f");
    write_file(&p, b"some bytes");

    let c0 = ctime(&p);
    tick();
    chmod(&p, 0o640);
    assert_eq!(mode(&p), 0o640);
    let c1 = ctime(&p);
    assert!(c1 > c0, "chmod did not update ctime: {c0:?} -> {c1:?}");
    chmod(&p, 0o7777);
    assert_eq!(
        mode(&p),
        0o7777,
        "suid, sgid and sticky bits are kept by chmod"
    );
    chmod(&p, 0o644);

    tick();
    chown(&p, 1000, 2000).unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 2000));
    let c2 = ctime(&p);
    assert!(c2 > c1, "chown did not update ctime");
    // -1 leaves a field alone.
    chown(&p, u32::MAX, 3000).unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 3000));
    // lchown on a symlink changes the link, not the target.
    symlink("f", m.path("l")).unwrap();
    lchown(&m.path("l"), 4000, 4000).unwrap();
    assert_eq!(fs::symlink_metadata(m.path("l")).unwrap().uid(), 4000);
    assert_eq!(fs::metadata(&p).unwrap().uid(), 1000);

    // truncate updates size, mtime and ctime.
    let (m0, c3) = (mtime(&p), ctime(&p));
    tick();
    OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4)
        .unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 4);
    assert!(mtime(&p) > m0, "truncate did not update mtime");
    assert!(ctime(&p) > c3, "truncate did not update ctime");
    assert_content(&p, b"some");

    // The attributes are the server's, not just the kernel cache's: remount-free check
    // through a hard link's fresh lookup.
    fs::hard_link(&p, m.path("f2")).unwrap();
    let md = fs::metadata(m.path("f2")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.len(), md.mode() & 0o7777),
        (1000, 3000, 4, 0o644)
    );
}

#[test]
fn chown_clears_setuid_and_setgid() {
    let m = Mount::default_mount();
    let p = m.path("suid");
    write_file(&p, b"#!/bin/sh\n");
    chmod(&p, 0o6755);
    assert_eq!(mode(&p), 0o6755);
    chown(&p, 1000, 1000).unwrap();
    assert_eq!(
        mode(&p) & 0o6000,
        0,
        "chown must clear setuid and setgid (group-executable)"
    );
    assert_eq!(mode(&p) & 0o777, 0o755);

    // setgid without group execute (mandatory locking marker) is kept.
    let q = m.path("sgid-noexec");
    write_file(&q, b"x");
    chmod(&q, 0o2644);
    chown(&q, 1000, 1000).unwrap();
    assert_eq!(mode(&q), 0o2644, "setgid without group-exec survives chown");

    // Directories keep setgid across chown.
    let d = m.path("dir");
    fs::create_dir(&d).unwrap();
    chmod(&d, 0o2775);
    chown(&d, 1000, 1000).unwrap();
    assert_eq!(mode(&d), 0o2775);

    // Truncation by an unprivileged writer (the owner, uid 1000) clears setuid.
    let w = m.path("suid-write");
    write_file(&w, b"x");
    chown(&w, 1000, 1000).unwrap();
    chmod(&w, 0o4755);
    as_user(1000, 1000, UserOp::Truncate(w.clone(), 0)).expect("owner truncates");
    assert_eq!(
        mode(&w) & 0o4000,
        0,
        "truncate by a non-root writer must clear setuid"
    );
}

#[test]
fn utimensat_now_and_omit() {
    let m = Mount::default_mount();
    let p = m.path("times");
    write_file(&p, b"t");

    // Exact times, with nanoseconds.
    utimensat(
        &p,
        ts(1_000_000_000, 123_456_789),
        ts(1_500_000_000, 987_654_321),
        0,
    )
    .unwrap();
    assert_eq!(atime(&p), (1_000_000_000, 123_456_789));
    assert_eq!(mtime(&p), (1_500_000_000, 987_654_321));

    // mtime = UTIME_NOW, atime = UTIME_OMIT.
    let before = now_secs();
    let c0 = ctime(&p);
    tick();
    utimensat(&p, ts(0, libc::UTIME_OMIT), ts(0, libc::UTIME_NOW), 0).unwrap();
    assert_eq!(
        atime(&p),
        (1_000_000_000, 123_456_789),
        "UTIME_OMIT changed atime"
    );
    let mt = mtime(&p);
    assert!(
        mt.0 >= before && mt.0 <= now_secs() + 1,
        "UTIME_NOW mtime {mt:?} not now ({before})"
    );
    assert!(ctime(&p) > c0, "utimensat did not update ctime");

    // atime = UTIME_NOW, mtime = UTIME_OMIT.
    utimensat(&p, ts(0, libc::UTIME_NOW), ts(0, libc::UTIME_OMIT), 0).unwrap();
    assert_eq!(mtime(&p), mt, "UTIME_OMIT changed mtime");
    assert!(atime(&p).0 >= before, "UTIME_NOW atime");

    // Both OMIT: nothing changes.
    let (a, mm) = (atime(&p), mtime(&p));
    utimensat(&p, ts(0, libc::UTIME_OMIT), ts(0, libc::UTIME_OMIT), 0).unwrap();
    assert_eq!((atime(&p), mtime(&p)), (a, mm));

    // Far in the future.
    utimensat(&p, ts(1_700_000_000, 5), ts(4_000_000_000, 0), 0).unwrap();
    assert_eq!(atime(&p), (1_700_000_000, 5));
    assert_eq!(mtime(&p), (4_000_000_000, 0));

    // AT_SYMLINK_NOFOLLOW sets the link's own times.
    symlink("times", m.path("link")).unwrap();
    utimensat(
        &m.path("link"),
        ts(1_111_111_111, 0),
        ts(1_222_222_222, 0),
        libc::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    assert_eq!(mtime(&m.path("link")), (1_222_222_222, 0));
    assert_eq!(mtime(&p), (4_000_000_000, 0), "the target was touched");

    // Directories too.
    let d = m.path("d");
    fs::create_dir(&d).unwrap();
    utimensat(&d, ts(1_300_000_000, 1), ts(1_300_000_000, 2), 0).unwrap();
    assert_eq!(mtime(&d), (1_300_000_000, 2));
}

#[test]
fn timestamps_follow_writes_and_directory_changes() {
    let m = Mount::default_mount();
    let d = m.path("d");
    fs::create_dir(&d).unwrap();
    let p = d.join("f");
    write_file(&p, b"one");
    utimensat(&p, ts(1_000_000_000, 0), ts(1_000_000_000, 0), 0).unwrap();
    utimensat(&d, ts(1_000_000_000, 0), ts(1_000_000_000, 0), 0).unwrap();

    // Writing updates the file's mtime and ctime.
    let c0 = ctime(&p);
    tick();
    let mut f = OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all(b"two").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert!(
        mtime(&p).0 > 1_000_000_000,
        "write did not update mtime: {:?}",
        mtime(&p)
    );
    assert!(ctime(&p) > c0, "write did not update ctime");

    // Creating and removing entries updates the directory's mtime and ctime.
    let dc = ctime(&d);
    tick();
    File::create(d.join("g")).unwrap();
    assert!(
        mtime(&d).0 > 1_000_000_000,
        "create did not update dir mtime"
    );
    assert!(ctime(&d) > dc, "create did not update dir ctime");
    utimensat(&d, ts(1_000_000_000, 0), ts(1_000_000_000, 0), 0).unwrap();
    fs::remove_file(d.join("g")).unwrap();
    assert!(
        mtime(&d).0 > 1_000_000_000,
        "unlink did not update dir mtime"
    );
    utimensat(&d, ts(1_000_000_000, 0), ts(1_000_000_000, 0), 0).unwrap();
    fs::rename(&p, d.join("renamed")).unwrap();
    assert!(
        mtime(&d).0 > 1_000_000_000,
        "rename did not update dir mtime"
    );

    // Link and unlink update the inode's ctime.
    let q = d.join("renamed");
    let c1 = ctime(&q);
    tick();
    fs::hard_link(&q, d.join("again")).unwrap();
    assert!(ctime(&q) > c1, "link did not update ctime");

    // A read does not change mtime or ctime.
    let (mm, cc) = (mtime(&q), ctime(&q));
    let _ = fs::read(&q).unwrap();
    assert_eq!((mtime(&q), ctime(&q)), (mm, cc));
}

#[test]
fn st_blocks_size_and_nlink() {
    let m = Mount::default_mount();
    let p = m.path("b");
    File::create(&p).unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.len(), md.blocks(), md.nlink()), (0, 0, 1));
    assert!(md.blksize() >= 512, "st_blksize {}", md.blksize());

    write_file(&p, &pattern(4, (2 * MIB + 1) as usize));
    let md = fs::metadata(&p).unwrap();
    assert_eq!(md.len(), 2 * MIB + 1);
    assert!(
        md.blocks() * 512 > 2 * MIB && md.blocks() * 512 <= 4 * MIB,
        "st_blocks {} for 2 MiB + 1 of data",
        md.blocks()
    );
    assert_eq!(fs::metadata(m.dir()).unwrap().nlink(), 2);
    let ino = md.ino();
    assert!(ino > 1, "inode numbers of files differ from the root's");
    assert_ne!(ino, fs::metadata(m.dir()).unwrap().ino());
    // Every file gets a distinct inode number.
    let mut inos = std::collections::BTreeSet::new();
    for i in 0..50 {
        let q = m.path(format!("n{i}"));
        File::create(&q).unwrap();
        assert!(
            inos.insert(fs::metadata(&q).unwrap().ino()),
            "duplicate inode number"
        );
    }
}

#[test]
fn statfs_reports_capacity_and_usage() {
    let m = Mount::new(MountOpts::default().size("1GiB"));
    let st = statfs(m.dir()).unwrap();
    let bsize = st.f_bsize as u64;
    let total = st.f_blocks * bsize;
    assert!(bsize > 0);
    assert!(
        total.abs_diff(GIB) <= GIB / 100,
        "statfs: f_blocks*f_bsize = {total}, volume size 1 GiB"
    );
    assert!(st.f_bfree <= st.f_blocks && st.f_bavail <= st.f_bfree);
    assert_eq!(st.f_namelen, 255);
    let free0 = st.f_bfree * bsize;

    let p = m.path("usage");
    write_file(&p, &pattern(9, (32 * MIB) as usize));
    let st = statfs(m.dir()).unwrap();
    let free1 = st.f_bfree * bsize;
    assert!(
        free0 - free1 >= 31 * MIB,
        "writing 32 MiB (fsync'ed) only used {} bytes",
        free0.saturating_sub(free1)
    );
    assert!(st.f_files >= st.f_ffree);

    fs::remove_file(&p).unwrap();
    // Given back once the kernel has released and forgotten the file (asynchronous).
    let mut free2 = 0;
    wait_for_kernel(|| {
        free2 = statfs(m.dir()).unwrap().f_bfree * bsize;
        free2 >= free0 - MIB
    });
    assert!(
        free2 >= free0 - MIB,
        "deleting the file did not release its space: {free0} -> {free2}"
    );

    // df agrees (it uses statvfs).
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(m.dir())
        .output()
        .expect("running df");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let size: u64 = text.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(size.abs_diff(GIB) <= GIB / 100, "df size {size}");
}

#[test]
fn extended_attributes() {
    let m = Mount::default_mount();
    let p = m.path("x");
    write_file(&p, b"x");
    assert_eq!(listxattr(&p).unwrap(), Vec::<String>::new());

    setxattr(&p, "user.a", b"alpha", 0).unwrap();
    setxattr(&p, "user.bin", &[0, 1, 2, 0, 255], 0).unwrap();
    setxattr(&p, "user.empty", b"", 0).unwrap();
    let big = pattern(5, 4000);
    setxattr(&p, "user.big", &big, 0).unwrap();
    assert_eq!(getxattr(&p, "user.a").unwrap(), b"alpha");
    assert_eq!(getxattr(&p, "user.bin").unwrap(), vec![0, 1, 2, 0, 255]);
    assert_eq!(getxattr(&p, "user.empty").unwrap(), Vec::<u8>::new());
    assert_eq!(getxattr(&p, "user.big").unwrap(), big);
    assert_eq!(
        listxattr(&p).unwrap(),
        vec!["user.a", "user.big", "user.bin", "user.empty"]
    );

    // Flags.
    assert_errno(
        setxattr(&p, "user.a", b"x", libc::XATTR_CREATE),
        libc::EEXIST,
        "XATTR_CREATE on existing",
    );
    assert_errno(
        setxattr(&p, "user.nope", b"x", libc::XATTR_REPLACE),
        libc::ENODATA,
        "XATTR_REPLACE on missing",
    );
    setxattr(&p, "user.a", b"replaced", libc::XATTR_REPLACE).unwrap();
    assert_eq!(getxattr(&p, "user.a").unwrap(), b"replaced");
    setxattr(&p, "user.new", b"n", libc::XATTR_CREATE).unwrap();
    setxattr(&p, "user.a", b"plain overwrite", 0).unwrap();
    assert_eq!(getxattr(&p, "user.a").unwrap(), b"plain overwrite");

    // Sizes: a buffer too small is ERANGE.
    assert_errno(
        getxattr_sized(&p, "user.a", 3),
        libc::ERANGE,
        "getxattr into a small buffer",
    );
    assert_eq!(
        getxattr_sized(&p, "user.a", 100).unwrap(),
        b"plain overwrite"
    );
    assert_errno(
        getxattr(&p, "user.missing"),
        libc::ENODATA,
        "getxattr missing",
    );

    // Remove.
    removexattr(&p, "user.bin").unwrap();
    assert_errno(
        getxattr(&p, "user.bin"),
        libc::ENODATA,
        "getxattr after remove",
    );
    assert_errno(removexattr(&p, "user.bin"), libc::ENODATA, "remove missing");
    assert_eq!(
        listxattr(&p).unwrap(),
        vec!["user.a", "user.big", "user.empty", "user.new"]
    );

    // setxattr changes ctime.
    let c0 =
        fs::metadata(&p).unwrap().ctime_nsec() + fs::metadata(&p).unwrap().ctime() * 1_000_000_000;
    tick();
    setxattr(&p, "user.c", b"c", 0).unwrap();
    let c1 =
        fs::metadata(&p).unwrap().ctime_nsec() + fs::metadata(&p).unwrap().ctime() * 1_000_000_000;
    assert!(c1 > c0, "setxattr did not update ctime");

    // Other namespaces (as root) and other inode types.
    setxattr(&p, "trusted.t", b"root only", 0).unwrap();
    assert_eq!(getxattr(&p, "trusted.t").unwrap(), b"root only");
    let d = m.path("dir");
    fs::create_dir(&d).unwrap();
    setxattr(&d, "user.dir", b"on a dir", 0).unwrap();
    assert_eq!(getxattr(&d, "user.dir").unwrap(), b"on a dir");
    symlink("x", m.path("link")).unwrap();
    // user.* on symlinks is forbidden by the VFS; trusted.* works.
    assert_errno(
        lsetxattr(&m.path("link"), "user.l", b"l", 0),
        libc::EPERM,
        "user xattr on a symlink",
    );
    lsetxattr(&m.path("link"), "trusted.l", b"l", 0).unwrap();
    assert_eq!(
        getxattr(&p, "trusted.l").map_err(|e| e.raw_os_error()),
        Err(Some(libc::ENODATA))
    );

    // Names longer than 255 bytes and values over 64 KiB are refused by the kernel.
    let long = format!("user.{}", "n".repeat(260));
    assert_errno(
        setxattr(&p, &long, b"v", 0),
        libc::ERANGE,
        "xattr name > 255 bytes",
    );
    // Unprivileged users need write permission to set user.* attributes.
    chmod(&p, 0o644);
    assert_eq!(
        as_user(
            NOBODY,
            NOBODY,
            UserOp::Setxattr(p.clone(), "user.nobody".into())
        ),
        Err(libc::EACCES)
    );
    chmod(&p, 0o666);
    assert_eq!(
        as_user(
            NOBODY,
            NOBODY,
            UserOp::Setxattr(p.clone(), "user.nobody".into())
        ),
        Ok(())
    );
    assert_eq!(getxattr(&p, "user.nobody").unwrap(), b"v");
}

#[test]
fn access_checks() {
    let m = Mount::default_mount();
    let p = m.path("f");
    write_file(&p, b"secret");
    chmod(&p, 0o600);
    // Root: read/write regardless of mode; execute needs some x bit.
    chmod(&p, 0o000);
    access(&p, libc::R_OK | libc::W_OK).unwrap();
    assert_errno(
        access(&p, libc::X_OK),
        libc::EACCES,
        "root X_OK without any x bit",
    );
    chmod(&p, 0o100);
    access(&p, libc::X_OK).unwrap();
    chmod(&p, 0o600);
    access(&p, libc::F_OK).unwrap();
    assert_errno(
        access(&m.path("missing"), libc::F_OK),
        libc::ENOENT,
        "access missing",
    );

    // Another user.
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Access(p.clone(), libc::R_OK)),
        Err(libc::EACCES)
    );
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Access(p.clone(), libc::F_OK)),
        Ok(())
    );
    chmod(&p, 0o604);
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Access(p.clone(), libc::R_OK)),
        Ok(())
    );
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Access(p.clone(), libc::W_OK)),
        Err(libc::EACCES)
    );
    // Group bits apply to group members only.
    chown(&p, 0, 4321).unwrap();
    chmod(&p, 0o060);
    assert_eq!(
        as_user(
            NOBODY,
            4321,
            UserOp::Access(p.clone(), libc::R_OK | libc::W_OK)
        ),
        Ok(())
    );
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Access(p.clone(), libc::R_OK)),
        Err(libc::EACCES)
    );
    // Search permission on directories.
    let d = m.path("private");
    fs::create_dir(&d).unwrap();
    write_file(&d.join("inner"), b"i");
    chmod(&d.join("inner"), 0o644);
    chmod(&d, 0o700);
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Access(d.join("inner"), libc::F_OK)),
        Err(libc::EACCES),
        "traversing a 0700 directory of another user"
    );
    chmod(&d, 0o711);
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Access(d.join("inner"), libc::R_OK)),
        Ok(())
    );
}

#[test]
fn setgid_directory_inheritance() {
    let m = Mount::default_mount();
    let d = m.path("shared");
    fs::create_dir(&d).unwrap();
    chown(&d, 0, 4242).unwrap();
    chmod(&d, 0o2775);
    assert_eq!(mode(&d), 0o2775);

    write_file(&d.join("file"), b"f");
    let md = fs::metadata(d.join("file")).unwrap();
    assert_eq!(md.gid(), 4242, "file in a setgid dir gets the dir's group");
    assert_eq!(md.mode() & 0o2000, 0, "files do not inherit S_ISGID");

    fs::create_dir(d.join("sub")).unwrap();
    let md = fs::metadata(d.join("sub")).unwrap();
    assert_eq!(md.gid(), 4242, "subdirectory gets the dir's group");
    assert_eq!(md.mode() & 0o2000, 0o2000, "subdirectory inherits S_ISGID");
    write_file(&d.join("sub/deeper"), b"d");
    assert_eq!(fs::metadata(d.join("sub/deeper")).unwrap().gid(), 4242);

    symlink("file", d.join("link")).unwrap();
    assert_eq!(fs::symlink_metadata(d.join("link")).unwrap().gid(), 4242);
    mkfifo(&d.join("fifo"), 0o644).unwrap();
    assert_eq!(fs::symlink_metadata(d.join("fifo")).unwrap().gid(), 4242);

    // Outside it, the creator's group.
    write_file(&m.path("plain"), b"p");
    assert_eq!(fs::metadata(m.path("plain")).unwrap().gid(), 0);
}

#[test]
fn sticky_directory_protects_other_users_files() {
    let m = Mount::default_mount();
    let tmp = m.path("tmp");
    fs::create_dir(&tmp).unwrap();
    chmod(&tmp, 0o1777);
    assert_eq!(mode(&tmp), 0o1777);

    // A file of uid 1000 in the sticky directory.
    let theirs = tmp.join("theirs");
    write_file(&theirs, b"not yours");
    chown(&theirs, 1000, 1000).unwrap();
    chmod(&theirs, 0o666);

    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Unlink(theirs.clone())),
        Err(libc::EPERM),
        "nobody deleted uid 1000's file in a sticky directory"
    );
    assert_eq!(
        as_user(
            NOBODY,
            NOBODY,
            UserOp::Rename(theirs.clone(), tmp.join("stolen"))
        ),
        Err(libc::EPERM),
        "nobody renamed uid 1000's file in a sticky directory"
    );
    assert_content(&theirs, b"not yours");

    // Their own file: fine. The owner of the file: fine.
    let mine = tmp.join("mine");
    as_user(NOBODY, NOBODY, UserOp::Create(mine.clone())).expect("nobody creates in 1777");
    let md = fs::metadata(&mine).unwrap();
    assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY));
    assert_content(&mine, b"nobody");
    as_user(NOBODY, NOBODY, UserOp::Unlink(mine.clone())).expect("nobody deletes own file");
    as_user(1000, 1000, UserOp::Unlink(theirs.clone())).expect("the owner deletes their file");

    // Control: without the sticky bit anyone with write permission may delete.
    let open = m.path("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let f = open.join("f");
    write_file(&f, b"x");
    chown(&f, 1000, 1000).unwrap();
    as_user(NOBODY, NOBODY, UserOp::Unlink(f.clone())).expect("delete in a non-sticky 0777 dir");
    assert!(!f.exists());
}

#[test]
fn unprivileged_permission_checks() {
    let m = Mount::default_mount();
    let p = m.path("root-only");
    write_file(&p, b"top secret");
    chmod(&p, 0o600);
    // Read, write and chmod as another user fail; the file is untouched.
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Open(p.clone(), libc::O_RDONLY)),
        Err(libc::EACCES)
    );
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Open(p.clone(), libc::O_WRONLY)),
        Err(libc::EACCES)
    );
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Chmod(p.clone(), 0o777)),
        Err(libc::EPERM)
    );
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Truncate(p.clone(), 0)),
        Err(libc::EACCES)
    );
    assert_eq!(mode(&p), 0o600);
    assert_content(&p, b"top secret");
    // Creating in a root-owned 0755 directory fails.
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Create(m.path("new"))),
        Err(libc::EACCES)
    );
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Mkdir(m.path("newdir"))),
        Err(libc::EACCES)
    );
    assert!(!m.path("new").exists());
    // A file nobody owns: nobody may chmod it.
    let own = m.path("owned");
    write_file(&own, b"o");
    chown(&own, NOBODY, NOBODY).unwrap();
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Chmod(own.clone(), 0o600)),
        Ok(())
    );
    assert_eq!(mode(&own), 0o600);
    // Setting setgid for a group one is not in silently drops it.
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Chmod(own.clone(), 0o2755)),
        Ok(())
    );
    assert_eq!(mode(&own), 0o2755, "owner in the file's group keeps setgid");
    chown(&own, NOBODY, 4444).unwrap();
    assert_eq!(
        as_user(NOBODY, NOBODY, UserOp::Chmod(own.clone(), 0o2755)),
        Ok(())
    );
    assert_eq!(
        mode(&own) & 0o2000,
        0,
        "setgid for a foreign group must be dropped"
    );
}

#[test]
fn utimensat_before_the_epoch() {
    let m = Mount::default_mount();
    let p = m.path("old");
    write_file(&p, b"o");
    // Whole seconds.
    utimensat(&p, ts(-86_400, 0), ts(-1, 0), 0).unwrap();
    assert_eq!(atime(&p), (-86_400, 0));
    assert_eq!(mtime(&p), (-1, 0));
    // With nanoseconds: -1_000_000 s + 5 ns (timespec keeps tv_nsec positive).
    utimensat(&p, ts(-1_000_000, 5), ts(-2, 999_999_999), 0).unwrap();
    assert_eq!(
        atime(&p),
        (-1_000_000, 5),
        "pre-epoch atime with nanoseconds"
    );
    assert_eq!(
        mtime(&p),
        (-2, 999_999_999),
        "pre-epoch mtime with nanoseconds"
    );
}
