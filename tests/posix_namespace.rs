//! Namespace operations through a real mount: lookup, mkdir/rmdir, create/unlink,
//! mknod (fifo, devices, sockets), symlink/readlink, link, rename (plain, across
//! directories, over files and empty directories, renameat2 NOREPLACE/EXCHANGE) and
//! readdir while the directory changes.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .ino()
}

fn nlink(p: &Path) -> u64 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .nlink()
}

#[test]
fn mkdir_rmdir_and_directory_nlink() {
    let m = Mount::default_mount();
    let root = m.dir();
    assert!(fs::metadata(root).unwrap().is_dir());
    assert_eq!(names(root), Vec::<String>::new(), "a new volume is empty");
    let root_links = nlink(root);

    let a = m.path("a");
    fs::DirBuilder::new().mode(0o750).create(&a).unwrap();
    let md = fs::metadata(&a).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.mode() & 0o7777, 0o750 & !umask());
    assert_eq!(md.nlink(), 2, "new directory: '.' and its entry");
    assert_eq!(
        nlink(root),
        root_links + 1,
        "parent gains a link from the child's '..'"
    );
    assert_eq!(md.uid(), 0);

    // "." and ".." resolve correctly.
    assert_eq!(ino(&a.join(".")), ino(&a));
    assert_eq!(ino(&a.join("..")), ino(root));

    assert_errno(fs::create_dir(&a), libc::EEXIST, "mkdir existing");

    fs::create_dir(a.join("sub")).unwrap();
    assert_eq!(nlink(&a), 3);
    File::create(a.join("file")).unwrap();
    assert_eq!(nlink(&a), 3, "files do not add directory links");

    assert_errno(fs::remove_dir(&a), libc::ENOTEMPTY, "rmdir non-empty");
    assert_errno(
        fs::remove_dir(a.join("file")),
        libc::ENOTDIR,
        "rmdir a file",
    );
    fs::remove_file(a.join("file")).unwrap();
    assert_errno(
        fs::remove_dir(&a),
        libc::ENOTEMPTY,
        "rmdir with a subdirectory",
    );
    fs::remove_dir(a.join("sub")).unwrap();
    assert_eq!(nlink(&a), 2);
    fs::remove_dir(&a).unwrap();
    assert_errno(fs::metadata(&a), libc::ENOENT, "lookup after rmdir");
    assert_eq!(nlink(root), root_links);
    assert_eq!(names(root), Vec::<String>::new());

    // Deep nesting and recursive removal.
    let mut deep = m.path("deep");
    for i in 0..32 {
        deep = deep.join(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    write_file(&deep.join("leaf"), b"bottom");
    assert_content(&deep.join("leaf"), b"bottom");
    fs::remove_dir_all(m.path("deep")).unwrap();
    assert_eq!(names(root), Vec::<String>::new());
}

#[test]
fn create_lookup_unlink() {
    let m = Mount::default_mount();
    let f = m.path("file");
    write_file(&f, b"hello");
    let md = fs::metadata(&f).unwrap();
    assert!(md.is_file());
    assert_eq!(md.len(), 5);
    assert_eq!(md.nlink(), 1);
    assert_eq!(names(m.dir()), vec!["file"]);

    fs::remove_file(&f).unwrap();
    assert_errno(fs::metadata(&f), libc::ENOENT, "stat after unlink");
    assert_errno(fs::remove_file(&f), libc::ENOENT, "unlink twice");
    fs::create_dir(m.path("d")).unwrap();
    assert_errno(
        fs::remove_file(m.path("d")),
        libc::EISDIR,
        "unlink a directory",
    );

    // Names are byte strings: spaces, unicode, leading dashes, 255 bytes.
    let long = "x".repeat(255);
    for name in [
        "with space",
        "ünïcødé-名前",
        "-dash",
        ".hidden",
        long.as_str(),
    ] {
        let p = m.path(name);
        write_file(&p, name.as_bytes());
        assert_content(&p, name.as_bytes());
    }
    let listed = names(m.dir());
    assert!(listed.contains(&"ünïcødé-名前".to_string()), "{listed:?}");
    assert!(listed.contains(&"x".repeat(255)));
}

#[test]
fn unlinked_open_file_stays_usable() {
    let m = Mount::default_mount();
    let p = m.path("ghost");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    let data = pattern(1, 3 * MIB as usize + 17);
    f.write_all(&data).unwrap();
    fs::remove_file(&p).unwrap();
    assert_errno(fs::metadata(&p), libc::ENOENT, "stat unlinked");
    assert_eq!(names(m.dir()), Vec::<String>::new());
    // Still readable and writable through the open descriptor.
    f.sync_all().unwrap();
    let mut back = Vec::new();
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut back).unwrap();
    assert_same_bytes(&back, &data, "unlinked file via fd");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    f.write_all(b"more").unwrap();
    f.sync_all().unwrap();
    drop(f);
    // A new file with the same name is a different, empty file.
    write_file(&p, b"");
    assert_eq!(fs::metadata(&p).unwrap().len(), 0);
}

