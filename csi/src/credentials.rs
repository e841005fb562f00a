//! Expected credentials per kind of operation (the StorageOS model).
//!
//! The credentials file is JSON: for each operation kind, the secret keys and values a
//! request's `secrets` must carry, e.g.
//!
//! ```json
//! { "provision": { "username": "admin", "password": "s3cret" },
//!   "node_stage": { "token": "t0ken" } }
//! ```
//!
//! Kinds: `provision` (CreateVolume, DeleteVolume), `controller_publish`
//! (ControllerPublishVolume, ControllerUnpublishVolume), `node_stage`
//! (NodeStageVolume), `node_publish` (NodePublishVolume), `expand`
//! (ControllerExpandVolume, NodeExpandVolume) and `snapshot` (CreateSnapshot,
//! DeleteSnapshot). A kind that is absent or empty requires nothing.
//!
//! A request missing an expected key is UNAUTHENTICATED; one carrying a wrong value is
//! PERMISSION_DENIED. Values are compared in constant time and never logged or echoed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use subtle::ConstantTimeEq;
use tonic::Status;

/// A kind of operation that can require credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Provision,
    ControllerPublish,
    NodeStage,
    NodePublish,
    Expand,
    Snapshot,
}

impl OperationKind {
    pub const ALL: [OperationKind; 6] = [
        OperationKind::Provision,
        OperationKind::ControllerPublish,
        OperationKind::NodeStage,
        OperationKind::NodePublish,
        OperationKind::Expand,
        OperationKind::Snapshot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OperationKind::Provision => "provision",
            OperationKind::ControllerPublish => "controller_publish",
            OperationKind::NodeStage => "node_stage",
            OperationKind::NodePublish => "node_publish",
            OperationKind::Expand => "expand",
            OperationKind::Snapshot => "snapshot",
        }
    }
}

/// Expected secrets by operation kind. `Debug` shows the keys, never the values.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Credentials {
    expected: BTreeMap<OperationKind, BTreeMap<String, String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: BTreeMap<&str, Vec<&String>> = self
            .expected
            .iter()
            .map(|(k, v)| (k.name(), v.keys().collect()))
            .collect();
        f.debug_struct("Credentials").field("keys", &kinds).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "credentials file {path} is not valid: {message} (expected a JSON object mapping \
         provision, controller_publish, node_stage, node_publish, expand or snapshot to \
         objects of secret keys and values)"
    )]
    Parse { path: PathBuf, message: String },
}

impl Credentials {
    pub fn none() -> Credentials {
        Credentials::default()
    }

    pub fn load(path: &Path) -> Result<Credentials, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // serde_json's messages can quote a value (`invalid type: string "..."`): say
        // only what kind of problem it is and where, so a bad file leaks no secret.
        serde_json::from_str(&text).map_err(|e| CredentialsError::Parse {
            path: path.to_path_buf(),
            message: format!(
                "{} error at line {}, column {}",
                match e.classify() {
                    serde_json::error::Category::Io => "I/O",
                    serde_json::error::Category::Syntax => "syntax",
                    serde_json::error::Category::Data => "structure",
                    serde_json::error::Category::Eof => "unexpected end of file",
                },
                e.line(),
                e.column()
            ),
        })
    }

    pub fn with(mut self, kind: OperationKind, secrets: &[(&str, &str)]) -> Credentials {
        self.expected.insert(
            kind,
            secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }

    /// Whether any credentials are expected for `kind`.
    pub fn requires(&self, kind: OperationKind) -> bool {
        self.expected.get(&kind).is_some_and(|m| !m.is_empty())
    }

    /// Checks a request's secrets for `kind`. Every expected key is looked at, so the
    /// time taken does not depend on which value was wrong.
    pub fn check(
        &self,
        kind: OperationKind,
        secrets: &std::collections::HashMap<String, String>,
    ) -> Result<(), Status> {
        let Some(expected) = self.expected.get(&kind) else {
            return Ok(());
        };
        let mut missing = Vec::new();
        let mut all_equal = subtle::Choice::from(1u8);
        for (key, want) in expected {
            match secrets.get(key) {
                // Digests have one length, so the comparison time says nothing about
                // the secret's length either.
                Some(got) => {
                    all_equal &= blake3::hash(want.as_bytes())
                        .as_bytes()
                        .ct_eq(blake3::hash(got.as_bytes()).as_bytes())
                }
                None => missing.push(key.as_str()),
            }
        }
        if !missing.is_empty() {
            return Err(Status::unauthenticated(format!(
                "{} operations need credentials: the request's secrets lack {}",
                kind.name(),
                missing.join(", ")
            )));
        }
        if !bool::from(all_equal) {
            return Err(Status::permission_denied(format!(
                "the credentials given for {} operations are not valid",
                kind.name()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn secrets(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn checks_each_kind() {
        let c = Credentials::none().with(OperationKind::Provision, &[("user", "a"), ("pw", "b")]);
        assert!(c.check(OperationKind::NodeStage, &secrets(&[])).is_ok());
        assert!(c
            .check(
                OperationKind::Provision,
                &secrets(&[("user", "a"), ("pw", "b"), ("x", "y")])
            )
            .is_ok());
        let e = c
            .check(OperationKind::Provision, &secrets(&[("user", "a")]))
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = c
            .check(
                OperationKind::Provision,
                &secrets(&[("user", "a"), ("pw", "guess")]),
            )
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(!e.message().contains("guess") && !e.message().contains('b'));
    }

    #[test]
    fn file_format_and_debug_hides_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        std::fs::write(&path, r#"{"snapshot": {"token": "hunter2"}}"#).unwrap();
        let c = Credentials::load(&path).unwrap();
        assert!(c.requires(OperationKind::Snapshot));
        assert!(!format!("{c:?}").contains("hunter2"));
        for bad in [
            r#"{"snapshots": {"token": "hunter2"}}"#,
            r#"{"snapshot": "hunter2"}"#,
            r#"{"snapshot": {"token": hunter2}}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = Credentials::load(&path).unwrap_err().to_string();
            assert!(e.contains("line 1") && !e.contains("hunter2"), "{e}");
        }
    }
}
