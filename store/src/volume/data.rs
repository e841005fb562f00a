//! File contents: reads, buffered writes handed to the write-back workers,
//! flushes, truncation, holes and chunk sharing.

use super::{chunk_len, require_file, Slot, Staged, State, Volume, VolumeInner, MAX_FILE_SIZE};
use crate::engine::Batch;
use crate::error::{Result, StoreError};
use crate::keys::{self, Cf};
use crate::records::{self, ChunkRef, InodeRecord};
use crate::types::*;
use crate::writeback::{self, Buffered, PATCH_EXTENTS, PATCH_MAX};
use std::collections::BTreeMap;
use std::sync::Arc;

type Task = Box<dyn FnOnce() + Send>;

/// Sequential readers tracked per volume (by inode hash).
pub(super) const STREAMS: usize = 64;

/// A file being read: where its last read ended, how many reads in a row
/// continued each other, and the last chunk prefetched for it.
#[derive(Default)]
pub(super) struct Stream {
    ino: Ino,
    end: u64,
    prefetched: u64,
    run: u32,
}
/// How far ahead of a sequential reader chunks are prefetched.
const READAHEAD: u64 = 4 << 20;
/// A read starting this close to where the file's last read ended continues it
/// (the kernel sends its readahead requests in parallel, not strictly in order).
const STREAM_SLACK: u64 = 256 << 10;
/// Reads in a row that continue each other before the reader counts as
/// sequential: random reads rarely land next to each other twice.
const STREAM_RUN: u32 = 3;

/// Parts of a read served from stored chunks: (chunk, chunk start, from, to).
type Fetch = Vec<(ChunkRef, u64, u64, u64)>;