#[test]
fn mknod_fifo_devices_and_sockets() {
    let m = Mount::default_mount();
    let fifo = m.path("fifo");
    mkfifo(&fifo, 0o640).unwrap();
    let md = fs::symlink_metadata(&fifo).unwrap();
    assert!(md.file_type().is_fifo(), "{:?}", md.file_type());
    assert_eq!(md.mode() & 0o777, 0o640 & !umask());
    assert_errno(mkfifo(&fifo, 0o644), libc::EEXIST, "mkfifo existing");

    // Data flows through the fifo (the kernel handles the pipe itself).
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        File::open(&reader_path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    });
    {
        let mut w = OpenOptions::new().write(true).open(&fifo).unwrap();
        w.write_all(b"through the pipe").unwrap();
    }
    assert_eq!(reader.join().unwrap(), "through the pipe");

    let chr = m.path("null-like");
    mknod(&chr, libc::S_IFCHR | 0o600, libc::makedev(1, 3)).unwrap();
    let md = fs::symlink_metadata(&chr).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), libc::makedev(1, 3));

    let blk = m.path("blockdev");
    mknod(&blk, libc::S_IFBLK | 0o600, libc::makedev(7, 42)).unwrap();
    let md = fs::symlink_metadata(&blk).unwrap();
    assert!(md.file_type().is_block_device());
    assert_eq!(md.rdev(), libc::makedev(7, 42));

    let sock = m.path("sock");
    mknod(&sock, libc::S_IFSOCK | 0o600, 0).unwrap();
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());

    // A real unix socket bound inside the mount.
    let bound = m.path("bound.sock");
    let listener = std::os::unix::net::UnixListener::bind(&bound).unwrap();
    assert!(fs::symlink_metadata(&bound)
        .unwrap()
        .file_type()
        .is_socket());
    let mut client = std::os::unix::net::UnixStream::connect(&bound).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");

    // A regular file by mknod(S_IFREG).
    let reg = m.path("regular");
    mknod(&reg, libc::S_IFREG | 0o644, 0).unwrap();
    let md = fs::metadata(&reg).unwrap();
    assert!(md.is_file());
    assert_eq!(md.len(), 0);

    for p in [&fifo, &chr, &blk, &sock, &bound, &reg] {
        fs::remove_file(p).unwrap();
    }
    assert_eq!(names(m.dir()), Vec::<String>::new());
}

