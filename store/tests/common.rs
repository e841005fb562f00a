#![allow(dead_code)]
use std::ffi::OsStr;
use tessera_store::*;

pub fn pool() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::open(dir.path()).unwrap();
    (dir, pool)
}

pub fn opts(capacity: u64, chunk: u32) -> VolumeOptions {
    VolumeOptions {
        capacity,
        chunk_size: chunk,
        compression: Compression::Lz4,
    }
}

pub fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

pub fn create(v: &Volume, parent: Ino, n: &str) -> Attr {
    v.mknod(parent, name(n), FileKind::File, 0o644, 0, 0, 0)
        .unwrap()
}

pub fn write_all(v: &Volume, ino: Ino, off: u64, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        done += v.write(ino, off + done as u64, &data[done..]).unwrap() as usize;
    }
}

pub fn read_all(v: &Volume, ino: Ino) -> Vec<u8> {
    let size = v.getattr(ino).unwrap().size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let part = v.read(ino, out.len() as u64, 4 << 20).unwrap();
        assert!(!part.is_empty(), "short read at {}", out.len());
        out.extend_from_slice(&part);
    }
    out
}

/// Deterministic incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
