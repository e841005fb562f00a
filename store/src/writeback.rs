//! The write-back pipeline: turning a file's full chunk buffers into stored
//! chunks on worker threads while the writer goes on.
//!
//! Sealing a chunk means hashing it, finding it in the chunk index (dedup) or
//! storing it (compressed when that pays, appended to the active segment or
//! kept inline), all under the pool gate shared. The result waits in the file's
//! buffer until the file commits: the chunk map, reference counts, index entry
//! and inode go to RocksDB in one batch, after the segment bytes are made
//! durable. The workers know chunk stores and buffers, not volumes or inodes.

use crate::chunks::{self, ChunkStore};
use crate::engine::Engine;
use crate::error::Result;
use crate::keys::Hash;
use crate::types::Compression;
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A chunk after sealing.
#[derive(Clone, Debug)]
pub(crate) enum Sealed {
    /// All zeros: the file's chunk becomes a hole.
    Hole,
    Chunk {
        hash: Hash,
        /// The index entry to commit when this seal stored the chunk; `None`
        /// when the pool already had it.
        index: Option<Vec<u8>>,
        /// [`ChunkStore::epoch`] when it was stored or found.
        epoch: u64,
    },
}

/// Seals `data`. The caller commits the result while the chunk store's epoch
/// is unchanged, or seals again.
pub(crate) fn seal(
    store: &ChunkStore,
    engine: &dyn Engine,
    gate: &RwLock<()>,
    data: &[u8],
    compression: Compression,
) -> Result<Sealed> {
    if data.iter().all(|&b| b == 0) {
        return Ok(Sealed::Hole);
    }
    let hash = chunks::hash(data);
    let _gate = gate.read_recursive();
    let epoch = store.epoch();
    let index = store.store(engine, &hash, data, compression)?;
    Ok(Sealed::Chunk { hash, index, epoch })
}

/// One chunk of a file's buffer.
pub(crate) enum Buffered {
    /// Being written. `sequential`: filled from its start by appends only, so
    /// once full it is handed to the workers (a chunk rewritten in place waits
    /// for the file's commit instead of being hashed after every write).
    Dirty { data: Vec<u8>, sequential: bool },
    /// Handed to a worker as job `job`.
    Sealing { data: Arc<Vec<u8>>, job: u64 },
    /// Sealed; waits for the file's commit.
    Sealed { data: Arc<Vec<u8>>, sealed: Sealed },
    /// Small writes into a stored chunk, kept as sorted, disjoint extents over
    /// the file's committed chunk, which is read only when the chunk commits
    /// (or the extents grow past [`PATCH_MAX`]): a random 4 KiB write costs a
    /// 4 KiB buffer, not a read of the whole chunk and a chunk of memory.
    Patch { extents: Vec<(u32, Vec<u8>)> },
}

/// A patch holding more than a quarter of its chunk, or this many extents,
/// is merged with its chunk's bytes into a whole buffer.
pub(crate) const PATCH_EXTENTS: usize = 64;

/// See [`PATCH_EXTENTS`]: the share of the chunk (1/4).
pub(crate) const PATCH_MAX: u64 = 4;

impl Buffered {
    /// The bytes of a whole buffer. A patch has none (callers merge it first).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Buffered::Dirty { data, .. } => data,
            Buffered::Sealing { data, .. } | Buffered::Sealed { data, .. } => data,
            Buffered::Patch { .. } => {
                debug_assert!(false, "bytes() of a patch");
                &[]
            }
        }
    }

    /// The memory the buffer holds (what the dirty budget counts).
    pub fn mem(&self) -> usize {
        match self {
            Buffered::Patch { extents } => extents.iter().map(|(_, d)| d.len()).sum(),
            other => other.bytes().len(),
        }
    }

    /// The bytes as a buffer to modify (copied only if a worker still has them);
    /// a patch is applied to `base`, its chunk's committed bytes, which only a
    /// patch needs.
    pub fn into_dirty(
        self,
        base: impl FnOnce() -> crate::error::Result<Vec<u8>>,
    ) -> crate::error::Result<Vec<u8>> {
        Ok(match self {
            Buffered::Dirty { data, .. } => data,
            Buffered::Sealing { data, .. } | Buffered::Sealed { data, .. } => {
                Arc::try_unwrap(data).unwrap_or_else(|shared| shared.to_vec())
            }
            Buffered::Patch { extents } => {
                let mut data = base()?;
                apply(&mut data, &extents);
                data
            }
        })
    }
}