#[test]
fn symlink_and_readlink() {
    let m = Mount::default_mount();
    write_file(&m.path("target"), b"pointed at");
    symlink("target", m.path("rel")).unwrap();
    fs::create_dir(m.path("dir")).unwrap();
    symlink("../target", m.path("dir/up")).unwrap();
    symlink(m.path("target"), m.path("abs")).unwrap();

    assert_eq!(fs::read_link(m.path("rel")).unwrap(), Path::new("target"));
    assert_eq!(
        fs::read_link(m.path("dir/up")).unwrap(),
        Path::new("../target")
    );
    assert_eq!(fs::read_link(m.path("abs")).unwrap(), m.path("target"));
    for l in ["rel", "dir/up", "abs"] {
        assert_content(&m.path(l), b"pointed at");
    }
    let lmd = fs::symlink_metadata(m.path("rel")).unwrap();
    assert!(lmd.file_type().is_symlink());
    assert_eq!(
        lmd.len(),
        "target".len() as u64,
        "symlink size is the target length"
    );
    assert_eq!(lmd.mode() & 0o777, 0o777);
    assert_eq!(
        fs::metadata(m.path("rel")).unwrap().ino(),
        ino(&m.path("target"))
    );

    // A symlink to a directory is traversed.
    symlink("dir", m.path("dirlink")).unwrap();
    assert_eq!(
        fs::read_link(m.path("dirlink/up")).unwrap(),
        Path::new("../target")
    );

    // Dangling links: lstat works, stat/open fail with ENOENT.
    symlink("nowhere", m.path("dangling")).unwrap();
    assert!(fs::symlink_metadata(m.path("dangling")).is_ok());
    assert_errno(
        File::open(m.path("dangling")),
        libc::ENOENT,
        "open dangling",
    );
    // Creating through a dangling link creates the target.
    write_file(&m.path("dangling"), b"now it exists");
    assert_content(&m.path("nowhere"), b"now it exists");

    // Long targets (up to PATH_MAX-1 bytes) round-trip.
    let long: String = (0..4000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    symlink(&long, m.path("long")).unwrap();
    assert_eq!(fs::read_link(m.path("long")).unwrap(), Path::new(&long));
    assert_eq!(fs::symlink_metadata(m.path("long")).unwrap().len(), 4000);

    assert_errno(
        symlink("x", m.path("rel")),
        libc::EEXIST,
        "symlink over existing",
    );
    // Removing the link leaves the target.
    fs::remove_file(m.path("rel")).unwrap();
    assert_content(&m.path("target"), b"pointed at");
    // Removing the target leaves a dangling link.
    fs::remove_file(m.path("target")).unwrap();
    assert_errno(
        fs::metadata(m.path("abs")),
        libc::ENOENT,
        "stat via dangling abs link",
    );
    assert!(fs::symlink_metadata(m.path("abs")).is_ok());
}

#[test]
fn hard_links_share_the_inode() {
    let m = Mount::default_mount();
    let a = m.path("a");
    write_file(&a, b"shared content");
    fs::create_dir(m.path("d")).unwrap();
    let b = m.path("d/b");
    fs::hard_link(&a, &b).unwrap();
    assert_eq!(ino(&a), ino(&b));
    assert_eq!(nlink(&a), 2);
    assert_eq!(nlink(&b), 2);
    fs::hard_link(&a, m.path("c")).unwrap();
    assert_eq!(nlink(&b), 3);

    // A write through one name is seen through the others.
    OpenOptions::new()
        .append(true)
        .open(&b)
        .unwrap()
        .write_all(b" + more")
        .unwrap();
    assert_content(&a, b"shared content + more");
    assert_content(&m.path("c"), b"shared content + more");
    // chmod through one name shows through the others.
    fs::set_permissions(&b, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(&a).unwrap().mode() & 0o777, 0o600);

    assert_errno(
        fs::hard_link(&a, &b),
        libc::EEXIST,
        "link onto an existing name",
    );
    assert_errno(
        fs::hard_link(m.path("d"), m.path("dlink")),
        libc::EPERM,
        "hard link to a directory",
    );
    assert_errno(
        fs::hard_link(m.path("missing"), m.path("x")),
        libc::ENOENT,
        "link a missing file",
    );

    fs::remove_file(&a).unwrap();
    assert_eq!(nlink(&b), 2);
    fs::remove_file(m.path("c")).unwrap();
    assert_eq!(nlink(&b), 1);
    assert_content(&b, b"shared content + more");

    // Hard links to symlinks link the symlink itself.
    symlink("d/b", m.path("sl")).unwrap();
    let c = cstr(m.path("sl"));
    let d = cstr(m.path("sl2"));
    // SAFETY: valid C strings; flags 0 = don't follow.
    let rc = unsafe { libc::linkat(libc::AT_FDCWD, c.as_ptr(), libc::AT_FDCWD, d.as_ptr(), 0) };
    cvt(rc).unwrap();
    assert!(fs::symlink_metadata(m.path("sl2"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(ino(&m.path("sl")), ino(&m.path("sl2")));
    assert_eq!(nlink(&m.path("sl")), 2);
}

#[test]
fn rename_files_and_directories() {
    let m = Mount::default_mount();
    fs::create_dir_all(m.path("src/inner")).unwrap();
    fs::create_dir(m.path("dst")).unwrap();
    write_file(&m.path("src/f"), b"file f");
    let f_ino = ino(&m.path("src/f"));

    // Within a directory.
    fs::rename(m.path("src/f"), m.path("src/g")).unwrap();
    assert_errno(
        fs::metadata(m.path("src/f")),
        libc::ENOENT,
        "old name after rename",
    );
    assert_eq!(ino(&m.path("src/g")), f_ino);
    assert_content(&m.path("src/g"), b"file f");

    // Across directories.
    fs::rename(m.path("src/g"), m.path("dst/g")).unwrap();
    assert_eq!(names(&m.path("src")), vec!["inner"]);
    assert_eq!(names(&m.path("dst")), vec!["g"]);
    assert_eq!(ino(&m.path("dst/g")), f_ino);

    // Over an existing file: the target is replaced, the source inode survives.
    write_file(&m.path("dst/victim"), b"to be replaced");
    fs::rename(m.path("dst/g"), m.path("dst/victim")).unwrap();
    assert_eq!(names(&m.path("dst")), vec!["victim"]);
    assert_eq!(ino(&m.path("dst/victim")), f_ino);
    assert_content(&m.path("dst/victim"), b"file f");

    // A replaced file that is still open stays readable.
    write_file(&m.path("dst/open"), b"still open");
    let mut held = File::open(m.path("dst/open")).unwrap();
    write_file(&m.path("dst/new"), b"newer");
    fs::rename(m.path("dst/new"), m.path("dst/open")).unwrap();
    let mut s = String::new();
    held.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still open");
    assert_content(&m.path("dst/open"), b"newer");
    drop(held);

    // A directory across directories: '..' and the parents' link counts follow.
    let (src_links, dst_links) = (nlink(&m.path("src")), nlink(&m.path("dst")));
    fs::rename(m.path("src/inner"), m.path("dst/inner")).unwrap();
    assert_eq!(ino(&m.path("dst/inner/..")), ino(&m.path("dst")));
    assert_eq!(nlink(&m.path("src")), src_links - 1);
    assert_eq!(nlink(&m.path("dst")), dst_links + 1);

    // Over an empty directory: allowed, the empty one disappears.
    fs::create_dir(m.path("empty")).unwrap();
    write_file(&m.path("dst/inner/keep"), b"kept");
    let inner_ino = ino(&m.path("dst/inner"));
    fs::rename(m.path("dst/inner"), m.path("empty")).unwrap();
    assert_eq!(ino(&m.path("empty")), inner_ino);
    assert_content(&m.path("empty/keep"), b"kept");
    assert_eq!(nlink(&m.path("dst")), dst_links);

    // Over a non-empty directory, a file over a directory, a directory over a file.
    fs::create_dir(m.path("full")).unwrap();
    write_file(&m.path("full/x"), b"x");
    fs::create_dir(m.path("other")).unwrap();
    assert_errno(
        fs::rename(m.path("other"), m.path("full")),
        libc::ENOTEMPTY,
        "dir over non-empty dir",
    );
    assert_errno(
        fs::rename(m.path("dst/victim"), m.path("other")),
        libc::EISDIR,
        "file over dir",
    );
    assert_errno(
        fs::rename(m.path("other"), m.path("dst/victim")),
        libc::ENOTDIR,
        "dir over file",
    );
    // Into its own subdirectory.
    assert_errno(
        fs::rename(m.path("empty"), m.path("empty/sub")),
        libc::EINVAL,
        "dir into itself",
    );
    // Missing source.
    assert_errno(
        fs::rename(m.path("nope"), m.path("n2")),
        libc::ENOENT,
        "missing source",
    );
    // Onto itself: a no-op.
    fs::rename(m.path("dst/victim"), m.path("dst/victim")).unwrap();
    assert_content(&m.path("dst/victim"), b"file f");
    // Two hard links of one inode: rename is a no-op and both names stay.
    fs::hard_link(m.path("dst/victim"), m.path("hl")).unwrap();
    fs::rename(m.path("hl"), m.path("dst/victim")).unwrap();
    assert!(m.path("hl").exists() && m.path("dst/victim").exists());
    assert_eq!(nlink(&m.path("hl")), 2);

    // Symlinks are renamed, not followed.
    symlink("dst/victim", m.path("link")).unwrap();
    fs::rename(m.path("link"), m.path("other/link")).unwrap();
    assert_eq!(
        fs::read_link(m.path("other/link")).unwrap(),
        Path::new("dst/victim")
    );
}

#[test]
fn renameat2_noreplace_and_exchange() {
    let m = Mount::default_mount();
    write_file(&m.path("a"), b"A");
    write_file(&m.path("b"), b"B");
    fs::create_dir(m.path("d")).unwrap();
    write_file(&m.path("d/inside"), b"in d");

    assert_errno(
        renameat2(&m.path("a"), &m.path("b"), libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "RENAME_NOREPLACE onto an existing file",
    );
    assert_content(&m.path("a"), b"A");
    assert_content(&m.path("b"), b"B");
    renameat2(&m.path("a"), &m.path("c"), libc::RENAME_NOREPLACE).unwrap();
    assert_errno(
        fs::metadata(m.path("a")),
        libc::ENOENT,
        "source after NOREPLACE rename",
    );
    assert_content(&m.path("c"), b"A");

    // Exchange two files.
    let (bi, ci) = (ino(&m.path("b")), ino(&m.path("c")));
    renameat2(&m.path("b"), &m.path("c"), libc::RENAME_EXCHANGE).unwrap();
    assert_content(&m.path("b"), b"A");
    assert_content(&m.path("c"), b"B");
    assert_eq!((ino(&m.path("b")), ino(&m.path("c"))), (ci, bi));

    // Exchange a file with a directory in another directory.
    fs::create_dir(m.path("e")).unwrap();
    write_file(&m.path("e/file"), b"file in e");
    let root_links = nlink(m.dir());
    let e_links = nlink(&m.path("e"));
    renameat2(&m.path("d"), &m.path("e/file"), libc::RENAME_EXCHANGE).unwrap();
    assert!(fs::metadata(m.path("e/file")).unwrap().is_dir());
    assert_content(&m.path("e/file/inside"), b"in d");
    assert_content(&m.path("d"), b"file in e");
    assert_eq!(ino(&m.path("e/file/..")), ino(&m.path("e")));
    assert_eq!(nlink(m.dir()), root_links - 1, "root lost a subdirectory");
    assert_eq!(nlink(&m.path("e")), e_links + 1, "e gained a subdirectory");

    assert_errno(
        renameat2(&m.path("b"), &m.path("missing"), libc::RENAME_EXCHANGE),
        libc::ENOENT,
        "RENAME_EXCHANGE with a missing target",
    );
    assert_errno(
        renameat2(
            &m.path("b"),
            &m.path("c"),
            libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE,
        ),
        libc::EINVAL,
        "EXCHANGE|NOREPLACE",
    );
}

/// `getdents64` with a deliberately small buffer, so a listing needs many calls.
struct Dents {
    fd: File,
    buf: Vec<u8>,
    pending: Vec<(String, u8)>,
    eof: bool,
}

impl Dents {
    fn open(dir: &Path) -> Dents {
        use std::os::unix::fs::OpenOptionsExt;
        let fd = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(dir)
            .unwrap();
        Dents {
            fd,
            buf: vec![0u8; 512],
            pending: Vec::new(),
            eof: false,
        }
    }

    fn next(&mut self) -> Option<(String, u8)> {
        use std::os::fd::AsRawFd;
        while self.pending.is_empty() && !self.eof {
            // SAFETY: buffer of the given length.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr(),
                    self.buf.len(),
                )
            };
            let n = cvt(n).expect("getdents64") as usize;
            if n == 0 {
                self.eof = true;
                break;
            }
            let mut off = 0;
            while off < n {
                let rec = &self.buf[off..];
                let reclen = u16::from_ne_bytes([rec[16], rec[17]]) as usize;
                let dtype = rec[18];
                let name = &rec[19..reclen];
                let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
                self.pending
                    .push((String::from_utf8_lossy(&name[..end]).into_owned(), dtype));
                off += reclen;
            }
            self.pending.reverse();
        }
        self.pending.pop()
    }
}

#[test]
fn readdir_types_and_dot_entries() {
    let m = Mount::default_mount();
    let d = m.path("d");
    fs::create_dir(&d).unwrap();
    write_file(&d.join("file"), b"");
    fs::create_dir(d.join("dir")).unwrap();
    symlink("file", d.join("link")).unwrap();
    mkfifo(&d.join("fifo"), 0o644).unwrap();
    let mut seen = BTreeMap::new();
    let mut it = Dents::open(&d);
    while let Some((name, t)) = it.next() {
        assert!(
            seen.insert(name.clone(), t).is_none(),
            "{name} listed twice"
        );
    }
    let want: BTreeMap<String, u8> = [
        (".", libc::DT_DIR),
        ("..", libc::DT_DIR),
        ("file", libc::DT_REG),
        ("dir", libc::DT_DIR),
        ("link", libc::DT_LNK),
        ("fifo", libc::DT_FIFO),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect();
    assert_eq!(seen, want);
}

#[test]
fn readdir_while_entries_are_added_and_removed() {
    let m = Mount::default_mount();
    let d = m.path("busy");
    fs::create_dir(&d).unwrap();
    // Long names so that one small getdents buffer holds only a few entries.
    let stable: BTreeSet<String> = (0..400)
        .map(|i| format!("stable-{i:04}-{}", "s".repeat(40)))
        .collect();
    let victims: BTreeSet<String> = (0..200)
        .map(|i| format!("victim-{i:04}-{}", "v".repeat(40)))
        .collect();
    for n in stable.iter().chain(&victims) {
        File::create(d.join(n)).unwrap();
    }

    let mut it = Dents::open(&d);
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..20 {
        seen.push(it.next().expect("entries").0);
    }
    // Change the directory in the middle of the listing.
    let added: BTreeSet<String> = (0..200)
        .map(|i| format!("added-{i:04}-{}", "a".repeat(40)))
        .collect();
    for (i, v) in victims.iter().enumerate() {
        fs::remove_file(d.join(v)).unwrap();
        if i % 2 == 0 {
            // Interleave additions and removals.
            let a = added.iter().nth(i / 2).unwrap();
            File::create(d.join(a)).unwrap();
        }
    }
    for a in added.iter().skip(100) {
        File::create(d.join(a)).unwrap();
    }
    while let Some((name, _)) = it.next() {
        seen.push(name);
    }

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &seen {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    for (n, c) in &counts {
        assert_eq!(*c, 1, "{n} returned {c} times by one directory stream");
        assert!(
            *n == "."
                || *n == ".."
                || stable.contains(*n)
                || victims.contains(*n)
                || added.contains(*n),
            "unknown entry {n}"
        );
    }
    // POSIX: entries present for the whole listing appear exactly once.
    for s in &stable {
        assert!(
            counts.contains_key(s.as_str()),
            "{s} (never touched) missing from the listing"
        );
    }
    // After the listing, a fresh one shows exactly the new state.
    let now: BTreeSet<String> = names(&d).into_iter().collect();
    let want: BTreeSet<String> = stable.union(&added).cloned().collect();
    assert_eq!(now.len(), want.len());
    assert!(now == want, "fresh listing differs from the expected set");
}

#[test]
fn large_directory_listing() {
    let m = Mount::default_mount();
    let d = m.path("many");
    fs::create_dir(&d).unwrap();
    let want: BTreeSet<String> = (0..3000).map(|i| format!("entry-{i:05}")).collect();
    for n in &want {
        File::create(d.join(n)).unwrap();
    }
    let got: BTreeSet<String> = names(&d).into_iter().collect();
    assert_eq!(got.len(), 3000);
    assert!(got == want);
    // Every entry is reachable by lookup, and removal empties the directory.
    for n in want.iter().step_by(7) {
        assert!(fs::symlink_metadata(d.join(n)).unwrap().is_file());
    }
    for n in &want {
        fs::remove_file(d.join(n)).unwrap();
    }
    assert_eq!(names(&d), Vec::<String>::new());
    fs::remove_dir(&d).unwrap();
}
