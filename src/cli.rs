//! Command-line definitions (clap derive).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Capacity of a new volume unless --size says otherwise.
pub const DEFAULT_SIZE: &str = "10GiB";
/// Chunk size of a new volume unless --chunk-size says otherwise.
pub const DEFAULT_CHUNK_SIZE: &str = "256KiB";

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other failure (I/O, storage engine, corruption, fsck found problems, mount failed)
  2  usage error (bad command line)
  3  not found (volume, mount point)
  4  already exists
  5  in use (volume open or mounted, or the pool held by another tessera process)
  6  invalid input (bad name, size, chunk size; resize below used; pool in another on-disk format)
  7  no space (volume quota reached, or the disk holding the pool is full)

Data directory: --data-dir, else $TESSERA_DATA_DIR, else /var/lib/tessera when run as root,
else $XDG_DATA_HOME/tessera, else ~/.local/share/tessera.";

/// Tessera: content-addressed volumes on RocksDB, mounted with FUSE.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// The pool directory (one RocksDB database holding every volume).
    #[arg(long, global = true, env = "TESSERA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect, resize and delete volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),

    /// Take, list, inspect and delete read-only snapshots (VOLUME@SNAPSHOT).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),

    /// Make a writable, independent copy of a volume or snapshot (no data is copied).
    Clone {
        /// A volume, or a snapshot as VOLUME@SNAPSHOT.
        source: String,
        /// Name of the new volume.
        name: String,
    },

    /// Mount a volume with FUSE and serve it in the foreground until unmounted
    /// (Ctrl-C, SIGTERM or `fusermount3 -u DIR`).
    Mount(MountArgs),

    /// Serve the Kubernetes CSI plugin (Identity, Controller and Node services) for this
    /// node's pools on a unix socket, until SIGTERM or SIGINT.
    Csi(CsiArgs),

    /// Show pool-wide space usage: physical, unique and logical bytes, dedup and
    /// compression ratios, and each volume's logical bytes.
    Usage,

    /// Delete chunks no volume refers to any more.
    Gc,

    /// Check reference counts, chunk maps and every chunk's stored record (header and
    /// block checksums); exits 1 if problems remain.
    Fsck {
        /// Fix what can be fixed (leaked chunks, wrong reference counts).
        #[arg(long)]
        repair: bool,
        /// Also read every chunk back and check its BLAKE3 hash (reads all data: slow).
        #[arg(long)]
        verify_data: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create {
        /// Volume name: 1-128 characters from a-z 0-9 . _ -, not starting with '.' or '-'.
        name: String,
        #[command(flatten)]
        opts: CreateOpts,
    },
    /// List volumes (and snapshots).
    #[command(visible_alias = "ls")]
    List,
    /// Show one volume.
    Info { name: String },
    /// Change a volume's capacity (it cannot shrink below the bytes it holds).
    Resize {
        name: String,
        /// New capacity, e.g. 20GiB.
        size: String,
    },
    /// Roll a volume back to one of its snapshots (refused while it is mounted).
    Restore {
        name: String,
        /// The snapshot's name (the part after '@').
        snapshot: String,
    },
    /// Delete a volume and release its chunks (run `tessera gc` to reclaim space).
    #[command(visible_alias = "rm")]
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a read-only, point-in-time snapshot VOLUME@SNAPSHOT (also of a mounted volume).
    Create { volume: String, snapshot: String },
    /// List snapshots, of one volume or of all.
    #[command(visible_alias = "ls")]
    List { volume: Option<String> },
    /// Show one snapshot (VOLUME@SNAPSHOT).
    Info { name: String },
    /// Delete a snapshot (VOLUME@SNAPSHOT).
    #[command(visible_alias = "rm")]
    Delete { name: String },
}

