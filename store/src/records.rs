//! Values stored under the keys of [`crate::keys`], serialized with bincode.

use crate::error::{Result, StoreError};
use crate::keys::Hash;
use crate::types::{Compression, FileKind, Timestamp};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("records always serialize")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeState {
    Active,
    /// Being built (snapshot, clone) or torn down: invisible, cleaned at open.
    Pending,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub id: u64,
    pub name: String,
    pub capacity: u64,
    pub used: u64,
    pub inodes: u64,
    pub next_ino: u64,
    pub chunk_size: u32,
    pub compression: Compression,
    pub created: Timestamp,
    pub read_only: bool,
    pub snapshot_of: Option<String>,
    pub state: VolumeState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeRecord {
    pub kind: FileKind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    /// Logical bytes of stored (non-hole) chunks: what the quota charges.
    pub alloc: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Timestamp,
    pub rdev: u32,
    /// Directories: the parent directory (the root is its own parent).
    pub parent: u64,
    /// Directories: the next readdir cookie to hand out.
    pub next_cookie: u64,
    /// Symlinks: the target.
    pub target: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dentry {
    pub ino: u64,
    pub kind: FileKind,
    pub cookie: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: FileKind,
}

/// A chunk map entry: which chunk holds this part of the file. Fixed 36-byte
/// encoding (hash then big-endian length) so scans need no decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub hash: Hash,
    pub len: u32,
}

impl ChunkRef {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(36);
        v.extend_from_slice(&self.hash);
        v.extend_from_slice(&self.len.to_be_bytes());
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<ChunkRef> {
        if bytes.len() != 36 {
            return Err(StoreError::Corrupt(format!(
                "chunk ref of {} bytes",
                bytes.len()
            )));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[..32]);
        Ok(ChunkRef {
            hash,
            len: u32::from_be_bytes(bytes[32..36].try_into().unwrap()),
        })
    }
}

/// Where a chunk's stored bytes are: the chunk index's value. Fixed-layout
/// encoding so scans (usage, GC, fsck) decode it without bincode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkLocation {
    pub raw_len: u32,
    pub stored_len: u32,
    /// The codec tag of [`crate::codec`].
    pub codec: u8,
    pub place: ChunkPlace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkPlace {
    /// A record at `offset` of segment `segment` whose header checksum is `crc`.
    Segment { segment: u64, offset: u64, crc: u32 },
    /// Small chunks live in the index itself (see the crate doc).
    Inline(Vec<u8>),
}

const IN_SEGMENT: u8 = 0;
/// Bytes of an encoded [`ChunkPlace::Segment`] location.
pub const SEGMENT_LOCATION_LEN: usize = 30;
const INLINE: u8 = 1;

impl ChunkLocation {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(SEGMENT_LOCATION_LEN);
        let tag = match self.place {
            ChunkPlace::Segment { .. } => IN_SEGMENT,
            ChunkPlace::Inline(_) => INLINE,
        };
        v.push(tag);
        v.push(self.codec);
        v.extend_from_slice(&self.raw_len.to_be_bytes());
        v.extend_from_slice(&self.stored_len.to_be_bytes());
        match &self.place {
            ChunkPlace::Segment {
                segment,
                offset,
                crc,
            } => {
                v.extend_from_slice(&segment.to_be_bytes());
                v.extend_from_slice(&offset.to_be_bytes());
                v.extend_from_slice(&crc.to_be_bytes());
            }
            ChunkPlace::Inline(bytes) => v.extend_from_slice(bytes),
        }
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<ChunkLocation> {
        let bad = || StoreError::Corrupt(format!("chunk index entry of {} bytes", bytes.len()));
        if bytes.len() < 10 {
            return Err(bad());
        }
        let be32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        let be64 = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        let (raw_len, stored_len) = (be32(2), be32(6));
        let place = match bytes[0] {
            IN_SEGMENT if bytes.len() == SEGMENT_LOCATION_LEN => ChunkPlace::Segment {
                segment: be64(10),
                offset: be64(18),
                crc: be32(26),
            },
            INLINE if bytes.len() == 10 + stored_len as usize => {
                ChunkPlace::Inline(bytes[10..].to_vec())
            }
            _ => return Err(bad()),
        };
        Ok(ChunkLocation {
            raw_len,
            stored_len,
            codec: bytes[1],
            place,
        })
    }

    /// Bytes this chunk occupies in a segment (0 when inline).
    pub fn segment_bytes(&self) -> u64 {
        match self.place {
            ChunkPlace::Segment { .. } => crate::segment::record::record_len(self.stored_len),
            ChunkPlace::Inline(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_locations_round_trip() {
        for place in [
            ChunkPlace::Segment {
                segment: 7,
                offset: 1 << 40,
                crc: 0xdead_beef,
            },
            ChunkPlace::Inline(vec![1, 2, 3]),
        ] {
            let stored_len = match &place {
                ChunkPlace::Inline(b) => b.len() as u32,
                _ => 4096,
            };
            let loc = ChunkLocation {
                raw_len: 65536,
                stored_len,
                codec: 1,
                place,
            };
            assert_eq!(ChunkLocation::decode(&loc.encode()).unwrap(), loc);
        }
        assert!(ChunkLocation::decode(&[0; 12]).is_err());
    }
}
