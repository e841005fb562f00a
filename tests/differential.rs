//! Differential test: one seeded random sequence of namespace and data operations is
//! applied to a Tessera mount and to a directory on the host file system. Every
//! operation must succeed or fail the same way (same errno) on both; at checkpoints,
//! after the run and again after a remount, both trees are walked and compared: names,
//! file types, content, permission bits, sizes, link counts, symlink targets and which
//! names share an inode.
//!
//! `TESSERA_DIFF_SEED` and `TESSERA_DIFF_OPS` override the seed and the length; a failure
//! prints the seed and the last operations.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const NAMES: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "long-name-0123456789",
    "x.y",
];
const MODES: &[u32] = &[
    0o644, 0o600, 0o755, 0o700, 0o4755, 0o2755, 0o1777, 0o640, 0o000, 0o2775,
];
const MAX_OFF: u64 = 3 * MIB;
const MAX_LEN: u64 = 256 * KIB;

/// The two roots every operation is applied to.
struct Pair {
    host: PathBuf,
    mnt: PathBuf,
}

/// The host tree's current content, by kind (paths relative to the root).
#[derive(Default)]
struct State {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    symlinks: Vec<PathBuf>,
    others: Vec<PathBuf>,
}

impl State {
    fn scan(root: &Path) -> State {
        let mut s = State {
            dirs: vec![PathBuf::new()],
            ..State::default()
        };
        fn walk(root: &Path, rel: &Path, s: &mut State) {
            let mut entries: Vec<_> = fs::read_dir(root.join(rel))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            entries.sort();
            for name in entries {
                let r = rel.join(&name);
                let ft = fs::symlink_metadata(root.join(&r)).unwrap().file_type();
                if ft.is_dir() {
                    s.dirs.push(r.clone());
                    walk(root, &r, s);
                } else if ft.is_file() {
                    s.files.push(r);
                } else if ft.is_symlink() {
                    s.symlinks.push(r);
                } else {
                    s.others.push(r);
                }
            }
        }
        walk(root, Path::new(""), &mut s);
        s
    }

    fn all(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.dirs[1..].to_vec();
        v.extend(self.files.iter().cloned());
        v.extend(self.symlinks.iter().cloned());
        v.extend(self.others.iter().cloned());
        v
    }
}

fn pick<'a, T>(rng: &mut Prng, v: &'a [T]) -> Option<&'a T> {
    if v.is_empty() {
        None
    } else {
        Some(&v[rng.below(v.len() as u64) as usize])
    }
}

/// Outcome of one operation: Ok with an optional value to compare, or the errno.
type Outcome = Result<String, i32>;

fn outcome<T: std::fmt::Debug>(r: io::Result<T>) -> Outcome {
    match r {
        Ok(v) => Ok(format!("{v:?}")),
        Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
    }
}

/// errnos POSIX lets differ between file systems for the same failure.
fn same_outcome(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (Err(x), Err(y)) => {
            x == y
                || (matches!(*x, libc::ENOTEMPTY | libc::EEXIST)
                    && matches!(*y, libc::ENOTEMPTY | libc::EEXIST))
        }
        _ => a == b,
    }
}

fn fallocate(p: &Path, mode: i32, off: u64, len: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(p)?;
    // SAFETY: valid fd.
    cvt(unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) }).map(drop)
}

fn copy_range(src: &Path, so: u64, dst: &Path, doff: u64, len: u64) -> io::Result<usize> {
    let s = File::open(src)?;
    let d = OpenOptions::new().write(true).open(dst)?;
    let (mut a, mut b) = (so as i64, doff as i64);
    let mut total = 0usize;
    while total < len as usize {
        // SAFETY: valid fds and offsets.
        let n = cvt(unsafe {
            libc::copy_file_range(
                s.as_raw_fd(),
                &mut a,
                d.as_raw_fd(),
                &mut b,
                len as usize - total,
                0,
            )
        })? as usize;
        if n == 0 {
            break;
        }
        total += n;
    }
    Ok(total)
}

