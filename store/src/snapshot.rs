//! Snapshots, clones and restore: O(metadata) copies that share every chunk.
//!
//! A copy scans the source's keys in each per-volume family and writes them
//! under a new volume id, adding one reference per chunk-map entry; no chunk
//! byte is read or written. The copy is built under a `Pending` volume record
//! in batches and switched on by one final batch (name index + `Active`), so a
//! crash leaves nothing visible: the next open removes pending volumes. Orphans
//! (removed inodes the source still holds open or cached) are left out.

use crate::engine::Batch;
use crate::error::{Result, StoreError};
use crate::keys::{self, Cf};
use crate::pool::{info_of, validate_volume_name, Pool};
use crate::records::{self, ChunkLocation, ChunkRef, InodeRecord, VolumeRecord, VolumeState};
use crate::types::{Timestamp, VolumeInfo};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

const COPY_BATCH: usize = 20_000;

/// One volume's line in `tessera usage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeUsage {
    pub name: String,
    pub logical_bytes: u64,
    /// Physical bytes of chunks only this volume references: what deleting it frees.
    pub exclusive_bytes: u64,
    pub snapshots: u64,
    pub read_only: bool,
}

/// Splits `VOL@SNAP`.
pub fn split_snapshot_name(full: &str) -> Option<(&str, &str)> {
    full.split_once('@')
}

impl Pool {
    /// Copies the source volume's metadata under a new id. The source's state
    /// lock (if it is open) is held across the copy, so the copy is one point in
    /// time: every write acknowledged before is in it, none after.
    fn copy_volume(
        &self,
        source: &str,
        new_name: &str,
        read_only: bool,
        snapshot_of: Option<String>,
    ) -> Result<VolumeRecord> {
        let _catalog = self.inner.catalog.lock();
        if self.id_of(new_name)?.is_some() {
            return Err(StoreError::Exists(format!("volume {new_name}")));
        }
        let src_id = self
            .id_of(source)?
            .ok_or_else(|| StoreError::NotFound(format!("volume {source}")))?;
        let open = self.open_instance(src_id);
        let _quiesced = match &open {
            Some(v) => Some(v.quiesce()?),
            None => None,
        };
        let src = match &_quiesced {
            Some(guard) => guard.record(),
            None => self.record(source)?,
        };
        let engine = self.engine();
        let mut batch = Batch::default();
        let new_id = self.allocate_volume_id(&mut batch)?;
        let mut rec = src.clone();
        rec.id = new_id;
        rec.name = new_name.to_string();
        rec.created = Timestamp::now();
        rec.read_only = read_only;
        rec.snapshot_of = snapshot_of;
        rec.state = VolumeState::Pending;
        batch.put(Cf::Volumes, keys::u64_key(new_id), records::encode(&rec));
        engine.write(batch, false)?;

        let gate = self.inner.gate.read();
        let mut batch = Batch::default();
        let mut ops = 0usize;
        let (start, end) = (keys::u64_key(src_id), keys::u64_key(src_id + 1));
        // Orphans (removed, still held or open by the source's users) are no part of
        // the copy's tree: leave them out, with their space and inode count.
        let mut orphans = HashSet::new();
        engine.scan(Cf::Orphans, &start, &end, &mut |k, _| {
            orphans.insert(keys::read_u64(k, 8));
            Ok(true)
        })?;
        for cf in Cf::PER_VOLUME {
            let mut pending: Vec<Batch> = Vec::new();
            let keyed_by_inode = matches!(cf, Cf::Inodes | Cf::Xattrs | Cf::ChunkMap);
            engine.scan(cf, &start, &end, &mut |k, v| {
                if cf == Cf::Orphans || (keyed_by_inode && orphans.contains(&keys::read_u64(k, 8)))
                {
                    if cf == Cf::Inodes {
                        let inode: InodeRecord = records::decode(v, "inode")?;
                        rec.used = rec.used.saturating_sub(inode.alloc);
                        rec.inodes = rec.inodes.saturating_sub(1);
                    }
                    return Ok(true);
                }
                let mut nk = k.to_vec();
                nk[..8].copy_from_slice(&new_id.to_be_bytes());
                if cf == Cf::ChunkMap {
                    batch.add_ref(&ChunkRef::decode(v)?.hash, 1);
                }
                batch.put(cf, nk, v.to_vec());
                ops += 1;
                if ops.is_multiple_of(COPY_BATCH) {
                    pending.push(std::mem::take(&mut batch));
                }
                Ok(true)
            })?;
            for b in pending {
                engine.write(b, false)?;
            }
        }
        rec.state = VolumeState::Active;
        batch.put(Cf::Volumes, keys::u64_key(new_id), records::encode(&rec));
        batch.put(Cf::Meta, keys::volume_name(new_name), keys::u64_key(new_id));
        engine.write(batch, true)?;
        drop(gate);
        Ok(rec)
    }

