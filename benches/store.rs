//! Store micro-benchmarks through the public API (no FUSE):
//! sequential write/read of 256 MiB, 4 KiB random overwrites, and create and
//! lookup of 100,000 entries. Run: `cargo bench --bench store`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::ffi::OsString;
use std::time::{Duration, Instant};
use tessera_store::*;

const MIB: usize = 1 << 20;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn fresh(name: &str) -> (tempfile::TempDir, Pool, Volume) {
    let dir = tempfile::tempdir_in(
        std::env::var("TESSERA_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()),
    )
    .unwrap();
    let pool = Pool::open(dir.path()).unwrap();
    pool.create_volume(
        name,
        VolumeOptions {
            capacity: 1 << 40,
            ..Default::default()
        },
    )
    .unwrap();
    let vol = pool.open_volume(name).unwrap();
    (dir, pool, vol)
}

fn file(v: &Volume, n: &str) -> Ino {
    v.mknod(ROOT_INO, &OsString::from(n), FileKind::File, 0o644, 0, 0, 0)
        .unwrap()
        .ino
}

fn sequential(c: &mut Criterion) {
    let total = 256 * MIB;
    let block = noise(1, MIB);
    let mut g = c.benchmark_group("sequential");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(total as u64));
    g.bench_function("write_256MiB", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for i in 0..iters {
                let (_d, _p, v) = fresh("w");
                let f = file(&v, "f");
                let start = Instant::now();
                for k in 0..total / MIB {
                    let mut blk = block.clone();
                    blk[0] = k as u8;
                    blk[1] = i as u8;
                    v.write(f, (k * MIB) as u64, &blk).unwrap();
                }
                v.sync().unwrap();
                spent += start.elapsed();
            }
            spent
        })
    });
    let (_d, _p, v) = fresh("r");
    let f = file(&v, "f");
    for k in 0..total / MIB {
        let mut blk = block.clone();
        blk[0] = k as u8;
        v.write(f, (k * MIB) as u64, &blk).unwrap();
    }
    v.sync().unwrap();
    g.bench_function("read_256MiB", |b| {
        b.iter(|| {
            for k in 0..total / MIB {
                let d = v.read(f, (k * MIB) as u64, MIB as u32).unwrap();
                assert_eq!(d.len(), MIB);
            }
        })
    });
    g.finish();
}

fn random_overwrite(c: &mut Criterion) {
    let (_d, _p, v) = fresh("rand");
    let f = file(&v, "f");
    let size = 64 * MIB;
    for k in 0..size / MIB {
        v.write(f, (k * MIB) as u64, &noise(k as u64, MIB)).unwrap();
    }
    v.sync().unwrap();
    let blocks = 4096;
    let mut g = c.benchmark_group("random_overwrite_4k");
    g.sample_size(10)
        .throughput(Throughput::Bytes((blocks * 4096) as u64));
    let data = noise(9, 4096);
    let mut x = 88172645463325252u64;
    g.bench_function("4096_writes_then_flush", |b| {
        b.iter(|| {
            for _ in 0..blocks {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = (x % (size as u64 / 4096)) * 4096;
                v.write(f, off, &data).unwrap();
            }
            v.flush(f).unwrap();
        })
    });
    g.finish();
}

fn metadata(c: &mut Criterion) {
    let n = 100_000;
    let mut g = c.benchmark_group("metadata");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(n));
    let names: Vec<OsString> = (0..n)
        .map(|i| OsString::from(format!("entry-{i:06}")))
        .collect();
    g.bench_function("create_100k", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let (_d, _p, v) = fresh("m");
                let start = Instant::now();
                for name in &names {
                    v.mknod(ROOT_INO, name, FileKind::File, 0o644, 0, 0, 0)
                        .unwrap();
                }
                spent += start.elapsed();
            }
            spent
        })
    });
    let (_d, _p, v) = fresh("l");
    for name in &names {
        v.mknod(ROOT_INO, name, FileKind::File, 0o644, 0, 0, 0)
            .unwrap();
    }
    g.bench_function("lookup_100k", |b| {
        b.iter(|| {
            for name in &names {
                v.lookup(ROOT_INO, name).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, sequential, random_overwrite, metadata);
criterion_main!(benches);
