//! Reference-model property test: random operation sequences against the
//! store and a trivial in-memory model must agree after every step (writes,
//! truncates, holes, directories, renames across them, hard links, xattrs,
//! copy_file_range, snapshots, syncs and pool reopens), and every snapshot at
//! the end.

mod common;
use common::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use tessera_store::*;

/// Names per directory, and directories (the root, then `d1` and `d2` in it):
/// a slot `n` is name `n % NAMES` in directory `n / NAMES`.
const NAMES: usize = 4;
const DIRS: usize = 3;
const CHUNK: u32 = 64 << 10;

#[derive(Debug, Clone)]
enum Op {
    Write {
        n: usize,
        off: u32,
        len: u32,
        seed: u8,
    },
    Truncate {
        n: usize,
        size: u32,
    },
    Punch {
        n: usize,
        off: u32,
        len: u32,
    },
    Rename {
        from: usize,
        to: usize,
    },
    Link {
        from: usize,
        to: usize,
    },
    Unlink {
        n: usize,
    },
    SetXattr {
        n: usize,
        key: u8,
        val: u8,
    },
    RemoveXattr {
        n: usize,
        key: u8,
    },
    Mkdir {
        d: usize,
    },
    Rmdir {
        d: usize,
    },
    CopyRange {
        from: usize,
        to: usize,
        src_off: u32,
        dst_off: u32,
        len: u32,
    },
    Snapshot,
    /// fsync of one file: small writes go to the journal.
    Fsync {
        n: usize,
    },
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES * DIRS;
    prop_oneof![
        1 => (1..DIRS).prop_map(|d| Op::Mkdir { d }),
        1 => (1..DIRS).prop_map(|d| Op::Rmdir { d }),
        6 => (n.clone(), 0u32..300_000, 1u32..140_000, any::<u8>()).prop_map(|(n, off, len, seed)| Op::Write { n, off, len, seed }),
        3 => (n.clone(), 0u32..300_000, 1u32..4096, any::<u8>()).prop_map(|(n, off, len, seed)| Op::Write { n, off, len, seed }),
        2 => n.clone().prop_map(|n| Op::Fsync { n }),
        2 => (n.clone(), 0u32..300_000).prop_map(|(n, size)| Op::Truncate { n, size }),
        2 => (n.clone(), 0u32..300_000, 1u32..200_000).prop_map(|(n, off, len)| Op::Punch { n, off, len }),
        2 => (n.clone(), n.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => (n.clone(), n.clone()).prop_map(|(from, to)| Op::Link { from, to }),
        1 => n.clone().prop_map(|n| Op::Unlink { n }),
        1 => (n.clone(), 0u8..3, any::<u8>()).prop_map(|(n, key, val)| Op::SetXattr { n, key, val }),
        1 => (n.clone(), 0u8..3).prop_map(|(n, key)| Op::RemoveXattr { n, key }),
        2 => (n.clone(), n.clone(), 0u32..300_000, 0u32..300_000, 1u32..200_000).prop_map(|(from, to, src_off, dst_off, len)| Op::CopyRange { from, to, src_off, dst_off, len }),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default, Clone)]
struct File {
    data: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

struct World {
    _dir: tempfile::TempDir,
    pool: Option<Pool>,
    vol: Option<Volume>,
    /// name index → model file id; model file id → store inode.
    names: HashMap<usize, usize>,
    files: HashMap<usize, File>,
    inos: HashMap<usize, Ino>,
    next_file: usize,
    /// Directories that exist (1 and 2; 0 is the root), with their inodes.
    dirs: BTreeMap<usize, Ino>,
    snapshots: Vec<Snapshot>,
}

/// A snapshot taken, with the directories, slots and contents it must hold.
struct Snapshot {
    name: String,
    dirs: Vec<usize>,
    contents: BTreeMap<usize, Vec<u8>>,
}

fn fname(n: usize) -> String {
    format!("n{}", n % NAMES)
}

fn dname(d: usize) -> String {
    format!("d{d}")
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::open(dir.path()).unwrap();
        pool.create_volume("m", opts(1 << 40, CHUNK)).unwrap();
        let vol = pool.open_volume("m").unwrap();
        World {
            _dir: dir,
            pool: Some(pool),
            vol: Some(vol),
            names: HashMap::new(),
            files: HashMap::new(),
            inos: HashMap::new(),
            next_file: 0,
            dirs: BTreeMap::new(),
            snapshots: Vec::new(),
        }
    }

    fn v(&self) -> &Volume {
        self.vol.as_ref().unwrap()
    }

    /// The directory of slot `n`, if it exists.
    fn parent(&self, n: usize) -> Option<Ino> {
        match n / NAMES {
            0 => Some(ROOT_INO),
            d => self.dirs.get(&d).copied(),
        }
    }