/// Settings of a new volume.
#[derive(Debug, Clone, Args)]
pub struct CreateOpts {
    /// Capacity (quota on logical bytes): B, K/KiB, M/MiB, G/GiB, T/TiB, KB, MB, GB, TB.
    #[arg(long, value_name = "SIZE", default_value = DEFAULT_SIZE)]
    pub size: String,

    /// Chunk size: a power of two from 64KiB to 4MiB.
    #[arg(long, value_name = "SIZE", default_value = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: String,

    /// Chunk compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::Lz4)]
    pub compression: CompressionArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Lz4,
    Zstd,
    None,
}

impl From<CompressionArg> for tessera_store::Compression {
    fn from(c: CompressionArg) -> Self {
        match c {
            CompressionArg::Lz4 => tessera_store::Compression::Lz4,
            CompressionArg::Zstd => tessera_store::Compression::Zstd,
            CompressionArg::None => tessera_store::Compression::None,
        }
    }
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// The volume to mount, or VOLUME@SNAPSHOT to mount a snapshot read-only.
    pub name: String,

    /// An existing, empty directory to mount it on.
    pub dir: PathBuf,

    /// Create the volume first if it does not exist (with --size, --chunk-size, --compression).
    #[arg(long)]
    pub create: bool,

    /// Capacity of a volume made by --create.
    #[arg(long, value_name = "SIZE", requires = "create")]
    pub size: Option<String>,

    /// Chunk size of a volume made by --create.
    #[arg(long, value_name = "SIZE", requires = "create")]
    pub chunk_size: Option<String>,

    /// Compression of a volume made by --create.
    #[arg(long, value_enum, requires = "create")]
    pub compression: Option<CompressionArg>,

    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,

    /// FUSE worker threads [default: two per CPU, from 4 to 16].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,

    /// Let other users (and pods) access the mount; always on when run as root.
    /// Non-root users need `user_allow_other` in /etc/fuse.conf.
    #[arg(long)]
    pub allow_other: bool,
}

/// `tessera csi`: one process per node serves its pools to Kubernetes.
#[derive(Debug, Args)]
#[command(
    after_help = "The pool at --data-dir is the pool named `default`; --pool adds more.\n\
Staged and published volumes are recorded in <data-dir>/csi-node-state.json and their\n\
mounts are brought back when the plugin starts again. See docs/kubernetes.md."
)]
pub struct CsiArgs {
    /// The CSI socket, as unix:///path/to/csi.sock.
    #[arg(long, env = "CSI_ENDPOINT", value_name = "ENDPOINT")]
    pub endpoint: String,

    /// This node's name as Kubernetes knows it (the topology key's value).
    #[arg(long, env = "NODE_ID", value_name = "NODE")]
    pub node_id: String,

    /// The kubelet's root directory: staging and target paths must lie inside it.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,

    /// A JSON file of expected credentials per operation kind (provision,
    /// controller_publish, node_stage, node_publish, expand, snapshot), each an object of
    /// secret keys and values that requests must carry.
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,

    /// Another pool to serve, as NAME=DIR (repeatable); StorageClasses pick it with the
    /// `pool` parameter.
    #[arg(long = "pool", value_name = "NAME=DIR")]
    pub pools: Vec<String>,

    /// Most volumes this node may hold, reported to Kubernetes (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_volumes: u32,
}

impl MountArgs {
    /// The create options for --create, with the same defaults as `volume create`.
    pub fn create_opts(&self) -> CreateOpts {
        CreateOpts {
            size: self.size.clone().unwrap_or_else(|| DEFAULT_SIZE.into()),
            chunk_size: self
                .chunk_size
                .clone()
                .unwrap_or_else(|| DEFAULT_CHUNK_SIZE.into()),
            compression: self.compression.unwrap_or(CompressionArg::Lz4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mount_size_requires_create() {
        let err =
            Cli::try_parse_from(["tessera", "mount", "v", "/mnt", "--size", "1G"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        Cli::try_parse_from(["tessera", "mount", "v", "/mnt", "--create", "--size", "1G"]).unwrap();
    }
}
