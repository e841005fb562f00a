//! Exit codes and the errors the CLI itself raises.

use std::fmt;
use tessera_fs::mount::MountError;
use tessera_store::StoreError;

/// The process exit codes, documented in `--help`, README.md and docs/cli.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    // 0 is success (ExitCode::SUCCESS); 2 is clap's usage error, raised before our code runs.
    Failure = 1,
    NotFound = 3,
    Exists = 4,
    InUse = 5,
    Invalid = 6,
    NoSpace = 7,
}

/// An error found by the CLI before the store is asked (a bad size, name or mount point).
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn invalid(message: impl Into<String>) -> CliError {
        CliError {
            exit: Exit::Invalid,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> CliError {
        CliError {
            exit: Exit::NotFound,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The exit code for a store error.
pub fn store_exit(e: &StoreError) -> Exit {
    match e {
        StoreError::NotFound(_) => Exit::NotFound,
        StoreError::Exists(_) => Exit::Exists,
        StoreError::InUse(_) | StoreError::PoolInUse { .. } => Exit::InUse,
        StoreError::Invalid(_) | StoreError::NameTooLong | StoreError::UnsupportedFormat { .. } => {
            Exit::Invalid
        }
        StoreError::NoSpace { .. } | StoreError::DiskFull(_) => Exit::NoSpace,
        _ => Exit::Failure,
    }
}

/// The exit code for a mount error, if it has one of its own.
pub fn mount_exit(e: &MountError) -> Option<Exit> {
    match e {
        MountError::MissingDir(_) => Some(Exit::NotFound),
        MountError::NotADirectory(_) | MountError::NotEmpty(_) => Some(Exit::Invalid),
        MountError::AlreadyMounted(_) => Some(Exit::InUse),
        _ => None,
    }
}

/// The exit code for any error: the first [`CliError`], [`StoreError`] or telling
/// [`MountError`] in its chain decides; anything else is a plain failure.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.exit;
        }
        if let Some(exit) = cause.downcast_ref::<MountError>().and_then(mount_exit) {
            return exit;
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return store_exit(e);
        }
    }
    Exit::Failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use std::path::PathBuf;

    #[test]
    fn maps_through_context() {
        let err = Err::<(), _>(StoreError::PoolInUse {
            dir: PathBuf::from("/p"),
            pid: "7".into(),
        })
        .context("opening pool /p")
        .unwrap_err();
        assert_eq!(exit_for(&err), Exit::InUse);
        assert!(format!("{err:#}").contains("is in use by process 7"));

        let err = Err::<(), _>(CliError::invalid("bad"))
            .context("x")
            .unwrap_err();
        assert_eq!(exit_for(&err), Exit::Invalid);
        assert_eq!(exit_for(&anyhow::anyhow!("plain")), Exit::Failure);

        let err =
            anyhow::Error::new(MountError::AlreadyMounted(PathBuf::from("/m"))).context("mounting");
        assert_eq!(exit_for(&err), Exit::InUse);
        let flush = MountError::Flush {
            volume: "v".into(),
            source: StoreError::NoSpace {
                volume: "v".into(),
                capacity: 1,
                used: 1,
            },
        };
        assert_eq!(exit_for(&anyhow::Error::new(flush)), Exit::NoSpace);
    }

    #[test]
    fn store_table() {
        assert_eq!(
            store_exit(&StoreError::NotFound("v".into())),
            Exit::NotFound
        );
        assert_eq!(store_exit(&StoreError::Exists("v".into())), Exit::Exists);
        assert_eq!(store_exit(&StoreError::InUse("v".into())), Exit::InUse);
        assert_eq!(store_exit(&StoreError::NameTooLong), Exit::Invalid);
        assert_eq!(store_exit(&StoreError::Invalid("x".into())), Exit::Invalid);
        let too_new = StoreError::UnsupportedFormat {
            dir: PathBuf::new(),
            found: 9,
            supported: 1,
        };
        assert_eq!(store_exit(&too_new), Exit::Invalid);
        let full = StoreError::NoSpace {
            volume: "v".into(),
            capacity: 1,
            used: 1,
        };
        assert_eq!(store_exit(&full), Exit::NoSpace);
        assert_eq!(store_exit(&StoreError::Corrupt("x".into())), Exit::Failure);
    }
}
