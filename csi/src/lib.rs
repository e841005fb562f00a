//! # tessera-csi: Kubernetes volumes through the Container Storage Interface
//!
//! What this crate owns:
//! - the CSI Identity, Controller and Node services (spec v1.9, `tessera_proto::csi::v1`)
//!   served over a unix socket by one process per node ([`server::serve`]);
//! - the mapping of CSI objects onto pools and volumes: volume ids are `POOL/VOLUME`,
//!   snapshot ids `POOL/VOLUME@SNAPSHOT` ([`ids`]); what CreateVolume was asked for, kept
//!   beside each pool so retries are idempotent ([`catalog`]);
//! - the node's mounts: one FUSE session per staged volume (through `tessera-fs`), bind
//!   mounts for each published target, and their persisted state so a restarted plugin
//!   brings them back ([`node`], [`state`]);
//! - request hygiene: credentials per operation kind, compared in constant time and never
//!   logged ([`credentials`]); validated ids, names and paths; the status code the spec
//!   names for each failure ([`status`]).
//!
//! What it must not know: chunks, RocksDB or any on-disk detail of a volume (it uses the
//! store's public volume catalog API and `tessera-fs` mounts, nothing below them).

pub mod catalog;
pub mod controller;
pub mod credentials;
pub mod identity;
pub mod ids;
pub mod node;
pub mod plugin;
pub mod quantity;
pub mod server;
pub mod state;
pub mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use credentials::{Credentials, OperationKind};
pub use server::{serve, ServeError};

/// The driver name (CSIDriver object, GetPluginInfo, kubelet plugin registration).
pub const DRIVER_NAME: &str = "csi.tessera.io";

/// The topology segment key: volumes live on one node's pools.
pub const TOPOLOGY_KEY: &str = "topology.tessera.io/node";

/// Name of the pool at `--data-dir`.
pub const DEFAULT_POOL: &str = "default";

/// Volume context key Kubernetes sets on inline ephemeral volumes.
pub const EPHEMERAL_CONTEXT_KEY: &str = "csi.storage.k8s.io/ephemeral";

/// What `tessera csi` was started with.
pub struct Config {
    /// Path of the unix socket to serve on.
    pub socket: PathBuf,
    /// This node's name, as Kubernetes knows it.
    pub node_id: String,
    /// Staging and target paths must lie inside this directory.
    pub kubelet_dir: PathBuf,
    /// Expected credentials per operation kind (empty: none required).
    pub credentials: Credentials,
    /// The pools this node serves, by name; `default` is the `--data-dir` pool.
    pub pools: BTreeMap<String, tessera_store::Pool>,
    /// Where the node keeps its staged/published state (the default pool's directory).
    pub state_dir: PathBuf,
    /// Reported as `max_volumes_per_node` (0: no limit).
    pub max_volumes: i64,
}