impl VolumeInner {
    /// Logical bytes a write of `[off, off+len)` newly charges to the quota.
    fn charge(&self, st: &State, ino: Ino, size: u64, off: u64, len: u64) -> Result<u64> {
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

    /// Charges a write of `data` at `off` to the quota: the longest prefix that
    /// fits, as a full disk would. Returns its length and charge.
    fn charge_write(&self, st: &State, ino: Ino, off: u64, data: &[u8]) -> Result<(u64, u64)> {
        let size = st.meta.size;
        let mut len = data.len() as u64;
        let mut charge = self.charge(st, ino, size, off, len)?;
        let mut rec = self.rec.lock();
        let avail = rec.capacity.saturating_sub(rec.used);
        if charge > avail {
            let (mut lo, mut hi) = (0u64, len);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if self.charge(st, ino, size, off, mid)? <= avail {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            len = lo;
            if len == 0 {
                return Err(StoreError::NoSpace {
                    volume: self.name.clone(),
                    capacity: rec.capacity,
                    used: rec.used,
                });
            }
            charge = self.charge(st, ino, size, off, len)?;
        }
        rec.used += charge;
        Ok((len, charge))
    }

    /// Copies a write into the file's chunk buffers (the one copy of the
    /// payload) and returns the jobs for the chunks it filled.
    fn buffer_write(
        &self,
        slot: &Arc<Slot>,
        st: &mut State,
        ino: Ino,
        off: u64,
        data: &[u8],
        charge: u64,
    ) -> Result<Vec<Task>> {
        let cs = self.chunk_size as usize;
        let mut tasks = Vec::new();
        let mut added = 0i64;
        let mut pos = 0usize;
        while pos < data.len() {
            let abs = off + pos as u64;
            let idx = abs / cs as u64;
            let at = (abs % cs as u64) as usize;
            let n = (cs - at).min(data.len() - pos);
            let piece = &data[pos..pos + n];
            pos += n;
            let whole = at == 0 && n == cs;
            st.journal.mark(idx, at as u32, (at + n) as u32);
            // A small write into a stored chunk (or into a patch with room left)
            // becomes an extent over it; the chunk is read when it commits.
            let room = self.chunk_size / PATCH_MAX;
            // The stored chunk of a partial write into an unbuffered chunk.
            let stored = match st.chunks.get(&idx) {
                None if !whole => self.chunk_ref(ino, idx)?,
                _ => None,
            };
            let into_patch = !whole
                && match st.chunks.get(&idx) {
                    Some(b @ Buffered::Patch { extents }) => {
                        (b.mem() + n) as u64 <= room && extents.len() < PATCH_EXTENTS
                    }
                    Some(_) => false,
                    None => n as u64 <= room && stored.is_some(),
                };
            if into_patch {
                let mut extents = match st.chunks.remove(&idx) {
                    Some(Buffered::Patch { extents }) => extents,
                    _ => Vec::new(),
                };
                let before: usize = extents.iter().map(|(_, d)| d.len()).sum();
                writeback::patch(&mut extents, at as u32, piece);
                let after: usize = extents.iter().map(|(_, d)| d.len()).sum();
                added += after as i64 - before as i64;
                st.chunks.insert(idx, Buffered::Patch { extents });
                continue;
            }
            let was_sequential = matches!(
                st.chunks.get(&idx),
                Some(Buffered::Dirty {
                    sequential: true,
                    ..
                })
            );
            let taken = if whole {
                // Overwritten whole: a patch's stored chunk is not needed.
                match st.chunks.remove(&idx) {
                    Some(b) => {
                        let mem = b.mem();
                        Some((b.into_dirty(|| Ok(Vec::new()))?, mem))
                    }
                    None => None,
                }
            } else {
                self.take_dirty(ino, st, idx)?
            };
            let (mut buf, mut sequential) = match taken {
                Some((data, mem)) => {
                    added -= mem as i64;
                    (data, was_sequential)
                }
                // A partial write into a stored chunk starts from its bytes; a
                // hole starts empty.
                None if stored.is_some() => {
                    let _gate = self.pool.inner.gate.read_recursive();
                    (self.bytes_of(stored.as_ref())?, false)
                }
                None => (Vec::with_capacity(cs), true),
            };
            if whole {
                buf.clear();
                buf.extend_from_slice(piece);
                sequential = true;
            } else if at == buf.len() {
                buf.extend_from_slice(piece);
            } else {
                sequential = false;
                if at > buf.len() {
                    buf.resize(at, 0);
                }
                let overlap = (buf.len() - at).min(n);
                buf[at..at + overlap].copy_from_slice(&piece[..overlap]);
                buf.extend_from_slice(&piece[overlap..]);
            }
            added += buf.len() as i64;
            if sequential && buf.len() == cs {
                tasks.push(self.hand_off(slot, st, idx, buf));
            } else {
                st.chunks.insert(
                    idx,
                    Buffered::Dirty {
                        data: buf,
                        sequential,
                    },
                );
            }
        }
        self.account(added);
        let now = Timestamp::now();
        st.meta.size = st.meta.size.max(off + data.len() as u64);
        st.meta.alloc += charge;
        st.meta.mtime = now;
        st.meta.ctime = now;
        Ok(tasks)
    }

    /// Marks a full chunk as sealing and returns the worker's job for it.
    fn hand_off(&self, slot: &Arc<Slot>, st: &mut State, idx: u64, buf: Vec<u8>) -> Task {
        let job = st.next_job;
        st.next_job += 1;
        st.sealing += 1;
        let data = Arc::new(buf);
        st.chunks.insert(
            idx,
            Buffered::Sealing {
                data: data.clone(),
                job,
            },
        );
        let inner = &self.pool.inner;
        let (store, engine, gate) = (
            inner.chunks.clone(),
            inner.engine.clone(),
            inner.gate.clone(),
        );
        let (slot, compression, name) = (slot.clone(), self.compression, self.name.clone());
        Box::new(move || {
            let result = writeback::seal(&store, &*engine, &gate, &data, compression);
            let mut st = slot.state.lock();
            st.sealing -= 1;
            if matches!(st.chunks.get(&idx), Some(Buffered::Sealing { job: j, .. }) if *j == job) {
                let next = match result {
                    Ok(sealed) => Buffered::Sealed { data, sealed },
                    Err(e) => {
                        // The chunk stays buffered; the file's commit seals it again
                        // and reports the error if it persists.
                        tracing::warn!("volume {name}: sealing a chunk in the background: {e}");
                        Buffered::Dirty {
                            data: Arc::try_unwrap(data).unwrap_or_else(|d| d.to_vec()),
                            sequential: false,
                        }
                    }
                };
                st.chunks.insert(idx, next);
            }
            drop(st);
            slot.returned.notify_all();
        })
    }

    /// Changes a file's size: drops chunks past the end, zeroes the tail of the
    /// new last chunk, and stages the whole file into `batch`. The caller holds
    /// the pool gate shared until the commit.
    pub(super) fn truncate(
        &self,
        ino: Ino,
        st: &mut State,
        new_size: u64,
        batch: &mut Batch,
    ) -> Result<Staged> {
        let cs = self.chunk_size;
        let old_size = st.meta.size;
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
            self.check_quota(charge)?;
            self.charge_used(charge);
            st.meta.size = new_size;
            st.meta.alloc += charge;
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
            let stored: std::collections::HashSet<u64> = gone.iter().map(|g| g.1).collect();
            for (key, idx, r) in gone {
                refund += chunk_len(cs, idx, old_size);
                batch.add_ref(&r.hash, -1);
                batch.delete(Cf::ChunkMap, key);
            }
            let tail_idx = new_size / cs;
            let tail_present = !new_size.is_multiple_of(cs) && self.present(st, ino, tail_idx)?;
            let mut freed = 0i64;
            let dropped: Vec<u64> = st.chunks.range(first_gone..).map(|(&i, _)| i).collect();
            for idx in dropped {
                let buf = st.chunks.remove(&idx).unwrap();
                freed += buf.mem() as i64;
                if !stored.contains(&idx) {
                    refund += chunk_len(cs, idx, old_size);
                }
            }
            if tail_present {
                let mut buf = match self.take_dirty(ino, st, tail_idx)? {
                    Some((data, mem)) => {
                        freed += mem as i64;
                        data
                    }
                    None => self.chunk_bytes(ino, tail_idx)?,
                };
                buf.truncate((new_size % cs) as usize);
                freed -= buf.len() as i64;
                st.chunks.insert(
                    tail_idx,
                    Buffered::Dirty {
                        data: buf,
                        sequential: false,
                    },
                );
                refund += chunk_len(cs, tail_idx, old_size) - chunk_len(cs, tail_idx, new_size);
            }
            self.account(-freed);
            st.meta.size = new_size;
            st.meta.alloc = st.meta.alloc.saturating_sub(refund);
            let mut rec = self.rec.lock();
            rec.used = rec.used.saturating_sub(refund);
        }
        self.stage(ino, st, batch)
    }

    /// For a read of `[offset, end)` that continues a sequential reader, starts
    /// reading the stored chunks up to [`READAHEAD`] ahead of it into the page
    /// cache (each chunk once). Chunks written by parallel workers or by several files at once
    /// are not in file order in the segments, so the kernel's readahead of the
    /// segment file alone does not keep up. The caller holds the pool gate.
    fn read_ahead(&self, ino: Ino, offset: u64, end: u64, size: u64) -> Result<()> {
        let cs = self.chunk_size;
        let (from, to) = {
            let mut s = self.streams[(ino % STREAMS as u64) as usize].lock();
            if s.ino != ino || offset.abs_diff(s.end) > STREAM_SLACK {
                *s = Stream {
                    ino,
                    end,
                    prefetched: 0,
                    run: 1,
                };
                return Ok(());
            }
            s.end = s.end.max(end);
            s.run = s.run.saturating_add(1);
            let k = (end - 1) / cs;
            let last = (k + (READAHEAD / cs).max(1)).min(size.saturating_sub(1) / cs);
            if s.run < STREAM_RUN || last <= s.prefetched.max(k) {
                return Ok(());
            }
            let from = s.prefetched.max(k) + 1;
            s.prefetched = last;
            (from, last)
        };
        for idx in from..=to {
            if let Some(cref) = self.chunk_ref(ino, idx)? {
                self.pool
                    .inner
                    .chunks
                    .prefetch(self.pool.engine(), &cref.hash)?;
            }
        }
        Ok(())
    }

    /// What a read of `[offset, end)` gets from the buffers (copied into `out`)
    /// and which stored chunks it still needs.
    fn plan_read(
        &self,
        ino: Ino,
        buffered: Option<&BTreeMap<u64, Buffered>>,
        offset: u64,
        end: u64,
        out: &mut [u8],
        overlays: &mut Vec<(u64, Vec<u8>)>,
    ) -> Result<Fetch> {
        let cs = self.chunk_size;
        let mut fetch = Vec::new();
        for idx in offset / cs..=(end - 1) / cs {
            let chunk_start = idx * cs;
            let from = offset.max(chunk_start);
            let to = end.min(chunk_start + cs);
            if let Some(Buffered::Patch { extents }) = buffered.and_then(|b| b.get(&idx)) {
                // The stored chunk, then the patch's extents over it.
                if let Some(cref) = self.chunk_ref(ino, idx)? {
                    fetch.push((cref, chunk_start, from, to));
                }
                for (a, d) in extents {
                    let ea = chunk_start + *a as u64;
                    let (lo, hi) = (ea.max(from), (ea + d.len() as u64).min(to));
                    if lo < hi {
                        overlays.push((lo, d[(lo - ea) as usize..(hi - ea) as usize].to_vec()));
                    }
                }
            } else if let Some(buf) = buffered.and_then(|b| b.get(&idx)) {
                copy_part(out, offset, buf.bytes(), chunk_start, from, to);
            } else if let Some(cref) = self.chunk_ref(ino, idx)? {
                fetch.push((cref, chunk_start, from, to));
            }
        }
        Ok(fetch)
    }
}

impl Volume {
    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>> {
        let vol = &*self.inner;
        let _b = vol.enter();
        let mut overlays = Vec::new();
        let (out, fetch, _gate) = loop {
            let slot = vol.peek(ino);
            let guard = slot.as_ref().map(|s| s.state.lock());
            if guard.as_ref().is_some_and(|g| g.dead) {
                continue;
            }
            let r: InodeRecord = match &guard {
                Some(g) => g.meta.clone(),
                None => vol.load_stored(ino)?,
            };
            require_file(&r, "read of a special file")?;
            let end = r.size.min(offset.saturating_add(size as u64));
            if offset >= end {
                return Ok(Vec::new());
            }
            let mut out = vec![0u8; (end - offset) as usize];
            let fetch = vol.plan_read(
                ino,
                guard.as_ref().map(|g| &g.chunks),
                offset,
                end,
                &mut out,
                &mut overlays,
            )?;
            // Taken before the slot goes, so no gc drops a chunk a commit replaces.
            let gate = vol.pool.inner.gate.read_recursive();
            drop(guard);
            vol.read_ahead(ino, offset, end, r.size)?;
            break (out, fetch, gate);
        };
        let mut out = out;
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
        for (at, bytes) in overlays {
            let o = (at - offset) as usize;
            out[o..o + bytes.len()].copy_from_slice(&bytes);
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
        let written = {
            let _b = vol.enter();
            let (len, tasks) = vol.with_file(ino, |slot, st| {
                require_file(&st.meta, "write to a special file")?;
                let (len, charge) = vol.charge_write(st, ino, offset, data)?;
                let tasks =
                    vol.buffer_write(slot, st, ino, offset, &data[..len as usize], charge)?;
                Ok((len, tasks))
            })?;
            for task in tasks {
                vol.pool.inner.workers.submit(task);
            }
            len
        };
        // Outside the barrier: the files committed here may be any volume's.
        vol.pool.relieve()?;
        Ok(written as u32)
    }

    pub fn flush(&self, ino: Ino) -> Result<()> {
        let _b = self.inner.enter();
        self.inner.flush_file(ino)
    }

    pub fn fsync(&self, ino: Ino) -> Result<()> {
        let _b = self.inner.enter();
        self.inner.sync_file(ino)
    }

    pub fn sync(&self) -> Result<()> {
        {
            let _b = self.inner.enter();
            self.inner.flush_all()?;
        }
        self.inner.pool.engine().sync()
    }

    /// Turns `[offset, offset+len)` into a hole; the size does not change.
    pub fn punch_hole(&self, ino: Ino, offset: u64, len: u64) -> Result<()> {
        let vol = &*self.inner;
        let cs = vol.chunk_size;
        if vol.read_only {
            return Err(StoreError::ReadOnly);
        }
        let _b = vol.enter();
        vol.with_file(ino, |_, st| {
            let size = st.meta.size;
            require_file(&st.meta, "not a file")?;
            let end = offset.saturating_add(len).min(size);
            if offset >= end {
                return Ok(());
            }
            let mut batch = Batch::default();
            let mut refund = 0u64;
            let mut added = 0i64;
            for idx in offset / cs..=(end - 1) / cs {
                let cstart = idx * cs;
                let from = offset.max(cstart);
                let to = end.min(cstart + cs);
                let clen = chunk_len(cs, idx, size);
                if from == cstart && to >= cstart + clen {
                    let had = st.chunks.remove(&idx);
                    if let Some(b) = &had {
                        added -= b.mem() as i64;
                    }
                    if let Some(cref) = vol.chunk_ref(ino, idx)? {
                        batch.add_ref(&cref.hash, -1);
                        batch.delete(Cf::ChunkMap, keys::triple(vol.id, ino, idx));
                        refund += clen;
                    } else if had.is_some() {
                        refund += clen;
                    }
                } else if vol.present(st, ino, idx)? {
                    let mut buf = match vol.take_dirty(ino, st, idx)? {
                        Some((data, mem)) => {
                            added -= mem as i64;
                            data
                        }
                        None => vol.chunk_bytes(ino, idx)?,
                    };
                    let (a, b) = ((from - cstart) as usize, (to - cstart) as usize);
                    if a < buf.len() {
                        let b = b.min(buf.len());
                        buf[a..b].fill(0);
                    }
                    added += buf.len() as i64;
                    st.chunks.insert(
                        idx,
                        Buffered::Dirty {
                            data: buf,
                            sequential: false,
                        },
                    );
                }
            }
            vol.account(added);
            let now = Timestamp::now();
            st.meta.alloc = st.meta.alloc.saturating_sub(refund);
            st.meta.mtime = now;
            st.meta.ctime = now;
            {
                let mut rec = vol.rec.lock();
                rec.used = rec.used.saturating_sub(refund);
            }
            vol.commit_file(ino, st, batch)?;
            vol.retire(ino, st);
            Ok(())
        })
    }

    /// fallocate mode 0 or KEEP_SIZE: checks the space and, without
    /// KEEP_SIZE, extends the file. Holes stay holes until written.
    pub fn allocate(&self, ino: Ino, offset: u64, len: u64, keep_size: bool) -> Result<()> {
        let vol = &*self.inner;
        let end = offset.checked_add(len).ok_or(StoreError::FileTooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(StoreError::FileTooBig);
        }
        if vol.read_only {
            return Err(StoreError::ReadOnly);
        }
        let _b = vol.enter();
        vol.with_file(ino, |_, st| {
            require_file(&st.meta, "not a file")?;
            let need = vol.charge(st, ino, st.meta.size, offset, len)?;
            vol.check_quota(need)?;
            if !keep_size && end > st.meta.size {
                let mut batch = Batch::default();
                // Held from the chunk-index lookups of the staging to the commit, so gc
                // cannot drop a chunk this batch dedups against or a segment it appended to.
                let _gate = vol.pool.inner.gate.read_recursive();
                st.meta.ctime = Timestamp::now();
                let staged = vol.truncate(ino, st, end, &mut batch)?;
                vol.commit_staged(st, batch, staged)?;
            }
            vol.retire(ino, st);
            Ok(())
        })
    }

    pub fn seek(&self, ino: Ino, offset: u64, whence: Whence) -> Result<u64> {
        let vol = &*self.inner;
        let cs = vol.chunk_size;
        let _b = vol.enter();
        let slot = vol.peek(ino);
        let guard = slot.as_ref().map(|s| s.state.lock()).filter(|g| !g.dead);
        let empty = State {
            dead: false,
            committed_alloc: 0,
            meta: match &guard {
                Some(g) => g.meta.clone(),
                None => vol.load_stored(ino)?,
            },
            chunks: BTreeMap::new(),
            journal: Default::default(),
            sealing: 0,
            next_job: 0,
        };
        let st: &State = guard.as_deref().unwrap_or(&empty);
        let size = st.meta.size;
        if offset >= size {
            return Err(StoreError::NoSuchOffset);
        }
        match whence {
            Whence::Data => {
                let first = offset / cs;
                let mut found: Option<u64> = st.chunks.range(first..).next().map(|(&i, _)| i);
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
                    Some(idx) if idx * cs < size => Ok(offset.max(idx * cs)),
                    _ => Err(StoreError::NoSuchOffset),
                }
            }
            Whence::Hole => {
                let mut idx = offset / cs;
                while idx * cs < size {
                    if !vol.present(st, ino, idx)? {
                        return Ok(offset.max(idx * cs));
                    }
                    idx += 1;
                }
                Ok(size)
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
        // As copy_file_range(2): overlapping ranges of one file are refused.
        if src == dst && len > 0 && src_off < dst_off + len && dst_off < src_off + len {
            return Err(StoreError::Invalid(
                "copy within a file between overlapping ranges".into(),
            ));
        }
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
        let _b = vol.enter();
        vol.flush_file(src)?;
        // Held from reading the source's chunk to the commit, so gc cannot drop it.
        let _gate = vol.pool.inner.gate.read_recursive();
        let Some(sref) = vol.chunk_ref(src, sidx)? else {
            return Ok(false);
        };
        vol.with_file(dst, |_, st| {
            let charge = vol.charge(st, dst, st.meta.size, didx * cs, cs)?;
            vol.check_quota(charge)?;
            let mut batch = Batch::default();
            if let Some(b) = st.chunks.remove(&didx) {
                vol.account(-(b.mem() as i64));
            }
            for seq in st.journal.forget(didx) {
                batch.delete(Cf::Journal, keys::quad(vol.id, dst, didx, seq));
            }
            let key = keys::triple(vol.id, dst, didx);
            if let Some(old) = vol.chunk_ref(dst, didx)? {
                batch.add_ref(&old.hash, -1);
            }
            batch.add_ref(&sref.hash, 1);
            batch.put(Cf::ChunkMap, key, sref.encode());
            let mut inode = st.meta.clone();
            inode.alloc += charge;
            inode.size = inode.size.max((didx + 1) * cs);
            let now = Timestamp::now();
            inode.mtime = now;
            inode.ctime = now;
            batch.put(Cf::Inodes, keys::pair(vol.id, dst), records::encode(&inode));
            vol.charge_used(charge);
            vol.commit(batch, false, inode.alloc as i64 - st.committed_alloc as i64)?;
            st.committed_alloc = inode.alloc;
            st.meta = inode;
            vol.retire(dst, st);
            Ok(true)
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
