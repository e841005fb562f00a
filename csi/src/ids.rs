//! CSI identifiers: volume ids `POOL/VOLUME`, snapshot ids `POOL/VOLUME@SNAPSHOT`.
//!
//! Every id and name from a request is checked here before it reaches the store or a
//! path: the CSI limit of 128 bytes, no control characters, and the store's naming
//! rules for each part.

use tonic::Status;

/// CSI's size limit for string fields.
pub const MAX_ID: usize = 128;

/// A volume on this node: which pool, which volume.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId {
    pub pool: String,
    pub volume: String,
}

impl VolumeId {
    pub fn new(pool: &str, volume: &str) -> VolumeId {
        VolumeId {
            pool: pool.to_string(),
            volume: volume.to_string(),
        }
    }
}

impl std::fmt::Display for VolumeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pool, self.volume)
    }
}

/// A snapshot: the volume it was taken of, and its own name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotId {
    pub volume: VolumeId,
    pub snapshot: String,
}

impl SnapshotId {
    /// The store's name for it (`VOLUME@SNAPSHOT`).
    pub fn store_name(&self) -> String {
        format!("{}@{}", self.volume.volume, self.snapshot)
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.volume, self.snapshot)
    }
}

/// How an id from a request was judged.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    Ok(T),
    /// Well-formed text, but not an id this plugin ever hands out: it names nothing.
    Foreign,
}

/// Rejects what no CSI id may be: empty, over 128 bytes, or with control characters.
pub fn check_field(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value.len() > MAX_ID {
        return Err(Status::invalid_argument(format!(
            "{field} is {} bytes long; CSI allows at most {MAX_ID}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

/// Whether `name` follows the store's volume naming rules (`a-z 0-9 . _ -`, 1–128
/// characters, not starting with `.` or `-`).
pub fn is_store_name(name: &str) -> bool {
    tessera_store::validate_volume_name(name).is_ok()
}

/// Checks a CSI object name (CreateVolume / CreateSnapshot `name`) and returns it as a
/// store name. Kubernetes names (`pvc-<uuid>`, `snapshot-<uuid>`) always qualify.
pub fn object_name(field: &str, name: &str) -> Result<String, Status> {
    check_field(field, name)?;
    if !is_store_name(name) {
        return Err(Status::invalid_argument(format!(
            "{field} {name:?} is not usable as a Tessera name: use 1-128 characters from \
             a-z 0-9 . _ -, not starting with '.' or '-'"
        )));
    }
    Ok(name.to_string())
}

pub fn parse_volume_id(field: &str, id: &str) -> Result<Parsed<VolumeId>, Status> {
    check_field(field, id)?;
    let Some((pool, volume)) = id.split_once('/') else {
        return Ok(Parsed::Foreign);
    };
    if !is_store_name(pool) || !is_store_name(volume) || volume.contains('@') {
        return Ok(Parsed::Foreign);
    }
    Ok(Parsed::Ok(VolumeId::new(pool, volume)))
}

pub fn parse_snapshot_id(field: &str, id: &str) -> Result<Parsed<SnapshotId>, Status> {
    check_field(field, id)?;
    let Some((vol, snap)) = id.rsplit_once('@') else {
        return Ok(Parsed::Foreign);
    };
    match parse_volume_id(field, vol)? {
        Parsed::Ok(volume) if is_store_name(snap) => Ok(Parsed::Ok(SnapshotId {
            volume,
            snapshot: snap.to_string(),
        })),
        _ => Ok(Parsed::Foreign),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids_round_trip() {
        let id = VolumeId::new("default", "pvc-1");
        assert_eq!(
            parse_volume_id("volume_id", &id.to_string()).unwrap(),
            Parsed::Ok(id)
        );
    }

    #[test]
    fn foreign_and_invalid_ids() {
        for foreign in ["reallyfakevolumeid", "a/B", "../etc/passwd", "p/v@s", "/x"] {
            assert_eq!(
                parse_volume_id("volume_id", foreign).unwrap(),
                Parsed::Foreign,
                "{foreign}"
            );
        }
        for bad in ["", "a/\u{0}b", &"x".repeat(129)] {
            let e = parse_volume_id("volume_id", bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn snapshot_ids() {
        let s = parse_snapshot_id("snapshot_id", "default/vol@snap-1").unwrap();
        assert_eq!(
            s,
            Parsed::Ok(SnapshotId {
                volume: VolumeId::new("default", "vol"),
                snapshot: "snap-1".into()
            })
        );
        assert_eq!(
            parse_snapshot_id("snapshot_id", "default/vol").unwrap(),
            Parsed::Foreign
        );
    }

    #[test]
    fn object_names() {
        assert!(object_name("name", "pvc-0b1c").is_ok());
        assert_eq!(
            object_name("name", "Bad Name").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
