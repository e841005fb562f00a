//! Data integrity under load through a real mount: a file over 1 GiB verified by hash
//! after a remount, concurrent writers (different files and disjoint regions of one
//! file), rename storms across directories, and hard-link bookkeeping.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// Block `i` of the big file: deterministic pseudo-random data.
fn big_block(i: u64, buf: &mut [u8]) {
    Prng::new(0xB16_F11E ^ (i << 20)).fill(buf);
}

#[test]
fn file_over_one_gib_verified_by_hash() {
    const BLOCK: usize = MIB as usize;
    const BLOCKS: u64 = 1126; // 1.1 GiB
    let mut m = Mount::new(
        MountOpts::default()
            .size("3GiB")
            .watchdog(Duration::from_secs(900)),
    );
    let p = m.path("big");
    let mut block = vec![0u8; BLOCK];
    let mut written = Fnv::default();
    let mut block_hashes = Vec::with_capacity(BLOCKS as usize);
    {
        let mut f = File::create(&p).unwrap();
        for i in 0..BLOCKS {
            big_block(i, &mut block);
            written.update(&block);
            block_hashes.push(fnv(&block));
            f.write_all(&block)
                .unwrap_or_else(|e| panic!("writing block {i}: {e}"));
        }
        f.sync_all().unwrap();
    }
    assert_eq!(fs::metadata(&p).unwrap().len(), BLOCKS * MIB);

    // Read back through a fresh mount so the data comes from the store, not the page cache.
    m.remount();
    let p = m.path("big");
    assert_eq!(fs::metadata(&p).unwrap().len(), BLOCKS * MIB);
    let mut f = File::open(&p).unwrap();
    let mut read = Fnv::default();
    let mut bad = Vec::new();
    for i in 0..BLOCKS {
        f.read_exact(&mut block)
            .unwrap_or_else(|e| panic!("reading block {i}: {e}"));
        read.update(&block);
        if fnv(&block) != block_hashes[i as usize] {
            bad.push(i);
        }
    }
    let mut extra = [0u8; 1];
    assert_eq!(f.read(&mut extra).unwrap(), 0, "data past the end");
    assert!(
        bad.is_empty(),
        "{} corrupt 1 MiB blocks, first ones: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    assert_eq!(read, written, "running hash of 1.1 GiB differs");
}

#[test]
fn concurrent_writers_to_different_files() {
    let m = Mount::default_mount();
    let dir = m.path("par");
    fs::create_dir(&dir).unwrap();
    const THREADS: u64 = 4;
    const SIZE: usize = 6 * MIB as usize;
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = dir.join(format!("file{t}"));
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut rng = Prng::new(1000 + t);
                let mut model = vec![0u8; SIZE];
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                barrier.wait();
                // Sequential fill in odd-sized pieces, then random overwrites.
                let mut off = 0;
                while off < SIZE {
                    let len = (rng.range(1, 300_000) as usize).min(SIZE - off);
                    let data = rng.bytes(len);
                    f.write_at(&data, off as u64).unwrap();
                    model[off..off + len].copy_from_slice(&data);
                    off += len;
                }
                for i in 0..200 {
                    let off = rng.below(SIZE as u64 - 70_000) as usize;
                    let len = rng.range(1, 70_000) as usize;
                    let data = rng.bytes(len);
                    f.write_at(&data, off as u64).unwrap();
                    model[off..off + len].copy_from_slice(&data);
                    if i % 50 == 0 {
                        f.sync_data().unwrap();
                    }
                }
                f.sync_all().unwrap();
                (path, model)
            })
        })
        .collect();
    for h in handles {
        let (path, model) = h.join().expect("writer thread panicked");
        assert_content(&path, &model);
    }
}

#[test]
fn concurrent_writers_to_disjoint_regions_of_one_file() {
    let m = Mount::default_mount();
    let path = m.path("shared");
    const THREADS: u64 = 4;
    const REGION: u64 = 2 * MIB + 4096 + 3; // deliberately not chunk-aligned
    let f = Arc::new(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let f = f.clone();
            let barrier = barrier.clone();
            let path = path.clone();
            thread::spawn(move || {
                let base = t * REGION;
                let mut rng = Prng::new(2000 + t);
                let mut model = vec![0u8; REGION as usize];
                // Each thread also uses its own descriptor for half of its writes.
                let own = OpenOptions::new().write(true).open(&path).unwrap();
                barrier.wait();
                for i in 0..300 {
                    let off = rng.below(REGION - 1);
                    let len = rng.range(1, 40_000).min(REGION - off);
                    let data = rng.bytes(len as usize);
                    let target: &File = if i % 2 == 0 { &f } else { &own };
                    target.write_at(&data, base + off).unwrap();
                    model[off as usize..(off + len) as usize].copy_from_slice(&data);
                }
                own.sync_all().unwrap();
                model
            })
        })
        .collect();
    let models: Vec<Vec<u8>> = handles
        .into_iter()
        .map(|h| h.join().expect("writer panicked"))
        .collect();
    f.sync_all().unwrap();
    let mut want = Vec::new();
    for model in &models {
        want.extend_from_slice(model);
    }
    // The file ends at the furthest byte written (the last region's tail may be unwritten).
    let len = fs::metadata(&path).unwrap().len() as usize;
    assert!(
        len <= want.len() && len > want.len() - REGION as usize,
        "size {len}"
    );
    let mut got = Vec::new();
    File::open(&path).unwrap().read_to_end(&mut got).unwrap();
    assert_same_bytes(&got, &want[..len], "one file, four writers");
}

