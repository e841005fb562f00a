//! Filesystem-shaped operations on one volume.
//!
//! Every mutation runs under the volume's state lock and ends in one
//! [`Batch`]. File data is buffered per file as dirty chunks (see the crate
//! docs) and persisted by [`Volume::flush`], `fsync`, `release`, truncation,
//! and when the pool's dirty budget is exceeded.

use crate::chunks;
use crate::engine::Batch;
use crate::error::{Result, StoreError};
use crate::holds::HoldCounts;
use crate::keys::{self, Cf};
use crate::pool::{info_of, Pool, DIRTY_BUDGET};
use crate::records::{self, ChunkRef, CookieEntry, Dentry, InodeRecord, VolumeRecord};
use crate::types::*;
use dashmap::DashSet;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest file size; offsets beyond it get EFBIG.
pub const MAX_FILE_SIZE: u64 = 1 << 52;
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;

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
    st: Mutex<VolState>,
    /// The counts of every live [`crate::InodeHolds`] of this volume.
    pub(crate) holders: RwLock<Vec<HoldCounts>>,
    /// Inodes whose last link went while this instance was open and that may still
    /// be orphans: a forget needs the volume lock only for these.
    unlinked: DashSet<Ino>,
}

struct VolState {
    rec: VolumeRecord,
    /// Files with data or metadata newer than the store holds.
    files: HashMap<Ino, FileState>,
    /// Open handles per inode ([`Volume::open`]).
    opens: HashMap<Ino, u32>,
}

struct FileState {
    inode: InodeRecord,
    /// Chunk index → bytes from the chunk's start; bytes past the end are zero.
    dirty: BTreeMap<u64, Vec<u8>>,
}

impl Drop for VolumeInner {
    fn drop(&mut self) {
        let _ = self.flush_all();
        let mut open = self.pool.inner.open.lock();
        if open.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
            open.remove(&self.id);
        }
    }
}

pub(crate) struct Quiesced<'a> {
    st: parking_lot::MutexGuard<'a, VolState>,
}

impl Quiesced<'_> {
    pub fn record(&self) -> VolumeRecord {
        self.st.rec.clone()
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

fn resolve(t: TimeSet, now: Timestamp) -> Timestamp {
    match t {
        TimeSet::Now => now,
        TimeSet::At(t) => t,
    }
}

/// Bytes of chunk `idx` that lie below `size`.
fn chunk_len(cs: u64, idx: u64, size: u64) -> u64 {
    size.saturating_sub(idx * cs).min(cs)
}

/// One metadata transaction: inode records read and changed, plus the batch.
struct Txn<'a> {
    vol: &'a VolumeInner,
    st: &'a mut VolState,
    batch: Batch,
    touched: BTreeMap<Ino, Option<InodeRecord>>,
}

