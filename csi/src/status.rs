//! Store errors as gRPC statuses, chosen per error (never a blanket INTERNAL).

use tessera_store::StoreError;
use tonic::Status;

/// The status for a store error, with `context` (what was being done) in the message.
pub fn from_store(context: &str, e: StoreError) -> Status {
    let message = format!("{context}: {e}");
    match e {
        StoreError::NotFound(_) => Status::not_found(message),
        StoreError::Exists(_) => Status::already_exists(message),
        StoreError::NoSpace { .. } | StoreError::DiskFull(_) => Status::resource_exhausted(message),
        StoreError::Invalid(_) | StoreError::NameTooLong => Status::invalid_argument(message),
        StoreError::InUse(_) | StoreError::PoolInUse { .. } => Status::failed_precondition(message),
        StoreError::ReadOnly | StoreError::NotPermitted(_) => Status::failed_precondition(message),
        StoreError::UnsupportedFormat { .. } => Status::failed_precondition(message),
        StoreError::Corrupt(_) | StoreError::Damaged(_) => Status::data_loss(message),
        StoreError::Io { .. } | StoreError::Engine(_) => Status::unavailable(message),
        // File-level errors do not arise from catalog calls; if one does it is a bug.
        StoreError::NotEmpty
        | StoreError::NotDir
        | StoreError::IsDir
        | StoreError::NoXattr
        | StoreError::Range
        | StoreError::TooBig
        | StoreError::FileTooBig
        | StoreError::NoSuchOffset => Status::internal(message),
    }
}

/// A blocking store call run off the async executor.
pub async fn blocking<T, F>(f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Status> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker task failed: {e}")))?
}
