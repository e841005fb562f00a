//! Column families and key encoding. Every integer in a key is big-endian and
//! fixed-width, so a scan of a prefix comes out in numeric order.

/// The column families of a pool. Their names are the on-disk contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cf {
    /// Pool records: format version, volume id counter, volume name index.
    Meta,
    /// volume id → volume record.
    Volumes,
    /// volume | ino → inode record.
    Inodes,
    /// volume | parent | name → entry (ino, kind, cookie).
    Dentries,
    /// volume | parent | cookie → entry (name, ino, kind): stable readdir order.
    DirCookies,
    /// volume | ino | name → value.
    Xattrs,
    /// volume | ino | chunk index → chunk reference (hash, length).
    ChunkMap,
    /// BLAKE3 hash → where the chunk's bytes are (segment record or inline).
    ChunkIndex,
    /// BLAKE3 hash → reference count (i64, add merge operator).
    Refs,
    /// volume | ino → () for unlinked inodes still open.
    Orphans,
    /// volume | ino | chunk index | sequence → (offset in the chunk, bytes): small
    /// writes made durable by an fsync without rewriting their chunk. Replayed
    /// onto the chunk when the volume opens; deleted when the chunk commits.
    Journal,
}

impl Cf {
    pub const ALL: [Cf; 11] = [
        Cf::Meta,
        Cf::Volumes,
        Cf::Inodes,
        Cf::Dentries,
        Cf::DirCookies,
        Cf::Xattrs,
        Cf::ChunkMap,
        Cf::ChunkIndex,
        Cf::Refs,
        Cf::Orphans,
        Cf::Journal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Volumes => "volumes",
            Cf::Inodes => "inodes",
            Cf::Dentries => "dentries",
            Cf::DirCookies => "dir_cookies",
            Cf::Xattrs => "xattrs",
            Cf::ChunkMap => "chunk_map",
            Cf::ChunkIndex => "chunk_index",
            Cf::Refs => "refs",
            Cf::Orphans => "orphans",
            Cf::Journal => "journal",
        }
    }

    /// Length of the fixed prefix used for this family's prefix extractor.
    pub fn prefix_len(self) -> Option<usize> {
        match self {
            Cf::Inodes | Cf::Orphans => Some(8),
            Cf::Dentries | Cf::DirCookies | Cf::Xattrs | Cf::ChunkMap => Some(16),
            _ => None,
        }
    }

    /// Families whose keys start with a volume id.
    pub const PER_VOLUME: [Cf; 7] = [
        Cf::Inodes,
        Cf::Dentries,
        Cf::DirCookies,
        Cf::Xattrs,
        Cf::ChunkMap,
        Cf::Orphans,
        Cf::Journal,
    ];
}

pub const FORMAT_KEY: &[u8] = b"format";
pub const NEXT_VOLUME_KEY: &[u8] = b"next_volume";
const NAME_PREFIX: &[u8] = b"name/";

pub type Hash = [u8; 32];

pub fn volume_name(name: &str) -> Vec<u8> {
    [NAME_PREFIX, name.as_bytes()].concat()
}

pub fn u64_key(a: u64) -> Vec<u8> {
    a.to_be_bytes().to_vec()
}

pub fn pair(a: u64, b: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&a.to_be_bytes());
    k.extend_from_slice(&b.to_be_bytes());
    k
}

pub fn triple(a: u64, b: u64, c: u64) -> Vec<u8> {
    let mut k = pair(a, b);
    k.extend_from_slice(&c.to_be_bytes());
    k
}

pub fn quad(a: u64, b: u64, c: u64, d: u64) -> Vec<u8> {
    let mut k = triple(a, b, c);
    k.extend_from_slice(&d.to_be_bytes());
    k
}

pub fn pair_name(a: u64, b: u64, name: &[u8]) -> Vec<u8> {
    let mut k = pair(a, b);
    k.extend_from_slice(name);
    k
}

pub fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

/// The smallest key greater than every key starting with `prefix`
/// (prefixes here are never all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last == 0xff {
            end.pop();
        } else {
            *last += 1;
            return end;
        }
    }
    vec![0xff; 9]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically() {
        let mut keys: Vec<Vec<u8>> = [3u64, 256, 1, 65536, 2]
            .iter()
            .map(|&i| triple(7, 9, i))
            .collect();
        keys.sort();
        let back: Vec<u64> = keys.iter().map(|k| read_u64(k, 16)).collect();
        assert_eq!(back, vec![1, 2, 3, 256, 65536]);
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        let p = pair(1, 0xff);
        let end = prefix_end(&p);
        assert!(pair_name(1, 0xff, b"zzz") < end);
        assert!(pair(1, 0x100) >= end);
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), vec![2]);
    }

    #[test]
    fn cf_names_are_unique() {
        let mut names: Vec<&str> = Cf::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Cf::ALL.len());
    }
}