    /// Takes a read-only, point-in-time snapshot `VOL@SNAP` of a volume.
    pub fn create_snapshot(&self, volume: &str, snapshot: &str) -> Result<VolumeInfo> {
        validate_volume_name(snapshot)?;
        let src = self.record(volume)?;
        if src.read_only {
            return Err(StoreError::Invalid(format!(
                "{volume} is a snapshot; snapshot its volume instead"
            )));
        }
        let rec = self.copy_volume(
            volume,
            &format!("{volume}@{snapshot}"),
            true,
            Some(volume.to_string()),
        )?;
        Ok(info_of(&rec))
    }

    /// Snapshots, of one volume or of all, sorted by name.
    pub fn list_snapshots(&self, volume: Option<&str>) -> Result<Vec<VolumeInfo>> {
        if let Some(v) = volume {
            self.record(v)?;
        }
        Ok(self
            .list_volumes()?
            .into_iter()
            .filter(|i| i.read_only && volume.is_none_or(|v| i.snapshot_of.as_deref() == Some(v)))
            .collect())
    }

    /// A writable, independent copy of a volume or of a snapshot `VOL@SNAP`.
    pub fn clone_volume(&self, source: &str, new_name: &str) -> Result<VolumeInfo> {
        validate_volume_name(new_name)?;
        self.record(source)?;
        let rec = self.copy_volume(source, new_name, false, None)?;
        Ok(info_of(&rec))
    }

    /// Rolls `volume` back to its snapshot `snapshot`. Refused while mounted.
    pub fn restore_volume(&self, volume: &str, snapshot: &str) -> Result<VolumeInfo> {
        let snap_name = format!("{volume}@{snapshot}");
        let old = self.record(volume)?;
        if old.read_only {
            return Err(StoreError::Invalid(format!("{volume} is a snapshot")));
        }
        self.record(&snap_name)?;
        if self.open_instance(old.id).is_some() {
            return Err(StoreError::InUse(format!("volume {volume}")));
        }
        let staging = format!("{volume}@.restore-{}", old.id);
        let mut rec = self.copy_volume(&snap_name, &staging, false, None)?;
        {
            let _catalog = self.inner.catalog.lock();
            if self.open_instance(old.id).is_some() {
                drop(_catalog);
                self.delete_volume(&staging)?;
                return Err(StoreError::InUse(format!("volume {volume}")));
            }
            rec.name = volume.to_string();
            rec.capacity = old.capacity.max(rec.used);
            rec.created = old.created;
            let mut dead = old.clone();
            dead.state = VolumeState::Pending;
            let mut batch = Batch::default();
            batch.put(Cf::Volumes, keys::u64_key(rec.id), records::encode(&rec));
            batch.put(Cf::Volumes, keys::u64_key(old.id), records::encode(&dead));
            batch.put(Cf::Meta, keys::volume_name(volume), keys::u64_key(rec.id));
            batch.delete(Cf::Meta, keys::volume_name(&staging));
            self.engine().write(batch, true)?;
            self.destroy_volume(&dead)?;
        }
        Ok(info_of(&rec))
    }

    /// Per-volume space: logical, exclusive (freed by deleting it) and snapshot count.
    pub fn volume_usage(&self) -> Result<Vec<VolumeUsage>> {
        let vols = self.list_volumes()?;
        let mut out = Vec::new();
        for v in &vols {
            let mut counts: HashMap<keys::Hash, i64> = HashMap::new();
            self.engine().scan(
                Cf::ChunkMap,
                &keys::u64_key(v.id),
                &keys::u64_key(v.id + 1),
                &mut |_, val| {
                    *counts.entry(ChunkRef::decode(val)?.hash).or_default() += 1;
                    Ok(true)
                },
            )?;
            let mut exclusive = 0;
            for (hash, n) in counts {
                let total = self
                    .engine()
                    .get(Cf::Refs, &hash)?
                    .map(|r| crate::engine::decode_ref(&r))
                    .unwrap_or(0);
                if total <= n {
                    if let Some(loc) = self.engine().get(Cf::ChunkIndex, &hash)? {
                        exclusive += ChunkLocation::decode(&loc)?.stored_len as u64;
                    }
                }
            }
            out.push(VolumeUsage {
                name: v.name.clone(),
                logical_bytes: v.used,
                exclusive_bytes: exclusive,
                snapshots: vols
                    .iter()
                    .filter(|s| s.read_only && s.snapshot_of.as_deref() == Some(&v.name))
                    .count() as u64,
                read_only: v.read_only,
            });
        }
        Ok(out)
    }
}