/// Writes `extents` over `data`, growing it where they reach past its end.
pub(crate) fn apply(data: &mut Vec<u8>, extents: &[(u32, Vec<u8>)]) {
    for (at, bytes) in extents {
        let (at, end) = (*at as usize, *at as usize + bytes.len());
        if data.len() < end {
            data.resize(end, 0);
        }
        data[at..end].copy_from_slice(bytes);
    }
}

/// Writes `data` at `at` into sorted, disjoint extents: the extents it
/// overlaps or touches merge with it into one, the new bytes on top.
pub(crate) fn patch(extents: &mut Vec<(u32, Vec<u8>)>, at: u32, data: &[u8]) {
    let end = at + data.len() as u32;
    let first = extents.partition_point(|(a, d)| a + (d.len() as u32) < at);
    let last = extents.partition_point(|(a, _)| *a <= end);
    if first >= last {
        extents.insert(first, (at, data.to_vec()));
        return;
    }
    let lo = at.min(extents[first].0);
    let (la, ld) = &extents[last - 1];
    let hi = end.max(la + ld.len() as u32);
    let mut merged = vec![0u8; (hi - lo) as usize];
    for (a, d) in extents.drain(first..last) {
        let o = (a - lo) as usize;
        merged[o..o + d.len()].copy_from_slice(&d);
    }
    let o = (at - lo) as usize;
    merged[o..o + data.len()].copy_from_slice(data);
    extents.insert(first, (lo, merged));
}

/// The buffered state of one file. Lives in its volume's file table while the
/// file has buffered chunks or an operation holds it.
pub(crate) struct FileState<T> {
    /// Removed from the table: whoever waited for the lock looks again.
    pub dead: bool,
    /// The volume's record of the file (the inode), newest first.
    pub meta: T,
    /// The space the committed record charges (its `alloc`): commits persist the
    /// volume's usage as the sum of these, so it matches the files after a crash.
    pub committed_alloc: u64,
    pub chunks: BTreeMap<u64, Buffered>,
    /// Which buffered bytes a crash would lose, and the journal records that
    /// keep the others.
    pub journal: Journal,
    /// Jobs handed to workers that have not come back.
    pub sealing: usize,
    pub next_job: u64,
}

/// A file's small fsync'ed writes kept in the journal family instead of
/// rewriting their chunks. After a crash, a buffered chunk's bytes are its
/// committed chunk with the file's journal records for it applied in order,
/// except the ranges in `unsynced`. Records exist only for buffered chunks:
/// whatever takes a chunk out of the buffer deletes its records in the batch
/// that commits the change.
#[derive(Default)]
pub(crate) struct Journal {
    /// Per chunk, sorted disjoint byte ranges changed since they were last
    /// made durable.
    pub unsynced: BTreeMap<u64, Vec<(u32, u32)>>,
    /// (chunk, sequence) of the file's records.
    pub logged: Vec<(u64, u64)>,
}

/// More separate ranges than this in one chunk are merged into one span.
const MAX_RANGES: usize = 16;

impl Journal {
    /// Records that `[from, to)` of chunk `idx` changed.
    pub fn mark(&mut self, idx: u64, from: u32, to: u32) {
        if from >= to {
            return;
        }
        let ranges = self.unsynced.entry(idx).or_default();
        let (mut lo, mut hi) = (from, to);
        ranges.retain(|&(a, b)| {
            if b < lo || a > hi {
                true
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
                false
            }
        });
        let at = ranges.partition_point(|&(a, _)| a < lo);
        ranges.insert(at, (lo, hi));
        if ranges.len() > MAX_RANGES {
            let span = (ranges[0].0, ranges[ranges.len() - 1].1);
            *ranges = vec![span];
        }
    }

    /// Unsynced bytes: the most in one chunk and the total.
    pub fn pending(&self) -> (u64, u64) {
        let mut most = 0;
        let mut total = 0;
        for ranges in self.unsynced.values() {
            let n: u64 = ranges.iter().map(|&(a, b)| (b - a) as u64).sum();
            most = most.max(n);
            total += n;
        }
        (most, total)
    }