impl<'a> Txn<'a> {
    fn new(vol: &'a VolumeInner, st: &'a mut VolState) -> Result<Txn<'a>> {
        if vol.read_only {
            return Err(StoreError::ReadOnly);
        }
        Ok(Txn {
            vol,
            st,
            batch: Batch::default(),
            touched: BTreeMap::new(),
        })
    }

    fn get(&mut self, ino: Ino) -> Result<InodeRecord> {
        match self.touched.get(&ino) {
            Some(Some(r)) => Ok(r.clone()),
            Some(None) => Err(StoreError::NotFound(format!("inode {ino}"))),
            None => self.vol.load(self.st, ino),
        }
    }

    fn dir(&mut self, ino: Ino) -> Result<InodeRecord> {
        let r = self.get(ino)?;
        if r.kind != FileKind::Dir {
            return Err(StoreError::NotDir);
        }
        if r.nlink == 0 {
            return Err(StoreError::NotFound("directory was removed".into()));
        }
        Ok(r)
    }

    fn set(&mut self, ino: Ino, r: InodeRecord) {
        self.touched.insert(ino, Some(r));
    }

    fn entry(&self, parent: Ino, name: &[u8]) -> Result<Option<Dentry>> {
        self.vol
            .pool
            .engine()
            .get(Cf::Dentries, &keys::pair_name(self.vol.id, parent, name))?
            .map(|v| records::decode(&v, "dentry"))
            .transpose()
    }

    fn add_entry(
        &mut self,
        parent: Ino,
        dir: &mut InodeRecord,
        name: &[u8],
        ino: Ino,
        kind: FileKind,
    ) {
        let cookie = dir.next_cookie;
        dir.next_cookie += 1;
        let id = self.vol.id;
        self.batch.put(
            Cf::Dentries,
            keys::pair_name(id, parent, name),
            records::encode(&Dentry { ino, kind, cookie }),
        );
        self.batch.put(
            Cf::DirCookies,
            keys::triple(id, parent, cookie),
            records::encode(&CookieEntry {
                name: name.to_vec(),
                ino,
                kind,
            }),
        );
    }

    fn remove_entry(&mut self, parent: Ino, name: &[u8], d: &Dentry) {
        let id = self.vol.id;
        self.batch
            .delete(Cf::Dentries, keys::pair_name(id, parent, name));
        self.batch
            .delete(Cf::DirCookies, keys::triple(id, parent, d.cookie));
    }

    fn is_empty_dir(&self, ino: Ino) -> Result<bool> {
        let mut empty = true;
        let id = self.vol.id;
        self.vol.pool.engine().scan(
            Cf::DirCookies,
            &keys::pair(id, ino),
            &keys::pair(id, ino + 1),
            &mut |_, _| {
                empty = false;
                Ok(false)
            },
        )?;
        Ok(empty)
    }

    /// Drops one link of `ino`. With none left it becomes an orphan while a handle or
    /// a hold keeps it, and is deleted otherwise.
    fn unlink_inode(&mut self, ino: Ino, now: Timestamp) -> Result<()> {
        let mut r = self.get(ino)?;
        r.nlink = if r.kind == FileKind::Dir {
            0
        } else {
            r.nlink.saturating_sub(1)
        };
        r.ctime = now;
        if r.nlink > 0 {
            self.set(ino, r);
            return Ok(());
        }
        // Before looking for references: a hold dropped concurrently either is seen
        // here or sees this mark (and then purges the orphan itself).
        self.vol.unlinked.insert(ino);
        if self.vol.is_referenced(self.st, ino) {
            self.batch
                .put(Cf::Orphans, keys::pair(self.vol.id, ino), Vec::new());
            self.set(ino, r);
        } else {
            self.purge(ino, &r)?;
        }
        Ok(())
    }

    /// Deletes an inode with its xattrs and chunk references.
    fn purge(&mut self, ino: Ino, r: &InodeRecord) -> Result<()> {
        let id = self.vol.id;
        let (from, to) = (keys::pair(id, ino), keys::pair(id, ino + 1));
        // Point deletes of the keys found, not range deletes: every range tombstone
        // stays in the memtable's list that each later read consults, so deleting many
        // files with them slows every following operation down.
        let batch = &mut self.batch;
        let engine = self.vol.pool.engine();
        engine.scan(Cf::ChunkMap, &from, &to, &mut |k, v| {
            batch.add_ref(&ChunkRef::decode(v)?.hash, -1);
            batch.delete(Cf::ChunkMap, k.to_vec());
            Ok(true)
        })?;
        engine.scan(Cf::Xattrs, &from, &to, &mut |k, _| {
            batch.delete(Cf::Xattrs, k.to_vec());
            Ok(true)
        })?;
        self.batch.delete(Cf::Inodes, from.clone());
        self.batch.delete(Cf::Orphans, from);
        if let Some(fs) = self.st.files.remove(&ino) {
            self.vol.release_dirty(&fs);
        }
        self.st.rec.used = self.st.rec.used.saturating_sub(r.alloc);
        self.st.rec.inodes = self.st.rec.inodes.saturating_sub(1);
        self.touched.insert(ino, None);
        Ok(())
    }

    fn commit(self) -> Result<()> {
        let Txn {
            vol,
            st,
            mut batch,
            touched,
        } = self;
        let mut purged = Vec::new();
        for (ino, r) in touched {
            if let Some(r) = r {
                batch.put(Cf::Inodes, keys::pair(vol.id, ino), records::encode(&r));
                if let Some(fs) = st.files.get_mut(&ino) {
                    fs.inode = r;
                }
            } else {
                purged.push(ino);
            }
        }
        vol.commit(st, batch)?;
        for ino in purged {
            vol.unlinked.remove(&ino);
        }
        Ok(())
    }
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
            st: Mutex::new(VolState {
                rec,
                files: HashMap::new(),
                opens: HashMap::new(),
            }),
            holders: RwLock::default(),
            unlinked: DashSet::new(),
        });
        inner.purge_orphans()?;
        Ok(inner)
    }

    /// Whether an open handle or a hold keeps `ino` alive without links.
    fn is_referenced(&self, st: &VolState, ino: Ino) -> bool {
        st.opens.get(&ino).is_some_and(|&n| n > 0) || self.is_held(ino)
    }

    /// Deletes `ino` if it has no link, handle or hold left (its last hold just went).
    pub(crate) fn purge_if_unreferenced(&self, ino: Ino) -> Result<()> {
        if self.read_only || !self.unlinked.contains(&ino) {
            return Ok(());
        }
        let mut st = self.st.lock();
        if self.is_referenced(&st, ino) {
            return Ok(());
        }
        let r = match self.load(&st, ino) {
            Ok(r) if r.nlink == 0 => r,
            Ok(_) | Err(StoreError::NotFound(_)) => {
                self.unlinked.remove(&ino);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut txn = Txn::new(self, &mut st)?;
        txn.purge(ino, &r)?;
        txn.commit()
    }

    /// Deletes the orphans (inodes without links) that no handle or hold keeps: at
    /// open, those the last process holding the pool left; later, those a holder that
    /// went away kept.
    pub(crate) fn purge_orphans(&self) -> Result<()> {
        let mut orphans = Vec::new();
        self.pool.engine().scan(
            Cf::Orphans,
            &keys::u64_key(self.id),
            &keys::u64_key(self.id + 1),
            &mut |k, _| {
                orphans.push(keys::read_u64(k, 8));
                Ok(true)
            },
        )?;
        if orphans.is_empty() {
            return Ok(());
        }
        let mut st = self.st.lock();
        orphans.retain(|&ino| !self.is_referenced(&st, ino));
        if orphans.is_empty() {
            return Ok(());
        }
        let mut txn = Txn {
            vol: self,
            st: &mut st,
            batch: Batch::default(),
            touched: BTreeMap::new(),
        };
        for ino in orphans {
            match txn.get(ino) {
                Ok(r) => txn.purge(ino, &r)?,
                Err(StoreError::NotFound(_)) => {
                    txn.batch.delete(Cf::Orphans, keys::pair(self.id, ino))
                }
                Err(e) => return Err(e),
            }
        }
        txn.commit()
    }

    /// Flushes the volume and holds its state lock: no operation runs until
    /// the guard drops.
    pub(crate) fn quiesce(&self) -> Result<Quiesced<'_>> {
        let mut st = self.st.lock();
        self.flush_locked(&mut st, None)?;
        Ok(Quiesced { st })
    }

    pub(crate) fn record(&self) -> VolumeRecord {
        self.st.lock().rec.clone()
    }

    pub(crate) fn set_capacity(&self, capacity: u64) -> Result<VolumeRecord> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let mut st = self.st.lock();
        if capacity < st.rec.used {
            return Err(StoreError::Invalid(format!(
                "capacity {capacity} is below the {} bytes volume {} uses",
                st.rec.used, self.name
            )));
        }
        st.rec.capacity = capacity;
        self.commit(&mut st, Batch::default())?;
        Ok(st.rec.clone())
    }

    fn load(&self, st: &VolState, ino: Ino) -> Result<InodeRecord> {
        if let Some(fs) = st.files.get(&ino) {
            return Ok(fs.inode.clone());
        }
        let raw = self
            .pool
            .engine()
            .get(Cf::Inodes, &keys::pair(self.id, ino))?
            .ok_or_else(|| StoreError::NotFound(format!("inode {ino}")))?;
        records::decode(&raw, "inode")
    }

    fn commit(&self, st: &mut VolState, mut batch: Batch) -> Result<()> {
        batch.put(
            Cf::Volumes,
            keys::u64_key(self.id),
            records::encode(&st.rec),
        );
        let _gate = self.pool.inner.gate.read_recursive();
        // Chunk bytes are durable before any reference to them commits.
        self.pool.inner.chunks.segments.make_durable()?;
        self.pool.engine().write(batch, false)
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

    fn present(&self, st: &VolState, ino: Ino, idx: u64) -> Result<bool> {
        if st
            .files
            .get(&ino)
            .is_some_and(|f| f.dirty.contains_key(&idx))
        {
            return Ok(true);
        }
        Ok(self.chunk_ref(ino, idx)?.is_some())
    }

    /// Logical bytes a write of `[off, off+len)` newly charges to the quota.
    fn charge(&self, st: &VolState, ino: Ino, size: u64, off: u64, len: u64) -> Result<u64> {
        if len == 0 {
            return Ok(0);
        }
        let cs = self.chunk_size;
        let new_size = size.max(off + len);
        let last = if size > 0 {
            Some((size - 1) / cs)
        } else {
            None
        };
        let mut delta = 0;
        let mut last_present = false;
        if let Some(l) = last {
            if self.present(st, ino, l)? {
                last_present = true;
                delta += chunk_len(cs, l, new_size) - chunk_len(cs, l, size);
            }
        }
        for idx in off / cs..=(off + len - 1) / cs {
            if Some(idx) == last && last_present {
                continue;
            }
            if last.is_none_or(|l| idx > l) || !self.present(st, ino, idx)? {
                delta += chunk_len(cs, idx, new_size);
            }
        }
        Ok(delta)
    }

    fn release_dirty(&self, fs: &FileState) {
        let bytes: u64 = fs.dirty.values().map(|b| b.len() as u64).sum();
        self.pool
            .inner
            .dirty_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The bytes of chunk `idx` as a buffer to modify.
    fn chunk_bytes(&self, ino: Ino, idx: u64) -> Result<Vec<u8>> {
        let _gate = self.pool.inner.gate.read_recursive();
        match self.chunk_ref(ino, idx)? {
            Some(r) => {
                let data = self.pool.inner.chunks.load(self.pool.engine(), &r.hash)?;
                Ok(Arc::try_unwrap(data).unwrap_or_else(|shared| shared.to_vec()))
            }
            None => Ok(Vec::new()),
        }
    }

    fn file_state<'s>(&self, st: &'s mut VolState, ino: Ino) -> Result<&'s mut FileState> {
        if !st.files.contains_key(&ino) {
            let inode = self.load(st, ino)?;
            st.files.insert(
                ino,
                FileState {
                    inode,
                    dirty: BTreeMap::new(),
                },
            );
        }
        Ok(st.files.get_mut(&ino).unwrap())
    }

    /// Applies a write to the dirty buffers. The caller checked kind and quota.
    fn buffer_write(
        &self,
        st: &mut VolState,
        ino: Ino,
        off: u64,
        data: &[u8],
        charge: u64,
    ) -> Result<()> {
        let cs = self.chunk_size;
        let mut added = 0i64;
        let mut pos = 0usize;
        while pos < data.len() {
            let abs = off + pos as u64;
            let idx = abs / cs;
            let in_chunk = (abs % cs) as usize;
            let n = (cs as usize - in_chunk).min(data.len() - pos);
            let needs_base = !(in_chunk == 0 && n == cs as usize);
            let has = st
                .files
                .get(&ino)
                .is_some_and(|f| f.dirty.contains_key(&idx));
            let base = if !has && needs_base {
                Some(self.chunk_bytes(ino, idx)?)
            } else {
                None
            };
            let fs = self.file_state(st, ino)?;
            // A chunk read in from the store counts as dirty bytes from now on.
            added += base.as_ref().map_or(0, Vec::len) as i64;
            let buf = fs
                .dirty
                .entry(idx)
                .or_insert_with(|| base.unwrap_or_default());
            let before = buf.len();
            if buf.len() < in_chunk + n {
                buf.resize(in_chunk + n, 0);
            }
            buf[in_chunk..in_chunk + n].copy_from_slice(&data[pos..pos + n]);
            added += buf.len() as i64 - before as i64;
            pos += n;
        }
        if added > 0 {
            self.pool
                .inner
                .dirty_bytes
                .fetch_add(added as u64, Ordering::Relaxed);
        }
        let now = Timestamp::now();
        let fs = self.file_state(st, ino)?;
        fs.inode.size = fs.inode.size.max(off + data.len() as u64);
        fs.inode.alloc += charge;
        fs.inode.mtime = now;
        fs.inode.ctime = now;
        st.rec.used += charge;
        Ok(())
    }

    /// Moves a file's dirty chunks and inode record into `batch`.
    fn flush_file_into(
        &self,
        st: &mut VolState,
        ino: Ino,
        batch: &mut Batch,
    ) -> Result<Option<InodeRecord>> {
        let Some(mut fs) = st.files.remove(&ino) else {
            return Ok(None);
        };
        self.release_dirty(&fs);
        let cs = self.chunk_size;
        let size = fs.inode.size;
        let engine = self.pool.engine();
        for (idx, mut buf) in std::mem::take(&mut fs.dirty) {
            let len = chunk_len(cs, idx, size) as usize;
            let key = keys::triple(self.id, ino, idx);
            let old = self.chunk_ref(ino, idx)?;
            if len == 0 {
                continue;
            }
            buf.resize(len, 0);
            if buf.iter().all(|&b| b == 0) {
                if let Some(old) = old {
                    batch.add_ref(&old.hash, -1);
                    batch.delete(Cf::ChunkMap, key);
                }
                fs.inode.alloc = fs.inode.alloc.saturating_sub(len as u64);
                st.rec.used = st.rec.used.saturating_sub(len as u64);
                continue;
            }
            let hash = chunks::hash(&buf);
            if old.is_some_and(|o| o.hash == hash && o.len as usize == len) {
                continue;
            }
            self.pool
                .inner
                .chunks
                .put(engine, batch, &hash, &buf, self.compression)?;
            batch.add_ref(&hash, 1);
            if let Some(old) = old {
                batch.add_ref(&old.hash, -1);
            }
            batch.put(
                Cf::ChunkMap,
                key,
                ChunkRef {
                    hash,
                    len: len as u32,
                }
                .encode(),
            );
        }
        batch.put(
            Cf::Inodes,
            keys::pair(self.id, ino),
            records::encode(&fs.inode),
        );
        Ok(Some(fs.inode))
    }

    fn flush_locked(&self, st: &mut VolState, ino: Option<Ino>) -> Result<()> {
        let inos: Vec<Ino> = match ino {
            Some(i) => st.files.contains_key(&i).then_some(i).into_iter().collect(),
            None => st.files.keys().copied().collect(),
        };
        if inos.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        let _gate = self.pool.inner.gate.read_recursive();
        for i in inos {
            self.flush_file_into(st, i, &mut batch)?;
        }
        batch.put(
            Cf::Volumes,
            keys::u64_key(self.id),
            records::encode(&st.rec),
        );
        // Chunk bytes are durable before any reference to them commits.
        self.pool.inner.chunks.segments.make_durable()?;
        self.pool.engine().write(batch, false)
    }

    pub(crate) fn flush_all(&self) -> Result<()> {
        let mut st = self.st.lock();
        self.flush_locked(&mut st, None)
    }

    /// Changes a file's size: drops chunks past the end, zeroes the tail of the
    /// new last chunk, and persists the file in the same batch.
    fn truncate(
        &self,
        st: &mut VolState,
        ino: Ino,
        new_size: u64,
        batch: &mut Batch,
    ) -> Result<InodeRecord> {
        let cs = self.chunk_size;
        let old_size = self.load(st, ino)?.size;
        if new_size > MAX_FILE_SIZE {
            return Err(StoreError::FileTooBig);
        }
        if new_size > old_size {
            let charge = if old_size > 0 && self.present(st, ino, (old_size - 1) / cs)? {
                let l = (old_size - 1) / cs;
                chunk_len(cs, l, new_size) - chunk_len(cs, l, old_size)
            } else {
                0
            };
            self.check_quota(st, charge)?;
            let fs = self.file_state(st, ino)?;
            fs.inode.size = new_size;
            fs.inode.alloc += charge;
            st.rec.used += charge;
        } else if new_size < old_size {
            let first_gone = new_size.div_ceil(cs);
            let mut refund = 0;
            let mut gone = Vec::new();
            self.pool.engine().scan(
                Cf::ChunkMap,
                &keys::triple(self.id, ino, first_gone),
                &keys::pair(self.id, ino + 1),
                &mut |k, v| {
                    gone.push((k.to_vec(), keys::read_u64(k, 16), ChunkRef::decode(v)?));
                    Ok(true)
                },
            )?;
            for (key, idx, r) in gone {
                refund += chunk_len(cs, idx, old_size);
                batch.add_ref(&r.hash, -1);
                batch.delete(Cf::ChunkMap, key);
            }
            let tail_idx = new_size / cs;
            let tail_present = !new_size.is_multiple_of(cs) && self.present(st, ino, tail_idx)?;
            let base = if tail_present
                && !st
                    .files
                    .get(&ino)
                    .is_some_and(|f| f.dirty.contains_key(&tail_idx))
            {
                Some(self.chunk_bytes(ino, tail_idx)?)
            } else {
                None
            };
            let fs = self.file_state(st, ino)?;
            let dropped: Vec<u64> = fs.dirty.range(first_gone..).map(|(&i, _)| i).collect();
            let mut freed = 0u64;
            for idx in dropped {
                let buf = fs.dirty.remove(&idx).unwrap();
                freed += buf.len() as u64;
                if self.chunk_ref(ino, idx)?.is_none() {
                    refund += chunk_len(cs, idx, old_size);
                }
            }
            if tail_present {
                let loaded = base.as_ref().map_or(0, Vec::len) as u64;
                self.pool
                    .inner
                    .dirty_bytes
                    .fetch_add(loaded, Ordering::Relaxed);
                let buf = fs
                    .dirty
                    .entry(tail_idx)
                    .or_insert_with(|| base.unwrap_or_default());
                let keep = (new_size % cs) as usize;
                if buf.len() > keep {
                    freed += (buf.len() - keep) as u64;
                    buf.truncate(keep);
                }
                refund += chunk_len(cs, tail_idx, old_size) - chunk_len(cs, tail_idx, new_size);
            }
            fs.inode.size = new_size;
            fs.inode.alloc = fs.inode.alloc.saturating_sub(refund);
            st.rec.used = st.rec.used.saturating_sub(refund);
            self.pool
                .inner
                .dirty_bytes
                .fetch_sub(freed, Ordering::Relaxed);
        }
        match self.flush_file_into(st, ino, batch)? {
            Some(r) => Ok(r),
            None => self.load(st, ino),
        }
    }

    fn check_quota(&self, st: &VolState, charge: u64) -> Result<()> {
        if charge > 0 && st.rec.used + charge > st.rec.capacity {
            return Err(StoreError::NoSpace {
                volume: self.name.clone(),
                capacity: st.rec.capacity,
                used: st.rec.used,
            });
        }
        Ok(())
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

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let st = self.inner.st.lock();
        let r = self.inner.load(&st, ino)?;
        Ok(self.inner.attr(ino, &r))
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        if name.len() > MAX_NAME {
            return Err(StoreError::NameTooLong);
        }
        let st = self.inner.st.lock();
        let dir = self.inner.load(&st, parent)?;
        if dir.kind != FileKind::Dir {
            return Err(StoreError::NotDir);
        }
        let name = name.as_bytes();
        let ino = match name {
            b"." => parent,
            b".." => dir.parent,
            _ => {
                let raw = self
                    .inner
                    .pool
                    .engine()
                    .get(Cf::Dentries, &keys::pair_name(self.inner.id, parent, name))?
                    .ok_or_else(|| {
                        StoreError::NotFound(String::from_utf8_lossy(name).into_owned())
                    })?;
                records::decode::<Dentry>(&raw, "dentry")?.ino
            }
        };
        let r = self.inner.load(&st, ino)?;
        Ok(self.inner.attr(ino, &r))
    }

    pub fn parent_of(&self, dir: Ino) -> Result<Ino> {
        let st = self.inner.st.lock();
        let r = self.inner.load(&st, dir)?;
        if r.kind != FileKind::Dir {
            return Err(StoreError::NotDir);
        }
        Ok(r.parent)
    }

    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        let vol = &*self.inner;
        let mut st = vol.st.lock();
        if vol.read_only {
            return Err(StoreError::ReadOnly);
        }
        let mut batch = Batch::default();
        // Held from the chunk-index lookups in the flush to the commit, so gc cannot
        // drop a chunk this batch dedups against or a segment it appended to.
        let _gate = vol.pool.inner.gate.read_recursive();
        let mut touched = BTreeMap::new();
        if let Some(size) = set.size {
            let r = vol.load(&st, ino)?;
            require_file(&r, "truncate of a special file")?;
            touched.insert(ino, Some(vol.truncate(&mut st, ino, size, &mut batch)?));
        }
        let now = Timestamp::now();
        let mut txn = Txn {
            vol,
            st: &mut st,
            batch,
            touched,
        };
        let mut r = txn.get(ino)?;
        let mut changed = set.size.is_some();
        if set.size.is_some() {
            r.mtime = now;
        }
        if set.uid.is_some() || set.gid.is_some() {
            r.uid = set.uid.unwrap_or(r.uid);
            r.gid = set.gid.unwrap_or(r.gid);
            if r.kind != FileKind::Dir {
                r.perm &= !(libc::S_ISUID as u16);
                if r.perm & libc::S_IXGRP as u16 != 0 {
                    r.perm &= !(libc::S_ISGID as u16);
                }
            }
            changed = true;
        }
        if let Some(mode) = set.mode {
            r.perm = (mode & 0o7777) as u16;
            changed = true;
        }
        if let Some(t) = set.atime {
            r.atime = resolve(t, now);
            changed = true;
        }
        if let Some(t) = set.mtime {
            r.mtime = resolve(t, now);
            changed = true;
        }
        if changed {
            r.ctime = set.ctime.unwrap_or(now);
        } else if let Some(c) = set.ctime {
            r.ctime = c;
        }
        txn.set(ino, r.clone());
        txn.commit()?;
        Ok(vol.attr(ino, &r))
    }

    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &self,
        parent: Ino,
        name: &OsStr,
        kind: FileKind,
        perm: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
        target: &[u8],
    ) -> Result<Attr> {
        let vol = &*self.inner;
        let name = check_name(name)?;
        let mut st = vol.st.lock();
        let mut txn = Txn::new(vol, &mut st)?;
        let mut dir = txn.dir(parent)?;
        if txn.entry(parent, name)?.is_some() {
            return Err(StoreError::Exists(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        let mut perm = (perm & 0o7777) as u16;
        let mut gid = gid;
        if dir.perm & libc::S_ISGID as u16 != 0 {
            gid = dir.gid;
            if kind == FileKind::Dir {
                perm |= libc::S_ISGID as u16;
            }
        }
        let now = Timestamp::now();
        let ino = txn.st.rec.next_ino;
        txn.st.rec.next_ino += 1;
        txn.st.rec.inodes += 1;
        let node = InodeRecord {
            kind,
            perm,
            uid,
            gid,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            size: target.len() as u64,
            alloc: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            rdev,
            parent,
            next_cookie: 3,
            target: target.to_vec(),
        };
        txn.add_entry(parent, &mut dir, name, ino, kind);
        if kind == FileKind::Dir {
            dir.nlink += 1;
        }
        dir.mtime = now;
        dir.ctime = now;
        txn.set(parent, dir);
        txn.set(ino, node.clone());
        txn.commit()?;
        Ok(vol.attr(ino, &node))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        kind: FileKind,
        perm: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Attr> {
        if matches!(kind, FileKind::Dir | FileKind::Symlink) {
            return Err(StoreError::Invalid(
                "mknod of a directory or symlink".into(),
            ));
        }
        self.create_node(parent, name, kind, perm, rdev, uid, gid, &[])
    }

    pub fn mkdir(&self, parent: Ino, name: &OsStr, perm: u32, uid: u32, gid: u32) -> Result<Attr> {
        self.create_node(parent, name, FileKind::Dir, perm, 0, uid, gid, &[])
    }

    pub fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
        uid: u32,
        gid: u32,
    ) -> Result<Attr> {
        let t = target.as_bytes();
        if t.is_empty() || t.len() > 4095 {
            return Err(if t.is_empty() {
                StoreError::NotFound("empty symlink target".into())
            } else {
                StoreError::NameTooLong
            });
        }
        self.create_node(parent, name, FileKind::Symlink, 0o777, 0, uid, gid, t)
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let st = self.inner.st.lock();
        let r = self.inner.load(&st, ino)?;
        if r.kind != FileKind::Symlink {
            return Err(StoreError::Invalid("not a symlink".into()));
        }
        Ok(r.target)
    }

    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<Attr> {
        let vol = &*self.inner;
        let name = check_name(new_name)?;
        let mut st = vol.st.lock();
        let mut txn = Txn::new(vol, &mut st)?;
        let mut r = txn.get(ino)?;
        if r.kind == FileKind::Dir {
            return Err(StoreError::NotPermitted("hard link to a directory".into()));
        }
        if r.nlink == 0 {
            return Err(StoreError::NotFound("file was removed".into()));
        }
        let mut dir = txn.dir(new_parent)?;
        if txn.entry(new_parent, name)?.is_some() {
            return Err(StoreError::Exists(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        let now = Timestamp::now();
        txn.add_entry(new_parent, &mut dir, name, ino, r.kind);
        dir.mtime = now;
        dir.ctime = now;
        r.nlink += 1;
        r.ctime = now;
        txn.set(new_parent, dir);
        txn.set(ino, r.clone());
        txn.commit()?;
        Ok(vol.attr(ino, &r))
    }

    fn remove(&self, parent: Ino, name: &OsStr, want_dir: bool) -> Result<()> {
        let vol = &*self.inner;
        let name_b = name.as_bytes();
        if name_b.len() > MAX_NAME {
            return Err(StoreError::NameTooLong);
        }
        if want_dir && (name_b == b"." || name_b == b"..") {
            return Err(if name_b == b"." {
                StoreError::Invalid("rmdir .".into())
            } else {
                StoreError::NotEmpty
            });
        }
        let mut st = vol.st.lock();
        let mut txn = Txn::new(vol, &mut st)?;
        let mut dir = txn.dir(parent)?;
        let d = txn
            .entry(parent, name_b)?
            .ok_or_else(|| StoreError::NotFound(String::from_utf8_lossy(name_b).into_owned()))?;
        match (want_dir, d.kind == FileKind::Dir) {
            (true, false) => return Err(StoreError::NotDir),
            (false, true) => return Err(StoreError::IsDir),
            (true, true) if !txn.is_empty_dir(d.ino)? => return Err(StoreError::NotEmpty),
            _ => {}
        }
        let now = Timestamp::now();
        txn.remove_entry(parent, name_b, &d);
        if want_dir {
            dir.nlink -= 1;
        }
        dir.mtime = now;
        dir.ctime = now;
        txn.set(parent, dir);
        txn.unlink_inode(d.ino, now)?;
        txn.commit()
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove(parent, name, false)
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove(parent, name, true)
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        let vol = &*self.inner;
        let name = check_name(name)?;
        let new_name = check_name(new_name)?;
        if flags.exchange && flags.noreplace {
            return Err(StoreError::Invalid(
                "RENAME_EXCHANGE with RENAME_NOREPLACE".into(),
            ));
        }
        let mut st = vol.st.lock();
        let mut txn = Txn::new(vol, &mut st)?;
        txn.dir(parent)?;
        txn.dir(new_parent)?;
        let src = txn
            .entry(parent, name)?
            .ok_or_else(|| StoreError::NotFound(String::from_utf8_lossy(name).into_owned()))?;
        let dst = txn.entry(new_parent, new_name)?;
        let now = Timestamp::now();
        // A directory may not move below itself.
        let moves_into = |txn: &mut Txn, dir_ino: Ino, target_parent: Ino| -> Result<bool> {
            let mut cur = target_parent;
            loop {
                if cur == dir_ino {
                    return Ok(true);
                }
                if cur == ROOT_INO {
                    return Ok(false);
                }
                cur = txn.get(cur)?.parent;
            }
        };
        if src.kind == FileKind::Dir
            && parent != new_parent
            && moves_into(&mut txn, src.ino, new_parent)?
        {
            return Err(StoreError::Invalid(
                "cannot move a directory below itself".into(),
            ));
        }
        if flags.exchange {
            let dst = dst.ok_or_else(|| {
                StoreError::NotFound(String::from_utf8_lossy(new_name).into_owned())
            })?;
            if dst.kind == FileKind::Dir
                && parent != new_parent
                && moves_into(&mut txn, dst.ino, parent)?
            {
                return Err(StoreError::Invalid(
                    "cannot move a directory below itself".into(),
                ));
            }
            txn.remove_entry(parent, name, &src);
            txn.remove_entry(new_parent, new_name, &dst);
            let mut p = txn.get(parent)?;
            txn.add_entry(parent, &mut p, name, dst.ino, dst.kind);
            txn.set(parent, p);
            let mut np = txn.get(new_parent)?;
            txn.add_entry(new_parent, &mut np, new_name, src.ino, src.kind);
            txn.set(new_parent, np);
            if parent != new_parent {
                let src_dir = (src.kind == FileKind::Dir) as i64;
                let dst_dir = (dst.kind == FileKind::Dir) as i64;
                let mut p = txn.get(parent)?;
                p.nlink = (p.nlink as i64 - src_dir + dst_dir) as u32;
                txn.set(parent, p);
                let mut np = txn.get(new_parent)?;
                np.nlink = (np.nlink as i64 - dst_dir + src_dir) as u32;
                txn.set(new_parent, np);
            }
            for (ino, new_home) in [(src.ino, new_parent), (dst.ino, parent)] {
                let mut r = txn.get(ino)?;
                if r.kind == FileKind::Dir {
                    r.parent = new_home;
                }
                r.ctime = now;
                txn.set(ino, r);
            }
        } else {
            if let Some(dst) = &dst {
                if flags.noreplace {
                    return Err(StoreError::Exists(
                        String::from_utf8_lossy(new_name).into_owned(),
                    ));
                }
                if dst.ino == src.ino {
                    return Ok(());
                }
                match (src.kind == FileKind::Dir, dst.kind == FileKind::Dir) {
                    (true, false) => return Err(StoreError::NotDir),
                    (false, true) => return Err(StoreError::IsDir),
                    (true, true) if !txn.is_empty_dir(dst.ino)? => {
                        return Err(StoreError::NotEmpty)
                    }
                    _ => {}
                }
                txn.remove_entry(new_parent, new_name, dst);
                if dst.kind == FileKind::Dir {
                    let mut np = txn.get(new_parent)?;
                    np.nlink -= 1;
                    txn.set(new_parent, np);
                }
                txn.unlink_inode(dst.ino, now)?;
            }
            txn.remove_entry(parent, name, &src);
            let mut np = txn.get(new_parent)?;
            txn.add_entry(new_parent, &mut np, new_name, src.ino, src.kind);
            txn.set(new_parent, np);
            if src.kind == FileKind::Dir && parent != new_parent {
                let mut p = txn.get(parent)?;
                p.nlink -= 1;
                txn.set(parent, p);
                let mut np = txn.get(new_parent)?;
                np.nlink += 1;
                txn.set(new_parent, np);
            }
            let mut r = txn.get(src.ino)?;
            if r.kind == FileKind::Dir {
                r.parent = new_parent;
            }
            r.ctime = now;
            txn.set(src.ino, r);
        }
        for p in [parent, new_parent] {
            let mut r = txn.get(p)?;
            r.mtime = now;
            r.ctime = now;
            txn.set(p, r);
        }
        txn.commit()
    }

    /// Entries of `dir` after cookie `after` (0 = from the start), at most `limit`.
    pub fn readdir(&self, dir: Ino, after: u64, limit: usize) -> Result<Vec<DirEntry>> {
        let vol = &*self.inner;
        let st = vol.st.lock();
        let r = vol.load(&st, dir)?;
        if r.kind != FileKind::Dir {
            return Err(StoreError::NotDir);
        }
        drop(st);
        let mut out = Vec::new();
        let start = keys::triple(vol.id, dir, after.max(2) + 1);
        vol.pool.engine().scan(
            Cf::DirCookies,
            &start,
            &keys::pair(vol.id, dir + 1),
            &mut |k, v| {
                let e: CookieEntry = records::decode(v, "directory entry")?;
                out.push(DirEntry {
                    name: e.name,
                    ino: e.ino,
                    kind: e.kind,
                    cookie: keys::read_u64(k, 16),
                });
                Ok(out.len() < limit)
            },
        )?;
        Ok(out)
    }

    pub fn open(&self, ino: Ino) -> Result<()> {
        let mut st = self.inner.st.lock();
        self.inner.load(&st, ino)?;
        *st.opens.entry(ino).or_default() += 1;
        Ok(())
    }

    pub fn release(&self, ino: Ino) -> Result<()> {
        let vol = &*self.inner;
        let mut st = vol.st.lock();
        let remaining = match st.opens.get_mut(&ino) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if remaining == 0 {
            st.opens.remove(&ino);
        }
        let r = match vol.load(&st, ino) {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if remaining == 0 && r.nlink == 0 && !vol.read_only && !vol.is_held(ino) {
            let mut txn = Txn::new(vol, &mut st)?;
            txn.purge(ino, &r)?;
            return txn.commit();
        }
        vol.flush_locked(&mut st, Some(ino))
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>> {
        let vol = &*self.inner;
        let cs = vol.chunk_size;
        let st = vol.st.lock();
        let r = vol.load(&st, ino)?;
        require_file(&r, "read of a special file")?;
        let end = r.size.min(offset.saturating_add(size as u64));
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let mut fetch = Vec::new();
        let dirty = st.files.get(&ino).map(|f| &f.dirty);
        for idx in offset / cs..=(end - 1) / cs {
            let chunk_start = idx * cs;
            let from = offset.max(chunk_start);
            let to = end.min(chunk_start + cs);
            if let Some(buf) = dirty.and_then(|d| d.get(&idx)) {
                copy_part(&mut out, offset, buf, chunk_start, from, to);
            } else if let Some(cref) = vol.chunk_ref(ino, idx)? {
                fetch.push((cref, chunk_start, from, to));
            }
        }
        let _gate = vol.pool.inner.gate.read();
        drop(st);
        for (cref, chunk_start, from, to) in fetch {
            // Bytes past the stored chunk's end (the file grew since) read as zeros.
            let to = to.min(chunk_start + cref.len as u64);
            if from >= to {
                continue;
            }
            let at = (from - offset) as usize..(to - offset) as usize;
            vol.pool.inner.chunks.read_range(
                vol.pool.engine(),
                &cref.hash,
                (from - chunk_start) as usize,
                &mut out[at],
            )?;
        }
        Ok(out)
    }

    pub fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32> {
        let vol = &*self.inner;
        if vol.read_only {
            return Err(StoreError::ReadOnly);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(StoreError::FileTooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(StoreError::FileTooBig);
        }
        let mut st = vol.st.lock();
        let r = vol.load(&st, ino)?;
        require_file(&r, "write to a special file")?;
        let avail = st.rec.capacity.saturating_sub(st.rec.used);
        let mut len = data.len() as u64;
        let mut charge = vol.charge(&st, ino, r.size, offset, len)?;
        if charge > avail {
            // Write the longest prefix that fits, as a full disk would.
            let (mut lo, mut hi) = (0u64, len);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if vol.charge(&st, ino, r.size, offset, mid)? <= avail {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            len = lo;
            if len == 0 {
                return Err(StoreError::NoSpace {
                    volume: vol.name.clone(),
                    capacity: st.rec.capacity,
                    used: st.rec.used,
                });
            }
            charge = vol.charge(&st, ino, r.size, offset, len)?;
        }
        vol.buffer_write(&mut st, ino, offset, &data[..len as usize], charge)?;
        if vol.pool.inner.dirty_bytes.load(Ordering::Relaxed) > DIRTY_BUDGET {
            vol.flush_locked(&mut st, None)?;
        }
        Ok(len as u32)
    }

    pub fn flush(&self, ino: Ino) -> Result<()> {
        let mut st = self.inner.st.lock();
        self.inner.flush_locked(&mut st, Some(ino))
    }

    pub fn fsync(&self, ino: Ino) -> Result<()> {
        self.flush(ino)?;
        self.inner.pool.engine().sync()
    }

    pub fn sync(&self) -> Result<()> {
        self.inner.flush_all()?;
        self.inner.pool.engine().sync()
    }

    /// Turns `[offset, offset+len)` into a hole; the size does not change.
    pub fn punch_hole(&self, ino: Ino, offset: u64, len: u64) -> Result<()> {
        let vol = &*self.inner;
        let cs = vol.chunk_size;
        let mut st = vol.st.lock();
        if vol.read_only {
            return Err(StoreError::ReadOnly);
        }
        let r = vol.load(&st, ino)?;
        require_file(&r, "not a file")?;
        let end = offset.saturating_add(len).min(r.size);
        if offset >= end {
            return Ok(());
        }
        let mut batch = Batch::default();
        let mut refund = 0u64;
        let mut freed = 0u64;
        for idx in offset / cs..=(end - 1) / cs {
            let cstart = idx * cs;
            let from = offset.max(cstart);
            let to = end.min(cstart + cs);
            let clen = chunk_len(cs, idx, r.size);
            if from == cstart && to >= cstart + clen {
                let had_dirty = st.files.get_mut(&ino).and_then(|f| f.dirty.remove(&idx));
                if let Some(b) = &had_dirty {
                    freed += b.len() as u64;
                }
                if let Some(cref) = vol.chunk_ref(ino, idx)? {
                    batch.add_ref(&cref.hash, -1);
                    batch.delete(Cf::ChunkMap, keys::triple(vol.id, ino, idx));
                    refund += clen;
                } else if had_dirty.is_some() {
                    refund += clen;
                }
            } else if vol.present(&st, ino, idx)? {
                let has = st
                    .files
                    .get(&ino)
                    .is_some_and(|f| f.dirty.contains_key(&idx));
                let base = if has {
                    None
                } else {
                    Some(vol.chunk_bytes(ino, idx)?)
                };
                let fs = vol.file_state(&mut st, ino)?;
                let loaded = base.as_ref().map_or(0, Vec::len) as u64;
                vol.pool
                    .inner
                    .dirty_bytes
                    .fetch_add(loaded, Ordering::Relaxed);
                let buf = fs
                    .dirty
                    .entry(idx)
                    .or_insert_with(|| base.unwrap_or_default());
                let (a, b) = ((from - cstart) as usize, (to - cstart) as usize);
                if a < buf.len() {
                    let b = b.min(buf.len());
                    buf[a..b].fill(0);
                }
            }
        }
        vol.pool
            .inner
            .dirty_bytes
            .fetch_sub(freed, Ordering::Relaxed);
        let now = Timestamp::now();
        let fs = vol.file_state(&mut st, ino)?;
        fs.inode.alloc = fs.inode.alloc.saturating_sub(refund);
        fs.inode.mtime = now;
        fs.inode.ctime = now;
        st.rec.used = st.rec.used.saturating_sub(refund);
        let _gate = vol.pool.inner.gate.read_recursive();
        vol.flush_file_into(&mut st, ino, &mut batch)?;
        vol.commit(&mut st, batch)
    }

    /// fallocate mode 0 or KEEP_SIZE: checks the space and, without
    /// KEEP_SIZE, extends the file. Holes stay holes until written.
    pub fn allocate(&self, ino: Ino, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        let vol = &*self.inner;
        let end = offset.checked_add(len).ok_or(StoreError::FileTooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(StoreError::FileTooBig);
        }
        let mut st = vol.st.lock();
        if vol.read_only {
            return Err(StoreError::ReadOnly);
        }
        let r = vol.load(&st, ino)?;
        require_file(&r, "not a file")?;
        let need = vol.charge(&st, ino, r.size, offset, len)?;
        vol.check_quota(&st, need)?;
        if !keep_size && end > r.size {
            let mut batch = Batch::default();
            // Held from the chunk-index lookups in the flush to the commit, so gc cannot
            // drop a chunk this batch dedups against or a segment it appended to.
            let _gate = vol.pool.inner.gate.read_recursive();
            vol.file_state(&mut st, ino)?.inode.ctime = Timestamp::now();
            vol.truncate(&mut st, ino, end, &mut batch)?;
            vol.commit(&mut st, batch)?;
        }
        Ok(())
    }

    pub fn seek(&self, ino: Ino, offset: u64, whence: Whence) -> Result<u64> {
        let vol = &*self.inner;
        let cs = vol.chunk_size;
        let st = vol.st.lock();
        let r = vol.load(&st, ino)?;
        if offset >= r.size {
            return Err(StoreError::NoSuchOffset);
        }
        match whence {
            Whence::Data => {
                let first = offset / cs;
                let mut found: Option<u64> = st
                    .files
                    .get(&ino)
                    .and_then(|f| f.dirty.range(first..).next().map(|(&i, _)| i));
                vol.pool.engine().scan(
                    Cf::ChunkMap,
                    &keys::triple(vol.id, ino, first),
                    &keys::pair(vol.id, ino + 1),
                    &mut |k, _| {
                        let idx = keys::read_u64(k, 16);
                        found = Some(found.map_or(idx, |f| f.min(idx)));
                        Ok(false)
                    },
                )?;
                match found {
                    Some(idx) if idx * cs < r.size => Ok(offset.max(idx * cs)),
                    _ => Err(StoreError::NoSuchOffset),
                }
            }
            Whence::Hole => {
                let mut idx = offset / cs;
                while idx * cs < r.size {
                    if !vol.present(&st, ino, idx)? {
                        return Ok(offset.max(idx * cs));
                    }
                    idx += 1;
                }
                Ok(r.size)
            }
        }
    }

    /// Copies a range between files, sharing whole aligned chunks instead of
    /// copying their bytes. Returns the bytes copied (short at the source's end).
    pub fn copy_range(
        &self,
        src: Ino,
        src_off: u64,
        dst: Ino,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        let vol = &*self.inner;
        if vol.read_only {
            return Err(StoreError::ReadOnly);
        }
        let cs = vol.chunk_size;
        let src_size = self.getattr(src)?.size;
        let dst_attr = self.getattr(dst)?;
        if dst_attr.kind != FileKind::File {
            return Err(StoreError::Invalid("copy into a non-file".into()));
        }
        let len = len.min(src_size.saturating_sub(src_off));
        let mut done = 0u64;
        while done < len {
            let so = src_off + done;
            let d_o = dst_off + done;
            let rest = len - done;
            if so.is_multiple_of(cs)
                && d_o.is_multiple_of(cs)
                && rest >= cs
                && so + cs <= src_size
                && src != dst
                && self.share_chunk(src, so / cs, dst, d_o / cs)?
            {
                done += cs;
                continue;
            }
            let n = rest.min(cs - so % cs).min(cs - d_o % cs);
            let data = self.read(src, so, n as u32)?;
            if data.is_empty() {
                break;
            }
            let mut w = 0;
            while w < data.len() {
                let k = self.write(dst, d_o + w as u64, &data[w..])?;
                w += k as usize;
            }
            done += data.len() as u64;
        }
        Ok(done)
    }

    /// Points dst's chunk at src's chunk. False when the source chunk is a
    /// hole (the caller then copies zeros, which become a hole on flush).
    fn share_chunk(&self, src: Ino, sidx: u64, dst: Ino, didx: u64) -> Result<bool> {
        let vol = &*self.inner;
        let cs = vol.chunk_size;
        let mut st = vol.st.lock();
        vol.flush_locked(&mut st, Some(src))?;
        vol.flush_locked(&mut st, Some(dst))?;
        let Some(sref) = vol.chunk_ref(src, sidx)? else {
            return Ok(false);
        };
        let mut inode = vol.load(&st, dst)?;
        let charge = vol.charge(&st, dst, inode.size, didx * cs, cs)?;
        vol.check_quota(&st, charge)?;
        let mut batch = Batch::default();
        let _gate = vol.pool.inner.gate.read();
        let key = keys::triple(vol.id, dst, didx);
        if let Some(old) = vol.chunk_ref(dst, didx)? {
            batch.add_ref(&old.hash, -1);
        }
        batch.add_ref(&sref.hash, 1);
        batch.put(Cf::ChunkMap, key, sref.encode());
        inode.alloc += charge;
        st.rec.used += charge;
        inode.size = inode.size.max((didx + 1) * cs);
        let now = Timestamp::now();
        inode.mtime = now;
        inode.ctime = now;
        batch.put(Cf::Inodes, keys::pair(vol.id, dst), records::encode(&inode));
        batch.put(Cf::Volumes, keys::u64_key(vol.id), records::encode(&st.rec));
        vol.pool.engine().write(batch, false)?;
        Ok(true)
    }

    fn xattr_key(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let n = name.as_bytes();
        if n.is_empty() || n.len() > XATTR_NAME_MAX {
            return Err(StoreError::Range);
        }
        Ok(keys::pair_name(self.inner.id, ino, n))
    }

    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: XattrFlags) -> Result<()> {
        let vol = &*self.inner;
        let key = self.xattr_key(ino, name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(StoreError::TooBig);
        }
        let mut st = vol.st.lock();
        let mut txn = Txn::new(vol, &mut st)?;
        let mut r = txn.get(ino)?;
        let exists = vol.pool.engine().get(Cf::Xattrs, &key)?.is_some();
        match flags {
            XattrFlags::Create if exists => return Err(StoreError::Exists("attribute".into())),
            XattrFlags::Replace if !exists => return Err(StoreError::NoXattr),
            _ => {}
        }
        txn.batch.put(Cf::Xattrs, key, value.to_vec());
        r.ctime = Timestamp::now();
        txn.set(ino, r);
        txn.commit()
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let key = self.xattr_key(ino, name)?;
        let st = self.inner.st.lock();
        self.inner.load(&st, ino)?;
        self.inner
            .pool
            .engine()
            .get(Cf::Xattrs, &key)?
            .ok_or(StoreError::NoXattr)
    }

    pub fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        let vol = &*self.inner;
        let st = vol.st.lock();
        vol.load(&st, ino)?;
        let mut out = Vec::new();
        vol.pool.engine().scan(
            Cf::Xattrs,
            &keys::pair(vol.id, ino),
            &keys::pair(vol.id, ino + 1),
            &mut |k, _| {
                out.push(k[16..].to_vec());
                Ok(true)
            },
        )?;
        Ok(out)
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let vol = &*self.inner;
        let key = self.xattr_key(ino, name)?;
        let mut st = vol.st.lock();
        let mut txn = Txn::new(vol, &mut st)?;
        let mut r = txn.get(ino)?;
        if vol.pool.engine().get(Cf::Xattrs, &key)?.is_none() {
            return Err(StoreError::NoXattr);
        }
        txn.batch.delete(Cf::Xattrs, key);
        r.ctime = Timestamp::now();
        txn.set(ino, r);
        txn.commit()
    }

    pub fn statfs(&self) -> Result<StatFs> {
        let st = self.inner.st.lock();
        Ok(StatFs {
            capacity: st.rec.capacity,
            used: st.rec.used,
            inodes: st.rec.inodes,
            block_size: 4096,
            max_name: MAX_NAME as u32,
        })
    }
}

/// Copies the part `[from, to)` of a chunk starting at `chunk_start` into `out`
/// (which starts at `out_start`); bytes past the chunk's data stay zero.
fn copy_part(out: &mut [u8], out_start: u64, chunk: &[u8], chunk_start: u64, from: u64, to: u64) {
    let a = (from - chunk_start) as usize;
    let b = ((to - chunk_start) as usize).min(chunk.len());
    if a < b {
        let o = (from - out_start) as usize;
        out[o..o + (b - a)].copy_from_slice(&chunk[a..b]);
    }
}
