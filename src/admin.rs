//! The admin API: served by a process that holds a pool (`tessera mount`),
//! used by every other CLI invocation on the same data directory.
//!
//! The socket is `<data-dir>/admin.sock`, created mode 0600. [`Backend`] hides
//! which path a command takes: the same store call runs either here (the pool
//! is free) or in the server (the pool is held), and errors come back with the
//! same message and exit code.

use crate::errors::{CliError, Exit};
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tessera_proto::admin::v1 as pb;
use tessera_proto::admin::v1::admin_client::AdminClient;
use tessera_proto::admin::v1::admin_server::{Admin, AdminServer};
use tessera_store::{
    Compression, FsckReport, GcReport, Pool, PoolUsage, Progress, StoreError, Timestamp,
    VolumeInfo, VolumeOptions, VolumeUsage,
};
use tonic::{Request, Response, Status};

pub const SOCKET_NAME: &str = "admin.sock";

// ---------------------------------------------------------------- conversions

fn volume_to_pb(v: VolumeInfo) -> pb::Volume {
    pb::Volume {
        id: v.id,
        name: v.name,
        capacity: v.capacity,
        used: v.used,
        inodes: v.inodes,
        chunk_size: v.chunk_size,
        compression: v.compression.to_string(),
        created: Some(pb::Timestamp {
            secs: v.created.secs,
            nsecs: v.created.nsecs,
        }),
        read_only: v.read_only,
        snapshot_of: v.snapshot_of,
    }
}

fn volume_from_pb(v: pb::Volume) -> Result<VolumeInfo> {
    let created = v.created.unwrap_or_default();
    Ok(VolumeInfo {
        id: v.id,
        name: v.name,
        capacity: v.capacity,
        used: v.used,
        inodes: v.inodes,
        chunk_size: v.chunk_size,
        compression: v.compression.parse().map_err(anyhow::Error::msg)?,
        created: Timestamp {
            secs: created.secs,
            nsecs: created.nsecs,
        },
        read_only: v.read_only,
        snapshot_of: v.snapshot_of,
    })
}

fn usage_to_pb(u: PoolUsage, vols: Vec<VolumeUsage>) -> pb::UsageReply {
    pb::UsageReply {
        physical_bytes: u.physical_bytes,
        unique_bytes: u.unique_bytes,
        logical_bytes: u.logical_bytes,
        chunks: u.chunks,
        dedup_ratio: u.dedup_ratio,
        compression_ratio: u.compression_ratio,
        segment_bytes: u.segment_bytes,
        live_bytes: u.live_bytes,
        garbage_bytes: u.garbage_bytes,
        volumes: vols
            .into_iter()
            .map(|v| pb::VolumeUsage {
                name: v.name,
                logical_bytes: v.logical_bytes,
                exclusive_bytes: v.exclusive_bytes,
                snapshots: v.snapshots,
                read_only: v.read_only,
            })
            .collect(),
    }
}

fn usage_from_pb(r: pb::UsageReply) -> (PoolUsage, Vec<VolumeUsage>) {
    let u = PoolUsage {
        physical_bytes: r.physical_bytes,
        unique_bytes: r.unique_bytes,
        logical_bytes: r.logical_bytes,
        chunks: r.chunks,
        dedup_ratio: r.dedup_ratio,
        compression_ratio: r.compression_ratio,
        segment_bytes: r.segment_bytes,
        live_bytes: r.live_bytes,
        garbage_bytes: r.garbage_bytes,
    };
    let vols = r
        .volumes
        .into_iter()
        .map(|v| VolumeUsage {
            name: v.name,
            logical_bytes: v.logical_bytes,
            exclusive_bytes: v.exclusive_bytes,
            snapshots: v.snapshots,
            read_only: v.read_only,
        })
        .collect();
    (u, vols)
}

