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

/// Size facts of a stored chunk, kept apart from its bytes so accounting and GC
/// never read blob files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    pub raw_len: u32,
    pub stored_len: u32,
}

impl ChunkInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.raw_len.to_be_bytes().to_vec();
        v.extend_from_slice(&self.stored_len.to_be_bytes());
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<ChunkInfo> {
        if bytes.len() != 8 {
            return Err(StoreError::Corrupt("chunk info".into()));
        }
        Ok(ChunkInfo {
            raw_len: u32::from_be_bytes(bytes[..4].try_into().unwrap()),
            stored_len: u32::from_be_bytes(bytes[4..8].try_into().unwrap()),
        })
    }
}
