//! Many threads on many files at once, each checked against its own model,
//! while GC and snapshots run: the per-file locking, the write-back workers
//! and back-pressure under load. Then a reopen, the models again, and fsck.

mod common;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tessera_store::*;

const THREADS: usize = 6;
const FILES: usize = 3;
const STEPS: usize = 250;
const CHUNK: u32 = 64 << 10;
const SPAN: u64 = 2 << 20;

type Model = BTreeMap<String, Vec<u8>>;

fn put(model: &mut Vec<u8>, off: usize, data: &[u8]) {
    if model.len() < off + data.len() {
        model.resize(off + data.len(), 0);
    }
    model[off..off + data.len()].copy_from_slice(data);
}

fn lookup(v: &Volume, dir: Ino, n: &str) -> Ino {
    v.lookup(dir, name(n)).unwrap().ino
}

/// One thread's life: files of its own in a directory of its own.
fn worker(v: Volume, t: usize) -> (Ino, Model) {
    let mut rng = StdRng::seed_from_u64(0x7e55e7a + t as u64);
    let dir = v
        .mkdir(ROOT_INO, name(&format!("t{t}")), 0o755, 0, 0)
        .unwrap()
        .ino;
    let mut model = Model::new();
    for f in 0..FILES {
        create(&v, dir, &format!("f{f}"));
        model.insert(format!("f{f}"), Vec::new());
    }
    for step in 0..STEPS {
        let names: Vec<String> = model.keys().cloned().collect();
        let fname = names[rng.random_range(0..names.len())].clone();
        let ino = lookup(&v, dir, &fname);
        let seed = (t * 100_000 + step) as u64;
        match rng.random_range(0..100) {
            0..30 => {
                let off = rng.random_range(0..SPAN);
                let len = if rng.random_bool(0.5) {
                    rng.random_range(1..8192)
                } else {
                    rng.random_range(64 << 10..512 << 10)
                };
                let data = noise(seed, len);
                write_all(&v, ino, off, &data);
                put(model.get_mut(&fname).unwrap(), off as usize, &data);
            }
            30..45 => {
                // A sequential stream in 128 KiB requests: full chunks go to the workers.
                let m = model.get_mut(&fname).unwrap();
                let mut off = m.len() as u64;
                for i in 0..rng.random_range(2..10) {
                    let data = noise(seed * 31 + i, 128 << 10);
                    write_all(&v, ino, off, &data);
                    put(m, off as usize, &data);
                    off += data.len() as u64;
                }
            }
            45..55 => {
                let size = rng.random_range(0..SPAN + SPAN / 4);
                v.setattr(
                    ino,
                    &SetAttr {
                        size: Some(size),
                        ..Default::default()
                    },
                )
                .unwrap();
                model.get_mut(&fname).unwrap().resize(size as usize, 0);
            }
            55..60 => {
                let m = model.get_mut(&fname).unwrap();
                let off = rng.random_range(0..SPAN);
                let len = rng.random_range(1..SPAN / 2);
                v.punch_hole(ino, off, len).unwrap();
                let end = ((off + len) as usize).min(m.len());
                if (off as usize) < end {
                    m[off as usize..end].fill(0);
                }
            }
            60..75 => {
                let m = &model[&fname];
                let off = rng.random_range(0..SPAN + SPAN / 4);
                let len = rng.random_range(1..(1 << 20));
                let got = v.read(ino, off, len).unwrap();
                let from = (off as usize).min(m.len());
                let to = ((off + len as u64) as usize).min(m.len());
                assert!(
                    got == m[from..to],
                    "thread {t} step {step}: read of {fname} differs"
                );
            }
            75..80 => {
                if rng.random_bool(0.5) {
                    v.fsync(ino).unwrap()
                } else {
                    v.flush(ino).unwrap()
                }
            }
            80..85 => {
                let to = names[rng.random_range(0..names.len())].clone();
                if to != fname {
                    v.rename(dir, name(&fname), dir, name(&to), RenameFlags::default())
                        .unwrap();
                    let data = model.remove(&fname).unwrap();
                    model.insert(to, data);
                }
            }
            85..90 => {
                v.unlink(dir, name(&fname)).unwrap();
                create(&v, dir, &fname);
                model.insert(fname.clone(), Vec::new());
            }
            90..95 => {
                let src = names[rng.random_range(0..names.len())].clone();
                if src != fname {
                    let sino = lookup(&v, dir, &src);
                    let so = rng.random_range(0..4u64) * CHUNK as u64;
                    let d_o = rng.random_range(0..4u64) * CHUNK as u64;
                    let len = rng.random_range(1..4u64) * CHUNK as u64;
                    let n = v.copy_range(sino, so, ino, d_o, len).unwrap() as usize;
                    let s = model[&src].clone();
                    let expect = len.min((s.len() as u64).saturating_sub(so)) as usize;
                    assert_eq!(n, expect, "thread {t} step {step}: copy_range length");
                    if n > 0 {
                        put(
                            model.get_mut(&fname).unwrap(),
                            d_o as usize,
                            &s[so as usize..so as usize + n],
                        );
                    }
                }
            }
            _ => {
                let size = v.getattr(ino).unwrap().size;
                assert_eq!(size, model[&fname].len() as u64, "thread {t} step {step}");
            }
        }
    }
    (dir, model)
}

fn check(v: &Volume, dirs: &[(Ino, Model)]) {
    for (t, (dir, model)) in dirs.iter().enumerate() {
        let listed: Vec<String> = v
            .readdir(*dir, 0, 100)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect();
        assert_eq!(listed.len(), model.len(), "thread {t}: {listed:?}");
        for (fname, data) in model {
            let ino = lookup(v, *dir, fname);
            assert!(read_all(v, ino) == *data, "thread {t}: {fname} differs");
        }
    }
}

#[test]
fn many_threads_on_many_files_agree_with_their_models() {
    let (dir, pool) = pool();
    // A small budget, so writers wait on back-pressure over and over.
    pool.set_dirty_budget(4 << 20);
    pool.create_volume("v", opts(1 << 40, CHUNK)).unwrap();
    let v = pool.open_volume("v").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (pool, stop) = (pool.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut snapshots = 0;
            while !stop.load(Ordering::Relaxed) {
                pool.gc().unwrap();
                if snapshots < 4 {
                    pool.create_snapshot("v", &format!("s{snapshots}")).unwrap();
                    snapshots += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            snapshots
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let v = v.clone();
            std::thread::spawn(move || worker(v, t))
        })
        .collect();
    let dirs: Vec<(Ino, Model)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    assert!(background.join().unwrap() > 0);
    check(&v, &dirs);
    pool.gc().unwrap();
    check(&v, &dirs);
    drop(v);
    drop(pool);

    let pool = Pool::open(dir.path()).unwrap();
    let v = pool.open_volume("v").unwrap();
    check(&v, &dirs);
    drop(v);
    let report = pool.fsck(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
}
