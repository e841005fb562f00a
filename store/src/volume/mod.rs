//! Filesystem-shaped operations on one volume.
//!
//! There is no volume-wide lock on the data path. A file that has buffered
//! data, or that an operation is changing, has a slot in the volume's file
//! table with its own lock; while the slot exists its inode record lives
//! there, and every inode record the volume commits is committed by the
//! holder of that inode's slot. Data operations (read, write, flush) hold one
//! slot at a time. Namespace changes (create, link, unlink, rename, setattr,
//! xattrs) hold several, and the volume's namespace lock, so only one of them
//! at a time holds more than one slot. Only a snapshot or clone stops the
//! whole volume: every operation holds the barrier shared, and a snapshot
//! takes it exclusively, flushes, and copies.
//!
//! Lock order: barrier, namespace lock, slots, pool gate, volume record.
//!
//! Modules: [`txn`] (namespace transactions), [`namespace`] (entries and
//! attributes), [`data`] (file contents and the write-back buffers),
//! [`xattrs`].

mod data;
mod namespace;
mod txn;
mod xattrs;

use crate::engine::Batch;
use crate::error::{Result, StoreError};
use crate::holds::HoldCounts;
use crate::keys::{self, Cf};
use crate::pool::{info_of, Pool};
use crate::records::{self, ChunkRef, InodeRecord, VolumeRecord};
use crate::types::*;
use crate::writeback::{self, Buffered, FileSlot, FileState, Sealed};
use dashmap::mapref::entry::Entry;
use dashmap::{DashMap, DashSet};
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest file size; offsets beyond it get EFBIG.
pub const MAX_FILE_SIZE: u64 = 1 << 52;

type Slot = FileSlot<InodeRecord>;
type State = FileState<InodeRecord>;

/// An open volume. Cheap to clone; every clone is the same volume.
#[derive(Clone)]
pub struct Volume {
    pub(crate) inner: Arc<VolumeInner>,
}

pub(crate) struct VolumeInner {
    pub pool: Pool,
    pub id: u64,
    pub name: String,
    pub chunk_size: u64,
    pub compression: Compression,
    pub read_only: bool,
    /// The volume record (capacity, used, inode counter); locked briefly to
    /// charge space and around each commit so the newest record is the one
    /// committed last.
    rec: Mutex<VolumeRecord>,
    /// `used` as committed: the sum of the committed inodes' `alloc` (the record's
    /// `used` also counts buffered writes). Changed only under `rec`.
    committed_used: AtomicU64,
    /// Held shared by every operation, exclusively by a snapshot or clone.
    barrier: RwLock<()>,
    /// Held by namespace transactions ([`txn::Txn`]).
    ns: Mutex<()>,
    /// Slots of the files with buffered data or in use by a change.
    files: DashMap<Ino, Arc<Slot>>,
    /// Open handles per inode ([`Volume::open`]).
    opens: Mutex<HashMap<Ino, u32>>,
    /// Recent readers, by inode hash, to find the sequential ones.
    streams: Box<[Mutex<data::Stream>]>,
    /// The counts of every live [`crate::InodeHolds`] of this volume.
    pub(crate) holders: RwLock<Vec<HoldCounts>>,
    /// Inodes whose last link went while this instance was open and that may still
    /// be orphans: a forget needs the namespace lock only for these.
    unlinked: DashSet<Ino>,
}

impl Drop for VolumeInner {
    fn drop(&mut self) {
        if let Err(e) = self.flush_all() {
            tracing::error!("volume {}: flushing at close: {e}", self.name);
        }
        let mut open = self.pool.inner.open.lock();
        if open.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
            open.remove(&self.id);
        }
    }
}

/// A flushed volume that no operation can change until this drops.
pub(crate) struct Quiesced<'a> {
    _barrier: RwLockWriteGuard<'a, ()>,
    rec: VolumeRecord,
}

impl Quiesced<'_> {
    pub fn record(&self) -> VolumeRecord {
        self.rec.clone()
    }
}

fn check_name(name: &OsStr) -> Result<&[u8]> {
    let b = name.as_bytes();
    if b.len() > MAX_NAME {
        return Err(StoreError::NameTooLong);
    }
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(StoreError::Invalid(format!("bad entry name {:?}", name)));
    }
    Ok(b)
}

