//! `tessera-fs`: POSIX file system semantics over `tessera-store`, served through FUSE.
//!
//! What this crate owns:
//! - [`adapter::TesseraFs`], a thin [`fuser::Filesystem`]: each kernel request becomes one
//!   [`tessera_store::Volume`] call and each [`tessera_store::StoreError`] its errno; plus the
//!   kernel cache policy (long entry/attr TTLs, writeback cache, readdirplus, kept page and
//!   directory caches) and the few ownership rules the kernel leaves to the server.
//! - [`mount`], the mount lifecycle: mount point validation (including cleaning a stale
//!   "Transport endpoint is not connected" mount), mount options, multi-threaded dispatch
//!   with cloned `/dev/fuse` fds, readahead, and a clean flush-and-unmount on signals or
//!   external unmount.
//!
//! What it must not know: RocksDB or any storage engine detail (the store owns every byte),
//! and CSI, gRPC or Kubernetes (the CSI layer drives mounts through this crate).

pub mod adapter;
pub mod mount;

pub use adapter::TesseraFs;
pub use mount::{
    default_threads, detach, is_tessera_mount, mount_background, mount_foreground, mount_points_of,
    mount_source, probe_mount, BackgroundMount, MountError, MountOptions, MountProbe,
};
