//! Plain data types of the store's public API.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Inode number within one volume.
pub type Ino = u64;
/// The root directory of every volume.
pub const ROOT_INO: Ino = 1;
/// Longest directory entry name, as on Linux.
pub const MAX_NAME: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl FileKind {
    /// The `S_IFMT` bits for this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDev => libc::S_IFCHR,
            FileKind::BlockDev => libc::S_IFBLK,
        }
    }

    /// The kind named by the `S_IFMT` bits of `mode`.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFBLK => FileKind::BlockDev,
            _ => return None,
        })
    }
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    pub secs: i64,
    pub nsecs: u32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nsecs: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut nsecs = d.subsec_nanos();
                if nsecs > 0 {
                    secs -= 1;
                    nsecs = 1_000_000_000 - nsecs;
                }
                Timestamp { secs, nsecs }
            }
        }
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.secs >= 0 {
            UNIX_EPOCH + Duration::new(self.secs as u64, self.nsecs)
        } else {
            UNIX_EPOCH - Duration::from_secs((-self.secs) as u64)
                + Duration::from_nanos(self.nsecs as u64)
        }
    }
}

/// What `stat` shows for an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks holding data (holes excluded).
    pub blocks: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub crtime: Timestamp,
    pub rdev: u32,
    pub blksize: u32,
}

/// A time to set: the current time, or a given one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(Timestamp),
}

/// The fields of a `setattr`; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    /// Permission bits (`0o7777`); the file type bits are ignored.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub ctime: Option<Timestamp>,
}

/// One directory entry from [`crate::Volume::readdir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: Ino,
    pub kind: FileKind,
    /// Pass as `after` to continue the listing after this entry. Always ≥ 3,
    /// so 1 and 2 stay free for "." and "..".
    pub cookie: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenameFlags {
    /// Fail with `Exists` if the target exists (RENAME_NOREPLACE).
    pub noreplace: bool,
    /// Swap source and target atomically; both must exist (RENAME_EXCHANGE).
    pub exchange: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrFlags {
    /// Create or replace.
    Any,
    /// Fail with `Exists` if present (XATTR_CREATE).
    Create,
    /// Fail with `NoXattr` if absent (XATTR_REPLACE).
    Replace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    Data,
    Hole,
}

/// Numbers `statfs` reports for a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub capacity: u64,
    pub used: u64,
    pub inodes: u64,
    pub block_size: u32,
    pub max_name: u32,
}

/// Chunk compression, chosen per volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            _ => Err(format!(
                "unknown compression {s:?} (expected lz4, zstd or none)"
            )),
        }
    }
}

/// Settings of a new volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeOptions {
    /// Quota on logical bytes.
    pub capacity: u64,
    /// A power of two from 64 KiB to 4 MiB.
    pub chunk_size: u32,
    pub compression: Compression,
}

pub const DEFAULT_CAPACITY: u64 = 10 << 30;
/// Chosen by measurement (docs/benchmarks.md): against 1 MiB, the same sequential and
/// random reads, twice the fsync-heavy work (fdatasync IOPS, pgbench TPS).
pub const DEFAULT_CHUNK_SIZE: u32 = 256 << 10;
pub const MIN_CHUNK_SIZE: u32 = 64 << 10;
pub const MAX_CHUNK_SIZE: u32 = 4 << 20;

impl Default for VolumeOptions {
    fn default() -> Self {
        VolumeOptions {
            capacity: DEFAULT_CAPACITY,
            chunk_size: DEFAULT_CHUNK_SIZE,
            compression: Compression::Lz4,
        }
    }
}

/// A volume as listed by the pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub id: u64,
    pub name: String,
    pub capacity: u64,
    /// Logical bytes held by the volume's files (holes excluded).
    pub used: u64,
    pub inodes: u64,
    pub chunk_size: u32,
    pub compression: Compression,
    pub created: Timestamp,
    /// Set for snapshots.
    pub read_only: bool,
    /// For a snapshot: the volume it was taken of.
    pub snapshot_of: Option<String>,
}

/// Pool-wide space figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolUsage {
    /// Unique chunks after compression.
    pub physical_bytes: u64,
    /// Unique chunks before compression.
    pub unique_bytes: u64,
    /// Sum of all volumes' and snapshots' logical bytes.
    pub logical_bytes: u64,
    pub chunks: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// unique / physical.
    pub compression_ratio: f64,
    /// Bytes of segment files on disk.
    pub segment_bytes: u64,
    /// Segment bytes holding records of referenced chunks.
    pub live_bytes: u64,
    /// Segment bytes of deleted chunks (and torn appends): what `gc` reclaims.
    pub garbage_bytes: u64,
}
