//! The thin `fuser` adapter: each kernel request becomes one [`Volume`] call and each
//! [`StoreError`] becomes its errno. POSIX semantics (quota, open counts of unlinked
//! files, setgid inheritance, suid/sgid clearing on chown, ...) live in the store.
//!
//! Inode lifetimes: every entry reply (lookup, create, mkdir, mknod, symlink, link and
//! readdirplus entries but "." and "..") adds one to the kernel's lookup count of the
//! inode, and `forget`/`batch_forget` take counts away, as the FUSE protocol defines
//! them. The counts are this session's [`InodeHolds`], so a file removed while the
//! kernel still knows it stays usable by inode number (timestamps written back by
//! `syncfs`, reads and writes through open handles) until the kernel forgets it.
//!
//! Cache policy: the server is the only writer of its volume, so entries and attributes
//! are cached for [`TTL`], files keep their page cache across opens, directories keep
//! their readdir cache, and the kernel's writeback cache is enabled.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tessera_store::{
    Attr, FileKind, Ino, InodeHolds, RenameFlags, SetAttr, StoreError, TimeSet, Timestamp, Volume,
    Whence, XattrFlags,
};
use tracing::{debug, info, warn};

/// How long the kernel may cache entries and attributes. Long, because this server is
/// the only writer of the volume and every change goes through the kernel.
pub const TTL: Duration = Duration::from_secs(60);

/// Largest write the kernel sends in one request (and the FUSE `max_pages` it implies).
pub const MAX_WRITE: u32 = 1 << 20;

/// Readahead asked for at INIT (the kernel caps it at what it offered, usually 128 KiB;
/// `mount` raises the mount's bdi `read_ahead_kb` afterwards).
pub const MAX_READAHEAD: u32 = 1 << 20;

/// Largest `copy_file_range` done at once: the reply's count is a u32; keep it page-aligned.
const MAX_COPY: u32 = !0xfff;

/// Block size reported by `statfs`.
const STATFS_BSIZE: u32 = 4096;

const XATTR_CREATE: i32 = libc::XATTR_CREATE;
const XATTR_REPLACE: i32 = libc::XATTR_REPLACE;
const S_ISUID: u32 = libc::S_ISUID;
const S_ISGID: u32 = libc::S_ISGID;

/// A tessera volume as a FUSE filesystem.
#[derive(Clone)]
pub struct TesseraFs {
    volume: Volume,
    /// Where the volume is mounted, to push the kernel's dirty pages to us on demand.
    mount_point: Option<Arc<PathBuf>>,
    /// Open writable handles per inode. While a file has one, the kernel may hold
    /// dirty pages of it that the store has not seen (writeback cache), so
    /// SEEK_DATA/SEEK_HOLE answer conservatively (all data) instead of from the store.
    writers: Arc<parking_lot::Mutex<HashMap<Ino, u32>>>,
    /// The kernel's lookup counts for this session.
    holds: Arc<InodeHolds>,
}

/// File handle of a writable open; read-only opens get 0.
const WRITABLE_FH: u64 = 1;

impl std::fmt::Debug for TesseraFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TesseraFs")
            .field("volume", &self.volume.name())
            .finish()
    }
}

impl TesseraFs {
    pub fn new(volume: Volume) -> TesseraFs {
        TesseraFs {
            holds: Arc::new(volume.holds()),
            volume,
            mount_point: None,
            writers: Arc::default(),
        }
    }

    /// A file system that knows its mount point. With the writeback cache the kernel
    /// holds dirty pages the store has not seen; SEEK_DATA/SEEK_HOLE (which the kernel
    /// does not flush for) then syncs the mount first so unsynced data is found.
    pub fn with_mount_point(volume: Volume, mount_point: &Path) -> TesseraFs {
        TesseraFs {
            mount_point: Some(Arc::new(mount_point.to_path_buf())),
            ..TesseraFs::new(volume)
        }
    }

    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// The kernel's lookup counts of this session.
    pub fn holds(&self) -> &InodeHolds {
        &self.holds
    }

