//! Real applications on a real mount, each judged by its own verdict: git (`git fsck
//! --full`, a clean `git status`), GNU tar (`tar --compare`, plus checksums, modes,
//! owners, times, symlinks and hard links compared with the source tree), SQLite in WAL
//! mode with two writer processes (`PRAGMA integrity_check`) and PostgreSQL (`pgbench`,
//! clean shutdown and restart, `pg_amcheck`). Each test works on a fresh volume and checks
//! again after a clean unmount and remount.
//!
//! Needs git, tar, sha256sum, python3 (with its sqlite3 module) and PostgreSQL (initdb,
//! pg_ctl, psql, pgbench, pg_amcheck: on PATH or in /usr/lib/postgresql/*/bin);
//! `bash scripts/test.sh` installs them. A missing PostgreSQL fails the test unless
//! TESSERA_SKIP_POSTGRES=1 is set.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::{symlink, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Running external programs
// ---------------------------------------------------------------------------------------

/// The last `max` bytes of `s` (on a character boundary), marked when cut.
fn tail_of(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {start} bytes cut ...]\n{}", &s[start..])
}

/// Everything worth knowing about a finished command, for assertion messages.
fn describe_run(cmd: &Command, status: ExitStatus, out: &Output, m: Option<&Mount>) -> String {
    let mut s = format!(
        "command: {cmd:?}\nexit status: {status}\nstdout:\n{}\nstderr:\n{}",
        tail_of(&String::from_utf8_lossy(&out.stdout), 12_000),
        tail_of(&String::from_utf8_lossy(&out.stderr), 12_000),
    );
    if let Some(m) = m {
        s.push_str(&format!(
            "\nserver log (tail):\n{}",
            tail_of(&m.server_log(), 8_000)
        ));
    }
    s
}