/// Data operations need a regular file: EISDIR for a directory, EINVAL otherwise.
fn require_file(r: &InodeRecord, what: &str) -> Result<()> {
    match r.kind {
        FileKind::File => Ok(()),
        FileKind::Dir => Err(StoreError::IsDir),
        _ => Err(StoreError::Invalid(what.into())),
    }
}

/// An fsync journals a chunk's unsynced bytes only up to this share of the
/// chunk (1/4) and [`JOURNAL_MAX`] in all; larger ones commit their chunks.
const JOURNAL_CHUNK_SHARE: u64 = 4;
const JOURNAL_MAX: u64 = 1 << 20;

/// Bytes of chunk `idx` that lie below `size`.
fn chunk_len(cs: u64, idx: u64, size: u64) -> u64 {
    size.saturating_sub(idx * cs).min(cs)
}

/// A file's buffered chunks staged into a batch, applied to its slot once the
/// batch commits ([`VolumeInner::settle`]).
struct Staged {
    inode: InodeRecord,
    /// The batch references segment bytes that must be made durable first.
    appended: bool,
}

impl VolumeInner {
    pub(crate) fn open(pool: Pool, rec: VolumeRecord) -> Result<Arc<VolumeInner>> {
        let inner = Arc::new(VolumeInner {
            id: rec.id,
            name: rec.name.clone(),
            chunk_size: rec.chunk_size as u64,
            compression: rec.compression,
            read_only: rec.read_only,
            pool,
            committed_used: AtomicU64::new(rec.used),
            rec: Mutex::new(rec),
            barrier: RwLock::new(()),
            ns: Mutex::new(()),
            files: DashMap::new(),
            opens: Mutex::new(HashMap::new()),
            streams: (0..data::STREAMS).map(|_| Mutex::default()).collect(),
            holders: RwLock::default(),
            unlinked: DashSet::new(),
        });
        inner.replay_journal()?;
        inner.purge_orphans()?;
        Ok(inner)
    }

    fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.barrier.read_recursive()
    }

    /// Whether an open handle or a hold keeps `ino` alive without links.
    fn is_referenced(&self, ino: Ino) -> bool {
        self.opens.lock().get(&ino).is_some_and(|&n| n > 0) || self.is_held(ino)
    }

    /// Flushes the volume and stops every operation on it until the guard drops.
    pub(crate) fn quiesce(&self) -> Result<Quiesced<'_>> {
        let barrier = self.barrier.write();
        self.flush_all()?;
        let mut rec = self.record();
        // What the copied inodes charge (equal to `used` once every file is committed).
        rec.used = self.committed_used.load(Ordering::Relaxed);
        Ok(Quiesced {
            _barrier: barrier,
            rec,
        })
    }

    pub(crate) fn record(&self) -> VolumeRecord {
        self.rec.lock().clone()
    }

    pub(crate) fn set_capacity(&self, capacity: u64) -> Result<VolumeRecord> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let _b = self.enter();
        {
            let mut rec = self.rec.lock();
            if capacity < rec.used {
                return Err(StoreError::Invalid(format!(
                    "capacity {capacity} is below the {} bytes volume {} uses",
                    rec.used, self.name
                )));
            }
            rec.capacity = capacity;
        }
        self.commit(Batch::default(), false, 0)?;
        Ok(self.record())
    }

    /// The committed inode record, ignoring any slot.
    fn load_stored(&self, ino: Ino) -> Result<InodeRecord> {
        let raw = self
            .pool
            .engine()
            .get(Cf::Inodes, &keys::pair(self.id, ino))?
            .ok_or_else(|| StoreError::NotFound(format!("inode {ino}")))?;
        records::decode(&raw, "inode")
    }

    /// The newest record of `ino`: its slot's if it has one, else the committed one.
    fn inode(&self, ino: Ino) -> Result<InodeRecord> {
        if let Some(slot) = self.peek(ino) {
            let st = slot.state.lock();
            if !st.dead {
                return Ok(st.meta.clone());
            }
        }
        self.load_stored(ino)
    }

    /// The slot of `ino` if it has one.
    fn peek(&self, ino: Ino) -> Option<Arc<Slot>> {
        self.files.get(&ino).map(|s| s.clone())
    }

    /// The slot of `ino`, created with its committed record if missing.
    fn slot(&self, ino: Ino) -> Result<Arc<Slot>> {
        match self.files.entry(ino) {
            Entry::Occupied(e) => Ok(e.get().clone()),
            Entry::Vacant(e) => {
                let r = self.load_stored(ino)?;
                let alloc = r.alloc;
                Ok(e.insert(FileSlot::new(r, alloc)).clone())
            }
        }
    }

    /// Runs `f` with the slot of `ino` locked.
    fn with_file<R>(
        &self,
        ino: Ino,
        mut f: impl FnMut(&Arc<Slot>, &mut MutexGuard<'_, State>) -> Result<R>,
    ) -> Result<R> {
        loop {
            let slot = self.slot(ino)?;
            let mut st = slot.state.lock();
            if !st.dead {
                return f(&slot, &mut st);
            }
        }
    }

    /// Drops a slot whose state is all committed.
    fn retire(&self, ino: Ino, st: &mut State) {
        if !st.dead && st.chunks.is_empty() {
            st.dead = true;
            self.files.remove(&ino);
        }
    }

    fn account(&self, delta: i64) {
        let dirty = &self.pool.inner.dirty_bytes;
        if delta >= 0 {
            dirty.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            dirty.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Commits `batch` with the volume record, whose committed usage changes by
    /// `used_delta` (the change of the `alloc` of the inodes in the batch). With
    /// `appended` the batch references segment bytes, made durable first.
    fn commit(&self, batch: Batch, appended: bool, used_delta: i64) -> Result<()> {
        self.commit_with(batch, appended, used_delta, false)
    }

    /// [`VolumeInner::commit`], durable before it returns with `sync`.
    fn commit_with(
        &self,
        mut batch: Batch,
        appended: bool,
        used_delta: i64,
        sync: bool,
    ) -> Result<()> {
        if appended {
            self.pool.inner.chunks.segments.make_durable()?;
        }
        let rec = self.rec.lock();
        let used = self
            .committed_used
            .load(Ordering::Relaxed)
            .saturating_add_signed(used_delta);
        let mut stored = rec.clone();
        stored.used = used;
        batch.put(
            Cf::Volumes,
            keys::u64_key(self.id),
            records::encode(&stored),
        );
        self.pool.engine().write(batch, sync)?;
        self.committed_used.store(used, Ordering::Relaxed);
        Ok(())
    }

    fn attr(&self, ino: Ino, r: &InodeRecord) -> Attr {
        Attr {
            ino,
            kind: r.kind,
            perm: r.perm,
            nlink: r.nlink,
            uid: r.uid,
            gid: r.gid,
            size: r.size,
            blocks: r.alloc.div_ceil(512),
            atime: r.atime,
            mtime: r.mtime,
            ctime: r.ctime,
            crtime: r.crtime,
            rdev: r.rdev,
            blksize: self.chunk_size as u32,
        }
    }

    fn chunk_ref(&self, ino: Ino, idx: u64) -> Result<Option<ChunkRef>> {
        self.pool
            .engine()
            .get(Cf::ChunkMap, &keys::triple(self.id, ino, idx))?
            .map(|v| ChunkRef::decode(&v))
            .transpose()
    }

    /// Whether chunk `idx` of the file has data (buffered or stored).
    fn present(&self, st: &State, ino: Ino, idx: u64) -> Result<bool> {
        if st.chunks.contains_key(&idx) {
            return Ok(true);
        }
        Ok(self.chunk_ref(ino, idx)?.is_some())
    }

    /// The stored bytes of chunk `idx`, as a buffer to modify.
    fn chunk_bytes(&self, ino: Ino, idx: u64) -> Result<Vec<u8>> {
        let _gate = self.pool.inner.gate.read_recursive();
        self.bytes_of(self.chunk_ref(ino, idx)?.as_ref())
    }

    /// The bytes of a chunk-map entry (none for a hole), as a buffer to modify.
    /// The caller holds the pool gate.
    fn bytes_of(&self, cref: Option<&ChunkRef>) -> Result<Vec<u8>> {
        match cref {
            Some(r) => {
                let data = self.pool.inner.chunks.load(self.pool.engine(), &r.hash)?;
                Ok(Arc::try_unwrap(data).unwrap_or_else(|shared| shared.to_vec()))
            }
            None => Ok(Vec::new()),
        }
    }

    /// Takes chunk `idx` out of the file's buffer as bytes to modify (a patch
    /// merged with its stored chunk), with the memory it held. On an error
    /// nothing has changed.
    fn take_dirty(&self, ino: Ino, st: &mut State, idx: u64) -> Result<Option<(Vec<u8>, usize)>> {
        let base = match st.chunks.get(&idx) {
            None => return Ok(None),
            Some(Buffered::Patch { .. }) => self.chunk_bytes(ino, idx)?,
            Some(_) => Vec::new(),
        };
        let b = st.chunks.remove(&idx).expect("looked up above");
        let mem = b.mem();
        Ok(Some((b.into_dirty(|| Ok(base))?, mem)))
    }

    /// Seals `data` on this thread.
    fn seal(&self, data: &[u8]) -> Result<Sealed> {
        let inner = &self.pool.inner;
        writeback::seal(
            &inner.chunks,
            self.pool.engine(),
            &inner.gate,
            data,
            self.compression,
        )
    }

    /// Puts every buffered chunk of the file and its inode into `batch`,
    /// sealing here what no worker has sealed. The caller holds the pool gate
    /// shared until the batch commits, then calls [`VolumeInner::settle`].
    fn stage(&self, ino: Ino, st: &mut State, batch: &mut Batch) -> Result<Staged> {
        let cs = self.chunk_size;
        let mut inode = st.meta.clone();
        let size = inode.size;
        let epoch = self.pool.inner.chunks.epoch();
        let mut refund = 0;
        let mut appended = false;
        for (&idx, buf) in st.chunks.iter() {
            let len = chunk_len(cs, idx, size) as usize;
            if len == 0 {
                continue;
            }
            let old = self.chunk_ref(ino, idx)?;
            let sealed = match buf {
                Buffered::Sealed { data, sealed }
                    if data.len() == len
                        && match sealed {
                            Sealed::Hole => true,
                            Sealed::Chunk { epoch: e, .. } => *e == epoch,
                        } =>
                {
                    sealed.clone()
                }
                Buffered::Patch { extents } => {
                    // Merged here, one chunk at a time: a file with thousands of
                    // patches never holds all its chunks in memory at once.
                    let mut data = self.bytes_of(old.as_ref())?;
                    writeback::apply(&mut data, extents);
                    data.resize(len, 0);
                    self.seal(&data)?
                }
                other => {
                    let bytes = other.bytes();
                    if bytes.len() >= len {
                        self.seal(&bytes[..len])?
                    } else {
                        let mut copy = bytes.to_vec();
                        copy.resize(len, 0);
                        self.seal(&copy)?
                    }
                }
            };
            let key = keys::triple(self.id, ino, idx);
            match sealed {
                Sealed::Hole => {
                    if let Some(old) = old {
                        batch.add_ref(&old.hash, -1);
                        batch.delete(Cf::ChunkMap, key);
                    }
                    inode.alloc = inode.alloc.saturating_sub(len as u64);
                    refund += len as u64;
                }
                Sealed::Chunk { hash, index, .. } => {
                    if old.is_some_and(|o| o.hash == hash && o.len as usize == len) {
                        continue;
                    }
                    if let Some(entry) = index {
                        appended = true;
                        batch.put(Cf::ChunkIndex, hash.to_vec(), entry);
                    }
                    batch.add_ref(&hash, 1);
                    if let Some(old) = old {
                        batch.add_ref(&old.hash, -1);
                    }
                    let cref = ChunkRef {
                        hash,
                        len: len as u32,
                    };
                    batch.put(Cf::ChunkMap, key, cref.encode());
                }
            }
        }
        batch.put(
            Cf::Inodes,
            keys::pair(self.id, ino),
            records::encode(&inode),
        );
        // Every buffered chunk is in the batch: the journal's records are spent.
        for &(idx, seq) in &st.journal.logged {
            batch.delete(Cf::Journal, keys::quad(self.id, ino, idx, seq));
        }
        if refund > 0 {
            // Before the commit, which writes the volume record with the batch.
            let mut rec = self.rec.lock();
            rec.used = rec.used.saturating_sub(refund);
        }
        Ok(Staged { inode, appended })
    }

    /// Applies a committed [`Staged`] to the file's slot: its buffers are gone.
    fn settle(&self, st: &mut State, staged: Staged) {
        let freed: usize = st.chunks.values().map(|b| b.mem()).sum();
        st.chunks.clear();
        st.journal.clear();
        self.account(-(freed as i64));
        st.committed_alloc = staged.inode.alloc;
        st.meta = staged.inode;
    }

    /// Commits a staged file with `batch` and settles it.
    fn commit_staged(&self, st: &mut State, batch: Batch, staged: Staged) -> Result<()> {
        let delta = staged.inode.alloc as i64 - st.committed_alloc as i64;
        self.commit(batch, staged.appended, delta)?;
        self.settle(st, staged);
        Ok(())
    }

    /// Stages, commits and settles the file in `st` in one batch with `batch`.
    fn commit_file(&self, ino: Ino, st: &mut State, mut batch: Batch) -> Result<()> {
        let _gate = self.pool.inner.gate.read_recursive();
        let staged = self.stage(ino, st, &mut batch)?;
        self.commit_staged(st, batch, staged)
    }

    /// Commits a file's buffered data. Waits for the chunks already handed to
    /// workers; anything handed out later is sealed here.
    fn flush_slot(&self, ino: Ino, slot: &Arc<Slot>) -> Result<()> {
        let mut st = slot.state.lock();
        let handed: Vec<(u64, u64)> = st
            .chunks
            .iter()
            .filter_map(|(&idx, b)| match b {
                Buffered::Sealing { job, .. } => Some((idx, *job)),
                _ => None,
            })
            .collect();
        for (idx, job) in handed {
            while !st.dead
                && matches!(st.chunks.get(&idx), Some(Buffered::Sealing { job: j, .. }) if *j == job)
            {
                slot.returned.wait(&mut st);
            }
        }
        if st.dead {
            return Ok(());
        }
        if !st.chunks.is_empty() {
            self.commit_file(ino, &mut st, Batch::default())?;
        }
        self.retire(ino, &mut st);
        Ok(())
    }

    /// Makes the file's buffered writes durable (fsync). Small ones go to the
    /// journal with the inode in one synced batch, the chunks staying buffered;
    /// otherwise the file commits as on flush and the WAL is synced.
    fn sync_file(&self, ino: Ino) -> Result<()> {
        if let Some(slot) = self.peek(ino) {
            let mut st = slot.state.lock();
            if !st.dead && !st.chunks.is_empty() && self.log_small_writes(ino, &mut st)? {
                return Ok(());
            }
            drop(st);
            self.flush_slot(ino, &slot)?;
        }
        self.pool.engine().sync()
    }

    /// Writes the unsynced ranges of the file's buffered chunks to the journal,
    /// with the inode, in one synced batch: one device flush, and no chunk is
    /// rewritten for a small write. False (nothing done) when the ranges are
    /// too large for that to pay.
    fn log_small_writes(&self, ino: Ino, st: &mut State) -> Result<bool> {
        let (most, total) = st.journal.pending();
        if most > self.chunk_size / JOURNAL_CHUNK_SHARE || total > JOURNAL_MAX {
            return Ok(false);
        }
        let mut batch = Batch::default();
        let mut logged = Vec::new();
        for (&idx, ranges) in &st.journal.unsynced {
            let Some(buf) = st.chunks.get(&idx) else {
                continue;
            };
            for &(a, b) in ranges {
                let (a, b) = (a as usize, b as usize);
                // The changed bytes: of a patch, its extents (the rest of a range
                // merged over gaps is the stored chunk, durable already); of a
                // buffer, up to its end (zeros past it, which the replay pads).
                let pieces: Vec<(usize, &[u8])> = match buf {
                    Buffered::Patch { extents } => extents
                        .iter()
                        .filter_map(|(ea, d)| {
                            let ea = *ea as usize;
                            let (lo, hi) = (ea.max(a), (ea + d.len()).min(b));
                            (lo < hi).then(|| (lo, &d[lo - ea..hi - ea]))
                        })
                        .collect(),
                    other => {
                        let bytes = other.bytes();
                        let hi = b.min(bytes.len());
                        if a < hi {
                            vec![(a, &bytes[a..hi])]
                        } else {
                            Vec::new()
                        }
                    }
                };
                for (at, piece) in pieces {
                    let seq = self.pool.inner.journal_seq.fetch_add(1, Ordering::Relaxed);
                    let mut value = Vec::with_capacity(4 + piece.len());
                    value.extend_from_slice(&(at as u32).to_be_bytes());
                    value.extend_from_slice(piece);
                    batch.put(Cf::Journal, keys::quad(self.id, ino, idx, seq), value);
                    logged.push((idx, seq));
                }
            }
        }
        batch.put(
            Cf::Inodes,
            keys::pair(self.id, ino),
            records::encode(&st.meta),
        );
        let delta = st.meta.alloc as i64 - st.committed_alloc as i64;
        self.commit_with(batch, false, delta, true)?;
        st.committed_alloc = st.meta.alloc;
        st.journal.unsynced.clear();
        st.journal.logged.extend(logged);
        Ok(true)
    }

    /// Applies the journal records a crash left (see [`crate::writeback::Journal`])
    /// to their chunks and commits them. Runs when the volume opens.
    fn replay_journal(&self) -> Result<()> {
        let mut records: BTreeMap<Ino, Vec<(u64, u64, Vec<u8>)>> = BTreeMap::new();
        self.pool.engine().scan(
            Cf::Journal,
            &keys::u64_key(self.id),
            &keys::u64_key(self.id + 1),
            &mut |k, v| {
                if k.len() != 32 || v.len() < 4 {
                    return Err(StoreError::Corrupt(format!(
                        "volume {}: malformed journal record",
                        self.name
                    )));
                }
                let (ino, idx, seq) = (
                    keys::read_u64(k, 8),
                    keys::read_u64(k, 16),
                    keys::read_u64(k, 24),
                );
                records.entry(ino).or_default().push((idx, seq, v.to_vec()));
                Ok(true)
            },
        )?;
        let _b = self.enter();
        let cs = self.chunk_size as usize;
        for (ino, recs) in records {
            let slot = match self.slot(ino) {
                Ok(s) => s,
                Err(StoreError::NotFound(_)) => {
                    // The inode went in the same batch as its records should have.
                    let mut batch = Batch::default();
                    for (idx, seq, _) in &recs {
                        batch.delete(Cf::Journal, keys::quad(self.id, ino, *idx, *seq));
                    }
                    self.pool.engine().write(batch, false)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut st = slot.state.lock();
            for (idx, seq, value) in recs {
                let at = u32::from_be_bytes(value[..4].try_into().unwrap()) as usize;
                let bytes = &value[4..];
                if at + bytes.len() > cs {
                    return Err(StoreError::Corrupt(format!(
                        "volume {}: journal record of inode {ino} past its chunk",
                        self.name
                    )));
                }
                // In sequence order over the committed chunk: a patch, merged
                // with the chunk when the file commits below.
                let entry = st.chunks.entry(idx).or_insert_with(|| Buffered::Patch {
                    extents: Vec::new(),
                });
                let Buffered::Patch { extents } = entry else {
                    unreachable!("replay runs before any write buffers a chunk");
                };
                writeback::patch(extents, at as u32, bytes);
                st.journal.logged.push((idx, seq));
            }
            let mem: usize = st.chunks.values().map(|b| b.mem()).sum();
            self.account(mem as i64);
            self.commit_file(ino, &mut st, Batch::default())?;
            self.retire(ino, &mut st);
        }
        Ok(())
    }

    fn flush_file(&self, ino: Ino) -> Result<()> {
        match self.peek(ino) {
            Some(slot) => self.flush_slot(ino, &slot),
            None => Ok(()),
        }
    }

    pub(crate) fn flush_all(&self) -> Result<()> {
        let slots: Vec<(Ino, Arc<Slot>)> = self
            .files
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        for (ino, slot) in slots {
            self.flush_slot(ino, &slot)?;
        }
        Ok(())
    }

    fn check_quota(&self, charge: u64) -> Result<()> {
        let rec = self.rec.lock();
        if charge > 0 && rec.used + charge > rec.capacity {
            return Err(StoreError::NoSpace {
                volume: self.name.clone(),
                capacity: rec.capacity,
                used: rec.used,
            });
        }
        Ok(())
    }

    fn charge_used(&self, charge: u64) {
        if charge > 0 {
            self.rec.lock().used += charge;
        }
    }
}

impl Volume {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    pub fn chunk_size(&self) -> u32 {
        self.inner.chunk_size as u32
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    pub fn info(&self) -> Result<VolumeInfo> {
        Ok(info_of(&self.inner.record()))
    }

    pub fn statfs(&self) -> Result<StatFs> {
        let rec = self.inner.rec.lock();
        Ok(StatFs {
            capacity: rec.capacity,
            used: rec.used,
            inodes: rec.inodes,
            block_size: 4096,
            max_name: MAX_NAME as u32,
        })
    }
}
