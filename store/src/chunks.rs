//! Chunk bodies: the content-addressed index (RocksDB) over segment records,
//! range reads, and a small cache of decoded compressed chunks with
//! single-flight loads (a second reader of a chunk being loaded waits for it).

use crate::codec;
use crate::engine::Engine;
use crate::error::{Result, StoreError};
use crate::keys::{Cf, Hash};
use crate::records::{ChunkLocation, ChunkPlace, SEGMENT_LOCATION_LEN};
use crate::segment::{self, record, SegmentLog};
use crate::types::Compression;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Chunks that store in at most this many bytes live in the index itself:
/// a small file costs no segment append and no segment sync.
pub const INLINE_MAX: usize = 8 << 10;
/// Bytes of decoded compressed chunks kept in memory.
const CACHE_BUDGET: usize = 64 << 20;
/// Bytes of verified record headers kept in memory (about 1 KiB per 1 MiB chunk).
const HEADER_BUDGET: usize = 16 << 20;

pub fn hash(data: &[u8]) -> Hash {
    *blake3::hash(data).as_bytes()
}

pub fn hex(h: &[u8]) -> String {
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The pool's chunk bodies.
pub struct ChunkStore {
    pub segments: SegmentLog,
    cache: ChunkCache,
    /// Loads in progress by hash: a second reader of the same chunk waits for
    /// the first instead of reading and decoding it again.
    loading: Mutex<HashMap<Hash, Arc<Flight>>>,
    /// Records read and decoded by [`ChunkStore::load`] (not cache hits).
    loads: AtomicU64,
    /// For raw segment chunks: the index entry followed by the verified record
    /// header and block table, so a small read costs one `pread` of its blocks.
    headers: ChunkCache,
    epoch: AtomicU64,
}

fn damaged(hash: &Hash, loc: &ChunkLocation, what: &str) -> StoreError {
    let place = match loc.place {
        ChunkPlace::Segment {
            segment, offset, ..
        } => format!("segment {segment:x} offset {offset}"),
        ChunkPlace::Inline(_) => "the chunk index".into(),
    };
    let message = format!("chunk {} in {place}: {what}", hex(hash));
    tracing::error!("{message}");
    StoreError::Damaged(message)
}

impl ChunkStore {
    /// Opens the segments in `dir`; `engine` holds the index, consulted before a
    /// damaged tail of the active segment is cut (see [`SegmentLog::open_with`]).
    pub fn open(dir: &Path, engine: &dyn Engine) -> Result<ChunkStore> {
        let referenced = |segment: u64, from: u64| -> Result<bool> {
            let mut found = false;
            engine.scan(Cf::ChunkIndex, &[], &[0xff; 33], &mut |_, v| {
                if let ChunkPlace::Segment {
                    segment: s, offset, ..
                } = ChunkLocation::decode(v)?.place
                {
                    found = s == segment && offset >= from;
                }
                Ok(!found)
            })?;
            Ok(found)
        };
        Ok(ChunkStore {
            segments: SegmentLog::open_with(dir, segment::SEGMENT_MAX, &referenced)?,
            cache: ChunkCache::new(CACHE_BUDGET),
            headers: ChunkCache::new(HEADER_BUDGET),
            epoch: AtomicU64::new(0),
            loading: Mutex::new(HashMap::new()),
            loads: AtomicU64::new(0),
        })
    }

    /// Stores `data` (keyed by `hash`) unless the pool's index already has it,
    /// and returns the index entry to commit for it (`None` when the pool has
    /// it). Bytes that went to a segment must be made durable
    /// ([`SegmentLog::make_durable`]) before that entry commits. The caller
    /// holds the pool gate shared and notes [`ChunkStore::epoch`]: while it is
    /// unchanged, no GC pass has dropped the chunk found or moved the record
    /// appended.
    pub fn store(
        &self,
        engine: &dyn Engine,
        hash: &Hash,
        data: &[u8],
        compression: Compression,
    ) -> Result<Option<Vec<u8>>> {
        if engine.get(Cf::ChunkIndex, hash)?.is_some() {
            return Ok(None);
        }
        let (codec, stored) = codec::encode(data, compression);
        let place = if stored.len() <= INLINE_MAX {
            ChunkPlace::Inline(stored.to_vec())
        } else {
            let (header, crc) = record::encode_header(hash, codec, data.len() as u32, &stored);
            let (segment, offset) = self.segments.append(&header, &stored)?;
            ChunkPlace::Segment {
                segment,
                offset,
                crc,
            }
        };
        let loc = ChunkLocation {
            raw_len: data.len() as u32,
            stored_len: stored.len() as u32,
            codec,
            place,
        };
        Ok(Some(loc.encode()))
    }

    /// Counts GC passes: a chunk stored or found under one epoch may be committed
    /// by reference only while the epoch is unchanged.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Called by GC and fsck with the pool gate held exclusively.
    pub fn next_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn location(&self, engine: &dyn Engine, hash: &Hash) -> Result<ChunkLocation> {
        let raw = engine.get(Cf::ChunkIndex, hash)?.ok_or_else(|| {
            StoreError::Corrupt(format!("chunk {} is referenced but missing", hex(hash)))
        })?;
        ChunkLocation::decode(&raw)
    }

    /// Starts reading a chunk's record into the page cache, for a read that is
    /// about to need it. The caller holds the pool gate shared.
    pub fn prefetch(&self, engine: &dyn Engine, hash: &Hash) -> Result<()> {
        let loc = match self.headers.get(hash) {
            Some(entry) => ChunkLocation::decode(&entry[..SEGMENT_LOCATION_LEN])?,
            None => self.location(engine, hash)?,
        };
        if let ChunkPlace::Segment {
            segment, offset, ..
        } = loc.place
        {
            let len = record::header_len(loc.stored_len) as u64 + loc.stored_len as u64;
            self.segments.prefetch(segment, offset, len);
        }
        Ok(())
    }

    /// Copies bytes `[from, from + out.len())` of a chunk into `out`. A raw chunk
    /// in a segment reads only the 4 KiB blocks that cover the range.
    /// The caller holds the pool gate shared.
    pub fn read_range(
        &self,
        engine: &dyn Engine,
        hash: &Hash,
        from: usize,
        out: &mut [u8],
    ) -> Result<()> {
        if let Some(entry) = self.headers.get(hash) {
            let loc = ChunkLocation::decode(&entry[..SEGMENT_LOCATION_LEN])?;
            return self.read_blocks(hash, &loc, &entry[SEGMENT_LOCATION_LEN..], from, out);
        }
        let loc = self.location(engine, hash)?;
        if from + out.len() > loc.raw_len as usize {
            return Err(damaged(hash, &loc, "read past the chunk's end"));
        }
        if let (codec::RAW, ChunkPlace::Segment { .. }) = (loc.codec, &loc.place) {
            let head = self.read_header(hash, &loc)?;
            let mut entry = loc.encode();
            debug_assert_eq!(entry.len(), SEGMENT_LOCATION_LEN);
            entry.extend_from_slice(&head);
            self.headers.insert(*hash, Arc::new(entry));
            return self.read_blocks(hash, &loc, &head, from, out);
        }
        let data = self.load(engine, hash)?;
        out.copy_from_slice(&data[from..from + out.len()]);
        Ok(())
    }

    /// Reads `out` from offset `from` of a raw segment chunk whose verified
    /// header is `head`: only the 4 KiB blocks covering it, each checked.
    fn read_blocks(
        &self,
        hash: &Hash,
        loc: &ChunkLocation,
        head: &[u8],
        from: usize,
        out: &mut [u8],
    ) -> Result<()> {
        let to = from + out.len();
        if to > loc.raw_len as usize {
            return Err(damaged(hash, loc, "read past the chunk's end"));
        }
        let ChunkPlace::Segment {
            segment, offset, ..
        } = loc.place
        else {
            unreachable!("only segment records have blocks")
        };
        if out.is_empty() {
            return Ok(());
        }
        let first = from / record::BLOCK;
        let start = first * record::BLOCK;
        let end = to
            .next_multiple_of(record::BLOCK)
            .min(loc.stored_len as usize);
        let mut blocks = vec![0u8; end - start];
        let hlen = head.len() as u64;
        self.segments
            .read_at(segment, offset + hlen + start as u64, &mut blocks)?;
        if let Err(b) = record::verify_blocks(&head[record::FIXED_HEADER..], first, &blocks) {
            return Err(damaged(hash, loc, &format!("block {b} checksum mismatch")));
        }
        out.copy_from_slice(&blocks[from - start..to - start]);
        Ok(())
    }

    /// The whole decoded chunk. Compressed chunks are cached; raw ones are read
    /// from the segment each time (the kernel's page cache holds them).
    pub fn load(&self, engine: &dyn Engine, hash: &Hash) -> Result<Arc<Vec<u8>>> {
        if let Some(hit) = self.cache.get(hash) {
            return Ok(hit);
        }
        let (flight, first) = {
            let mut loading = self.loading.lock();
            match loading.get(hash) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::<Flight>::default();
                    loading.insert(*hash, f.clone());
                    (f, true)
                }
            }
        };
        if !first {
            let mut done = flight.done.lock();
            while done.is_none() {
                flight.ended.wait(&mut done);
            }
            if let Some(Some(data)) = &*done {
                return Ok(data.clone());
            }
            drop(done);
            // The first reader failed: this one reports its own error.
            return self.load_uncached(engine, hash);
        }
        // A load that ended between the cache check and taking the flight cached it.
        let result = match self.cache.get(hash) {
            Some(hit) => Ok(hit),
            None => self.load_uncached(engine, hash),
        };
        *flight.done.lock() = Some(result.as_ref().ok().cloned());
        flight.ended.notify_all();
        self.loading.lock().remove(hash);
        result
    }

    fn load_uncached(&self, engine: &dyn Engine, hash: &Hash) -> Result<Arc<Vec<u8>>> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        let loc = self.location(engine, hash)?;
        let stored = match &loc.place {
            ChunkPlace::Inline(bytes) => return self.decode(hash, &loc, bytes),
            ChunkPlace::Segment { .. } => {
                let mut rec = self.read_record(hash, &loc)?;
                rec.drain(..record::header_len(loc.stored_len));
                rec
            }
        };
        if loc.codec == codec::RAW {
            return Ok(Arc::new(stored));
        }
        let data = self.decode(hash, &loc, &stored)?;
        self.cache.insert(*hash, data.clone());
        Ok(data)
    }

    fn decode(&self, hash: &Hash, loc: &ChunkLocation, stored: &[u8]) -> Result<Arc<Vec<u8>>> {
        codec::decode(loc.codec, stored, loc.raw_len as usize)
            .map(Arc::new)
            .map_err(|e| damaged(hash, loc, &e.to_string()))
    }

    /// The whole record of a segment chunk (header, block table, payload),
    /// its header and every block checked.
    pub fn read_record(&self, hash: &Hash, loc: &ChunkLocation) -> Result<Vec<u8>> {
        let ChunkPlace::Segment {
            segment, offset, ..
        } = loc.place
        else {
            unreachable!("only segment chunks have records")
        };
        let mut rec = vec![0u8; record::record_len(loc.stored_len) as usize];
        self.segments.read_at(segment, offset, &mut rec)?;
        let hlen = record::header_len(loc.stored_len);
        self.check_header(hash, loc, &rec[..hlen])?;
        if let Err(b) = record::verify_blocks(&rec[record::FIXED_HEADER..hlen], 0, &rec[hlen..]) {
            return Err(damaged(hash, loc, &format!("block {b} checksum mismatch")));
        }
        Ok(rec)
    }

    fn read_header(&self, hash: &Hash, loc: &ChunkLocation) -> Result<Vec<u8>> {
        let ChunkPlace::Segment {
            segment, offset, ..
        } = loc.place
        else {
            unreachable!("only segment records have headers")
        };
        let mut head = vec![0u8; record::header_len(loc.stored_len)];
        self.segments.read_at(segment, offset, &mut head)?;
        self.check_header(hash, loc, &head)?;
        Ok(head)
    }

    /// The record's header must verify and agree with the index entry.
    fn check_header(&self, hash: &Hash, loc: &ChunkLocation, head: &[u8]) -> Result<()> {
        let h = record::parse_header(head).map_err(|e| damaged(hash, loc, &e))?;
        let want_crc = match loc.place {
            ChunkPlace::Segment { crc, .. } => crc,
            ChunkPlace::Inline(_) => h.crc,
        };
        if h.hash != *hash
            || h.crc != want_crc
            || h.raw_len != loc.raw_len
            || h.stored_len != loc.stored_len
            || h.codec != loc.codec
        {
            return Err(damaged(
                hash,
                loc,
                "the record there is not the one the index names",
            ));
        }
        Ok(())
    }

    /// Checks a chunk's record completely; with `rehash` also decodes it and
    /// compares its BLAKE3 hash. Holds nothing in the cache.
    pub fn verify(&self, hash: &Hash, loc: &ChunkLocation, rehash: bool) -> Result<()> {
        let stored = match &loc.place {
            ChunkPlace::Inline(bytes) => bytes.clone(),
            ChunkPlace::Segment { .. } => {
                let mut rec = self.read_record(hash, loc)?;
                rec.drain(..record::header_len(loc.stored_len));
                rec
            }
        };
        if rehash {
            let data = self.decode(hash, loc, &stored)?;
            if self::hash(&data) != *hash {
                return Err(damaged(hash, loc, "content does not hash to its name"));
            }
        }
        Ok(())
    }

    /// Drops what is cached of a chunk: called when it is deleted or moved.
    pub fn forget(&self, hash: &[u8]) {
        self.cache.forget(hash);
        self.headers.forget(hash);
    }
}

