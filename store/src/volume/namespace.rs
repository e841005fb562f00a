//! Directory entries and attributes: lookup, create, link, unlink, rename,
//! readdir, setattr, open and release, and the purge of orphans.

use super::txn::Txn;
use super::{check_name, require_file, Volume, VolumeInner};
use crate::error::{Result, StoreError};
use crate::keys::{self, Cf};
use crate::records::{self, CookieEntry, Dentry, InodeRecord};
use crate::types::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

fn resolve(t: TimeSet, now: Timestamp) -> Timestamp {
    match t {
        TimeSet::Now => now,
        TimeSet::At(t) => t,
    }
}

impl VolumeInner {
    /// Deletes `ino` if it has no link, handle or hold left (its last hold just went).
    pub(crate) fn purge_if_unreferenced(&self, ino: Ino) -> Result<()> {
        if self.read_only || !self.unlinked.contains(&ino) {
            return Ok(());
        }
        let _b = self.enter();
        let mut txn = Txn::new(self)?;
        if self.is_referenced(ino) {
            return Ok(());
        }
        let r = match txn.get(ino) {
            Ok(r) if r.nlink == 0 => r,
            Ok(_) | Err(StoreError::NotFound(_)) => {
                self.unlinked.remove(&ino);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
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
        let _b = self.enter();
        let mut txn = Txn::begin(self);
        orphans.retain(|&ino| !self.is_referenced(ino));
        if orphans.is_empty() {
            return Ok(());
        }
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
}

impl Volume {
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let _b = self.inner.enter();
        let r = self.inner.inode(ino)?;
        Ok(self.inner.attr(ino, &r))
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        if name.len() > MAX_NAME {
            return Err(StoreError::NameTooLong);
        }
        let _b = self.inner.enter();
        let dir = self.inner.inode(parent)?;
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
        let r = self.inner.inode(ino)?;
        Ok(self.inner.attr(ino, &r))
    }

    pub fn parent_of(&self, dir: Ino) -> Result<Ino> {
        let _b = self.inner.enter();
        let r = self.inner.inode(dir)?;
        if r.kind != FileKind::Dir {
            return Err(StoreError::NotDir);
        }
        Ok(r.parent)
    }

    pub fn setattr(&self, ino: Ino, set: &SetAttr) -> Result<Attr> {
        let vol = &*self.inner;
        let _b = vol.enter();
        let mut txn = Txn::new(vol)?;
        // Held from the chunk-index lookups of the truncation to the commit, so gc
        // cannot drop a chunk this batch dedups against or a segment it appended to.
        let _gate = vol.pool.inner.gate.read_recursive();
        if let Some(size) = set.size {
            let r = txn.get(ino)?;
            require_file(&r, "truncate of a special file")?;
            txn.truncate(ino, size)?;
        }
        let now = Timestamp::now();
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
        let _b = vol.enter();
        let mut txn = Txn::new(vol)?;
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
        let ino = {
            let mut rec = vol.rec.lock();
            rec.next_ino += 1;
            rec.inodes += 1;
            rec.next_ino - 1
        };
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
        let _b = self.inner.enter();
        let r = self.inner.inode(ino)?;
        if r.kind != FileKind::Symlink {
            return Err(StoreError::Invalid("not a symlink".into()));
        }
        Ok(r.target)
    }

    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<Attr> {
        let vol = &*self.inner;
        let name = check_name(new_name)?;
        let _b = vol.enter();
        let mut txn = Txn::new(vol)?;
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
        let _b = vol.enter();
        let mut txn = Txn::new(vol)?;
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
        let _b = vol.enter();
        let mut txn = Txn::new(vol)?;
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
        let _b = vol.enter();
        let r = vol.inode(dir)?;
        if r.kind != FileKind::Dir {
            return Err(StoreError::NotDir);
        }
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
        let vol = &*self.inner;
        let _b = vol.enter();
        // Under the namespace lock: an unlink either sees this handle or has
        // purged the inode before the load below.
        let _ns = vol.ns.lock();
        vol.inode(ino)?;
        *vol.opens.lock().entry(ino).or_default() += 1;
        Ok(())
    }

    pub fn release(&self, ino: Ino) -> Result<()> {
        let vol = &*self.inner;
        let _b = vol.enter();
        let remaining = {
            let mut opens = vol.opens.lock();
            let remaining = match opens.get_mut(&ino) {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n
                }
                None => 0,
            };
            if remaining == 0 {
                opens.remove(&ino);
            }
            remaining
        };
        if remaining == 0 && !vol.read_only {
            let r = match vol.inode(ino) {
                Ok(r) => r,
                Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            if r.nlink == 0 {
                let mut txn = Txn::new(vol)?;
                let r = match txn.get(ino) {
                    Ok(r) => r,
                    Err(StoreError::NotFound(_)) => return Ok(()),
                    Err(e) => return Err(e),
                };
                if r.nlink == 0 && !vol.is_referenced(ino) {
                    txn.purge(ino, &r)?;
                    return txn.commit();
                }
            }
        }
        vol.flush_file(ino)
    }
}
