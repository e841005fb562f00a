//! Garbage collection and the segment cleaner.
//!
//! A pass holds the pool gate exclusively, so no commit adds a reference and
//! no read resolves a chunk's location while it runs. It first drops the
//! index entries of chunks at zero references, then cleans segments: a sealed
//! segment with no live record is deleted; one whose live records fill less
//! than [`CLEAN_BELOW`] of it has them copied to the active segment (made
//! durable, then the index entries switched in one synced batch) and is then
//! deleted. A crash in between leaves either the old entries, pointing at the
//! old segment that still exists, or the new ones; copies nothing points at
//! are garbage for the next pass.

use crate::engine::{decode_ref, Batch};
use crate::error::{Result, StoreError};
use crate::keys::{Cf, Hash};
use crate::pool::{GcReport, Pool, PoolInner, Progress};
use crate::records::{ChunkLocation, ChunkPlace};
use crate::segment::{record, SEGMENT_HEADER};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// A sealed segment is rewritten once less than this share of it is live.
pub const CLEAN_BELOW: f64 = 0.5;

impl Pool {
    /// Deletes chunks no metadata references and gives their disk space back.
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_with_progress(&mut |_, _| {})
    }

    /// [`Pool::gc`], calling `progress(done, total)` as chunks are judged and
    /// segments cleaned.
    pub fn gc_with_progress(&self, progress: &mut Progress) -> Result<GcReport> {
        self.sync()?;
        let _gate = self.inner.gate.write();
        // Chunks sealed before this pass are stored again at their commit.
        self.inner.chunks.next_epoch();
        let engine = self.engine();
        let chunks = &self.inner.chunks;
        let disk_before: u64 = chunks.segments.segments()?.iter().map(|s| s.1).sum();
        let mut dead = Vec::new();
        engine.scan(Cf::Refs, &[], &[0xff; 33], &mut |k, v| {
            if decode_ref(v) <= 0 {
                dead.push(k.to_vec());
            }
            Ok(true)
        })?;
        let mut report = GcReport::default();
        let mut inline_freed = 0;
        let total = dead.len() as u64 + 1;
        progress(0, total);
        for batch_of in dead.chunks(256) {
            let mut batch = Batch::default();
            for hash in batch_of {
                if let Some(v) = engine.get(Cf::ChunkIndex, hash)? {
                    let loc = ChunkLocation::decode(&v)?;
                    if let ChunkPlace::Inline(_) = loc.place {
                        inline_freed += loc.stored_len as u64;
                    }
                }
                batch.delete(Cf::ChunkIndex, hash.clone());
                batch.delete(Cf::Refs, hash.clone());
                chunks.forget(hash);
                report.chunks_deleted += 1;
            }
            engine.write(batch, true)?;
            progress(report.chunks_deleted, total);
        }
        self.clean_segments(&mut report)?;
        progress(total, total);
        let disk_after: u64 = chunks.segments.segments()?.iter().map(|s| s.1).sum();
        report.bytes_freed = disk_before.saturating_sub(disk_after) + inline_freed;
        drop(_gate);
        // Journal records live briefly, but those a memtable flush wrote out stay
        // on disk (with their deletions) until a compaction: fsync-heavy work
        // left hundreds of MiB of them.
        engine.compact(Cf::Journal)?;
        Ok(report)
    }

    /// Bytes of live records per segment, from the chunk index.
    pub(crate) fn live_bytes_per_segment(&self) -> Result<HashMap<u64, u64>> {
        let mut live: HashMap<u64, u64> = HashMap::new();
        self.engine()
            .scan(Cf::ChunkIndex, &[], &[0xff; 33], &mut |_, v| {
                let loc = ChunkLocation::decode(v)?;
                if let ChunkPlace::Segment { segment, .. } = loc.place {
                    *live.entry(segment).or_default() += loc.segment_bytes();
                }
                Ok(true)
            })?;
        Ok(live)
    }

    /// Deletes dead segments and rewrites sparse ones. The caller holds the gate
    /// exclusively.
    fn clean_segments(&self, report: &mut GcReport) -> Result<()> {
        let segments = &self.inner.chunks.segments;
        let live = self.live_bytes_per_segment()?;
        let share = |id: u64, len: u64| {
            let body = len.saturating_sub(SEGMENT_HEADER);
            let used = live.get(&id).copied().unwrap_or(0);
            (used, body)
        };
        // The active segment is cleaned too: seal it first when it holds garbage.
        let active = segments.active_id();
        if let Some(&(_, len)) = segments.segments()?.iter().find(|s| s.0 == active) {
            let (used, body) = share(active, len);
            if used < body {
                segments.seal_active()?;
            }
        }
        let active = segments.active_id();
        let mut victims = HashSet::new();
        let mut empty = Vec::new();
        for (id, len) in segments.segments()? {
            if id == active {
                continue;
            }
            let (used, body) = share(id, len);
            if used == 0 {
                empty.push(id);
            } else if (used as f64) < CLEAN_BELOW * body as f64 {
                victims.insert(id);
            }
        }
        if !victims.is_empty() {
            let mut moving: Vec<(Hash, ChunkLocation)> = Vec::new();
            let mut keep = HashSet::new();
            self.engine()
                .scan(Cf::ChunkIndex, &[], &[0xff; 33], &mut |k, v| {
                    let loc = ChunkLocation::decode(v)?;
                    if let ChunkPlace::Segment { segment, .. } = loc.place {
                        if victims.contains(&segment) {
                            moving.push((k.try_into().expect("32-byte hash keys"), loc));
                        }
                    }
                    Ok(true)
                })?;
            for group in moving.chunks(256) {
                let mut batch = Batch::default();
                for (hash, loc) in group {
                    let ChunkPlace::Segment { segment, .. } = loc.place else {
                        continue;
                    };
                    // A damaged record is not spread further: it stays, and so does
                    // its segment, for fsck to name.
                    let rec = match self.inner.chunks.read_record(hash, loc) {
                        Ok(rec) => rec,
                        Err(StoreError::Damaged(_) | StoreError::Corrupt(_)) => {
                            keep.insert(segment);
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let hlen = record::header_len(loc.stored_len);
                    let (new_segment, new_offset) = segments.append(&rec[..hlen], &rec[hlen..])?;
                    let mut moved = loc.clone();
                    if let ChunkPlace::Segment {
                        segment, offset, ..
                    } = &mut moved.place
                    {
                        *segment = new_segment;
                        *offset = new_offset;
                    }
                    batch.put(Cf::ChunkIndex, hash.to_vec(), moved.encode());
                    self.inner.chunks.forget(hash);
                    report.bytes_moved += rec.len() as u64;
                }
                segments.make_durable()?;
                self.engine().write(batch, true)?;
            }
            empty.extend(victims.difference(&keep));
        }
        for id in empty {
            segments.remove(id)?;
            report.segments_deleted += 1;
        }
        Ok(())
    }
}

/// The background cleaner runs GC when garbage passes this share of the
/// segment bytes...
pub const AUTO_GC_SHARE: f64 = 0.25;
/// ...and this many bytes, so a small pool is not rewritten for little gain.
pub const AUTO_GC_MIN: u64 = 256 << 20;

/// A thread that looks at the pool's garbage now and then and runs GC when it
/// passes [`AUTO_GC_SHARE`] of the segment bytes (and [`AUTO_GC_MIN`]).
pub(crate) struct Cleaner {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Cleaner {
    fn start(pool: Weak<PoolInner>, every: Duration, share: f64, min: u64) -> Cleaner {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tessera-cleaner".into())
            .spawn(move || loop {
                {
                    let (stopped, cv) = &*signal;
                    let mut stopped = stopped.lock();
                    if !*stopped {
                        cv.wait_for(&mut stopped, every);
                    }
                    if *stopped {
                        return;
                    }
                }
                let Some(inner) = pool.upgrade() else { return };
                let pool = Pool { inner };
                if let Err(e) = pool.clean_if(share, min) {
                    tracing::warn!("background gc: {e}");
                }
            })
            .expect("spawn the cleaner thread");
        Cleaner {
            stop,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Stops the thread (and waits for it, unless this is that thread).
    pub fn stop(&self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.lock().take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Pool {
    /// Starts the background cleaner: every `every`, GC runs if garbage passes
    /// `share` of the segment bytes and `min` bytes (daemons pass
    /// [`AUTO_GC_SHARE`] and [`AUTO_GC_MIN`]). For processes that hold the pool
    /// for long; it stops when the pool closes.
    pub fn start_cleaner(&self, every: Duration, share: f64, min: u64) {
        let mut slot = self.inner.cleaner.lock();
        if slot.is_none() {
            *slot = Some(Cleaner::start(
                Arc::downgrade(&self.inner),
                every,
                share,
                min,
            ));
        }
    }

    /// Stops the background cleaner and waits for a pass in progress. A pool
    /// dropped while its cleaner runs a pass closes when that pass ends.
    pub fn stop_cleaner(&self) {
        let cleaner = self.inner.cleaner.lock().take();
        if let Some(c) = cleaner {
            c.stop();
        }
    }

    /// Runs GC if garbage passes `share` of the segment bytes and `min` bytes;
    /// returns its report if it ran.
    pub fn clean_if(&self, share: f64, min: u64) -> Result<Option<GcReport>> {
        let u = self.usage()?;
        if u.garbage_bytes < min || (u.garbage_bytes as f64) < share * u.segment_bytes as f64 {
            return Ok(None);
        }
        let report = self.gc()?;
        tracing::info!(
            garbage = u.garbage_bytes,
            freed = report.bytes_freed,
            moved = report.bytes_moved,
            "background gc"
        );
        Ok(Some(report))
    }
}
