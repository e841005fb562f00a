//! Namespace transactions: the inode records read and changed, with their
//! slots held, plus one batch.

use super::{Staged, State, VolumeInner};
use crate::engine::Batch;
use crate::error::{Result, StoreError};
use crate::keys::{self, Cf};
use crate::records::{self, ChunkRef, CookieEntry, Dentry, InodeRecord};
use crate::types::*;
use parking_lot::{ArcMutexGuard, MutexGuard, RawMutex};
use std::collections::BTreeMap;

type Held = ArcMutexGuard<RawMutex, State>;

/// One metadata transaction. Holds the volume's namespace lock and the slot
/// of every inode it reads, so no write or flush changes them in between.
pub(super) struct Txn<'a> {
    pub vol: &'a VolumeInner,
    _ns: MutexGuard<'a, ()>,
    pub batch: Batch,
    touched: BTreeMap<Ino, Option<InodeRecord>>,
    held: BTreeMap<Ino, Held>,
    staged: Vec<(Ino, Staged)>,
}

impl<'a> Txn<'a> {
    pub fn new(vol: &'a VolumeInner) -> Result<Txn<'a>> {
        if vol.read_only {
            return Err(StoreError::ReadOnly);
        }
        Ok(Txn::begin(vol))
    }

    /// A transaction even on a read-only volume (for purging orphans).
    pub fn begin(vol: &'a VolumeInner) -> Txn<'a> {
        Txn {
            vol,
            _ns: vol.ns.lock(),
            batch: Batch::default(),
            touched: BTreeMap::new(),
            held: BTreeMap::new(),
            staged: Vec::new(),
        }
    }

    /// The slot of `ino`, locked for the rest of the transaction.
    fn hold(&mut self, ino: Ino) -> Result<&mut Held> {
        if !self.held.contains_key(&ino) {
            let held = loop {
                let slot = self.vol.slot(ino)?;
                let st = slot.state.lock_arc();
                if !st.dead {
                    break st;
                }
            };
            self.held.insert(ino, held);
        }
        Ok(self.held.get_mut(&ino).unwrap())
    }

    pub fn get(&mut self, ino: Ino) -> Result<InodeRecord> {
        match self.touched.get(&ino) {
            Some(Some(r)) => Ok(r.clone()),
            Some(None) => Err(StoreError::NotFound(format!("inode {ino}"))),
            None => Ok(self.hold(ino)?.meta.clone()),
        }
    }

    pub fn dir(&mut self, ino: Ino) -> Result<InodeRecord> {
        let r = self.get(ino)?;
        if r.kind != FileKind::Dir {
            return Err(StoreError::NotDir);
        }
        if r.nlink == 0 {
            return Err(StoreError::NotFound("directory was removed".into()));
        }
        Ok(r)
    }

    pub fn set(&mut self, ino: Ino, r: InodeRecord) {
        self.touched.insert(ino, Some(r));
    }

    pub fn entry(&self, parent: Ino, name: &[u8]) -> Result<Option<Dentry>> {
        self.vol
            .pool
            .engine()
            .get(Cf::Dentries, &keys::pair_name(self.vol.id, parent, name))?
            .map(|v| records::decode(&v, "dentry"))
            .transpose()
    }

    pub fn add_entry(
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

    pub fn remove_entry(&mut self, parent: Ino, name: &[u8], d: &Dentry) {
        let id = self.vol.id;
        self.batch
            .delete(Cf::Dentries, keys::pair_name(id, parent, name));
        self.batch
            .delete(Cf::DirCookies, keys::triple(id, parent, d.cookie));
    }

    pub fn is_empty_dir(&self, ino: Ino) -> Result<bool> {
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
    pub fn unlink_inode(&mut self, ino: Ino, now: Timestamp) -> Result<()> {
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
        if self.vol.is_referenced(ino) {
            self.batch
                .put(Cf::Orphans, keys::pair(self.vol.id, ino), Vec::new());
            self.set(ino, r);
        } else {
            self.purge(ino, &r)?;
        }
        Ok(())
    }

    /// Deletes an inode with its xattrs, chunk references and buffered data.
    pub fn purge(&mut self, ino: Ino, r: &InodeRecord) -> Result<()> {
        let vol = self.vol;
        let id = vol.id;
        let (from, to) = (keys::pair(id, ino), keys::pair(id, ino + 1));
        // Point deletes of the keys found, not range deletes: every range tombstone
        // stays in the memtable's list that each later read consults, so deleting many
        // files with them slows every following operation down.
        let batch = &mut self.batch;
        let engine = vol.pool.engine();
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
        let st = self.hold(ino)?;
        let freed: usize = st.chunks.values().map(|b| b.mem()).sum();
        st.chunks.clear();
        // Cleared once the batch commits (a failed commit leaves the records).
        let logged = st.journal.logged.clone();
        vol.account(-(freed as i64));
        for (idx, seq) in logged {
            self.batch
                .delete(Cf::Journal, keys::quad(id, ino, idx, seq));
        }
        {
            let mut rec = vol.rec.lock();
            rec.used = rec.used.saturating_sub(r.alloc);
            rec.inodes = rec.inodes.saturating_sub(1);
        }
        self.touched.insert(ino, None);
        Ok(())
    }

    /// Changes a file's size inside the transaction (see [`VolumeInner::truncate`]).
    /// The caller holds the pool gate shared until the commit.
    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<()> {
        let vol = self.vol;
        let mut batch = std::mem::take(&mut self.batch);
        let st = self.hold(ino)?;
        let result = vol.truncate(ino, st, size, &mut batch);
        self.batch = batch;
        let staged = result?;
        self.touched.insert(ino, Some(staged.inode.clone()));
        self.staged.push((ino, staged));
        Ok(())
    }

    pub fn commit(mut self) -> Result<()> {
        let vol = self.vol;
        let mut used_delta = 0i64;
        for (ino, r) in &self.touched {
            let committed = self.held.get(ino).map_or(0, |st| st.committed_alloc) as i64;
            match r {
                Some(r) => {
                    self.batch
                        .put(Cf::Inodes, keys::pair(vol.id, *ino), records::encode(r));
                    used_delta += r.alloc as i64 - committed;
                }
                None => used_delta -= committed,
            }
        }
        let appended = self.staged.iter().any(|(_, s)| s.appended);
        vol.commit(std::mem::take(&mut self.batch), appended, used_delta)?;
        for (ino, staged) in std::mem::take(&mut self.staged) {
            if let Some(st) = self.held.get_mut(&ino) {
                vol.settle(st, staged);
            }
        }
        for (ino, r) in std::mem::take(&mut self.touched) {
            match r {
                Some(r) => {
                    if let Some(st) = self.held.get_mut(&ino) {
                        st.committed_alloc = r.alloc;
                        st.meta = r;
                    }
                }
                None => {
                    if let Some(st) = self.held.get_mut(&ino) {
                        st.chunks.clear();
                        st.journal.clear();
                    }
                    vol.unlinked.remove(&ino);
                }
            }
        }
        for (ino, st) in self.held.iter_mut() {
            vol.retire(*ino, st);
        }
        Ok(())
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        // A transaction that failed or returned early changed nothing committed;
        // its slots stay as they were (retired if they hold nothing buffered).
        for (ino, st) in self.held.iter_mut() {
            self.vol.retire(*ino, st);
        }
    }
}
