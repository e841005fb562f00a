//! A pool: one RocksDB instance in a data directory holding many volumes.

use crate::chunks::ChunkStore;
use crate::engine::{decode_ref, Batch, Engine, RocksEngine};
use crate::error::{Result, StoreError};
use crate::gc::Cleaner;
use crate::keys::{self, Cf};
use crate::records::{self, ChunkLocation, ChunkRef, InodeRecord, VolumeRecord, VolumeState};
use crate::types::*;
use crate::volume::{Volume, VolumeInner};
use crate::writeback::Workers;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// The on-disk format this build reads and writes: 3 adds the journal of small
/// fsync'ed writes, 2 keeps chunk bodies in segment files (1 kept them in
/// RocksDB's BlobDB).
pub const FORMAT_VERSION: u32 = 3;
/// Chunk bytes a pool buffers in memory (written but not committed) before
/// writers wait for files to be committed.
pub const DIRTY_BUDGET: u64 = 128 << 20;

/// A handle on an open pool. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    pub(crate) inner: Arc<PoolInner>,
}

pub(crate) struct PoolInner {
    pub dir: PathBuf,
    pub engine: Arc<dyn Engine>,
    /// Held shared by every commit that adds chunk references, exclusively by GC.
    pub gate: Arc<RwLock<()>>,
    /// Serializes volume creation, deletion and renames of volume records.
    pub catalog: Mutex<()>,
    pub open: Mutex<HashMap<u64, Weak<VolumeInner>>>,
    pub chunks: Arc<ChunkStore>,
    /// Bytes of file data buffered in memory by every volume of the pool.
    pub dirty_bytes: AtomicU64,
    /// [`DIRTY_BUDGET`] unless [`Pool::set_dirty_budget`] changed it.
    pub dirty_budget: AtomicU64,
    /// The next sequence number of a journal record (see [`crate::writeback::Journal`]);
    /// the journal is empty once the pool is open, so numbering restarts there.
    pub journal_seq: AtomicU64,
    /// Held by the one writer that commits files to bring the buffers under
    /// [`DIRTY_BUDGET`]; the others wait for it.
    pub relieving: Mutex<()>,
    pub workers: Workers,
    /// The background cleaner, once [`Pool::start_cleaner`] started it.
    pub cleaner: Mutex<Option<Cleaner>>,
    _lock: File,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        if let Some(c) = self.cleaner.lock().take() {
            c.stop();
        }
        self.workers.stop();
        let _ = self.engine.flush_memtables();
    }
}

/// Called with (done, total) as a long operation advances.
pub type Progress<'a> = dyn FnMut(u64, u64) + 'a;

/// What a GC pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub chunks_deleted: u64,
    /// Disk bytes given back (segment files deleted or shrunk, inline chunks).
    pub bytes_freed: u64,
    pub segments_deleted: u64,
    /// Live record bytes the cleaner copied out of sparse segments.
    pub bytes_moved: u64,
}

/// What fsck found (and, with repair, fixed).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FsckReport {
    pub volumes: u64,
    pub inodes: u64,
    pub chunks: u64,
    pub leaked_chunks: u64,
    pub wrong_refcounts: u64,
    pub dangling_refs: u64,
    pub orphan_inodes: u64,
    pub dangling_entries: u64,
    pub wrong_nlinks: u64,
    pub wrong_usage: u64,
    /// Chunks whose stored record is missing or fails its checksums.
    pub damaged_chunks: u64,
    /// Segment bytes no index entry points at: what `gc` reclaims (not a problem).
    pub garbage_bytes: u64,
    /// Sealed segments without a live record (not a problem; `gc` deletes them).
    pub unreferenced_segments: u64,
    pub problems: Vec<String>,
    pub repaired: bool,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn validate_volume_name(name: &str) -> Result<()> {
    let ok_chars = name.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
    });
    if name.is_empty()
        || name.len() > 128
        || !ok_chars
        || name.starts_with('.')
        || name.starts_with('-')
    {
        return Err(StoreError::Invalid(format!(
            "volume name {name:?} must be 1-128 characters of [a-z0-9._-], not starting with '.' or '-'"
        )));
    }
    Ok(())
}