fn fsck_to_pb(r: FsckReport) -> pb::FsckReply {
    pb::FsckReply {
        volumes: r.volumes,
        inodes: r.inodes,
        chunks: r.chunks,
        leaked_chunks: r.leaked_chunks,
        wrong_refcounts: r.wrong_refcounts,
        dangling_refs: r.dangling_refs,
        orphan_inodes: r.orphan_inodes,
        dangling_entries: r.dangling_entries,
        wrong_nlinks: r.wrong_nlinks,
        wrong_usage: r.wrong_usage,
        damaged_chunks: r.damaged_chunks,
        garbage_bytes: r.garbage_bytes,
        unreferenced_segments: r.unreferenced_segments,
        problems: r.problems,
        repaired: r.repaired,
    }
}

fn fsck_from_pb(r: pb::FsckReply) -> FsckReport {
    FsckReport {
        volumes: r.volumes,
        inodes: r.inodes,
        chunks: r.chunks,
        leaked_chunks: r.leaked_chunks,
        wrong_refcounts: r.wrong_refcounts,
        dangling_refs: r.dangling_refs,
        orphan_inodes: r.orphan_inodes,
        dangling_entries: r.dangling_entries,
        wrong_nlinks: r.wrong_nlinks,
        wrong_usage: r.wrong_usage,
        damaged_chunks: r.damaged_chunks,
        garbage_bytes: r.garbage_bytes,
        unreferenced_segments: r.unreferenced_segments,
        problems: r.problems,
        repaired: r.repaired,
    }
}

/// Each store error gets the gRPC code that says what went wrong; the client
/// maps the code back to the same exit code the direct path gives.
fn status(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::NotFound(_) => Status::not_found(msg),
        StoreError::Exists(_) => Status::already_exists(msg),
        StoreError::InUse(_) | StoreError::PoolInUse { .. } => Status::failed_precondition(msg),
        StoreError::Invalid(_) | StoreError::NameTooLong | StoreError::UnsupportedFormat { .. } => {
            Status::invalid_argument(msg)
        }
        StoreError::NoSpace { .. } | StoreError::DiskFull(_) => Status::resource_exhausted(msg),
        StoreError::ReadOnly | StoreError::NotPermitted(_) => Status::permission_denied(msg),
        StoreError::Corrupt(_) | StoreError::Damaged(_) => Status::data_loss(msg),
        _ => Status::internal(msg),
    }
}

fn exit_of(code: tonic::Code) -> Exit {
    match code {
        tonic::Code::NotFound => Exit::NotFound,
        tonic::Code::AlreadyExists => Exit::Exists,
        tonic::Code::FailedPrecondition => Exit::InUse,
        tonic::Code::InvalidArgument => Exit::Invalid,
        tonic::Code::ResourceExhausted => Exit::NoSpace,
        _ => Exit::Failure,
    }
}

// --------------------------------------------------------------------- server

struct Service {
    pool: Pool,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("admin task failed: {e}")))?
        .map_err(status)
}

/// Flushes the kernel's page cache (syncfs) of every mount of `volume` served by
/// this process, before a snapshot or clone, so that every write acknowledged to
/// an application is in it.
fn syncfs_mount(volume: &str) {
    let volume = volume.split('@').next().unwrap_or(volume);
    for dir in tessera_fs::mount_points_of(volume) {
        tessera_fs::adapter::sync_mount(&dir);
    }
}

