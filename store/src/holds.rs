//! Holds: references to a volume's inodes from a cache outside the store, such as a
//! kernel's inode cache behind one mount (whose lookup counts they are).
//!
//! An inode lives while it has a link, an open handle ([`Volume::open`]) or a hold.
//! When its last link goes while it is held, it becomes an orphan (recorded in the
//! `orphans` family, so a crash cannot leak it) and keeps answering every call by inode
//! number; when its last hold and handle go, its record, xattrs and chunk references
//! are deleted. A holder that goes away (an unmount) drops all its holds at once.
//!
//! Each [`InodeHolds`] owns its counts in a sharded map with one entry per inode it
//! holds and nothing else, so the memory follows what the outside cache holds and the
//! data path takes no volume-wide lock. The volume keeps a list of its live holders to
//! answer "is this inode held?" when a link or a handle goes.

use crate::error::Result;
use crate::types::Ino;
use crate::volume::{Volume, VolumeInner};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::Arc;

pub(crate) type HoldCounts = Arc<DashMap<Ino, u64>>;

/// One holder's references to inodes of a volume. Dropping it drops them all.
pub struct InodeHolds {
    volume: Volume,
    counts: HoldCounts,
}

impl std::fmt::Debug for InodeHolds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InodeHolds")
            .field("volume", &self.volume.name())
            .field("inodes", &self.counts.len())
            .finish()
    }
}

impl Volume {
    /// A new holder with no holds, registered with this volume until dropped.
    pub fn holds(&self) -> InodeHolds {
        let counts = HoldCounts::default();
        self.inner.holders.write().push(counts.clone());
        InodeHolds {
            volume: self.clone(),
            counts,
        }
    }
}

impl InodeHolds {
    /// Adds `n` holds on `ino`. A read-only volume never loses an inode, so its holds
    /// are not counted at all.
    pub fn retain(&self, ino: Ino, n: u64) {
        if n == 0 || self.volume.is_read_only() {
            return;
        }
        *self.counts.entry(ino).or_insert(0) += n;
    }

    /// Drops `n` holds on `ino` (more than it has means all). When its last hold goes
    /// and nothing else keeps it (a link, an open handle, another holder), the inode is
    /// deleted. Holds on an inode this holder does not know are ignored.
    pub fn forget(&self, ino: Ino, n: u64) -> Result<()> {
        let released = match self.counts.entry(ino) {
            Entry::Occupied(mut e) => {
                let left = e.get().saturating_sub(n);
                if left == 0 {
                    e.remove();
                    true
                } else {
                    *e.get_mut() = left;
                    false
                }
            }
            Entry::Vacant(_) => false,
        };
        if released {
            self.volume.inner.purge_if_unreferenced(ino)?;
        }
        Ok(())
    }

    /// The holds this holder has on `ino`.
    pub fn count(&self, ino: Ino) -> u64 {
        self.counts.get(&ino).map_or(0, |c| *c)
    }

    /// How many inodes this holder holds.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Drops every hold (the outside cache is gone) and deletes the orphans that
    /// nothing keeps any more.
    pub fn release_all(&self) -> Result<()> {
        self.counts.clear();
        self.volume.inner.purge_orphans()
    }
}

impl Drop for InodeHolds {
    fn drop(&mut self) {
        self.volume
            .inner
            .holders
            .write()
            .retain(|c| !Arc::ptr_eq(c, &self.counts));
        if !self.counts.is_empty() {
            if let Err(e) = self.release_all() {
                // The orphans stay recorded: the next open of the volume purges them.
                tracing::warn!("volume {}: dropping inode holds: {e}", self.volume.name());
            }
        }
    }
}

impl VolumeInner {
    /// Whether any live holder holds `ino`.
    pub(crate) fn is_held(&self, ino: Ino) -> bool {
        self.holders.read().iter().any(|c| c.contains_key(&ino))
    }
}