    /// The file behind slot `n`, created empty if missing; `None` if its
    /// directory does not exist.
    fn ensure(&mut self, n: usize) -> Option<(usize, Ino)> {
        if let Some(&f) = self.names.get(&n) {
            return Some((f, self.inos[&f]));
        }
        let parent = self.parent(n)?;
        let attr = create(self.v(), parent, &fname(n));
        let f = self.next_file;
        self.next_file += 1;
        self.names.insert(n, f);
        self.files.insert(f, File::default());
        self.inos.insert(f, attr.ino);
        Some((f, attr.ino))
    }

    fn drop_name(&mut self, n: usize) {
        if let Some(f) = self.names.remove(&n) {
            if !self.names.values().any(|&g| g == f) {
                self.files.remove(&f);
                self.inos.remove(&f);
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Write { n, off, len, seed } => {
                let Some((f, ino)) = self.ensure(n) else {
                    return;
                };
                let bytes = noise(seed as u64 + off as u64, len as usize);
                write_all(self.v(), ino, off as u64, &bytes);
                let d = &mut self.files.get_mut(&f).unwrap().data;
                let end = (off + len) as usize;
                if d.len() < end {
                    d.resize(end, 0);
                }
                d[off as usize..end].copy_from_slice(&bytes);
            }
            Op::Truncate { n, size } => {
                let Some((f, ino)) = self.ensure(n) else {
                    return;
                };
                self.v()
                    .setattr(
                        ino,
                        &SetAttr {
                            size: Some(size as u64),
                            ..Default::default()
                        },
                    )
                    .unwrap();
                self.files
                    .get_mut(&f)
                    .unwrap()
                    .data
                    .resize(size as usize, 0);
            }
            Op::Punch { n, off, len } => {
                let Some((f, ino)) = self.ensure(n) else {
                    return;
                };
                self.v().punch_hole(ino, off as u64, len as u64).unwrap();
                let d = &mut self.files.get_mut(&f).unwrap().data;
                let end = ((off + len) as usize).min(d.len());
                if (off as usize) < end {
                    d[off as usize..end].fill(0);
                }
            }
            Op::Rename { from, to } => {
                let (Some(pf), Some(pt)) = (self.parent(from), self.parent(to)) else {
                    return;
                };
                let r = self.v().rename(
                    pf,
                    name(&fname(from)),
                    pt,
                    name(&fname(to)),
                    RenameFlags::default(),
                );
                match self.names.get(&from).copied() {
                    None => assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}"),
                    Some(f) => {
                        r.unwrap();
                        if self.names.get(&to) != Some(&f) {
                            self.drop_name(to);
                            self.names.remove(&from);
                            self.names.insert(to, f);
                        }
                    }
                }
            }
            Op::Link { from, to } => {
                let Some(&f) = self.names.get(&from) else {
                    return;
                };
                let Some(pt) = self.parent(to) else {
                    return;
                };
                let r = self.v().link(self.inos[&f], pt, name(&fname(to)));
                if let std::collections::hash_map::Entry::Vacant(slot) = self.names.entry(to) {
                    r.unwrap();
                    slot.insert(f);
                } else {
                    assert!(matches!(r, Err(StoreError::Exists(_))), "{r:?}");
                }
            }
            Op::Unlink { n } => {
                let Some(p) = self.parent(n) else {
                    return;
                };
                let r = self.v().unlink(p, name(&fname(n)));
                if self.names.contains_key(&n) {
                    r.unwrap();
                    self.drop_name(n);
                } else {
                    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
                }
            }
            Op::SetXattr { n, key, val } => {
                let Some((f, ino)) = self.ensure(n) else {
                    return;
                };
                let k = format!("user.k{key}");
                self.v()
                    .setxattr(ino, name(&k), &[val; 3], XattrFlags::Any)
                    .unwrap();
                self.files
                    .get_mut(&f)
                    .unwrap()
                    .xattrs
                    .insert(k.into_bytes(), vec![val; 3]);
            }
            Op::RemoveXattr { n, key } => {
                let Some((f, ino)) = self.ensure(n) else {
                    return;
                };
                let k = format!("user.k{key}");
                let r = self.v().removexattr(ino, name(&k));
                match self.files.get_mut(&f).unwrap().xattrs.remove(k.as_bytes()) {
                    Some(_) => r.unwrap(),
                    None => assert!(matches!(r, Err(StoreError::NoXattr)), "{r:?}"),
                }
            }
            Op::Mkdir { d } => {
                let r = self.v().mkdir(ROOT_INO, name(&dname(d)), 0o755, 0, 0);
                match self.dirs.entry(d) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        assert!(matches!(r, Err(StoreError::Exists(_))), "{r:?}")
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(r.unwrap().ino);
                    }
                }
            }
            Op::Rmdir { d } => {
                let r = self.v().rmdir(ROOT_INO, name(&dname(d)));
                if !self.dirs.contains_key(&d) {
                    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
                } else if self.names.keys().any(|&n| n / NAMES == d) {
                    assert!(matches!(r, Err(StoreError::NotEmpty)), "{r:?}");
                } else {
                    r.unwrap();
                    self.dirs.remove(&d);
                }
            }
            Op::CopyRange {
                from,
                to,
                src_off,
                dst_off,
                len,
            } => {
                let (Some(&sf), Some(&df)) = (self.names.get(&from), self.names.get(&to)) else {
                    return;
                };
                let (src, dst) = (self.inos[&sf], self.inos[&df]);
                let (so, d_o) = (src_off as usize, dst_off as usize);
                let r = self
                    .v()
                    .copy_range(src, so as u64, dst, d_o as u64, len as u64);
                let source = self.files[&sf].data.clone();
                let n = (len as usize).min(source.len().saturating_sub(so));
                if sf == df && n > 0 && so < d_o + n && d_o < so + n {
                    // copy_file_range(2) refuses overlapping ranges of one file.
                    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
                    return;
                }
                let got = r.unwrap() as usize;
                assert_eq!(got, n, "copy_range length");
                if n > 0 {
                    let d = &mut self.files.get_mut(&df).unwrap().data;
                    if d.len() < d_o + n {
                        d.resize(d_o + n, 0);
                    }
                    d[d_o..d_o + n].copy_from_slice(&source[so..so + n]);
                }
            }
            Op::Snapshot => {
                let snap = format!("s{}", self.snapshots.len());
                self.pool
                    .as_ref()
                    .unwrap()
                    .create_snapshot("m", &snap)
                    .unwrap();
                let contents = self
                    .names
                    .iter()
                    .map(|(&n, f)| (n, self.files[f].data.clone()))
                    .collect();
                let dirs = self.dirs.keys().copied().collect();
                self.snapshots.push(Snapshot {
                    name: format!("m@{snap}"),
                    dirs,
                    contents,
                });
            }
            Op::Fsync { n } => {
                if let Some(&f) = self.names.get(&n) {
                    self.v().fsync(self.inos[&f]).unwrap();
                }
            }
            Op::Flush => self.v().sync().unwrap(),
            Op::Reopen => {
                self.vol = None;
                let dir = self.pool.as_ref().unwrap().dir().to_path_buf();
                self.pool = None;
                let pool = Pool::open(&dir).unwrap();
                self.vol = Some(pool.open_volume("m").unwrap());
                self.pool = Some(pool);
            }
        }
    }

    fn check(&self) {
        let v = self.v();
        let root = v.getattr(ROOT_INO).unwrap();
        assert_eq!(root.nlink, 2 + self.dirs.len() as u32, "nlink of the root");
        for d in 0..DIRS {
            let Some(p) = self.parent(d * NAMES) else {
                assert!(v.lookup(ROOT_INO, name(&dname(d))).is_err(), "d{d} is gone");
                continue;
            };
            let listed = v.readdir(p, 0, 1000).unwrap();
            let files = self.names.keys().filter(|&&n| n / NAMES == d).count();
            let subdirs = if d == 0 { self.dirs.len() } else { 0 };
            assert_eq!(listed.len(), files + subdirs, "entries of directory {d}");
            if d > 0 {
                let attr = v.lookup(ROOT_INO, name(&dname(d))).unwrap();
                assert_eq!((attr.ino, attr.nlink), (p, 2), "d{d}");
            }
        }
        for (&n, f) in &self.names {
            let attr = v.lookup(self.parent(n).unwrap(), name(&fname(n))).unwrap();
            assert_eq!(attr.ino, self.inos[f], "name n{n}");
            let file = &self.files[f];
            assert_eq!(attr.size, file.data.len() as u64, "size of n{n}");
            let links = self.names.values().filter(|&&g| g == *f).count() as u32;
            assert_eq!(attr.nlink, links, "nlink of n{n}");
            assert!(read_all(v, attr.ino) == file.data, "content of n{n}");
            let xs: Vec<Vec<u8>> = file.xattrs.keys().cloned().collect();
            assert_eq!(v.listxattr(attr.ino).unwrap(), xs);
        }
    }

    /// Every snapshot still holds what the volume held when it was taken.
    fn check_snapshots(&self) {
        let pool = self.pool.as_ref().unwrap();
        for Snapshot {
            name: snap,
            dirs,
            contents,
        } in &self.snapshots
        {
            let s = pool.open_volume(snap).unwrap();
            let in_root = contents.keys().filter(|&&n| n < NAMES).count();
            assert_eq!(
                s.readdir(ROOT_INO, 0, 1000).unwrap().len(),
                in_root + dirs.len(),
                "root of {snap}"
            );
            for (&n, data) in contents {
                let parent = match n / NAMES {
                    0 => ROOT_INO,
                    d => s.lookup(ROOT_INO, name(&dname(d))).unwrap().ino,
                };
                let attr = s.lookup(parent, name(&fname(n))).unwrap();
                assert!(read_all(&s, attr.ino) == *data, "slot {n} in {snap}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut w = World::new();
        for op in &ops {
            w.apply(op);
            w.check();
        }
        w.check_snapshots();
        w.v().sync().unwrap();
        let pool = w.pool.as_ref().unwrap();
        let report = pool.fsck(false).unwrap();
        prop_assert!(report.is_clean(), "fsck: {:?}", report.problems);
    }
}
