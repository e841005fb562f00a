//! Reading and writing chunk bytes, and a small cache of decoded chunks.

use crate::codec;
use crate::engine::{Batch, Engine};
use crate::error::{Result, StoreError};
use crate::keys::{Cf, Hash};
use crate::records::ChunkInfo;
use crate::types::Compression;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

pub fn hash(data: &[u8]) -> Hash {
    *blake3::hash(data).as_bytes()
}

/// Adds `data` (keyed by `hash`) to the batch unless the pool already holds it.
/// The caller holds the pool gate shared, so an existing chunk cannot be
/// collected before the batch that references it commits.
pub fn store(
    engine: &dyn Engine,
    batch: &mut Batch,
    hash: &Hash,
    data: &[u8],
    compression: Compression,
) -> Result<()> {
    if engine.get(Cf::ChunkInfo, hash)?.is_some() {
        return Ok(());
    }
    let encoded = codec::encode(data, compression);
    let info = ChunkInfo {
        raw_len: data.len() as u32,
        stored_len: encoded.len() as u32,
    };
    batch.put(Cf::Chunks, hash.to_vec(), encoded);
    batch.put(Cf::ChunkInfo, hash.to_vec(), info.encode());
    Ok(())
}

/// Decoded chunks by hash, bounded in bytes; evicts the least recently used.
pub struct ChunkCache {
    budget: usize,
    inner: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    map: HashMap<Hash, (Arc<Vec<u8>>, u64)>,
    bytes: usize,
    tick: u64,
}

impl ChunkCache {
    pub fn new(budget: usize) -> ChunkCache {
        ChunkCache {
            budget,
            inner: Mutex::new(CacheState::default()),
        }
    }

    pub fn load(&self, engine: &dyn Engine, hash: &Hash, raw_len: u32) -> Result<Arc<Vec<u8>>> {
        {
            let mut st = self.inner.lock();
            st.tick += 1;
            let tick = st.tick;
            if let Some(entry) = st.map.get_mut(hash) {
                entry.1 = tick;
                return Ok(entry.0.clone());
            }
        }
        let stored = engine.get(Cf::Chunks, hash)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "chunk {} is referenced but missing",
                crate::pool::hex(hash)
            ))
        })?;
        let data = Arc::new(codec::decode(&stored, raw_len as usize)?);
        let mut st = self.inner.lock();
        st.tick += 1;
        let tick = st.tick;
        if let Some(old) = st.map.insert(*hash, (data.clone(), tick)) {
            st.bytes -= old.0.len();
        }
        st.bytes += data.len();
        while st.bytes > self.budget && st.map.len() > 1 {
            let oldest = *st
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k)
                .unwrap();
            if let Some((d, _)) = st.map.remove(&oldest) {
                st.bytes -= d.len();
            }
        }
        Ok(data)
    }

    pub fn forget(&self, hash: &[u8]) {
        if let Ok(h) = <[u8; 32]>::try_from(hash) {
            let mut st = self.inner.lock();
            if let Some((d, _)) = st.map.remove(&h) {
                st.bytes -= d.len();
            }
        }
    }
}