/// Applies one random operation to both trees; returns its description.
fn step(pair: &Pair, rng: &mut Prng) -> (String, Outcome, Outcome) {
    let st = State::scan(&pair.host);
    let dir = pick(rng, &st.dirs).unwrap().clone();
    let new_name = dir.join(pick(rng, NAMES).unwrap());
    let any = st.all();
    let kind = rng.below(100);
    macro_rules! both {
        ($desc:expr, |$p:ident| $body:expr) => {{
            let run = |root: &Path| {
                let $p = |rel: &Path| root.join(rel);
                outcome($body)
            };
            ($desc, run(&pair.host), run(&pair.mnt))
        }};
    }
    match kind {
        0..=11 => {
            let excl = rng.chance(30);
            let trunc = rng.chance(30);
            both!(
                format!("create {} excl={excl} trunc={trunc}", new_name.display()),
                |p| {
                    OpenOptions::new()
                        .write(true)
                        .create(!excl)
                        .create_new(excl)
                        .truncate(trunc)
                        .open(p(&new_name))
                        .map(drop)
                }
            )
        }
        12..=31 => {
            let Some(f) = pick(rng, &st.files).cloned() else {
                return step(pair, rng);
            };
            let off = rng.below(MAX_OFF);
            let len = rng.range(1, MAX_LEN) as usize;
            let data = rng.bytes(len);
            both!(
                format!("write {} off={off} len={}", f.display(), data.len()),
                |p| {
                    OpenOptions::new()
                        .write(true)
                        .open(p(&f))
                        .and_then(|h| h.write_all_at(&data, off))
                }
            )
        }
        32..=35 => {
            let Some(f) = pick(rng, &st.files).cloned() else {
                return step(pair, rng);
            };
            let len = rng.range(1, 5000) as usize;
            let data = rng.bytes(len);
            both!(format!("append {} len={}", f.display(), data.len()), |p| {
                OpenOptions::new()
                    .append(true)
                    .open(p(&f))
                    .and_then(|mut h| h.write_all(&data))
            })
        }
        36..=42 => {
            let Some(f) = pick(rng, &st.files).cloned() else {
                return step(pair, rng);
            };
            let size = if rng.chance(20) {
                0
            } else {
                rng.below(MAX_OFF + MIB)
            };
            both!(format!("truncate {} {size}", f.display()), |p| {
                OpenOptions::new()
                    .write(true)
                    .open(p(&f))
                    .and_then(|h| h.set_len(size))
            })
        }
        43..=50 => both!(format!("mkdir {}", new_name.display()), |p| fs::create_dir(
            p(&new_name)
        )),
        51..=60 => {
            let Some(src) = pick(rng, &any).cloned() else {
                return step(pair, rng);
            };
            let flags = match rng.below(10) {
                0 => libc::RENAME_NOREPLACE,
                1 => libc::RENAME_EXCHANGE,
                _ => 0,
            };
            both!(
                format!(
                    "rename {} -> {} flags={flags}",
                    src.display(),
                    new_name.display()
                ),
                |p| renameat2(&p(&src), &p(&new_name), flags)
            )
        }
        61..=65 => {
            let Some(src) = pick(rng, &st.files).cloned() else {
                return step(pair, rng);
            };
            both!(
                format!("link {} -> {}", src.display(), new_name.display()),
                |p| fs::hard_link(p(&src), p(&new_name))
            )
        }
        66..=72 => {
            let Some(victim) = pick(rng, &any).cloned() else {
                return step(pair, rng);
            };
            both!(format!("unlink {}", victim.display()), |p| fs::remove_file(
                p(&victim)
            ))
        }
        73..=76 => {
            let Some(victim) = pick(rng, &st.dirs[1..]).cloned() else {
                return step(pair, rng);
            };
            both!(format!("rmdir {}", victim.display()), |p| fs::remove_dir(
                p(&victim)
            ))
        }
        77..=82 => {
            let Some(target) = pick(rng, &any).cloned() else {
                return step(pair, rng);
            };
            let mode = *pick(rng, MODES).unwrap();
            both!(format!("chmod {:o} {}", mode, target.display()), |p| {
                fs::set_permissions(p(&target), fs::Permissions::from_mode(mode))
            })
        }
        83..=87 => {
            // Targets are plain names so that resolution never leaves the tree.
            let target = pick(rng, NAMES).unwrap().to_string();
            both!(format!("symlink {} -> {target}", new_name.display()), |p| {
                symlink(&target, p(&new_name))
            })
        }
        88..=91 => {
            let Some(f) = pick(rng, &st.files).cloned() else {
                return step(pair, rng);
            };
            let off = rng.below(MAX_OFF);
            let len = rng.range(1, 2 * MIB);
            both!(format!("punch {} off={off} len={len}", f.display()), |p| {
                fallocate(
                    &p(&f),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    off,
                    len,
                )
            })
        }
        92..=93 => {
            let Some(f) = pick(rng, &st.files).cloned() else {
                return step(pair, rng);
            };
            let off = rng.below(MAX_OFF);
            let len = rng.range(1, MIB);
            let keep = rng.chance(50);
            let mode = if keep { libc::FALLOC_FL_KEEP_SIZE } else { 0 };
            both!(
                format!("fallocate {} off={off} len={len} keep={keep}", f.display()),
                |p| fallocate(&p(&f), mode, off, len)
            )
        }
        94..=96 => {
            let (Some(src), Some(dst)) =
                (pick(rng, &st.files).cloned(), pick(rng, &st.files).cloned())
            else {
                return step(pair, rng);
            };
            let (so, doff, len) = (rng.below(MAX_OFF), rng.below(MAX_OFF), rng.range(1, MIB));
            // Overlapping ranges within one file are EINVAL; keep them apart.
            if src == dst && so.max(doff) < so.min(doff) + len {
                return step(pair, rng);
            }
            both!(
                format!(
                    "copy_file_range {}@{so} -> {}@{doff} len={len}",
                    src.display(),
                    dst.display()
                ),
                |p| copy_range(&p(&src), so, &p(&dst), doff, len)
            )
        }
        _ => {
            // Read a file back on both sides (content is part of the outcome).
            let Some(f) = pick(rng, &st.files).cloned() else {
                return step(pair, rng);
            };
            both!(format!("read {}", f.display()), |p| fs::read(p(&f))
                .map(|d| (d.len(), fnv(&d))))
        }
    }
}