#[tonic::async_trait]
impl Admin for Service {
    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = req.into_inner();
        let compression: Compression = r.compression.parse().map_err(Status::invalid_argument)?;
        let pool = self.pool.clone();
        let opts = VolumeOptions {
            capacity: r.capacity,
            chunk_size: r.chunk_size,
            compression,
        };
        let v = blocking(move || pool.create_volume(&r.name, opts)).await?;
        Ok(Response::new(volume_to_pb(v)))
    }

    async fn list_volumes(
        &self,
        _: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::VolumeList>, Status> {
        let pool = self.pool.clone();
        let vols = blocking(move || pool.list_volumes()).await?;
        Ok(Response::new(pb::VolumeList {
            volumes: vols.into_iter().map(volume_to_pb).collect(),
        }))
    }

    async fn get_volume(
        &self,
        req: Request<pb::VolumeName>,
    ) -> Result<Response<pb::Volume>, Status> {
        let pool = self.pool.clone();
        let name = req.into_inner().name;
        Ok(Response::new(volume_to_pb(
            blocking(move || pool.volume_info(&name)).await?,
        )))
    }

    async fn resize_volume(
        &self,
        req: Request<pb::ResizeVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let pool = self.pool.clone();
        let r = req.into_inner();
        Ok(Response::new(volume_to_pb(
            blocking(move || pool.resize_volume(&r.name, r.capacity)).await?,
        )))
    }

    async fn delete_volume(
        &self,
        req: Request<pb::VolumeName>,
    ) -> Result<Response<pb::Empty>, Status> {
        let pool = self.pool.clone();
        let name = req.into_inner().name;
        blocking(move || pool.delete_volume(&name)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn restore_volume(
        &self,
        req: Request<pb::RestoreVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let pool = self.pool.clone();
        let r = req.into_inner();
        Ok(Response::new(volume_to_pb(
            blocking(move || pool.restore_volume(&r.volume, &r.snapshot)).await?,
        )))
    }

    async fn create_snapshot(
        &self,
        req: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let pool = self.pool.clone();
        let r = req.into_inner();
        let v = blocking(move || {
            syncfs_mount(&r.volume);
            pool.create_snapshot(&r.volume, &r.snapshot)
        })
        .await?;
        Ok(Response::new(volume_to_pb(v)))
    }

    async fn list_snapshots(
        &self,
        req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::VolumeList>, Status> {
        let pool = self.pool.clone();
        let vol = req.into_inner().volume;
        let vols = blocking(move || pool.list_snapshots(vol.as_deref())).await?;
        Ok(Response::new(pb::VolumeList {
            volumes: vols.into_iter().map(volume_to_pb).collect(),
        }))
    }

    async fn clone_volume(
        &self,
        req: Request<pb::CloneVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let pool = self.pool.clone();
        let r = req.into_inner();
        let v = blocking(move || {
            syncfs_mount(&r.source);
            pool.clone_volume(&r.source, &r.name)
        })
        .await?;
        Ok(Response::new(volume_to_pb(v)))
    }

    async fn usage(&self, _: Request<pb::Empty>) -> Result<Response<pb::UsageReply>, Status> {
        let pool = self.pool.clone();
        let (u, v) = blocking(move || Ok((pool.usage()?, pool.volume_usage()?))).await?;
        Ok(Response::new(usage_to_pb(u, v)))
    }

    async fn gc(&self, _: Request<pb::Empty>) -> Result<Response<pb::GcReply>, Status> {
        let pool = self.pool.clone();
        let r = blocking(move || pool.gc()).await?;
        Ok(Response::new(pb::GcReply {
            chunks_deleted: r.chunks_deleted,
            bytes_freed: r.bytes_freed,
            segments_deleted: r.segments_deleted,
            bytes_moved: r.bytes_moved,
        }))
    }

    async fn fsck(&self, req: Request<pb::FsckRequest>) -> Result<Response<pb::FsckReply>, Status> {
        let pool = self.pool.clone();
        let req = req.into_inner();
        Ok(Response::new(fsck_to_pb(
            blocking(move || pool.fsck_full(req.repair, req.verify_data, &mut |_, _| {})).await?,
        )))
    }
}

/// A running admin server; stops and removes its socket when dropped.
pub struct AdminHandle {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: PathBuf,
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Serves the admin API for `pool` on `<data_dir>/admin.sock`. The caller holds
/// the pool, so a socket file left there is stale and is replaced.
pub fn serve(pool: Pool, data_dir: &Path) -> Result<AdminHandle> {
    let socket = data_dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&socket);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tessera-admin")
        .enable_all()
        .build()
        .context("starting the admin runtime")?;
    let listener = {
        let _guard = rt.enter();
        // Create the socket owner-only from the start, not chmod'ed later.
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = tokio::net::UnixListener::bind(&socket);
        unsafe { libc::umask(old) };
        bound.with_context(|| format!("binding admin socket {}", socket.display()))?
    };
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", socket.display()))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let service = Service { pool };
    let thread = std::thread::Builder::new()
        .name("tessera-admin".into())
        .spawn(move || {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let served = rt.block_on(
                tonic::transport::Server::builder()
                    .add_service(AdminServer::new(service))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = rx.await;
                    }),
            );
            if let Err(e) = served {
                tracing::error!("admin server failed: {e}");
            }
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        })
        .context("starting the admin thread")?;
    Ok(AdminHandle {
        shutdown: Some(tx),
        thread: Some(thread),
        socket,
    })
}

// --------------------------------------------------------------------- client

pub struct Remote {
    rt: tokio::runtime::Runtime,
    client: AdminClient<tonic::transport::Channel>,
}

impl Remote {
    /// Connects to the admin socket in `data_dir`, if a server is listening.
    pub fn connect(data_dir: &Path) -> Result<Option<Remote>> {
        let socket = data_dir.join(SOCKET_NAME);
        if !socket.exists() {
            return Ok(None);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let path = socket.clone();
        let channel = rt.block_on(async move {
            tonic::transport::Endpoint::try_from("http://tessera.admin")?
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
        });
        match channel {
            Ok(ch) => Ok(Some(Remote {
                rt,
                client: AdminClient::new(ch),
            })),
            // Nobody listens: a socket left by a server that died. The direct
            // path will open the pool (or say who holds it).
            Err(e) => {
                tracing::debug!("admin socket {} not answering: {e}", socket.display());
                Ok(None)
            }
        }
    }

    fn call<T, F, Fut>(&mut self, f: F) -> Result<T>
    where
        F: FnOnce(AdminClient<tonic::transport::Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        let client = self.client.clone();
        match self.rt.block_on(f(client)) {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => Err(CliError {
                exit: exit_of(s.code()),
                message: s.message().to_string(),
            }
            .into()),
        }
    }
}

/// Where a command's store calls run.
pub enum Backend {
    Direct(Pool),
    Remote(Box<Remote>),
}

impl Backend {
    /// The admin server of `data_dir` if one answers, else the pool itself.
    pub fn open(data_dir: &Path) -> Result<Backend> {
        if let Some(r) = Remote::connect(data_dir)? {
            return Ok(Backend::Remote(Box::new(r)));
        }
        let pool =
            Pool::open(data_dir).with_context(|| format!("opening pool {}", data_dir.display()))?;
        Ok(Backend::Direct(pool))
    }

    pub fn create_volume(&mut self, name: &str, opts: VolumeOptions) -> Result<VolumeInfo> {
        match self {
            Backend::Direct(p) => Ok(p.create_volume(name, opts)?),
            Backend::Remote(r) => {
                let req = pb::CreateVolumeRequest {
                    name: name.into(),
                    capacity: opts.capacity,
                    chunk_size: opts.chunk_size,
                    compression: opts.compression.to_string(),
                };
                volume_from_pb(r.call(|mut c| async move { c.create_volume(req).await })?)
            }
        }
    }

    pub fn list_volumes(&mut self) -> Result<Vec<VolumeInfo>> {
        match self {
            Backend::Direct(p) => Ok(p.list_volumes()?),
            Backend::Remote(r) => r
                .call(|mut c| async move { c.list_volumes(pb::ListVolumesRequest {}).await })?
                .volumes
                .into_iter()
                .map(volume_from_pb)
                .collect(),
        }
    }

    pub fn volume_info(&mut self, name: &str) -> Result<VolumeInfo> {
        match self {
            Backend::Direct(p) => Ok(p.volume_info(name)?),
            Backend::Remote(r) => {
                let req = pb::VolumeName { name: name.into() };
                volume_from_pb(r.call(|mut c| async move { c.get_volume(req).await })?)
            }
        }
    }

    pub fn resize_volume(&mut self, name: &str, capacity: u64) -> Result<VolumeInfo> {
        match self {
            Backend::Direct(p) => Ok(p.resize_volume(name, capacity)?),
            Backend::Remote(r) => {
                let req = pb::ResizeVolumeRequest {
                    name: name.into(),
                    capacity,
                };
                volume_from_pb(r.call(|mut c| async move { c.resize_volume(req).await })?)
            }
        }
    }

    pub fn delete_volume(&mut self, name: &str) -> Result<()> {
        match self {
            Backend::Direct(p) => Ok(p.delete_volume(name)?),
            Backend::Remote(r) => {
                let req = pb::VolumeName { name: name.into() };
                r.call(|mut c| async move { c.delete_volume(req).await })?;
                Ok(())
            }
        }
    }

    pub fn restore_volume(&mut self, volume: &str, snapshot: &str) -> Result<VolumeInfo> {
        match self {
            Backend::Direct(p) => Ok(p.restore_volume(volume, snapshot)?),
            Backend::Remote(r) => {
                let req = pb::RestoreVolumeRequest {
                    volume: volume.into(),
                    snapshot: snapshot.into(),
                };
                volume_from_pb(r.call(|mut c| async move { c.restore_volume(req).await })?)
            }
        }
    }

    pub fn create_snapshot(&mut self, volume: &str, snapshot: &str) -> Result<VolumeInfo> {
        match self {
            Backend::Direct(p) => Ok(p.create_snapshot(volume, snapshot)?),
            Backend::Remote(r) => {
                let req = pb::CreateSnapshotRequest {
                    volume: volume.into(),
                    snapshot: snapshot.into(),
                };
                volume_from_pb(r.call(|mut c| async move { c.create_snapshot(req).await })?)
            }
        }
    }

    pub fn list_snapshots(&mut self, volume: Option<&str>) -> Result<Vec<VolumeInfo>> {
        match self {
            Backend::Direct(p) => Ok(p.list_snapshots(volume)?),
            Backend::Remote(r) => {
                let req = pb::ListSnapshotsRequest {
                    volume: volume.map(str::to_string),
                };
                r.call(|mut c| async move { c.list_snapshots(req).await })?
                    .volumes
                    .into_iter()
                    .map(volume_from_pb)
                    .collect()
            }
        }
    }

    pub fn clone_volume(&mut self, source: &str, name: &str) -> Result<VolumeInfo> {
        match self {
            Backend::Direct(p) => Ok(p.clone_volume(source, name)?),
            Backend::Remote(r) => {
                let req = pb::CloneVolumeRequest {
                    source: source.into(),
                    name: name.into(),
                };
                volume_from_pb(r.call(|mut c| async move { c.clone_volume(req).await })?)
            }
        }
    }

    pub fn usage(&mut self) -> Result<(PoolUsage, Vec<VolumeUsage>)> {
        match self {
            Backend::Direct(p) => Ok((p.usage()?, p.volume_usage()?)),
            Backend::Remote(r) => {
                Ok(usage_from_pb(r.call(|mut c| async move {
                    c.usage(pb::Empty {}).await
                })?))
            }
        }
    }

    /// GC; `progress(done, total)` follows it (for a remote server: start and end).
    pub fn gc(&mut self, progress: &mut Progress) -> Result<GcReport> {
        match self {
            Backend::Direct(p) => Ok(p.gc_with_progress(progress)?),
            Backend::Remote(r) => {
                progress(0, 1);
                let g = r.call(|mut c| async move { c.gc(pb::Empty {}).await })?;
                progress(1, 1);
                Ok(GcReport {
                    chunks_deleted: g.chunks_deleted,
                    bytes_freed: g.bytes_freed,
                    segments_deleted: g.segments_deleted,
                    bytes_moved: g.bytes_moved,
                })
            }
        }
    }

    /// fsck; `progress(done, total)` follows it (for a remote server: start and end).
    pub fn fsck(
        &mut self,
        repair: bool,
        verify_data: bool,
        progress: &mut Progress,
    ) -> Result<FsckReport> {
        match self {
            Backend::Direct(p) => Ok(p.fsck_full(repair, verify_data, progress)?),
            Backend::Remote(r) => {
                progress(0, 1);
                let req = pb::FsckRequest {
                    repair,
                    verify_data,
                };
                let report = fsck_from_pb(r.call(|mut c| async move { c.fsck(req).await })?);
                progress(1, 1);
                Ok(report)
            }
        }
    }
}