/// Files named `f<id>_<anything>` whose content names their id.
fn content_of(id: usize) -> Vec<u8> {
    let mut v = format!("file {id}\n").into_bytes();
    v.extend(pattern(id as u64, 1000 + id * 37 % 5000));
    v
}

#[test]
fn rename_storm_keeps_every_file_exactly_once() {
    let m = Mount::default_mount();
    const DIRS: usize = 5;
    const FILES: usize = 300;
    const THREADS: usize = 4;
    const ROUNDS: usize = 400;
    let dirs: Vec<PathBuf> = (0..DIRS).map(|d| m.path(format!("d{d}"))).collect();
    for d in &dirs {
        fs::create_dir(d).unwrap();
    }
    for id in 0..FILES {
        write_file(
            &dirs[id % DIRS].join(format!("f{id}_init")),
            &content_of(id),
        );
    }
    // Also a few directories that get moved around (with a file inside).
    for k in 0..10 {
        let sub = dirs[k % DIRS].join(format!("sub{k}_init"));
        fs::create_dir(&sub).unwrap();
        write_file(&sub.join("inner"), format!("inner {k}").as_bytes());
    }

    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let dirs = dirs.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut rng = Prng::new(3000 + t as u64);
                let (mut moved, mut lost_races) = (0, 0);
                barrier.wait();
                for n in 0..ROUNDS {
                    let from = &dirs[rng.below(DIRS as u64) as usize];
                    let entries: Vec<String> = match fs::read_dir(from) {
                        Ok(rd) => rd
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect(),
                        Err(e) => panic!("read_dir {}: {e}", from.display()),
                    };
                    if entries.is_empty() {
                        continue;
                    }
                    let name = &entries[rng.below(entries.len() as u64) as usize];
                    let prefix = name.split('_').next().unwrap();
                    let to = &dirs[rng.below(DIRS as u64) as usize];
                    // Destination names are unique per thread and round: no overwrites.
                    let new_name = format!("{prefix}_t{t}n{n}");
                    match fs::rename(from.join(name), to.join(&new_name)) {
                        Ok(()) => moved += 1,
                        // Another thread moved it first.
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => lost_races += 1,
                        Err(e) => panic!("rename {name} -> {new_name}: {e}"),
                    }
                }
                (moved, lost_races)
            })
        })
        .collect();
    let mut total_moved = 0;
    for h in handles {
        let (moved, _lost) = h.join().expect("renamer panicked");
        total_moved += moved;
    }
    assert!(total_moved > ROUNDS, "only {total_moved} renames succeeded");

    // Every file exists exactly once, with its content; every moved directory too.
    let mut seen: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    let mut subs: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    for d in &dirs {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let prefix = name.split('_').next().unwrap();
            if let Some(id) = prefix.strip_prefix("sub") {
                subs.entry(id.parse().unwrap()).or_default().push(e.path());
            } else {
                let id: usize = prefix.strip_prefix('f').unwrap().parse().unwrap();
                seen.entry(id).or_default().push(e.path());
            }
        }
    }
    for id in 0..FILES {
        let paths = seen.get(&id).cloned().unwrap_or_default();
        assert_eq!(
            paths.len(),
            1,
            "file {id} found {} times: {paths:?}",
            paths.len()
        );
        assert_content(&paths[0], &content_of(id));
        assert_eq!(fs::metadata(&paths[0]).unwrap().nlink(), 1);
    }
    assert_eq!(
        seen.len(),
        FILES,
        "unexpected entries: {:?}",
        seen.keys().filter(|k| **k >= FILES).collect::<Vec<_>>()
    );
    for k in 0..10 {
        let paths = subs.get(&k).cloned().unwrap_or_default();
        assert_eq!(paths.len(), 1, "dir sub{k} found {} times", paths.len());
        assert_content(&paths[0].join("inner"), format!("inner {k}").as_bytes());
        assert_eq!(
            fs::metadata(paths[0].join("..")).unwrap().ino(),
            fs::metadata(paths[0].parent().unwrap()).unwrap().ino()
        );
    }
    // Directory link counts match their subdirectories.
    for d in &dirs {
        let subdirs = fs::read_dir(d)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
            .count();
        assert_eq!(
            fs::metadata(d).unwrap().nlink(),
            2 + subdirs as u64,
            "nlink of {}",
            d.display()
        );
    }
}