    /// Chunk `idx` leaves the buffer: the sequences of its records, to delete.
    pub fn forget(&mut self, idx: u64) -> Vec<u64> {
        self.unsynced.remove(&idx);
        let mut seqs = Vec::new();
        self.logged.retain(|&(i, s)| {
            if i == idx {
                seqs.push(s);
                false
            } else {
                true
            }
        });
        seqs
    }

    /// Every chunk leaves the buffer: all records, to delete.
    pub fn clear(&mut self) -> Vec<(u64, u64)> {
        self.unsynced.clear();
        std::mem::take(&mut self.logged)
    }
}

pub(crate) struct FileSlot<T> {
    pub state: Arc<Mutex<FileState<T>>>,
    /// Signalled when a job of this file comes back.
    pub returned: Condvar,
}

impl<T> FileSlot<T> {
    pub fn new(meta: T, committed_alloc: u64) -> Arc<FileSlot<T>> {
        Arc::new(FileSlot {
            state: Arc::new(Mutex::new(FileState {
                dead: false,
                meta,
                committed_alloc,
                chunks: BTreeMap::new(),
                journal: Journal::default(),
                sealing: 0,
                next_job: 0,
            })),
            returned: Condvar::new(),
        })
    }
}

type Task = Box<dyn FnOnce() + Send>;

/// Worker threads that seal chunks; they stop when the pipeline drops.
pub(crate) struct Workers {
    tx: Mutex<Option<Sender<Task>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Sealing is CPU work (BLAKE3, compression) plus a buffered append: one
/// thread per core, at least two so one blocked append does not stall all.
fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

impl Workers {
    pub fn start() -> Workers {
        let (tx, rx) = channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..worker_count())
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("tessera-seal-{i}"))
                    .spawn(move || run(&rx))
                    .expect("spawn a write-back worker")
            })
            .collect();
        Workers {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        }
    }

    /// Runs `task` on a worker; without workers (shutting down) runs it here.
    pub fn submit(&self, task: Task) {
        let task = match &*self.tx.lock() {
            Some(tx) => match tx.send(task) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => task,
        };
        task()
    }

    /// Lets the workers finish what was submitted, then joins them.
    pub fn stop(&self) {
        self.tx.lock().take();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

fn run(rx: &Mutex<Receiver<Task>>) {
    loop {
        let task = rx.lock().recv();
        match task {
            Ok(task) => task(),
            Err(_) => return,
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::{patch, Journal};

    #[test]
    fn patches_merge_like_a_buffer() {
        let mut model = vec![0u8; 300];
        let mut ext = Vec::new();
        let mut x = 7u32;
        for i in 0..500u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let at = (x >> 8) % 280;
            let len = 1 + (x >> 20) % 20;
            let data: Vec<u8> = (0..len).map(|k| (i + k) as u8 | 1).collect();
            patch(&mut ext, at, &data);
            model[at as usize..(at + len) as usize].copy_from_slice(&data);
            let mut img = vec![0u8; 300];
            for w in ext.windows(2) {
                assert!(
                    w[0].0 + (w[0].1.len() as u32) < w[1].0,
                    "disjoint, not touching"
                );
            }
            for (a, d) in &ext {
                img[*a as usize..*a as usize + d.len()].copy_from_slice(d);
            }
            assert_eq!(img, model, "step {i}");
        }
    }

    #[test]
    fn marks_merge_into_sorted_disjoint_ranges() {
        let mut j = Journal::default();
        j.mark(0, 100, 200);
        j.mark(0, 0, 10);
        j.mark(0, 150, 300);
        j.mark(0, 300, 310);
        j.mark(0, 5, 5);
        j.mark(1, 7, 9);
        assert_eq!(j.unsynced[&0], vec![(0, 10), (100, 310)]);
        assert_eq!(j.pending(), (220, 222));
        for i in 0..40u32 {
            j.mark(2, i * 10, i * 10 + 1);
        }
        let r = &j.unsynced[&2];
        assert!(r.len() <= 16, "{r:?}");
        assert_eq!((r[0].0, r[r.len() - 1].1), (0, 391));
        assert!(r.windows(2).all(|w| w[0].1 < w[1].0), "{r:?}");
        j.logged = vec![(0, 1), (1, 2), (0, 3)];
        assert_eq!(j.forget(0), vec![1, 3]);
        assert_eq!(j.logged, vec![(1, 2)]);
        assert_eq!(j.clear(), vec![(1, 2)]);
        assert!(j.unsynced.is_empty());
    }
}