/// Everything compared about one entry.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    perm: u32,
    size: Option<u64>,
    nlink: u64,
    content: Option<u64>,
    target: Option<PathBuf>,
}

fn describe_tree(root: &Path) -> (BTreeMap<PathBuf, Entry>, Vec<Vec<PathBuf>>) {
    let mut out = BTreeMap::new();
    let mut by_ino: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    fn walk(
        root: &Path,
        rel: &Path,
        out: &mut BTreeMap<PathBuf, Entry>,
        by_ino: &mut BTreeMap<u64, Vec<PathBuf>>,
    ) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let name = e.unwrap().file_name();
            let r = rel.join(&name);
            let p = root.join(&r);
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_file() {
                "file"
            } else if ft.is_symlink() {
                "symlink"
            } else {
                "other"
            };
            let content = ft.is_file().then(|| fnv(&fs::read(&p).unwrap()));
            let target = ft.is_symlink().then(|| fs::read_link(&p).unwrap());
            out.insert(
                r.clone(),
                Entry {
                    kind,
                    perm: if ft.is_symlink() {
                        0
                    } else {
                        md.mode() & 0o7777
                    },
                    size: (!ft.is_dir()).then_some(md.len()),
                    nlink: md.nlink(),
                    content,
                    target,
                },
            );
            if !ft.is_dir() {
                by_ino.entry(md.ino()).or_default().push(r.clone());
            }
            if ft.is_dir() {
                walk(root, &r, out, by_ino);
            }
        }
    }
    walk(root, Path::new(""), &mut out, &mut by_ino);
    let mut groups: Vec<Vec<PathBuf>> = by_ino
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    groups.sort();
    (out, groups)
}