/// A [`ChunkStore::load`] in progress.
#[derive(Default)]
struct Flight {
    /// Set when the load ends: the chunk, or `None` if it failed.
    done: Mutex<Option<Option<Arc<Vec<u8>>>>>,
    ended: Condvar,
}

/// Decoded chunks by hash, bounded in bytes, in shards with one lock each;
/// each shard evicts in insertion order (FIFO), which is O(1).
struct ChunkCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Hash, Arc<Vec<u8>>>,
    order: std::collections::VecDeque<Hash>,
    bytes: usize,
}

const SHARDS: usize = 16;

impl ChunkCache {
    fn new(budget: usize) -> ChunkCache {
        ChunkCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: budget / SHARDS,
        }
    }

    fn shard(&self, hash: &[u8]) -> &Mutex<Shard> {
        &self.shards[hash[0] as usize % SHARDS]
    }

    fn get(&self, hash: &Hash) -> Option<Arc<Vec<u8>>> {
        self.shard(hash).lock().map.get(hash).cloned()
    }

    fn insert(&self, hash: Hash, data: Arc<Vec<u8>>) {
        let mut s = self.shard(&hash).lock();
        if data.len() > self.shard_budget || s.map.contains_key(&hash) {
            return;
        }
        s.bytes += data.len();
        s.map.insert(hash, data);
        s.order.push_back(hash);
        while s.bytes > self.shard_budget {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            if let Some(d) = s.map.remove(&old) {
                s.bytes -= d.len();
            }
        }
    }

    fn forget(&self, hash: &[u8]) {
        if hash.len() != 32 {
            return;
        }
        let mut s = self.shard(hash).lock();
        if let Some(d) = s.map.remove(hash) {
            s.bytes -= d.len();
            s.order.retain(|h| h != hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Batch, RocksEngine};

    #[test]
    fn concurrent_loads_of_one_chunk_read_and_decode_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open(&dir.path().join("db")).unwrap();
        let store = ChunkStore::open(&dir.path().join("segments"), &engine).unwrap();
        // Compressible but not to inline size, so the chunk is a compressed record
        // in a segment, decoded and cached.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..(1 << 20))
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 4096 < 512 {
                    x as u8
                } else {
                    0
                }
            })
            .collect();
        let h = hash(&data);
        let entry = store
            .store(&engine, &h, &data, Compression::Lz4)
            .unwrap()
            .expect("a new chunk");
        store.segments.make_durable().unwrap();
        let mut batch = Batch::default();
        batch.put(Cf::ChunkIndex, h.to_vec(), entry);
        engine.write(batch, false).unwrap();
        let loc = store.location(&engine, &h).unwrap();
        assert!(loc.codec != codec::RAW && matches!(loc.place, ChunkPlace::Segment { .. }));
        // Rounds of four readers released at once on a cold cache: each round
        // reads the record once, however the readers overlap.
        const ROUNDS: u64 = 100;
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (store, engine, barrier, data) = (&store, &engine, &barrier, &data);
                s.spawn(move || {
                    for _ in 0..ROUNDS {
                        if t == 0 {
                            store.forget(&h);
                        }
                        barrier.wait();
                        assert!(*store.load(engine, &h).unwrap() == *data);
                        barrier.wait();
                    }
                });
            }
        });
        assert_eq!(store.loads.load(Ordering::Relaxed), ROUNDS);
    }
}
