//! # tessera-store: the content-addressed volume store
//!
//! Owns RocksDB and every byte on disk; knows volumes, inodes, directory
//! entries, xattrs, chunk maps, chunks, reference counts, quotas, GC and fsck.
//! It knows nothing of FUSE, gRPC or Kubernetes, and no RocksDB type appears in
//! its API ([`engine::Engine`] is the boundary).
//!
//! ## Data model
//! A **pool** is one RocksDB database in `<dir>/db` (the catalog) and the
//! chunk bodies' segment files in `<dir>/segments`, locked by one process
//! (`<dir>/tessera.lock` holds its pid). Column families ([`keys::Cf`]), keys
//! big-endian and fixed-width so scans come out in numeric order:
//!
//! | family | key | value |
//! |---|---|---|
//! | `meta` | `format`, `next_volume`, `name/<name>` | format version, id counter, volume id |
//! | `volumes` | vol | volume record (capacity, used, next inode, chunk size, codec) |
//! | `inodes` | vol, ino | inode record (kind, mode, owner, times, size, nlink) |
//! | `dentries` | vol, parent, name | (ino, kind, cookie) |
//! | `dir_cookies` | vol, parent, cookie | (name, ino, kind): readdir order |
//! | `xattrs` | vol, ino, name | value |
//! | `chunk_map` | vol, ino, chunk index | (BLAKE3 hash, length) |
//! | `chunk_index` | hash | raw and stored length, codec, and where the body is: (segment, offset, header CRC) or the stored bytes inline |
//! | `refs` | hash | i64 reference count, updated by an add merge operator |
//! | `orphans` | vol, ino | inodes without links that a handle or a hold still keeps |
//! | `journal` | vol, ino, chunk index, sequence | (offset in the chunk, bytes): a small fsync'ed write whose chunk is still buffered |
//!
//! Chunk bodies are written once: a chunk that stores in more than
//! 8 KiB is appended to the active **segment file**
//! (64 MiB, then sealed and never modified) as a self-describing record:
//! magic, codec, lengths, BLAKE3 hash, a CRC32C of the header and one CRC32C
//! per 4 KiB of payload, then the payload. A read of 4 KiB from a 1 MiB raw
//! chunk reads the record header and the one 4 KiB block it needs, and checks
//! both checksums (verified headers are cached, so a small read costs one
//! `pread`); compressed chunks are read whole and kept in a small
//! decoded cache. Smaller chunks live inline in their index entry, so a small
//! file costs no segment append and no segment sync. A record that fails its
//! checksums is never returned: the read fails with [`StoreError::Damaged`]
//! (EIO) and `fsck` names it.
//!
//! Readdir cookies are handed out per directory in increasing order and never
//! reused, so a listing resumed at a cookie neither repeats nor skips entries
//! that stayed put while others came and went.
//!
//! ## A chunk's life
//! Files are cut into fixed-size chunks aligned to file offsets (256 KiB by
//! default, 64 KiB–4 MiB per volume). A write is copied once, into the file's
//! **chunk buffer** in memory (a 4 KiB write is a memcpy, not a chunk rewrite).
//! Small writes into a stored chunk are kept as a **patch**, sorted extents
//! over it (up to a quarter of the chunk), and the stored chunk is read only
//! when the file commits; reads lay the extents over the stored bytes; a
//! larger write merges the patch with the chunk first. A chunk filled
//! by a sequential stream is handed to the pool's **write-back workers** as
//! soon as it is full; the others wait for the file's commit. **Sealing** a
//! chunk hashes it with BLAKE3; an all-zero chunk becomes a hole (no key);
//! otherwise, unless the pool already has it, it is compressed (lz4, zstd or
//! none; compression is kept only if it saves at least an eighth) and appended
//! to the active segment (or kept inline). A sealed chunk stays readable in the
//! buffer until the file **commits**: on flush, fsync, release, truncate, and
//! when the pool buffers more than its dirty budget (128 MiB by default;
//! writers past it wait while one of them commits the open files). An fsync of
//! small writes (at most a quarter of a chunk changed per chunk, 1 MiB in all)
//! does not commit: it writes the changed byte ranges to the **journal**
//! family with the inode in one synced batch (one device flush, no chunk
//! rewritten) and the chunks stay buffered until the file commits, which
//! deletes their journal records in its batch. A commit
//! seals what is left, makes the segment bytes durable, and writes one batch:
//! the file's chunk map entries, the new index entries, reference counts (+1,
//! and −1 for the replaced chunks) and the inode. Chunks at zero references
//! are dropped only by [`Pool::gc`], which holds the pool gate exclusively and
//! starts a new chunk-store epoch; every seal and commit holds the gate shared,
//! and a commit seals again a chunk sealed in an earlier epoch, so GC never
//! races a new reference. GC then gives disk space back: it deletes sealed
//! segments without a live record, and copies the live records of segments
//! less than half live into the active segment (synced before the index is
//! repointed, and the index committed before the old file is deleted).
//!
//! ## Concurrency
//! No lock covers a whole volume on the data path. A file with buffered data,
//! or one an operation is changing, has a slot with its own lock and the
//! newest copy of its inode record; reads, writes and flushes of different
//! files run in parallel, and a read waits only for its own file's commit.
//! Namespace changes also take the volume's namespace lock. Lookups, getattr
//! and readdir take no lock beyond the file's slot. Only a snapshot or clone
//! stops the volume while it copies.
//!
//! ## An inode's life
//! An inode lives while it has a link, an open handle ([`Volume::open`]) or a hold
//! ([`InodeHolds`]: a mount's kernel inode cache holds every inode it was told about
//! until it forgets it). Removing the last link of a referenced inode makes it an
//! orphan that keeps working by inode number (getattr, setattr, reads, writes, xattrs);
//! when its last handle and hold go it is deleted with its chunk references. Orphans
//! are recorded, so those a crash leaves behind are purged at the next open. Inode
//! numbers are never reused.
//!
//! ## What survives a crash
//! Every mutation is one atomic `WriteBatch` across families, so metadata is
//! always consistent. Segment bytes are synced (`fdatasync`, shared by
//! concurrent committers) before the batch that first references them is
//! committed, so an index entry always points at durable bytes. A crash may
//! leave unreferenced records in a segment (garbage that GC reclaims) and a
//! torn record at the active segment's tail (truncated at the next open), and
//! loses writes not yet persisted; [`Volume::fsync`] and [`Volume::sync`]
//! persist and sync the WAL, so what they acknowledged survives. Journal
//! records a crash leaves are replayed when the pool opens: each chunk's
//! committed bytes with its records applied in order are committed as a new
//! chunk, so an open pool has no journal records.
//!
//! ## Quota
//! A volume's `used` is the logical bytes of its stored chunks (holes are free).
//! A write past the capacity writes what fits and then fails with
//! [`StoreError::NoSpace`].

mod chunks;
mod codec;
pub mod engine;
mod error;
mod gc;
mod holds;
pub mod keys;
mod pool;
mod records;
mod segment;
mod snapshot;
mod types;
mod volume;
mod writeback;

pub use error::{Result, StoreError};
pub use gc::{AUTO_GC_MIN, AUTO_GC_SHARE};
pub use holds::InodeHolds;
pub use pool::{
    validate_volume_name, FsckReport, GcReport, Pool, Progress, DIRTY_BUDGET, FORMAT_VERSION,
};
pub use snapshot::{split_snapshot_name, VolumeUsage};
pub use types::*;
pub use volume::{Volume, MAX_FILE_SIZE};