    /// Replies with an entry: the kernel counts one lookup of it, and so do we (before
    /// the reply, so that its forget cannot come first).
    fn reply_entry(&self, reply: ReplyEntry, result: Result<Attr, StoreError>) {
        match result {
            Ok(a) => {
                self.holds.retain(a.ino, 1);
                reply.entry(&TTL, &file_attr(&a), Generation(0));
            }
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// `syncfs(2)` on the file system mounted at `dir`: the kernel writes its dirty pages
/// (writeback cache) back to this server. Must not run on a FUSE worker thread that the
/// writeback might need.
pub fn sync_mount(dir: &Path) {
    match std::fs::File::open(dir) {
        Ok(f) => {
            // SAFETY: syncfs on a valid, open fd.
            if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                debug!("syncfs {}: {}", dir.display(), io::Error::last_os_error());
            }
        }
        Err(e) => debug!("open {} for syncfs: {e}", dir.display()),
    }
}

fn reply_seek(volume: &Volume, ino: Ino, offset: u64, whence: Whence, reply: ReplyLseek) {
    match volume.seek(ino, offset, whence) {
        Ok(pos) => match i64::try_from(pos) {
            Ok(pos) => reply.offset(pos),
            Err(_) => reply.error(Errno::EOVERFLOW),
        },
        Err(e) => reply.error(errno(e)),
    }
}

/// The errno for a store error; unexpected failures are logged.
fn errno(err: StoreError) -> Errno {
    let code = err.errno();
    match code {
        libc::EIO | libc::EUCLEAN | libc::EPROTO => warn!("store error: {err}"),
        _ => debug!("store error: {err}"),
    }
    Errno::from_i32(code)
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
    }
}

/// `FileAttr` from a store `Attr`.
pub fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime.to_system_time(),
        mtime: a.mtime.to_system_time(),
        ctime: a.ctime.to_system_time(),
        crtime: a.crtime.to_system_time(),
        kind: file_type(a.kind),
        perm: a.perm & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

/// A time from a kernel request. fuser 0.18 turns the kernel's pre-epoch
/// `(secs < 0, nsec)` into `EPOCH - (|secs| + nsec)` instead of
/// `EPOCH - |secs| + nsec`; that mapping is one-to-one, so undo it here.
fn request_time(t: SystemTime) -> Timestamp {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(_) => Timestamp::from_system_time(t),
        Err(e) => {
            let d = e.duration();
            Timestamp {
                secs: -(d.as_secs() as i64),
                nsecs: d.subsec_nanos(),
            }
        }
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(t) => TimeSet::At(request_time(t)),
    }
}

