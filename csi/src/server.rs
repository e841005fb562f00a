//! Serving the three services on the CSI unix socket until SIGTERM/SIGINT.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_proto::csi::v1::controller_server::ControllerServer;
use tessera_proto::csi::v1::identity_server::IdentityServer;
use tessera_proto::csi::v1::node_server::NodeServer;
use tracing::{info, warn};

use crate::controller::ControllerService;
use crate::identity::IdentityService;
use crate::node::NodeService;
use crate::plugin::Plugin;
use crate::Config;

/// How long calls in flight may take to finish after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("endpoint {0:?} is not a unix socket address (use unix:///path/to/csi.sock)")]
    Endpoint(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The socket path of a CSI endpoint: `unix:///abs/path`, `unix:/abs/path` or an
/// absolute path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ServeError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.is_empty()
        || !path.starts_with('/')
        || endpoint.contains("://") && !endpoint.starts_with("unix://")
    {
        return Err(ServeError::Endpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Restores the node's mounts, then serves Identity, Controller and Node on
/// `config.socket` until SIGTERM or SIGINT. On the way out every mount's data is
/// flushed and the process exits; the next start mounts everything again.
pub fn serve(config: Config) -> Result<(), ServeError> {
    let socket = config.socket.clone();
    let plugin = Arc::new(Plugin::new(config).map_err(io("opening the kubelet directory"))?);
    plugin.node.lock().restore(&plugin);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tessera-csi")
        .enable_all()
        .build()
        .map_err(io("starting the runtime"))?;
    let listener = {
        let _guard = rt.enter();
        bind(&socket)?
    };
    info!(socket = %socket.display(), node = %plugin.node_id, "serving CSI");
    eprintln!("tessera: CSI plugin serving on {}", socket.display());
    let served = rt.block_on(async {
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(IdentityServer::new(IdentityService::new(plugin.clone())))
            .add_service(ControllerServer::new(ControllerService::new(
                plugin.clone(),
            )))
            .add_service(NodeServer::new(NodeService::new(plugin.clone())))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            });
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => r,
            () = shutdown_signal() => {
                let _ = stop.send(());
                // Calls in flight finish; clients that keep idle connections open (the
                // kubelet and the sidecars do) must not hold the shutdown up.
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    Ok(r) => r,
                    Err(_) => {
                        info!("clients still connected after {SHUTDOWN_GRACE:?}; stopping");
                        Ok(())
                    }
                }
            }
        }
    });
    let _ = std::fs::remove_file(&socket);
    // Flush, then leave the mounts to end with the process: unmounting a staged volume
    // would wait for its pods' bind mounts, and the next start mounts everything again.
    info!("flushing mounted volumes");
    plugin.node.lock().release_for_exit();
    for pool in plugin.pools.values() {
        if let Err(e) = pool.sync() {
            warn!("syncing pool {}: {e}", pool.dir().display());
        }
    }
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    served.map_err(ServeError::from)
}

fn bind(socket: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    // Only one plugin serves a node's pools (they are locked), so a socket file
    // left here is from a process that is gone.
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing stale {}", socket.display()))(e)),
    }
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(io(format!("binding {}", socket.display())))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(io(format!("restricting {}", socket.display())))?;
    Ok(listener)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot watch SIGTERM/SIGINT; stop the plugin with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::socket_path;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            std::path::PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix:/csi/csi.sock").unwrap(),
            std::path::PathBuf::from("/csi/csi.sock")
        );
        assert!(socket_path("tcp://0.0.0.0:10000").is_err());
        assert!(socket_path("unix://relative.sock").is_err());
        assert!(socket_path("").is_err());
    }
}
