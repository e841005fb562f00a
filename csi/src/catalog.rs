//! What CreateVolume was asked for, kept beside each pool (`<pool>/csi-volumes/NAME.json`)
//! so that a retried CreateVolume with the same name and parameters returns the same
//! volume and a different request gets ALREADY_EXISTS.
//!
//! The record is written (as `creating`) before the volume and switched to `ready`
//! after it, so a plugin killed half-way finishes or redoes the work on the retry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{read_json, remove_file, write_json};

/// Where a volume's content came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Snapshot(String),
    Volume(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    Creating,
    Ready,
}

/// One CreateVolume request, as far as idempotency is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub state: RecordState,
    pub required_bytes: i64,
    pub limit_bytes: i64,
    /// Tessera's own StorageClass parameters (pool, description, fsType, chunkSize,
    /// compression); Kubernetes' `csi.storage.k8s.io/*` keys are left out.
    pub parameters: BTreeMap<String, String>,
    pub source: Option<Source>,
}

impl VolumeRecord {
    /// Whether `other` asks for the same volume.
    pub fn same_request(&self, other: &VolumeRecord) -> bool {
        self.required_bytes == other.required_bytes
            && self.limit_bytes == other.limit_bytes
            && self.parameters == other.parameters
            && self.source == other.source
    }
}

fn path(pool_dir: &Path, name: &str) -> PathBuf {
    pool_dir.join("csi-volumes").join(format!("{name}.json"))
}

pub fn load(pool_dir: &Path, name: &str) -> std::io::Result<Option<VolumeRecord>> {
    read_json(&path(pool_dir, name))
}

pub fn save(pool_dir: &Path, name: &str, record: &VolumeRecord) -> std::io::Result<()> {
    write_json(&path(pool_dir, name), record)
}

pub fn remove(pool_dir: &Path, name: &str) -> std::io::Result<()> {
    remove_file(&path(pool_dir, name))
}