/// Supplementary groups of `pid`, from `/proc/<pid>/status`; empty if unknown.
fn supplementary_groups(pid: u32) -> Vec<u32> {
    if pid == 0 {
        return Vec::new();
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the requester belongs to `gid` (primary or supplementary group).
fn in_group(req: &Request, gid: u32) -> bool {
    req.gid() == gid || supplementary_groups(req.pid()).contains(&gid)
}

/// Ownership rules the kernel leaves to us for `setattr`: only root changes the owner;
/// the owner may change the group to one they belong to; only the owner (or root) changes
/// the mode, except that anyone may clear suid/sgid (the kernel does that on write and
/// truncate by non-owners). Returns the mode to apply.
fn check_setattr(
    req: &Request,
    cur: &Attr,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<Option<u32>, Errno> {
    let caller = req.uid();
    let owner = caller == cur.uid;
    if let Some(uid) = uid {
        if !(owner && uid == cur.uid) {
            return Err(Errno::EPERM);
        }
    }
    if let Some(gid) = gid {
        if !owner || (gid != cur.gid && !in_group(req, gid)) {
            return Err(Errno::EPERM);
        }
    }
    let Some(mode) = mode else {
        return Ok(None);
    };
    let old = u32::from(cur.perm) & 0o7777;
    let mut new = mode & 0o7777;
    if !owner {
        let killpriv = S_ISUID | S_ISGID;
        // Only the kernel's own suid/sgid removal: same bits minus (some of) suid/sgid.
        if new & !killpriv != old & !killpriv || new & !old != 0 {
            return Err(Errno::EPERM);
        }
    } else if new & S_ISGID != 0 && !in_group(req, gid.unwrap_or(cur.gid)) {
        new &= !S_ISGID;
    }
    Ok(Some(new))
}

impl TesseraFs {
    fn do_setattr(
        &self,
        req: &Request,
        ino: Ino,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        set: SetAttr,
    ) -> Result<Attr, Errno> {
        let mut set = set;
        set.mode = mode.map(|m| m & 0o7777);
        set.uid = uid;
        set.gid = gid;
        if req.uid() != 0 && (mode.is_some() || uid.is_some() || gid.is_some()) {
            let cur = self.volume.getattr(ino).map_err(errno)?;
            set.mode = check_setattr(req, &cur, mode, uid, gid)?;
        }
        self.volume.setattr(ino, &set).map_err(errno)
    }

    /// Open `ino` (counted by the store) and truncate it if asked.
    /// The handle for an open with `flags`, counting writers.
    fn handle(&self, ino: Ino, flags: i32) -> FileHandle {
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            return FileHandle(0);
        }
        *self.writers.lock().entry(ino).or_default() += 1;
        FileHandle(WRITABLE_FH)
    }

    fn do_open(&self, ino: Ino, flags: i32) -> Result<(), Errno> {
        self.volume.open(ino).map_err(errno)?;
        if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
            let set = SetAttr {
                size: Some(0),
                ..SetAttr::default()
            };
            if let Err(e) = self.volume.setattr(ino, &set) {
                let _ = self.volume.release(ino);
                return Err(errno(e));
            }
        }
        Ok(())
    }

    /// ".", ".." and then the store's entries from `offset` on. `add` returns true when
    /// the reply buffer is full.
    fn list_dir(
        &self,
        ino: Ino,
        offset: u64,
        limit: usize,
        mut add: impl FnMut(Ino, u64, FileKind, &OsStr) -> Result<bool, Errno>,
    ) -> Result<(), Errno> {
        let mut offset = offset;
        if offset == 0 {
            if add(ino, 1, FileKind::Dir, OsStr::new("."))? {
                return Ok(());
            }
            offset = 1;
        }
        if offset == 1 {
            let parent = self.volume.parent_of(ino).map_err(errno)?;
            if add(parent, 2, FileKind::Dir, OsStr::new(".."))? {
                return Ok(());
            }
            offset = 2;
        }
        let mut after = if offset <= 2 { 0 } else { offset };
        loop {
            let entries = self.volume.readdir(ino, after, limit).map_err(errno)?;
            let done = entries.len() < limit;
            for e in &entries {
                if add(e.ino, e.cookie, e.kind, OsStr::from_bytes(&e.name))? {
                    return Ok(());
                }
                after = e.cookie;
            }
            if done || entries.is_empty() {
                return Ok(());
            }
        }
    }
}

/// Entries worth fetching per store call for a reply buffer of `size` bytes.
fn dir_batch(size: usize, min_entry: usize) -> usize {
    (size / min_entry + 1).clamp(16, 1024)
}

impl Filesystem for TesseraFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let wanted = [
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_BIG_WRITES,
            InitFlags::FUSE_MAX_PAGES,
            InitFlags::FUSE_WRITEBACK_CACHE,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ASYNC_DIO,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ];
        for flag in wanted {
            if let Err(missing) = config.add_capabilities(flag) {
                debug!("kernel does not offer FUSE capability {missing:?}");
            }
        }
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        info!(
            "FUSE session for volume {} initialised (kernel ABI {:?})",
            self.volume.name(),
            config.kernel_abi()
        );
        Ok(())
    }

    fn destroy(&mut self) {
        // The kernel forgets every inode with the connection.
        if let Err(e) = self.holds.release_all() {
            warn!(
                "deleting removed inodes of volume {} at unmount: {e}",
                self.volume.name()
            );
        }
        if let Err(e) = self.volume.sync() {
            warn!("flushing volume {} at unmount: {e}", self.volume.name());
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.reply_entry(reply, self.volume.lookup(parent.0, name));
    }

    // fuser's default `batch_forget` calls this once per inode.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if let Err(e) = self.holds.forget(ino.0, nlookup) {
            // The inode stays an orphan; the next open of the volume deletes it.
            warn!("forgetting inode {} of {}: {e}", ino.0, self.volume.name());
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.volume.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            ctime: ctime.map(request_time),
            ..SetAttr::default()
        };
        match self.do_setattr(req, ino.0, mode, uid, gid, set) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.volume.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let perm = mode & 0o7777 & !umask;
        let result = match FileKind::from_mode(mode) {
            Some(FileKind::Dir) => self
                .volume
                .mkdir(parent.0, name, perm, req.uid(), req.gid()),
            Some(FileKind::Symlink) | None => {
                reply.error(Errno::EINVAL);
                return;
            }
            Some(kind) => self
                .volume
                .mknod(parent.0, name, kind, perm, rdev, req.uid(), req.gid()),
        };
        self.reply_entry(reply, result);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = mode & 0o7777 & !umask;
        let result = self
            .volume
            .mkdir(parent.0, name, perm, req.uid(), req.gid());
        self.reply_entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.volume.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.volume.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.volume.symlink(
            parent.0,
            link_name,
            target.as_os_str(),
            req.uid(),
            req.gid(),
        );
        self.reply_entry(reply, result);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let known = fuser::RenameFlags::RENAME_NOREPLACE | fuser::RenameFlags::RENAME_EXCHANGE;
        if !known.contains(flags) || flags == known {
            reply.error(Errno::EINVAL);
            return;
        }
        let flags = RenameFlags {
            noreplace: flags.contains(fuser::RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(fuser::RenameFlags::RENAME_EXCHANGE),
        };
        match self
            .volume
            .rename(parent.0, name, newparent.0, newname, flags)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.reply_entry(reply, self.volume.link(ino.0, newparent.0, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // With the writeback cache the kernel may turn O_WRONLY into O_RDWR: fine.
        match self.do_open(ino.0, flags.0) {
            Ok(()) => reply.opened(self.handle(ino.0, flags.0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = mode & 0o7777 & !umask;
        let kind = match FileKind::from_mode(mode) {
            Some(FileKind::File) => FileKind::File,
            _ => {
                reply.error(Errno::EINVAL);
                return;
            }
        };
        let (attr, created) =
            match self
                .volume
                .mknod(parent.0, name, kind, perm, 0, req.uid(), req.gid())
            {
                Ok(a) => (a, true),
                // Created by someone else since the kernel's lookup: plain O_CREAT opens it.
                Err(StoreError::Exists(_)) if flags & libc::O_EXCL == 0 => {
                    match self.volume.lookup(parent.0, name) {
                        Ok(a) => (a, false),
                        Err(e) => return reply.error(errno(e)),
                    }
                }
                Err(e) => return reply.error(errno(e)),
            };
        if !created && attr.kind == FileKind::Dir {
            return reply.error(Errno::EISDIR);
        }
        let trunc = if created {
            flags & !libc::O_TRUNC
        } else {
            flags
        };
        if let Err(e) = self.do_open(attr.ino, trunc) {
            return reply.error(e);
        }
        let attr = if created || trunc & libc::O_TRUNC == 0 {
            attr
        } else {
            self.volume.getattr(attr.ino).unwrap_or(attr)
        };
        self.holds.retain(attr.ino, 1);
        reply.created(
            &TTL,
            &file_attr(&attr),
            Generation(0),
            self.handle(attr.ino, flags),
            FopenFlags::FOPEN_KEEP_CACHE,
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.volume.read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.volume.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.volume.flush(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if fh.0 == WRITABLE_FH {
            let mut writers = self.writers.lock();
            if let Some(n) = writers.get_mut(&ino.0) {
                *n -= 1;
                if *n == 0 {
                    writers.remove(&ino.0);
                }
            }
        }
        match self.volume.release(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.volume.fsync(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.volume.getattr(ino.0) {
            Ok(a) if a.kind != FileKind::Dir => reply.error(Errno::ENOTDIR),
            Ok(_) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // A fuse_dirent is at least 32 bytes; the reply buffer is usually one page.
        let limit = dir_batch(4096, 32);
        let result = self.list_dir(ino.0, offset, limit, |ino, next, kind, name| {
            Ok(reply.add(INodeNo(ino), next, file_type(kind), name))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        // Every entry but "." and ".." that makes it into the reply counts as a lookup
        // for the kernel: count them once the reply is sure to carry them.
        let limit = dir_batch(4096, 152);
        let mut looked_up = Vec::new();
        let result = self.list_dir(ino.0, offset, limit, |entry, next, _kind, name| {
            let attr = match self.volume.getattr(entry) {
                Ok(a) => a,
                // Removed since it was listed: leave it out.
                Err(StoreError::NotFound(_)) => return Ok(false),
                Err(e) => return Err(errno(e)),
            };
            let full = reply.add(
                INodeNo(entry),
                next,
                name,
                &TTL,
                &file_attr(&attr),
                Generation(0),
            );
            if !full && name != OsStr::new(".") && name != OsStr::new("..") {
                looked_up.push(entry);
            }
            Ok(full)
        });
        match result {
            Ok(()) => {
                for entry in looked_up {
                    self.holds.retain(entry, 1);
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.volume.sync() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let st = match self.volume.statfs() {
            Ok(st) => st,
            Err(e) => return reply.error(errno(e)),
        };
        let bsize = u64::from(STATFS_BSIZE);
        let blocks = st.capacity / bsize;
        let bfree = st.capacity.saturating_sub(st.used) / bsize;
        // Inodes are not limited: report a large, stable pool of free ones.
        let ffree = u64::from(u32::MAX).saturating_sub(st.inodes);
        let files = st.inodes + ffree;
        let namelen = if st.max_name == 0 { 255 } else { st.max_name };
        reply.statfs(
            blocks,
            bfree,
            bfree,
            files,
            ffree,
            STATFS_BSIZE,
            namelen,
            STATFS_BSIZE,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        let flags = match flags {
            0 => XattrFlags::Any,
            XATTR_CREATE => XattrFlags::Create,
            XATTR_REPLACE => XattrFlags::Replace,
            _ => return reply.error(Errno::EINVAL),
        };
        if position != 0 {
            return reply.error(Errno::EINVAL);
        }
        match self.volume.setxattr(ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.volume.getxattr(ino.0, name) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.volume.listxattr(ino.0) {
            Ok(names) => {
                let mut list = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
                for name in names {
                    list.extend_from_slice(&name);
                    list.push(0);
                }
                reply_xattr(reply, size, &list);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.volume.removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // With default_permissions the kernel checks the mode bits itself.
        match self.volume.getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let result = match mode {
            0 => self.volume.allocate(ino.0, offset, length, false),
            KEEP_SIZE => self.volume.allocate(ino.0, offset, length, true),
            PUNCH_HOLE => self.volume.punch_hole(ino.0, offset, length),
            _ => return reply.error(Errno::from_i32(libc::EOPNOTSUPP)),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let whence = match whence {
            libc::SEEK_DATA => Whence::Data,
            libc::SEEK_HOLE => Whence::Hole,
            libc::SEEK_SET if offset >= 0 => return reply.offset(offset),
            libc::SEEK_END => {
                return match self.volume.getattr(ino.0) {
                    Ok(a) => match i64::try_from(a.size)
                        .ok()
                        .and_then(|s| s.checked_add(offset))
                    {
                        Some(pos) if pos >= 0 => reply.offset(pos),
                        _ => reply.error(Errno::EINVAL),
                    },
                    Err(e) => reply.error(errno(e)),
                };
            }
            _ => return reply.error(Errno::EINVAL),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(Errno::ENXIO);
        };
        if self.writers.lock().contains_key(&ino.0) {
            // Pages the kernel has not written back are invisible here: call
            // everything data (what filesystems without hole support answer).
            return match self.volume.getattr(ino.0) {
                Ok(a) if offset >= a.size => reply.error(Errno::ENXIO),
                Ok(a) => reply.offset(if whence == Whence::Data {
                    offset
                } else {
                    a.size
                } as i64),
                Err(e) => reply.error(errno(e)),
            };
        }
        let Some(dir) = self.mount_point.clone() else {
            return reply_seek(&self.volume, ino.0, offset, whence, reply);
        };
        // The kernel does not write back dirty pages before FUSE_LSEEK. Sync the mount on
        // a helper thread (the writeback needs free workers) and reply from there.
        let volume = self.volume.clone();
        let spawned = std::thread::Builder::new()
            .name("tessera-seek".into())
            .spawn(move || {
                sync_mount(&dir);
                reply_seek(&volume, ino.0, offset, whence, reply);
            });
        if let Err(e) = spawned {
            // The reply went down with the closure: fuser answers EIO for it.
            warn!("cannot spawn a thread for lseek: {e}");
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let len = len.min(u64::from(MAX_COPY));
        match self
            .volume
            .copy_range(ino_in.0, offset_in, ino_out.0, offset_out, len)
        {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(MAX_COPY)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // No ioctls (isatty() probes land here on every open by some runtimes).
        reply.error(Errno::ENOTTY);
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: fuser::PollNotifier,
        _events: fuser::PollEvents,
        _flags: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        // ENOSYS makes the kernel treat files as always ready, as for regular files.
        reply.error(Errno::ENOSYS);
    }

    fn bmap(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _blocksize: u32,
        _idx: u64,
        reply: fuser::ReplyBmap,
    ) {
        reply.error(Errno::ENOSYS);
    }
}

/// Reply to getxattr/listxattr: the size when asked for it, ERANGE when `size` is too small.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    let Ok(len) = u32::try_from(value.len()) else {
        return reply.error(Errno::E2BIG);
    };
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
