//! State shared by the three services: configuration, pools, per-object locks, the
//! node's mounts; and the checks every service applies to requests.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tessera_proto::csi::v1::volume_capability::{access_mode::Mode, AccessType};
use tessera_proto::csi::v1::{Topology, VolumeCapability};
use tessera_store::Pool;
use tonic::Status;

use crate::credentials::Credentials;
use crate::ids::VolumeId;
use crate::node::NodeMounts;
use crate::{Config, TOPOLOGY_KEY};

pub struct Plugin {
    pub node_id: String,
    /// As configured (made absolute) and canonical: requests may use either spelling.
    pub kubelet_dir: PathBuf,
    kubelet_dir_real: PathBuf,
    pub credentials: Credentials,
    pub pools: BTreeMap<String, Pool>,
    pub max_volumes: i64,
    /// One lock per object name, so concurrent calls for one volume or snapshot run
    /// one after the other (the second then sees what the first did).
    locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub node: parking_lot::Mutex<NodeMounts>,
}

impl Plugin {
    pub fn new(config: Config) -> std::io::Result<Plugin> {
        let kubelet_dir_real = config.kubelet_dir.canonicalize().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("kubelet directory {}: {e}", config.kubelet_dir.display()),
            )
        })?;
        let kubelet_dir = std::path::absolute(&config.kubelet_dir)?;
        Ok(Plugin {
            node_id: config.node_id,
            kubelet_dir,
            kubelet_dir_real,
            credentials: config.credentials,
            pools: config.pools,
            max_volumes: config.max_volumes,
            locks: parking_lot::Mutex::new(HashMap::new()),
            node: parking_lot::Mutex::new(NodeMounts::new(&config.state_dir)),
        })
    }

    /// Serialises calls on one object (`volume:NAME`, `snapshot:NAME`, ...).
    pub async fn lock(&self, key: String) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut locks = self.locks.lock();
            // Forget locks nobody holds or waits for, so the map stays small.
            locks.retain(|_, m| Arc::strong_count(m) > 1);
            locks.entry(key).or_default().clone()
        };
        mutex.lock_owned().await
    }

    /// The pool a volume id names; an unknown pool means the volume does not exist here.
    pub fn pool_of(&self, id: &VolumeId) -> Option<&Pool> {
        self.pools.get(&id.pool)
    }

    pub fn topology(&self) -> Topology {
        Topology {
            segments: [(TOPOLOGY_KEY.to_string(), self.node_id.clone())].into(),
        }
    }

    /// Whether a topology from a request points at this node (a segment without our key
    /// does not exclude it).
    pub fn is_this_node(&self, t: &Topology) -> bool {
        t.segments
            .get(TOPOLOGY_KEY)
            .is_none_or(|node| *node == self.node_id)
    }

    /// A staging or target path from a request: absolute, without `.`/`..`, inside the
    /// kubelet directory (also after resolving symlinks of the part that exists).
    pub fn kubelet_path(&self, field: &str, path: &str) -> Result<PathBuf, Status> {
        if path.is_empty() {
            return Err(Status::invalid_argument(format!("{field} is required")));
        }
        if path.contains('\0') {
            return Err(Status::invalid_argument(format!(
                "{field} contains a NUL byte"
            )));
        }
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "{field} {path:?} must be an absolute path"
            )));
        }
        if p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(Status::invalid_argument(format!(
                "{field} {path:?} must not contain '.' or '..' components"
            )));
        }
        let outside = || {
            Status::invalid_argument(format!(
                "{field} {path:?} is outside the kubelet directory {}",
                self.kubelet_dir.display()
            ))
        };
        let p = p.to_path_buf();
        let inside = |dir: &Path| p.starts_with(dir) && p != dir;
        if !inside(&self.kubelet_dir) && !inside(&self.kubelet_dir_real) {
            return Err(outside());
        }
        // Resolve the deepest existing ancestor (the path itself may be a dead mount
        // or not exist yet) and check it did not leave the kubelet directory.
        let mut existing = p.parent();
        while let Some(a) = existing {
            match a.canonicalize() {
                Ok(real) => {
                    if !real.starts_with(&self.kubelet_dir_real) {
                        return Err(outside());
                    }
                    break;
                }
                Err(_) => existing = a.parent(),
            }
        }
        // Mounting and unmounting follow a symlink in the last component: refuse one.
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Status::invalid_argument(format!(
                "{field} {path:?} is a symbolic link"
            )));
        }
        Ok(p)
    }
}

