//! Small JSON files written atomically: the node's staged/published state and the
//! controller's per-volume records.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// File name of the node state, in the state directory.
pub const NODE_STATE_FILE: &str = "csi-node-state.json";

/// Reads a JSON file; `None` if it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `value` to `path` so that a crash leaves either the old or the new file:
/// a temporary file, fsync, rename, fsync of the directory.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

pub fn remove_file(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A volume staged on this node: its FUSE session runs at `staging_path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    pub staging_path: PathBuf,
    pub read_only: bool,
}

/// A published target: a bind mount of the staged volume, or (for an inline ephemeral
/// volume) the volume's own FUSE session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub volume_id: String,
    pub read_only: bool,
    #[serde(default)]
    pub mount_flags: Vec<String>,
    /// Created on publish and deleted on unpublish.
    #[serde(default)]
    pub ephemeral: bool,
    /// Mounted again by a restarted plugin: containers that were running keep their
    /// private copy of the old, dead mount until they restart.
    #[serde(default)]
    pub restored: bool,
}

/// Everything the node must bring back after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// By volume id.
    pub staged: BTreeMap<String, Staged>,
    /// By target path.
    pub published: BTreeMap<PathBuf, Published>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NODE_STATE_FILE);
        assert_eq!(read_json::<NodeState>(&path).unwrap(), None);
        let mut s = NodeState::default();
        s.staged.insert(
            "default/v".into(),
            Staged {
                staging_path: "/k/s".into(),
                read_only: false,
            },
        );
        write_json(&path, &s).unwrap();
        assert_eq!(read_json::<NodeState>(&path).unwrap(), Some(s));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(read_json::<NodeState>(&path).is_err());
    }
}
