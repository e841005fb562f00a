//! Typed store errors and their POSIX errno mapping.

use std::path::PathBuf;

/// Every failure the store reports. Callers map them with [`StoreError::errno`]
/// (FUSE) or their own table (CLI exit codes, gRPC status).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("name too long (at most 255 bytes)")]
    NameTooLong,
    #[error("no space left on volume {volume}: capacity {capacity} bytes, used {used} bytes")]
    NoSpace {
        volume: String,
        capacity: u64,
        used: u64,
    },
    #[error("the disk holding the pool is full: {0}")]
    DiskFull(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("{0} is in use")]
    InUse(String),
    #[error("read-only volume")]
    ReadOnly,
    #[error("no such attribute")]
    NoXattr,
    #[error("attribute name or buffer out of range")]
    Range,
    #[error("attribute value too large")]
    TooBig,
    #[error("file too large")]
    FileTooBig,
    #[error("no data or hole past the offset")]
    NoSuchOffset,
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    #[error("pool {dir} is in use by process {pid}")]
    PoolInUse { dir: PathBuf, pid: String },
    #[error(
        "pool {dir} has on-disk format version {found}; this build reads only version {supported} \
         (no migration exists: create a new pool and copy the data over)"
    )]
    UnsupportedFormat {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// Stored bytes that fail their checksum: never served as data.
    #[error("damaged data: {0}")]
    Damaged(String),
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The errno a POSIX caller should see for this error.
    pub fn errno(&self) -> i32 {
        match self {
            StoreError::NotFound(_) => libc::ENOENT,
            StoreError::Exists(_) => libc::EEXIST,
            StoreError::NotEmpty => libc::ENOTEMPTY,
            StoreError::NotDir => libc::ENOTDIR,
            StoreError::IsDir => libc::EISDIR,
            StoreError::NameTooLong => libc::ENAMETOOLONG,
            StoreError::NoSpace { .. } | StoreError::DiskFull(_) => libc::ENOSPC,
            StoreError::Invalid(_) => libc::EINVAL,
            StoreError::InUse(_) | StoreError::PoolInUse { .. } => libc::EBUSY,
            StoreError::ReadOnly => libc::EROFS,
            StoreError::NoXattr => libc::ENODATA,
            StoreError::Range => libc::ERANGE,
            StoreError::TooBig => libc::E2BIG,
            StoreError::FileTooBig => libc::EFBIG,
            StoreError::NoSuchOffset => libc::ENXIO,
            StoreError::NotPermitted(_) => libc::EPERM,
            StoreError::UnsupportedFormat { .. } => libc::EPROTO,
            StoreError::Corrupt(_) => libc::EUCLEAN,
            StoreError::Engine(_) | StoreError::Io { .. } | StoreError::Damaged(_) => libc::EIO,
        }
    }
}