#[test]
fn hard_link_counts_across_directories() {
    let m = Mount::default_mount();
    let data = pattern(55, (2 * MIB + 99) as usize);
    let first = m.path("origin");
    write_file(&first, &data);
    let mut links: Vec<PathBuf> = vec![first.clone()];
    for d in 0..4 {
        let dir = m.path(format!("dir{d}"));
        fs::create_dir(&dir).unwrap();
        for k in 0..5 {
            let l = dir.join(format!("link{k}"));
            fs::hard_link(&first, &l).unwrap();
            links.push(l);
        }
    }
    let ino = fs::metadata(&first).unwrap().ino();
    for l in &links {
        let md = fs::metadata(l).unwrap();
        assert_eq!(md.ino(), ino);
        assert_eq!(md.nlink(), links.len() as u64);
    }
    // Write through one link, read through all.
    let mut model = data.clone();
    let f = OpenOptions::new().write(true).open(&links[7]).unwrap();
    f.write_at(b"modified via link 7", MIB - 5).unwrap();
    model[(MIB - 5) as usize..(MIB - 5) as usize + 19].copy_from_slice(b"modified via link 7");
    f.sync_all().unwrap();
    drop(f);
    for l in links.iter().step_by(5) {
        assert_content(l, &model);
    }
    // Remove the links one by one; the data survives until the last one.
    let st0 = statfs(m.dir()).unwrap();
    while links.len() > 1 {
        let l = links.remove(0);
        fs::remove_file(&l).unwrap();
        assert_eq!(fs::metadata(&links[0]).unwrap().nlink(), links.len() as u64);
    }
    assert_content(&links[0], &model);
    let st1 = statfs(m.dir()).unwrap();
    assert_eq!(
        st0.f_bfree, st1.f_bfree,
        "removing extra links must not free data"
    );
    // Removing a directory of links works once it is empty.
    let last = links.pop().unwrap();
    fs::remove_file(&last).unwrap();
    for d in 0..4 {
        fs::remove_dir(m.path(format!("dir{d}"))).unwrap();
    }
    assert_eq!(names(m.dir()), Vec::<String>::new());
    let st2 = statfs(m.dir()).unwrap();
    assert!(
        st2.f_bfree > st1.f_bfree,
        "removing the last link must free the data"
    );
}

#[test]
fn many_small_files_in_parallel() {
    let m = Mount::default_mount();
    let root = m.path("small");
    fs::create_dir(&root).unwrap();
    const THREADS: usize = 4;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let root = root.clone();
            thread::spawn(move || {
                let dir = root.join(format!("t{t}"));
                fs::create_dir(&dir).unwrap();
                for i in 0..250 {
                    let p = dir.join(format!("f{i}"));
                    let mut f = File::create(&p).unwrap();
                    f.write_all(&pattern((t * 1000 + i) as u64, i * 13 % 9000))
                        .unwrap();
                    if i % 3 == 0 {
                        fs::remove_file(&p).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("creator panicked");
    }
    for t in 0..THREADS {
        let dir = root.join(format!("t{t}"));
        let got = names(&dir);
        let mut want: Vec<String> = (0..250)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("f{i}"))
            .collect();
        want.sort();
        assert_eq!(got, want);
        for i in (0..250).filter(|i| i % 3 != 0).step_by(11) {
            assert_content(
                &dir.join(format!("f{i}")),
                &pattern((t * 1000 + i) as u64, i * 13 % 9000),
            );
        }
    }
    assert_eq!(check_tree_files(&root), THREADS * 166);
}

fn check_tree_files(root: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += check_tree_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

/// Apparent size of everything under `dir` (the pool's files on the host).
fn tree_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap().flatten() {
        let md = match e.metadata() {
            Ok(md) => md,
            Err(_) => continue, // removed meanwhile (RocksDB compaction)
        };
        n += if md.is_dir() {
            tree_bytes(&e.path())
        } else {
            md.len()
        };
    }
    n
}

#[test]
fn random_overwrites_do_not_amplify_the_pool() {
    // Small overwrites of existing data must be buffered per chunk, not persisted as a
    // whole new 1 MiB chunk per 4 KiB write. Two rounds of 1024 random 4 KiB overwrites
    // of a 16 MiB file, each round fsync'ed once, touch at most 2 x 16 chunks; allow
    // generous slack for RocksDB (WAL, unreferenced old chunks until `tessera gc`).
    let m = Mount::default_mount();
    let p = m.path("f");
    let size = 16 * MIB;
    write_file(&p, &pattern(300, size as usize));
    let mut model = fs::read(&p).unwrap();
    let start = tree_bytes(m.data_dir());
    let mut rng = Prng::new(301);
    for round in 0..2 {
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        for _ in 0..1024 {
            let off = rng.below(size / 4096) * 4096;
            let data = rng.bytes(4096);
            f.write_at(&data, off).unwrap();
            model[off as usize..off as usize + 4096].copy_from_slice(&data);
        }
        f.sync_all().unwrap();
        drop(f);
        let grown = tree_bytes(m.data_dir()).saturating_sub(start);
        assert!(
            grown <= 256 * MIB,
            "round {round}: 1024 x 4 KiB overwrites grew the pool by {} MiB \
             (about 1 MiB per 4 KiB write: every write persists a whole chunk)",
            grown / MIB
        );
    }
    assert_content(&p, &model);
}