fn lock_pool(dir: &Path) -> Result<File> {
    let path = dir.join("tessera.lock");
    let io = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = pid.trim();
        return Err(StoreError::PoolInUse {
            dir: dir.to_path_buf(),
            pid: if pid.is_empty() {
                "unknown".into()
            } else {
                pid.to_string()
            },
        });
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

impl Pool {
    /// Opens (creating if needed) the pool in `dir`. One process at a time.
    pub fn open(dir: &Path) -> Result<Pool> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock = lock_pool(dir)?;
        let engine = RocksEngine::open(&dir.join("db"))?;
        match engine.get(Cf::Meta, keys::FORMAT_KEY)? {
            Some(v) => {
                let found = u32::from_be_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("format record".into()))?,
                );
                if found != FORMAT_VERSION {
                    return Err(StoreError::UnsupportedFormat {
                        dir: dir.to_path_buf(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            None => {
                let mut b = Batch::default();
                b.put(
                    Cf::Meta,
                    keys::FORMAT_KEY,
                    FORMAT_VERSION.to_be_bytes().to_vec(),
                );
                engine.write(b, true)?;
            }
        }
        let chunks = ChunkStore::open(&dir.join("segments"), &engine)?;
        let pool = Pool {
            inner: Arc::new(PoolInner {
                dir: dir.to_path_buf(),
                engine: Arc::new(engine),
                gate: Arc::new(RwLock::new(())),
                catalog: Mutex::new(()),
                open: Mutex::new(HashMap::new()),
                chunks: Arc::new(chunks),
                dirty_bytes: AtomicU64::new(0),
                dirty_budget: AtomicU64::new(DIRTY_BUDGET),
                journal_seq: AtomicU64::new(0),
                relieving: Mutex::new(()),
                workers: Workers::start(),
                cleaner: Mutex::new(None),
                _lock: lock,
            }),
        };
        pool.remove_pending_volumes()?;
        pool.replay_journals()?;
        Ok(pool)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub(crate) fn engine(&self) -> &dyn Engine {
        &*self.inner.engine
    }

    /// Opens each volume that has journal records (a crash left them), which
    /// replays them, so that afterwards no volume has any.
    fn replay_journals(&self) -> Result<()> {
        let mut ids = Vec::new();
        let mut from = Vec::new();
        loop {
            let mut next = None;
            self.engine()
                .scan(Cf::Journal, &from, &[0xff; 33], &mut |k, _| {
                    next = Some(keys::read_u64(k, 0));
                    Ok(false)
                })?;
            let Some(id) = next else { break };
            ids.push(id);
            from = keys::u64_key(id + 1);
        }
        for id in ids {
            let raw = self.engine().get(Cf::Volumes, &keys::u64_key(id))?;
            let Some(raw) = raw else {
                return Err(StoreError::Corrupt(format!(
                    "journal records of volume id {id}, which has no record"
                )));
            };
            let rec: VolumeRecord = records::decode(&raw, "volume record")?;
            drop(VolumeInner::open(self.clone(), rec)?);
        }
        Ok(())
    }

    /// Volumes left half-built or half-deleted by a crash.
    fn remove_pending_volumes(&self) -> Result<()> {
        for rec in self.all_records()? {
            if rec.state == VolumeState::Pending {
                self.destroy_volume(&rec)?;
            }
        }
        Ok(())
    }

    pub(crate) fn all_records(&self) -> Result<Vec<VolumeRecord>> {
        let mut out = Vec::new();
        self.engine()
            .scan(Cf::Volumes, &[], &[0xff; 9], &mut |_, v| {
                out.push(records::decode::<VolumeRecord>(v, "volume record")?);
                Ok(true)
            })?;
        Ok(out)
    }

    pub(crate) fn id_of(&self, name: &str) -> Result<Option<u64>> {
        Ok(self
            .engine()
            .get(Cf::Meta, &keys::volume_name(name))?
            .map(|v| keys::read_u64(&v, 0)))
    }

    /// The current record of a volume: the in-memory one if it is open.
    pub(crate) fn record(&self, name: &str) -> Result<VolumeRecord> {
        let id = self
            .id_of(name)?
            .ok_or_else(|| StoreError::NotFound(format!("volume {name}")))?;
        if let Some(v) = self.open_instance(id) {
            return Ok(v.record());
        }
        let raw = self
            .engine()
            .get(Cf::Volumes, &keys::u64_key(id))?
            .ok_or_else(|| StoreError::Corrupt(format!("volume {name} has no record")))?;
        let rec: VolumeRecord = records::decode(&raw, "volume record")?;
        if rec.state != VolumeState::Active {
            return Err(StoreError::NotFound(format!("volume {name}")));
        }
        Ok(rec)
    }

    pub(crate) fn open_instance(&self, id: u64) -> Option<Arc<VolumeInner>> {
        self.inner.open.lock().get(&id).and_then(|w| w.upgrade())
    }

    pub(crate) fn allocate_volume_id(&self, batch: &mut Batch) -> Result<u64> {
        let next = self
            .engine()
            .get(Cf::Meta, keys::NEXT_VOLUME_KEY)?
            .map(|v| keys::read_u64(&v, 0))
            .unwrap_or(1);
        batch.put(Cf::Meta, keys::NEXT_VOLUME_KEY, keys::u64_key(next + 1));
        Ok(next)
    }

    pub fn create_volume(&self, name: &str, opts: VolumeOptions) -> Result<VolumeInfo> {
        validate_volume_name(name)?;
        if !opts.chunk_size.is_power_of_two()
            || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&opts.chunk_size)
        {
            return Err(StoreError::Invalid(format!(
                "chunk size {} must be a power of two from 64 KiB to 4 MiB",
                opts.chunk_size
            )));
        }
        let _catalog = self.inner.catalog.lock();
        if self.id_of(name)?.is_some() {
            return Err(StoreError::Exists(format!("volume {name}")));
        }
        let mut batch = Batch::default();
        let id = self.allocate_volume_id(&mut batch)?;
        let now = Timestamp::now();
        let rec = VolumeRecord {
            id,
            name: name.to_string(),
            capacity: opts.capacity,
            used: 0,
            inodes: 1,
            next_ino: 2,
            chunk_size: opts.chunk_size,
            compression: opts.compression,
            created: now,
            read_only: false,
            snapshot_of: None,
            state: VolumeState::Active,
        };
        let root = InodeRecord {
            kind: FileKind::Dir,
            perm: 0o755,
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
            nlink: 2,
            size: 0,
            alloc: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            rdev: 0,
            parent: ROOT_INO,
            next_cookie: 3,
            target: Vec::new(),
        };
        batch.put(Cf::Meta, keys::volume_name(name), keys::u64_key(id));
        batch.put(Cf::Volumes, keys::u64_key(id), records::encode(&rec));
        batch.put(Cf::Inodes, keys::pair(id, ROOT_INO), records::encode(&root));
        self.engine().write(batch, true)?;
        Ok(info_of(&rec))
    }

    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>> {
        let mut out = Vec::new();
        for rec in self.all_records()? {
            if rec.state != VolumeState::Active {
                continue;
            }
            let rec = match self.open_instance(rec.id) {
                Some(v) => v.record(),
                None => rec,
            };
            out.push(info_of(&rec));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn volume_info(&self, name: &str) -> Result<VolumeInfo> {
        Ok(info_of(&self.record(name)?))
    }

    pub fn resize_volume(&self, name: &str, capacity: u64) -> Result<VolumeInfo> {
        let _catalog = self.inner.catalog.lock();
        let id = self
            .id_of(name)?
            .ok_or_else(|| StoreError::NotFound(format!("volume {name}")))?;
        if let Some(v) = self.open_instance(id) {
            return v.set_capacity(capacity).map(|r| info_of(&r));
        }
        let mut rec = self.record(name)?;
        if rec.read_only {
            return Err(StoreError::ReadOnly);
        }
        if capacity < rec.used {
            return Err(StoreError::Invalid(format!(
                "capacity {capacity} is below the {} bytes volume {name} uses",
                rec.used
            )));
        }
        rec.capacity = capacity;
        let mut batch = Batch::default();
        batch.put(Cf::Volumes, keys::u64_key(id), records::encode(&rec));
        self.engine().write(batch, true)?;
        Ok(info_of(&rec))
    }

    /// Deletes a volume and releases every chunk reference it held.
    pub fn delete_volume(&self, name: &str) -> Result<()> {
        let _catalog = self.inner.catalog.lock();
        let id = self
            .id_of(name)?
            .ok_or_else(|| StoreError::NotFound(format!("volume {name}")))?;
        if self.open_instance(id).is_some() {
            return Err(StoreError::InUse(format!("volume {name}")));
        }
        let rec = self.record(name)?;
        self.destroy_volume(&rec)
    }

    /// Removes every key of a volume in one batch, dropping its chunk references.
    pub(crate) fn destroy_volume(&self, rec: &VolumeRecord) -> Result<()> {
        let _gate = self.inner.gate.read();
        let mut batch = Batch::default();
        let start = keys::u64_key(rec.id);
        let end = keys::u64_key(rec.id + 1);
        self.engine()
            .scan(Cf::ChunkMap, &start, &end, &mut |_, v| {
                batch.add_ref(&ChunkRef::decode(v)?.hash, -1);
                Ok(true)
            })?;
        for cf in Cf::PER_VOLUME {
            batch.delete_range(cf, start.clone(), end.clone());
        }
        batch.delete(Cf::Volumes, start.clone());
        if self.id_of(&rec.name)? == Some(rec.id) {
            batch.delete(Cf::Meta, keys::volume_name(&rec.name));
        }
        self.engine().write(batch, true)
    }

    /// Opens a volume for filesystem calls. While any handle is alive the
    /// volume counts as in use; every caller gets the same instance.
    pub fn open_volume(&self, name: &str) -> Result<Volume> {
        let _catalog = self.inner.catalog.lock();
        let id = self
            .id_of(name)?
            .ok_or_else(|| StoreError::NotFound(format!("volume {name}")))?;
        if let Some(v) = self.open_instance(id) {
            return Ok(Volume { inner: v });
        }
        let rec = self.record(name)?;
        let inner = VolumeInner::open(self.clone(), rec)?;
        self.inner.open.lock().insert(id, Arc::downgrade(&inner));
        Ok(Volume { inner })
    }

    fn open_volumes(&self) -> Vec<Arc<VolumeInner>> {
        self.inner
            .open
            .lock()
            .values()
            .filter_map(|w| w.upgrade())
            .collect()
    }

    /// Flushes every open volume and makes all acknowledged writes durable.
    pub fn sync(&self) -> Result<()> {
        for v in self.open_volumes() {
            v.flush_all()?;
        }
        self.engine().sync()
    }

    /// Sets how many bytes of written, not yet committed file data the pool
    /// buffers in memory before writers wait for commits (default [`DIRTY_BUDGET`]).
    pub fn set_dirty_budget(&self, bytes: u64) {
        self.inner.dirty_budget.store(bytes, Ordering::Relaxed);
    }

    /// Bytes of file data buffered in memory, written but not yet committed.
    pub fn dirty_bytes(&self) -> u64 {
        self.inner.dirty_bytes.load(Ordering::Relaxed)
    }

    /// Back-pressure: when the pool buffers more than its dirty budget, one
    /// writer commits the open volumes' files while the others wait for it.
    pub(crate) fn relieve(&self) -> Result<()> {
        let over = || {
            self.inner.dirty_bytes.load(Ordering::Relaxed)
                > self.inner.dirty_budget.load(Ordering::Relaxed)
        };
        if !over() {
            return Ok(());
        }
        let _one = self.inner.relieving.lock();
        if !over() {
            return Ok(());
        }
        for v in self.open_volumes() {
            v.flush_all()?;
        }
        Ok(())
    }

    pub fn usage(&self) -> Result<PoolUsage> {
        let mut u = PoolUsage::default();
        // Chunks at zero references still have index entries until gc drops them:
        // their records are garbage already.
        let mut dead = std::collections::HashSet::new();
        self.engine()
            .scan(Cf::Refs, &[], &[0xff; 33], &mut |k, v| {
                if crate::engine::decode_ref(v) <= 0 {
                    dead.insert(k.to_vec());
                }
                Ok(true)
            })?;
        self.engine()
            .scan(Cf::ChunkIndex, &[], &[0xff; 33], &mut |k, v| {
                let loc = ChunkLocation::decode(v)?;
                u.chunks += 1;
                u.unique_bytes += loc.raw_len as u64;
                u.physical_bytes += loc.stored_len as u64;
                if !dead.contains(k) {
                    u.live_bytes += loc.segment_bytes();
                }
                Ok(true)
            })?;
        let mut headers = 0;
        for (_, len) in self.inner.chunks.segments.segments()? {
            u.segment_bytes += len;
            headers += crate::segment::SEGMENT_HEADER.min(len);
        }
        u.garbage_bytes = u.segment_bytes.saturating_sub(u.live_bytes + headers);
        for v in self.list_volumes()? {
            u.logical_bytes += v.used;
        }
        u.dedup_ratio = if u.unique_bytes == 0 {
            1.0
        } else {
            u.logical_bytes as f64 / u.unique_bytes as f64
        };
        u.compression_ratio = if u.physical_bytes == 0 {
            1.0
        } else {
            u.unique_bytes as f64 / u.physical_bytes as f64
        };
        Ok(u)
    }

    /// Recounts references from the metadata and checks the namespace.
    /// Runs with the gate held exclusively and every open volume flushed.
    pub fn fsck(&self, repair: bool) -> Result<FsckReport> {
        self.fsck_with_progress(repair, &mut |_, _| {})
    }

    /// [`Pool::fsck`], calling `progress(done, total)`: one step for the
    /// chunk recount, then one per volume.
    pub fn fsck_with_progress(&self, repair: bool, progress: &mut Progress) -> Result<FsckReport> {
        self.fsck_full(repair, false, progress)
    }

    /// [`Pool::fsck_with_progress`]; with `verify_data` every chunk is also
    /// decoded and re-hashed, not only checked against its record checksums.
    pub fn fsck_full(
        &self,
        repair: bool,
        verify_data: bool,
        progress: &mut Progress,
    ) -> Result<FsckReport> {
        self.sync()?;
        let _gate = self.inner.gate.write();
        // Chunks sealed before this pass are stored again at their commit.
        self.inner.chunks.next_epoch();
        let mut report = FsckReport::default();
        let engine = self.engine();
        let mut counted: HashMap<keys::Hash, i64> = HashMap::new();
        engine.scan(Cf::ChunkMap, &[], &[0xff; 25], &mut |_, v| {
            *counted.entry(ChunkRef::decode(v)?.hash).or_default() += 1;
            Ok(true)
        })?;
        let mut stored: HashMap<keys::Hash, i64> = HashMap::new();
        engine.scan(Cf::Refs, &[], &[0xff; 33], &mut |k, v| {
            let mut h = [0u8; 32];
            h.copy_from_slice(k);
            stored.insert(h, decode_ref(v));
            Ok(true)
        })?;
        let mut fix = Batch::default();
        for (hash, &n) in &counted {
            if engine.get(Cf::ChunkIndex, hash)?.is_none() {
                report.dangling_refs += 1;
                report.problems.push(format!(
                    "chunk {} is referenced {n} times but missing",
                    hex(hash)
                ));
                continue;
            }
            let have = stored.get(hash).copied().unwrap_or(0);
            if have != n {
                report.wrong_refcounts += 1;
                report.problems.push(format!(
                    "chunk {} has refcount {have}, expected {n}",
                    hex(hash)
                ));
                fix.put(Cf::Refs, hash.to_vec(), n.to_le_bytes().to_vec());
            }
        }
        let chunks = &self.inner.chunks;
        engine.scan(Cf::ChunkIndex, &[], &[0xff; 33], &mut |k, v| {
            report.chunks += 1;
            let mut h = [0u8; 32];
            h.copy_from_slice(k);
            match ChunkLocation::decode(v).and_then(|loc| chunks.verify(&h, &loc, verify_data)) {
                Ok(()) => {}
                Err(e @ (StoreError::Damaged(_) | StoreError::Corrupt(_))) => {
                    report.damaged_chunks += 1;
                    report
                        .problems
                        .push(format!("{e} (cannot be repaired here)"));
                }
                Err(e) => return Err(e),
            }
            if !counted.contains_key(&h) {
                let have = stored.get(&h).copied().unwrap_or(0);
                if have != 0 || !stored.contains_key(&h) {
                    report.leaked_chunks += 1;
                    report.problems.push(format!(
                        "chunk {} is unreferenced (refcount {have})",
                        hex(&h)
                    ));
                    fix.put(Cf::Refs, h.to_vec(), 0i64.to_le_bytes().to_vec());
                }
            }
            Ok(true)
        })?;
        let live = self.live_bytes_per_segment()?;
        let active = self.inner.chunks.segments.active_id();
        for (id, len) in self.inner.chunks.segments.segments()? {
            let used = live.get(&id).copied().unwrap_or(0);
            report.garbage_bytes += len.saturating_sub(used + crate::segment::SEGMENT_HEADER);
            if used == 0 && id != active {
                report.unreferenced_segments += 1;
            }
        }
        for id in live.keys() {
            if !self.inner.chunks.segments.path_of(*id).exists() {
                report
                    .problems
                    .push(format!("segment {id:x} is referenced but missing"));
            }
        }
        let records: Vec<VolumeRecord> = self
            .all_records()?
            .into_iter()
            .filter(|r| r.state == VolumeState::Active)
            .collect();
        let total = records.len() as u64 + 1;
        progress(1, total);
        for rec in records {
            report.volumes += 1;
            self.fsck_volume(&rec, &mut report, &mut fix)?;
            progress(report.volumes + 1, total);
        }
        if repair && !fix.is_empty() {
            engine.write(fix, true)?;
            report.repaired = true;
        }
        Ok(report)
    }

    fn fsck_volume(
        &self,
        rec: &VolumeRecord,
        report: &mut FsckReport,
        fix: &mut Batch,
    ) -> Result<()> {
        let engine = self.engine();
        let id = rec.id;
        let (start, end) = (keys::u64_key(id), keys::u64_key(id + 1));
        let mut inodes: HashMap<u64, InodeRecord> = HashMap::new();
        engine.scan(Cf::Inodes, &start, &end, &mut |k, v| {
            inodes.insert(keys::read_u64(k, 8), records::decode(v, "inode")?);
            Ok(true)
        })?;
        report.inodes += inodes.len() as u64;
        let mut orphans = HashSet::new();
        engine.scan(Cf::Orphans, &start, &end, &mut |k, _| {
            orphans.insert(keys::read_u64(k, 8));
            Ok(true)
        })?;
        let mut links: HashMap<u64, u32> = HashMap::new();
        let mut subdirs: HashMap<u64, u32> = HashMap::new();
        let name = &rec.name;
        engine.scan(Cf::Dentries, &start, &end, &mut |k, v| {
            let parent = keys::read_u64(k, 8);
            let d: records::Dentry = records::decode(v, "dentry")?;
            if !inodes.contains_key(&d.ino) {
                report.dangling_entries += 1;
                report.problems.push(format!(
                    "volume {name}: entry {:?} in directory {parent} points to missing inode {}",
                    String::from_utf8_lossy(&k[16..]),
                    d.ino
                ));
                fix.delete(Cf::Dentries, k.to_vec());
                fix.delete(Cf::DirCookies, keys::triple(id, parent, d.cookie));
            } else {
                *links.entry(d.ino).or_default() += 1;
                if d.kind == FileKind::Dir {
                    *subdirs.entry(parent).or_default() += 1;
                }
            }
            Ok(true)
        })?;
        let mut used = 0u64;
        for (&ino, inode) in &inodes {
            let seen = links.get(&ino).copied().unwrap_or(0);
            if ino != ROOT_INO && seen == 0 && !orphans.contains(&ino) {
                report.orphan_inodes += 1;
                report.problems.push(format!(
                    "volume {name}: inode {ino} is not linked from any directory"
                ));
                let mut refs = Vec::new();
                engine.scan(
                    Cf::ChunkMap,
                    &keys::pair(id, ino),
                    &keys::pair(id, ino + 1),
                    &mut |_, v| {
                        refs.push(ChunkRef::decode(v)?.hash);
                        Ok(true)
                    },
                )?;
                for h in refs {
                    fix.add_ref(&h, -1);
                }
                for cf in [
                    Cf::Inodes,
                    Cf::Xattrs,
                    Cf::ChunkMap,
                    Cf::Dentries,
                    Cf::DirCookies,
                ] {
                    fix.delete_range(cf, keys::pair(id, ino), keys::pair(id, ino + 1));
                }
                continue;
            }
            used += inode.alloc;
            let expected = if inode.kind == FileKind::Dir {
                2 + subdirs.get(&ino).copied().unwrap_or(0)
            } else {
                seen
            };
            if inode.nlink != expected && !orphans.contains(&ino) {
                report.wrong_nlinks += 1;
                report.problems.push(format!(
                    "volume {name}: inode {ino} has nlink {}, expected {expected}",
                    inode.nlink
                ));
                let mut fixed = inode.clone();
                fixed.nlink = expected;
                fix.put(Cf::Inodes, keys::pair(id, ino), records::encode(&fixed));
            }
        }
        if used != rec.used {
            report.wrong_usage += 1;
            report.problems.push(format!(
                "volume {name}: records {} bytes used, files hold {used}",
                rec.used
            ));
            let mut fixed = rec.clone();
            fixed.used = used;
            fixed.inodes = inodes.len() as u64;
            fix.put(Cf::Volumes, keys::u64_key(id), records::encode(&fixed));
        }
        Ok(())
    }
}

pub(crate) fn info_of(rec: &VolumeRecord) -> VolumeInfo {
    VolumeInfo {
        id: rec.id,
        name: rec.name.clone(),
        capacity: rec.capacity,
        used: rec.used,
        inodes: rec.inodes,
        chunk_size: rec.chunk_size,
        compression: rec.compression,
        created: rec.created,
        read_only: rec.read_only,
        snapshot_of: rec.snapshot_of.clone(),
    }
}

pub(crate) use crate::chunks::hex;