fn compare_trees(pair: &Pair, when: &str, ctx: &str) {
    let (h, hg) = describe_tree(&pair.host);
    let (t, tg) = describe_tree(&pair.mnt);
    let hk: Vec<_> = h.keys().collect();
    let tk: Vec<_> = t.keys().collect();
    assert!(
        hk == tk,
        "{when}: names differ\nonly on host: {:?}\nonly on mount: {:?}\n{ctx}",
        hk.iter()
            .filter(|k| !t.contains_key(**k))
            .collect::<Vec<_>>(),
        tk.iter()
            .filter(|k| !h.contains_key(**k))
            .collect::<Vec<_>>(),
    );
    for (path, he) in &h {
        let te = &t[path];
        assert_eq!(
            he,
            te,
            "{when}: {} differs (left: host, right: mount)\n{ctx}",
            path.display()
        );
    }
    assert_eq!(
        hg, tg,
        "{when}: hard-link groups differ (left: host, right: mount)\n{ctx}"
    );
}

#[test]
fn random_operations_match_the_host_file_system() {
    let seed: u64 = std::env::var("TESSERA_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7E55_E7A5);
    let ops: usize = std::env::var("TESSERA_DIFF_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    eprintln!("differential: seed {seed}, {ops} operations");

    let mut m = Mount::default_mount();
    let host_base = tempfile::Builder::new()
        .prefix("tessera-diff-host-")
        .tempdir()
        .unwrap();
    let host = host_base.path().join("root");
    fs::create_dir(&host).unwrap();
    let pair = Pair {
        host,
        mnt: m.dir().to_path_buf(),
    };

    let mut rng = Prng::new(seed);
    let mut log: Vec<String> = Vec::new();
    let ctx = |log: &[String]| {
        format!(
            "seed {seed} (TESSERA_DIFF_SEED={seed}); last operations:\n  {}",
            log[log.len().saturating_sub(25)..].join("\n  ")
        )
    };
    let (mut ok, mut failed) = (0, 0);
    for i in 0..ops {
        let (desc, h, t) = step(&pair, &mut rng);
        log.push(format!("#{i} {desc} => host {h:?}, mount {t:?}"));
        assert!(
            same_outcome(&h, &t),
            "operation #{i} `{desc}` differs: host {} / mount {}\n{}",
            show(&h),
            show(&t),
            ctx(&log)
        );
        if h.is_ok() {
            ok += 1;
        } else {
            failed += 1;
        }
        if i % 100 == 99 {
            compare_trees(&pair, &format!("after operation #{i}"), &ctx(&log));
        }
    }
    eprintln!("differential: {ok} operations succeeded, {failed} failed identically");
    assert!(
        ok > ops / 2,
        "too few operations succeeded ({ok}/{ops}): the generator is broken"
    );
    compare_trees(&pair, "at the end", &ctx(&log));

    // Everything must also survive a remount.
    m.remount();
    compare_trees(&pair, "after remount", &ctx(&log));

    // The comparison itself must be able to fail: diverge on purpose, on the host only.
    let st = State::scan(&pair.host);
    let changed = st.files.first().cloned();
    match &changed {
        Some(f) => {
            let h = OpenOptions::new()
                .append(true)
                .open(pair.host.join(f))
                .unwrap();
            h.write_all_at(b"!", 0).unwrap();
            (&h).write_all(b"divergence").unwrap();
        }
        None => fs::write(pair.host.join("divergence-probe"), b"host only").unwrap(),
    }
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compare_trees(&pair, "self-check", "(deliberate divergence)")
    }));
    assert!(
        caught.is_err(),
        "compare_trees did not notice a deliberate difference in {changed:?}"
    );
}

fn show(o: &Outcome) -> String {
    match o {
        Ok(v) => format!("Ok({v})"),
        Err(e) => format!("{} ({e})", errno_name(*e)),
    }
}