/// Runs `cmd` (stdin closed) and returns its output, whatever its exit status.
fn output_of(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` and panics unless it exits 0; the message names the command, its status,
/// its stdout and stderr, the server log (with `m`) and whatever `extra` returns.
#[track_caller]
fn run_with(cmd: &mut Command, m: Option<&Mount>, extra: &dyn Fn() -> String) -> Output {
    let out = output_of(cmd);
    if !out.status.success() {
        panic!(
            "command failed\n{}\n{}",
            describe_run(cmd, out.status, &out, m),
            extra()
        );
    }
    out
}

/// [`run_with`] with the server log of `m`.
#[track_caller]
fn run(cmd: &mut Command, m: &Mount) -> Output {
    run_with(cmd, Some(m), &String::new)
}

/// [`run_with`] for a command that does not touch a mount.
#[track_caller]
fn run_local(cmd: &mut Command) -> Output {
    run_with(cmd, None, &String::new)
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Finds `name` in the directories of $PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A program the tests cannot do without: panics with how to install it.
fn require(name: &str, package: &str) -> PathBuf {
    on_path(name).unwrap_or_else(|| {
        panic!(
            "\n\n*** `{name}` is not installed: the application tests need it.\n\
             *** `bash scripts/test.sh` installs it (apt-get install -y {package}). Refusing to skip.\n"
        )
    })
}

/// `sync -f DIR` (syncfs on the mount). Returns the failure description instead of
/// panicking so a test can finish its other checks first.
fn syncfs_cmd(m: &Mount) -> Result<(), String> {
    let mut cmd = Command::new("sync");
    cmd.arg("-f").arg(m.dir());
    let out = output_of(&mut cmd);
    if out.status.success() {
        Ok(())
    } else {
        Err(describe_run(&cmd, out.status, &out, Some(m)))
    }
}

#[track_caller]
fn assert_synced(r: Result<(), String>, when: &str) {
    if let Err(e) = r {
        panic!("`sync -f` on the mount failed {when}:\n{e}");
    }
}

/// Lets users other than root reach the mount point: the harness's temporary base
/// directory is 0700.
fn open_mount_path_to_everyone(m: &Mount) {
    let base = m.dir().parent().expect("mount point has a parent");
    fs::set_permissions(base, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod 0755 {}: {e}", base.display()));
}

fn elapsed(t: Instant) -> String {
    format!("{:.1} s", t.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// git
// ---------------------------------------------------------------------------------------

/// Deterministic text-like content (so git's deltas and zlib have something to do).
fn text_file(seed: u64) -> Vec<u8> {
    let mut r = Prng::new(seed);
    let lines = r.range(3, 60);
    let mut s = String::new();
    for n in 0..lines {
        s.push_str(&format!("{n:04} {:016x}", r.next_u64()));
        for _ in 0..r.below(5) {
            s.push_str(&format!(" w{}", r.below(1000)));
        }
        s.push('\n');
    }
    s.into_bytes()
}

struct Git<'a> {
    m: &'a Mount,
    repo: PathBuf,
    home: tempfile::TempDir,
}

impl Git<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.current_dir(&self.repo)
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Tessera Test")
            .env("GIT_AUTHOR_EMAIL", "test@tessera.invalid")
            .env("GIT_COMMITTER_NAME", "Tessera Test")
            .env("GIT_COMMITTER_EMAIL", "test@tessera.invalid")
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .env("LC_ALL", "C")
            .args([
                "-c",
                "safe.directory=*",
                "-c",
                "init.defaultBranch=main",
                "-c",
                "gc.autoDetach=false",
                "-c",
                "maintenance.auto=false",
                "-c",
                "gc.auto=0",
            ])
            .args(args);
        c
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        stdout_of(&run(&mut self.cmd(args), self.m))
    }

    /// `git fsck --full` must exit 0 and say nothing at all.
    #[track_caller]
    fn fsck(&self) {
        let mut cmd = self.cmd(&["fsck", "--full", "--strict", "--no-progress"]);
        let out = run(&mut cmd, self.m);
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "git fsck --full reported problems\n{}",
            describe_run(&cmd, out.status, &out, Some(self.m))
        );
    }

    #[track_caller]
    fn assert_clean(&self) {
        let st = self.ok(&["status", "--porcelain", "--untracked-files=all"]);
        assert!(
            st.is_empty(),
            "git status --porcelain is not empty:\n{}",
            tail_of(&st, 8000)
        );
    }
}

/// Every file of the working tree (outside .git) equals the model, and nothing else is
/// there.
#[track_caller]
fn assert_tree_matches(root: &Path, model: &BTreeMap<String, Vec<u8>>) {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
            let e = e.expect("dir entry");
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == ".git" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                found.insert(rel);
            }
        }
    }
    let want: BTreeSet<String> = model.keys().cloned().collect();
    let missing: Vec<_> = want.difference(&found).take(10).collect();
    let extra: Vec<_> = found.difference(&want).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "working tree differs from the model: missing {missing:?}, unexpected {extra:?}"
    );
    for (rel, data) in model {
        assert_content(&root.join(rel), data);
    }
}

#[test]
fn git_commit_modify_gc_fsck() {
    require("git", "git");
    let t0 = Instant::now();
    let mut m = Mount::new(MountOpts::default().watchdog(Duration::from_secs(600)));
    let repo = m.path("repo");
    fs::create_dir(&repo).unwrap();

    // 3000 files in 25 x 12 directories.
    const FILES: u64 = 3000;
    let path_of = |i: u64| format!("src/m{:02}/p{:02}/f{i:04}.txt", i % 25, (i / 25) % 12);
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..FILES {
        let rel = path_of(i);
        let p = repo.join(&rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let data = text_file(i);
        fs::write(&p, &data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        model.insert(rel, data);
    }
    eprintln!("[git] wrote {FILES} files in {}", elapsed(t0));

    let git = Git {
        m: &m,
        repo: repo.clone(),
        home: tempfile::tempdir().unwrap(),
    };
    let t = Instant::now();
    git.ok(&["init", "-q"]);
    git.ok(&["add", "-A"]);
    git.ok(&["commit", "-q", "-m", "initial tree"]);
    let tracked = git.ok(&["ls-files"]).lines().count();
    assert_eq!(
        tracked, FILES as usize,
        "git ls-files after the first commit"
    );
    git.assert_clean();
    eprintln!("[git] init, add, commit in {}", elapsed(t));

    // Second commit: modify 300, delete 150, rename 150, add 100.
    let t = Instant::now();
    let (mut modified, mut deleted, mut renamed) = (0, 0, 0);
    for i in 0..FILES {
        let rel = path_of(i);
        let p = repo.join(&rel);
        match i % 20 {
            1 | 11 => {
                let mut data = model[&rel].clone();
                data.extend_from_slice(format!("changed {i}\n").as_bytes());
                data[0] = b'#';
                fs::write(&p, &data).unwrap();
                model.insert(rel, data);
                modified += 1;
            }
            2 => {
                fs::remove_file(&p).unwrap();
                model.remove(&rel);
                deleted += 1;
            }
            12 => {
                let to_rel = format!("moved/d{:02}/f{i:04}.txt", i % 7);
                let to = repo.join(&to_rel);
                fs::create_dir_all(to.parent().unwrap()).unwrap();
                fs::rename(&p, &to).unwrap();
                let data = model.remove(&rel).unwrap();
                model.insert(to_rel, data);
                renamed += 1;
            }
            _ => {}
        }
    }
    for i in 0..100 {
        let rel = format!("added/n{i:03}.txt");
        let p = repo.join(&rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let data = text_file(100_000 + i);
        fs::write(&p, &data).unwrap();
        model.insert(rel, data);
    }
    assert_eq!((modified, deleted, renamed), (300, 150, 150));
    git.ok(&["add", "-A"]);
    git.ok(&["commit", "-q", "-m", "modify, delete, rename, add"]);
    git.assert_clean();
    let changes = git.ok(&["diff", "--name-status", "-M", "HEAD~1", "HEAD"]);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for l in changes.lines() {
        let k: String = l.chars().take(1).collect();
        *kinds.entry(k).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = [("A", 100), ("D", 150), ("M", 300), ("R", 150)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(
        kinds, want,
        "git diff --name-status HEAD~1 HEAD:\n{changes}"
    );
    // Switching commits rewrites, removes and recreates hundreds of files.
    git.ok(&["checkout", "-q", "HEAD~1"]);
    assert_eq!(git.ok(&["ls-files"]).lines().count(), FILES as usize);
    git.assert_clean();
    git.ok(&["checkout", "-q", "main"]);
    git.assert_clean();
    eprintln!("[git] second commit and checkouts in {}", elapsed(t));

    // gc packs everything and deletes the loose objects: thousands of unlinks.
    let t = Instant::now();
    git.ok(&["gc", "--quiet"]);
    let counts = git.ok(&["count-objects", "-v"]);
    assert!(
        counts.lines().any(|l| l == "count: 0"),
        "loose objects left after git gc:\n{counts}"
    );
    git.fsck();
    git.assert_clean();
    eprintln!("[git] gc and fsck in {}", elapsed(t));

    // The regression: after git's unlinks and renames over existing files, syncfs on
    // the mount failed with ENOENT. Checked at the end so the remount checks still run.
    let synced = syncfs_cmd(&m);

    let t = Instant::now();
    drop(git);
    m.remount();
    let git = Git {
        m: &m,
        repo: repo.clone(),
        home: tempfile::tempdir().unwrap(),
    };
    git.fsck();
    git.assert_clean();
    assert_eq!(git.ok(&["ls-files"]).lines().count(), model.len());
    assert_eq!(git.ok(&["rev-list", "--count", "HEAD"]).trim(), "2");
    assert_tree_matches(&repo, &model);
    eprintln!("[git] remount, fsck, status, content in {}", elapsed(t));
    drop(git);
    m.unmount();
    eprintln!("[git] total {}", elapsed(t0));
    assert_synced(
        synced,
        "after git gc (unlinks and renames over existing files)",
    );
}

// ---------------------------------------------------------------------------------------
// tar
// ---------------------------------------------------------------------------------------

/// What is compared per path between the source tree and the extracted one.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: Option<u64>,
    mtime: i64,
    target: Option<PathBuf>,
}

/// Every path under `root` (relative, sorted) with its attributes and inode number.
fn walk(root: &Path) -> BTreeMap<String, (Entry, u64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
            let p = e.expect("dir entry").path();
            let md =
                fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
            let ft = md.file_type();
            let (kind, size, target) = if ft.is_dir() {
                stack.push(p.clone());
                ("dir", None, None)
            } else if ft.is_symlink() {
                ("symlink", None, Some(fs::read_link(&p).unwrap()))
            } else if ft.is_file() {
                ("file", Some(md.size()), None)
            } else {
                ("other", None, None)
            };
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let entry = Entry {
                kind,
                // A symlink's own mode bits mean nothing on Linux.
                mode: if kind == "symlink" { 0 } else { md.mode() },
                uid: md.uid(),
                gid: md.gid(),
                size,
                mtime: if kind == "symlink" { 0 } else { md.mtime() },
                target,
            };
            out.insert(rel, (entry, md.ino(), md.nlink()));
        }
    }
    out
}

/// `sha256sum` of these files (relative to `dir`), one line each.
fn sha256s(dir: &Path, files: &[&String], m: Option<&Mount>) -> String {
    let mut cmd = Command::new("sha256sum");
    cmd.current_dir(dir).arg("--").args(files);
    stdout_of(&run_with(&mut cmd, m, &String::new))
}

/// Compares the extracted tree with the source: attributes, checksums, symlink targets
/// and which paths share an inode.
#[track_caller]
fn compare_trees(src: &Path, dst: &Path, m: &Mount, when: &str) {
    let a = walk(src);
    let b = walk(dst);
    let a_names: Vec<_> = a.keys().collect();
    let b_names: Vec<_> = b.keys().collect();
    assert_eq!(
        a_names, b_names,
        "{when}: the extracted tree has other paths"
    );
    for (rel, (ea, _, _)) in &a {
        let eb = &b[rel].0;
        assert_eq!(ea, eb, "{when}: {rel} differs (left: source, right: mount)");
    }
    // Hard links: paths sharing an inode in the source share one on the mount, with the
    // same link count, and no two source inodes collapse into one.
    let mut groups: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
    for (rel, (e, ino, _)) in &a {
        if e.kind == "file" {
            groups.entry(*ino).or_default().push(rel);
        }
    }
    let mut seen = BTreeMap::new();
    for paths in groups.values() {
        let (_, ino, nlink) = b[paths[0]];
        assert_eq!(
            nlink as usize,
            paths.len(),
            "{when}: link count of {paths:?} on the mount"
        );
        for p in paths {
            assert_eq!(b[*p].1, ino, "{when}: {p} is not linked to {}", paths[0]);
        }
        if let Some(other) = seen.insert(ino, paths[0]) {
            panic!(
                "{when}: {} and {other} share inode {ino} on the mount",
                paths[0]
            );
        }
    }
    let files: Vec<&String> = a
        .iter()
        .filter(|(_, (e, _, _))| e.kind == "file")
        .map(|(k, _)| k)
        .collect();
    let want = sha256s(src, &files, None);
    let got = sha256s(dst, &files, Some(m));
    if want != got {
        let diff: Vec<_> = want
            .lines()
            .zip(got.lines())
            .filter(|(x, y)| x != y)
            .take(10)
            .collect();
        panic!("{when}: checksums differ (source, mount): {diff:#?}");
    }
}

/// The source tree for the tar test: subdirectories, small and multi-chunk files, a
/// sparse file, an empty file and directory, odd modes, other owners, fixed times,
/// symlinks (relative, absolute dangling, to a directory) and hard links.
fn make_tar_source(root: &Path) {
    let tree = root.join("tree");
    let mk = |rel: &str| fs::create_dir_all(tree.join(rel)).unwrap();
    let put = |rel: &str, data: &[u8], mode: u32| {
        let p = tree.join(rel);
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    for d in [
        "docs/a",
        "docs/b/c",
        "bin",
        "private",
        "emptydir",
        "sticky",
        "with space",
    ] {
        mk(d);
    }
    let mut r = Prng::new(7);
    for i in 0..1000u64 {
        let dir = ["docs", "docs/a", "docs/b", "docs/b/c"][(i % 4) as usize];
        let len = match i % 10 {
            0 => 0,
            1 => 1,
            2 => 4096,
            3 => 4097,
            _ => r.below(20_000) as usize,
        };
        let mode = [0o644, 0o600, 0o444, 0o640, 0o755][(i % 5) as usize];
        put(&format!("{dir}/f{i:03}.dat"), &pattern(1000 + i, len), mode);
    }
    put("empty", b"", 0o644);
    put("bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    put("private/secret", &pattern(2, 777), 0o400);
    put("with space/naïve é.txt", "unicode name\n".as_bytes(), 0o664);
    // Crosses 1 MiB chunk boundaries; dup1 and dup2 have equal content (dedup).
    let big = pattern(3, (6 * MIB + 17) as usize);
    put("big.bin", &big, 0o644);
    put("dup1", &big[..(MIB as usize + 5)], 0o644);
    put("dup2", &big[..(MIB as usize + 5)], 0o644);
    // Sparse: 32 MiB with three data extents.
    let sp = File::create(tree.join("sparse.img")).unwrap();
    sp.set_len(32 * MIB).unwrap();
    sp.write_at(&pattern(4, 64 * KIB as usize), 0).unwrap();
    sp.write_at(&pattern(5, 100 * KIB as usize), 13 * MIB + 123)
        .unwrap();
    sp.write_at(&pattern(6, 4 * KIB as usize), 32 * MIB - 4 * KIB)
        .unwrap();
    drop(sp);
    // Hard links: a pair and a triple.
    fs::hard_link(tree.join("docs/f004.dat"), tree.join("hard-pair")).unwrap();
    fs::hard_link(tree.join("big.bin"), tree.join("docs/a/big-link")).unwrap();
    fs::hard_link(tree.join("big.bin"), tree.join("docs/b/c/big-link2")).unwrap();
    // Symlinks.
    symlink("docs/f008.dat", tree.join("link-rel")).unwrap();
    symlink("../../bin/tool", tree.join("docs/b/link-up")).unwrap();
    symlink("/nonexistent/target", tree.join("dangling")).unwrap();
    symlink("docs", tree.join("dirlink")).unwrap();
    // Owners (before the modes: chown clears set-id bits), then set-id and sticky modes.
    chown(&tree.join("docs/f012.dat"), 1000, 1000).unwrap();
    chown(&tree.join("private"), 65534, 65534).unwrap();
    lchown(&tree.join("link-rel"), 1000, 100).unwrap();
    put("bin/suid", b"suid\n", 0o4755);
    put("bin/sgid", b"sgid\n", 0o2711);
    fs::set_permissions(tree.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(tree.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(tree.join("emptydir"), fs::Permissions::from_mode(0o750)).unwrap();
    // Fixed times on a file and a directory (directories last: writing changes them).
    utimensat(
        &tree.join("docs/f016.dat"),
        ts(1_000_000_000, 0),
        ts(1_000_000_000, 0),
        0,
    )
    .unwrap();
    utimensat(
        &tree.join("docs/a"),
        ts(1_100_000_000, 0),
        ts(1_100_000_000, 0),
        0,
    )
    .unwrap();
}

#[test]
fn tar_extract_compare_and_remount() {
    require("tar", "tar");
    require("sha256sum", "coreutils");
    let t0 = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("tessera-apps-tar-")
        .tempdir()
        .unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tar_source(&src);
    let archive = work.path().join("tree.tar");
    run_local(
        Command::new("tar")
            .args(["--create", "--sparse", "--numeric-owner", "--file"])
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("tree"),
    );
    eprintln!(
        "[tar] source tree and archive ({} bytes) in {}",
        fs::metadata(&archive).unwrap().len(),
        elapsed(t0)
    );

    let mut m = Mount::new(MountOpts::default().watchdog(Duration::from_secs(600)));
    let t = Instant::now();
    run(
        Command::new("tar")
            .args(["-xpf"])
            .arg(&archive)
            .args(["--numeric-owner", "-C"])
            .arg(m.dir()),
        &m,
    );
    eprintln!("[tar] extracted in {}", elapsed(t));

    let tar_compare = |m: &Mount| {
        let mut cmd = Command::new("tar");
        cmd.args(["--compare", "--numeric-owner", "--file"])
            .arg(&archive)
            .arg("-C")
            .arg(m.dir());
        let out = run(&mut cmd, m);
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "tar --compare reported differences\n{}",
            describe_run(&cmd, out.status, &out, Some(m))
        );
    };
    let t = Instant::now();
    tar_compare(&m);
    compare_trees(&src.join("tree"), &m.path("tree"), &m, "after extraction");
    eprintln!("[tar] compared in {}", elapsed(t));
    let synced = syncfs_cmd(&m);

    let t = Instant::now();
    m.remount();
    tar_compare(&m);
    compare_trees(&src.join("tree"), &m.path("tree"), &m, "after remount");
    eprintln!("[tar] remount and compare in {}", elapsed(t));
    m.unmount();
    eprintln!("[tar] total {}", elapsed(t0));
    assert_synced(synced, "after tar extraction");
}

// ---------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------

const SQLITE_SCRIPT: &str = r#"
import json, random, sqlite3, sys

mode, db = sys.argv[1], sys.argv[2]

def connect():
    c = sqlite3.connect(db, timeout=120, isolation_level=None)
    c.execute("PRAGMA busy_timeout=120000")
    return c

if mode == "init":
    c = connect()
    jm = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert jm == "wal", jm
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, worker INTEGER NOT NULL, "
              "seq INTEGER NOT NULL, payload BLOB NOT NULL, UNIQUE (worker, seq))")
    c.execute("CREATE INDEX t_len ON t (length(payload))")
    c.execute("CREATE TABLE counters (worker INTEGER PRIMARY KEY, n INTEGER NOT NULL, "
              "bytes INTEGER NOT NULL)")
    c.execute("INSERT INTO counters VALUES (0, 0, 0), (1, 0, 0)")
    c.close()
    print("init ok")
elif mode == "work":
    w, n = int(sys.argv[3]), int(sys.argv[4])
    c = connect()
    jm = c.execute("PRAGMA journal_mode").fetchone()[0]
    assert jm == "wal", jm
    rnd = random.Random(w)
    for i in range(n):
        payload = rnd.randbytes(rnd.randint(16, 600))
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO t (worker, seq, payload) VALUES (?, ?, ?)", (w, i, payload))
        delta = len(payload)
        if i > 0 and i % 3 == 0:
            seq = rnd.randrange(i)
            new = rnd.randbytes(rnd.randint(1, 900))
            old = c.execute("SELECT length(payload) FROM t WHERE worker = ? AND seq = ?",
                            (w, seq)).fetchone()[0]
            c.execute("UPDATE t SET payload = ? WHERE worker = ? AND seq = ?", (new, w, seq))
            delta += len(new) - old
        c.execute("UPDATE counters SET n = n + 1, bytes = bytes + ? WHERE worker = ?",
                  (delta, w))
        c.execute("COMMIT")
    c.close()
    print(f"committed {w} {n}")
elif mode == "check":
    c = connect()
    out = {
        "integrity": [r[0] for r in c.execute("PRAGMA integrity_check")],
        "journal_mode": c.execute("PRAGMA journal_mode").fetchone()[0],
        "workers": {},
    }
    for w in (0, 1):
        rows, byts, seqs = c.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0), count(DISTINCT seq) "
            "FROM t WHERE worker = ?", (w,)).fetchone()
        n, b = c.execute("SELECT n, bytes FROM counters WHERE worker = ?", (w,)).fetchone()
        out["workers"][str(w)] = {"rows": rows, "bytes": byts, "distinct_seq": seqs,
                                  "counter_n": n, "counter_bytes": b}
    c.close()
    print(json.dumps(out))
"#;

#[test]
fn sqlite_wal_two_writers_integrity_and_remount() {
    let python = require("python3", "python3");
    let t0 = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("tessera-apps-sqlite-")
        .tempdir()
        .unwrap();
    let script = work.path().join("sqlite_job.py");
    fs::write(&script, SQLITE_SCRIPT).unwrap();
    let mut m = Mount::new(MountOpts::default().watchdog(Duration::from_secs(600)));
    fs::create_dir(m.path("db")).unwrap();
    let db = m.path("db/test.sqlite");
    let py = |args: &[&str]| {
        let mut c = Command::new(&python);
        c.arg(&script)
            .args(args[..1].iter())
            .arg(&db)
            .args(&args[1..]);
        c
    };
    let out = run(&mut py(&["init"]), &m);
    assert_eq!(stdout_of(&out).trim(), "init ok");

    // Two writers at once, each committing PER_WORKER transactions.
    const PER_WORKER: usize = 2000;
    let t = Instant::now();
    let n = PER_WORKER.to_string();
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let w = w.to_string();
            let mut cmd = py(&["work", &w, &n]);
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawning a sqlite worker");
            (cmd, child)
        })
        .collect();
    for (w, (cmd, child)) in workers.into_iter().enumerate() {
        let out = child
            .wait_with_output()
            .expect("waiting for a sqlite worker");
        assert!(
            out.status.success(),
            "sqlite worker {w} failed\n{}",
            describe_run(&cmd, out.status, &out, Some(&m))
        );
        assert_eq!(
            stdout_of(&out).trim(),
            format!("committed {w} {PER_WORKER}")
        );
    }
    eprintln!("[sqlite] 2 x {PER_WORKER} transactions in {}", elapsed(t));

    let check = |m: &Mount, when: &str| {
        let out = run(&mut py(&["check"]), m);
        let text = stdout_of(&out);
        let v: serde_json::Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("{when}: check output is not JSON ({e}): {text}"));
        assert_eq!(
            v["integrity"],
            serde_json::json!(["ok"]),
            "{when}: PRAGMA integrity_check: {text}\nserver log:\n{}",
            m.server_log()
        );
        assert_eq!(v["journal_mode"], "wal", "{when}: {text}");
        for w in ["0", "1"] {
            let s = &v["workers"][w];
            assert_eq!(s["rows"], PER_WORKER, "{when}: worker {w} rows: {text}");
            assert_eq!(s["distinct_seq"], PER_WORKER, "{when}: worker {w}: {text}");
            assert_eq!(s["counter_n"], PER_WORKER, "{when}: worker {w}: {text}");
            assert_eq!(
                s["bytes"], s["counter_bytes"],
                "{when}: worker {w}: payload bytes disagree with the counter: {text}"
            );
        }
    };
    check(&m, "after the writers");
    m.remount();
    check(&m, "after remount");
    m.unmount();
    eprintln!("[sqlite] total {}", elapsed(t0));
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// The directory holding initdb, pg_ctl, psql, pgbench and pg_amcheck: initdb's own
/// directory when it is on PATH (symlinks resolved), else the highest
/// /usr/lib/postgresql/*/bin.
fn postgres_bin_dir() -> Option<PathBuf> {
    let tools = [
        "initdb",
        "pg_ctl",
        "postgres",
        "psql",
        "pgbench",
        "pg_amcheck",
    ];
    let complete = |d: &Path| tools.iter().all(|t| d.join(t).is_file());
    if let Some(initdb) = on_path("initdb") {
        if let Some(dir) = initdb
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            if complete(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// uid and gid of a user from the password database.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = cstr(name);
    // SAFETY: getpwnam returns null or a pointer to a static record; we copy the ids
    // right away (the tests in this binary do not call getpw* concurrently).
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

struct Pg<'a> {
    m: &'a Mount,
    bin: PathBuf,
    data: PathBuf,
    sock: tempfile::TempDir,
    uid: u32,
    gid: u32,
    /// Server logs, one per start.
    logs: Vec<PathBuf>,
    running: bool,
}

impl Pg<'_> {
    /// A PostgreSQL command run as the unprivileged user.
    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(self.bin.join(tool))
            .current_dir(self.sock.path())
            .env("PGHOST", self.sock.path())
            .env("PGPORT", "5432")
            .env("PGUSER", "postgres")
            .env("LC_ALL", "C")
            .env_remove("PGDATABASE");
        c
    }

    fn logs_text(&self) -> String {
        let mut s = String::new();
        for l in &self.logs {
            s.push_str(&format!(
                "--- PostgreSQL log {}:\n{}\n",
                l.display(),
                tail_of(&fs::read_to_string(l).unwrap_or_default(), 6000)
            ));
        }
        s
    }

    #[track_caller]
    fn ok(&self, tool: &str, args: &[&str]) -> String {
        let mut c = self.cmd(tool);
        c.args(args);
        stdout_of(&run_with(&mut c, Some(self.m), &|| self.logs_text()))
    }

    #[track_caller]
    fn sql(&self, db: &str, sql: &str) -> String {
        self.ok(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ],
        )
        .trim()
        .to_string()
    }

    #[track_caller]
    fn start(&mut self) {
        let log = self
            .sock
            .path()
            .join(format!("pg-{}.log", self.logs.len() + 1));
        File::create(&log).unwrap();
        chown(&log, self.uid, self.gid).unwrap();
        self.logs.push(log.clone());
        let opts = format!(
            "-k {} -c listen_addresses='' -p 5432",
            self.sock.path().display()
        );
        let data = self.data.to_str().unwrap().to_string();
        let log = log.to_str().unwrap().to_string();
        self.running = true;
        self.ok(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "120", "start",
            ],
        );
    }

    #[track_caller]
    fn stop_fast(&mut self) {
        let data = self.data.to_str().unwrap().to_string();
        self.ok(
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "-t", "120", "stop"],
        );
        self.running = false;
    }
}

impl Drop for Pg<'_> {
    fn drop(&mut self) {
        if self.running {
            // Never leave a server holding files on the mount.
            let mut c = self.cmd("pg_ctl");
            c.arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "60", "stop"]);
            let out = output_of(&mut c);
            eprintln!(
                "[postgres] emergency stop: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            if std::thread::panicking() {
                eprintln!("{}", self.logs_text());
            }
        }
    }
}

#[test]
fn postgres_pgbench_restart_amcheck() {
    let Some(bin) = postgres_bin_dir() else {
        if std::env::var("TESSERA_SKIP_POSTGRES").as_deref() == Ok("1") {
            eprintln!(
                "\n\n*** SKIPPING the PostgreSQL application test: TESSERA_SKIP_POSTGRES=1 and \
                 PostgreSQL is not installed.\n"
            );
            return;
        }
        panic!(
            "\n\n*** PostgreSQL is not installed (no initdb, pg_ctl, postgres, psql, pgbench and \
             pg_amcheck on PATH or in /usr/lib/postgresql/*/bin).\n\
             *** `bash scripts/test.sh` installs it (apt-get install -y postgresql); set \
             TESSERA_SKIP_POSTGRES=1 to skip this test. Refusing to skip silently.\n"
        );
    };
    require("setpriv", "util-linux");
    // PostgreSQL refuses to run as root.
    let (uid, gid) = user_ids("postgres")
        .or_else(|| user_ids("nobody"))
        .expect("neither a `postgres` nor a `nobody` user exists");
    let t0 = Instant::now();
    let m = Mount::new(MountOpts::default().watchdog(Duration::from_secs(600)));
    open_mount_path_to_everyone(&m);
    let data = m.path("pgdata");
    fs::create_dir(&data).unwrap();
    chown(&data, uid, gid).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
    let sock = tempfile::Builder::new()
        .prefix("tessera-apps-pg-")
        .tempdir()
        .unwrap();
    chown(sock.path(), uid, gid).unwrap();
    let mut pg = Pg {
        m: &m,
        bin,
        data: data.clone(),
        sock,
        uid,
        gid,
        logs: Vec::new(),
        running: false,
    };

    // initdb with its fsyncs (no --no-sync).
    let t = Instant::now();
    pg.ok(
        "initdb",
        &[
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
        ],
    );
    eprintln!("[postgres] initdb in {}", elapsed(t));

    let t = Instant::now();
    pg.start();
    pg.sql("postgres", "CREATE DATABASE bench");
    pg.ok("pgbench", &["-i", "-s", "2", "-q", "bench"]);
    eprintln!("[postgres] start, pgbench -i -s 2 in {}", elapsed(t));

    let t = Instant::now();
    let out = pg.ok(
        "pgbench",
        &["-c", "4", "-j", "2", "-T", "15", "-n", "bench"],
    );
    let processed = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no transaction count in pgbench's output:\n{out}"));
    assert!(processed > 0, "pgbench processed no transaction:\n{out}");
    if let Some(failed) = out
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
    {
        assert!(
            failed.starts_with("number of failed transactions: 0 "),
            "pgbench: {failed}\n{out}"
        );
    }
    eprintln!(
        "[postgres] pgbench -c 4 -j 2 -T 15: {processed} transactions in {}",
        elapsed(t)
    );

    // Clean shutdown, then a start that must not need crash recovery.
    let t = Instant::now();
    pg.stop_fast();
    pg.start();
    let log = fs::read_to_string(pg.logs.last().unwrap()).unwrap_or_default();
    assert!(
        !log.contains("not properly shut down") && !log.contains("automatic recovery"),
        "PostgreSQL ran crash recovery after a clean shutdown:\n{}",
        pg.logs_text()
    );
    eprintln!("[postgres] clean stop and restart in {}", elapsed(t));

    // pgbench's invariant: every delta went to one account, teller, branch and history row.
    let sums = pg.sql(
        "bench",
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || \
                (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || \
                (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || \
                (SELECT coalesce(sum(delta), 0) FROM pgbench_history) || ' ' || \
                (SELECT count(*) FROM pgbench_history) || ' ' || \
                (SELECT count(*) FROM pgbench_accounts)",
    );
    let v: Vec<i64> = sums.split(' ').map(|s| s.parse().unwrap()).collect();
    assert!(
        v[0] == v[1] && v[1] == v[2] && v[2] == v[3],
        "pgbench balances disagree (accounts tellers branches history): {sums}"
    );
    assert_eq!(
        v[4] as u64, processed,
        "pgbench_history rows vs transactions"
    );
    assert_eq!(v[5], 200_000, "pgbench_accounts rows");

    let t = Instant::now();
    // pg_amcheck --all checks every database that accepts connections.
    for db in ["postgres", "template1", "bench"] {
        pg.sql(db, "CREATE EXTENSION amcheck");
    }
    let mut c = pg.cmd("pg_amcheck");
    c.args(["--all", "--heapallindexed", "--parent-check"]);
    let out = run_with(&mut c, Some(&m), &|| pg.logs_text());
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "pg_amcheck reported problems\n{}\n{}",
        describe_run(&c, out.status, &out, Some(&m)),
        pg.logs_text()
    );
    eprintln!("[postgres] pg_amcheck in {}", elapsed(t));

    pg.stop_fast();
    drop(pg);
    let mut m = m;
    m.unmount();
    eprintln!("[postgres] total {}", elapsed(t0));
}