/// Where a capability is checked: CreateVolume and validation refuse unsupported ones
/// as INVALID_ARGUMENT; the node calls, as FAILED_PRECONDITION ("exceeds capabilities").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapCheck {
    Controller,
    Node,
}

/// The access modes Tessera serves, and why the others are refused.
pub fn check_capability(cap: &VolumeCapability, at: CapCheck) -> Result<Mode, Status> {
    let unsupported = |msg: String| match at {
        CapCheck::Controller => Status::invalid_argument(msg),
        CapCheck::Node => Status::failed_precondition(msg),
    };
    match &cap.access_type {
        None => {
            return Err(Status::invalid_argument(
                "volume_capability.access_type is required (mount)",
            ))
        }
        Some(AccessType::Block(_)) => {
            return Err(unsupported(
                "block volumes are not supported: Tessera volumes are file systems \
                 (use volumeMode: Filesystem)"
                    .into(),
            ))
        }
        Some(AccessType::Mount(m)) => {
            for flag in &m.mount_flags {
                mount_flag(flag)?;
            }
        }
    }
    let mode = cap
        .access_mode
        .as_ref()
        .and_then(|m| Mode::try_from(m.mode).ok())
        .unwrap_or(Mode::Unknown);
    match mode {
        // ReadOnlyMany arrives as MULTI_NODE_READER_ONLY; the volume's topology keeps
        // every reader on its node, so it is served read-only.
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter
        | Mode::MultiNodeReaderOnly => Ok(mode),
        Mode::MultiNodeSingleWriter | Mode::MultiNodeMultiWriter => Err(unsupported(format!(
            "access mode {} is not supported: a Tessera volume lives on one node's disk, \
             so only single-node writers (ReadWriteOnce, ReadWriteOncePod) and readers \
             are served",
            mode.as_str_name()
        ))),
        Mode::Unknown => Err(Status::invalid_argument(
            "volume_capability.access_mode is required",
        )),
    }
}

/// Modes whose publishes are read-only.
pub fn is_read_only_mode(mode: Mode) -> bool {
    matches!(mode, Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
}

/// Modes the spec allows to be published at one target only.
pub fn is_single_target_mode(mode: Mode) -> bool {
    matches!(
        mode,
        Mode::SingleNodeWriter | Mode::SingleNodeReaderOnly | Mode::SingleNodeSingleWriter
    )
}

/// Mount flags that can be applied to a bind mount, as `MsFlags`.
pub fn mount_flag(flag: &str) -> Result<nix::mount::MsFlags, Status> {
    use nix::mount::MsFlags;
    Ok(match flag {
        "ro" => MsFlags::MS_RDONLY,
        "rw" | "defaults" | "relatime" => MsFlags::empty(),
        "nosuid" => MsFlags::MS_NOSUID,
        "nodev" => MsFlags::MS_NODEV,
        "noexec" => MsFlags::MS_NOEXEC,
        "noatime" => MsFlags::MS_NOATIME,
        "nodiratime" => MsFlags::MS_NODIRATIME,
        other => {
            return Err(Status::invalid_argument(format!(
                "mount flag {other:?} is not supported (supported: ro, rw, defaults, relatime, \
                 nosuid, nodev, noexec, noatime, nodiratime)"
            )))
        }
    })
}

pub fn mount_flags_of(cap: &VolumeCapability) -> Vec<String> {
    match &cap.access_type {
        Some(AccessType::Mount(m)) => m.mount_flags.clone(),
        _ => Vec::new(),
    }
}
