//! The CSI Node service: a FUSE session per staged volume, bind mounts per published
//! target, inline ephemeral volumes, stats and expansion; and the persisted state that
//! lets a restarted plugin bring its mounts back.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::mount::{MntFlags, MsFlags};
use tessera_fs::{BackgroundMount, MountError, MountOptions, MountProbe};
use tessera_proto::csi::v1 as csi;
use tessera_proto::csi::v1::node_server::Node;
use tessera_proto::csi::v1::node_service_capability::rpc::Type as Cap;
use tessera_proto::csi::v1::volume_capability::access_mode::Mode;
use tessera_store::{Pool, StoreError, VolumeOptions};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::credentials::OperationKind;
use crate::ids::{self, Parsed, VolumeId};
use crate::plugin::{
    check_capability, is_read_only_mode, is_single_target_mode, mount_flag, mount_flags_of,
    CapCheck, Plugin,
};
use crate::quantity::parse_quantity;
use crate::state::{read_json, write_json, NodeState, Published, Staged, NODE_STATE_FILE};
use crate::status::{blocking, from_store};
use crate::{DEFAULT_POOL, EPHEMERAL_CONTEXT_KEY};

/// Capacity of an inline ephemeral volume whose attributes name no `size`.
pub const DEFAULT_EPHEMERAL_SIZE: u64 = 1 << 30;

/// The node's mounts: live FUSE sessions and the state persisted beside them.
pub struct NodeMounts {
    state_path: PathBuf,
    state: NodeState,
    /// FUSE sessions by volume id (staged volumes).
    staged: HashMap<String, BackgroundMount>,
    /// FUSE sessions by target path (inline ephemeral volumes).
    ephemeral: HashMap<PathBuf, BackgroundMount>,
}

fn mount_status(what: &str, e: MountError) -> Status {
    let message = format!("{what}: {e}");
    match e {
        MountError::MissingDir(_) => Status::not_found(message),
        MountError::NotADirectory(_) | MountError::NotEmpty(_) | MountError::AlreadyMounted(_) => {
            Status::failed_precondition(message)
        }
        MountError::Flush { source, .. } => from_store(what, source),
        // The node failed at something it is expected to be able to do (mount(2),
        // umount(2), a session thread): the kubelet retries.
        MountError::Inspect { .. }
        | MountError::StaleMount { .. }
        | MountError::AllowOther { .. }
        | MountError::Mount { .. }
        | MountError::Signals(_)
        | MountError::Session { .. }
        | MountError::Unmount { .. } => Status::internal(message),
    }
}

fn io_status(what: &str, e: io::Error) -> Status {
    Status::internal(format!("{what}: {e}"))
}

fn probe(path: &Path) -> Result<MountProbe, Status> {
    tessera_fs::probe_mount(path)
        .map_err(|e| io_status(&format!("inspecting {}", path.display()), e))
}

/// Unmounts the mount at `path` (live or dead), lazily if it is busy; never follows a
/// symlink.
fn unmount_path(path: &Path) -> Result<(), Status> {
    match nix::mount::umount2(path, MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(_) => tessera_fs::detach(path)
            .map_err(|e| io_status(&format!("unmounting {}", path.display()), e)),
    }
}

/// Unmounts every Tessera mount stacked at `path` (FUSE sessions and bind mounts of
/// them, live or dead). Anybody else's mount is left alone.
fn clear_mounts(path: &Path) -> Result<(), Status> {
    for _ in 0..8 {
        match probe(path)? {
            MountProbe::Mounted | MountProbe::Dead if tessera_fs::is_tessera_mount(path) => {
                unmount_path(path)?
            }
            _ => return Ok(()),
        }
    }
    Err(Status::internal(format!(
        "{} still has mounts after 8 unmounts",
        path.display()
    )))
}

/// Creates the last component of a staging or target path; its parent is the kubelet's
/// to make.
fn ensure_dir(path: &Path) -> Result<(), Status> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Status::failed_precondition(format!(
            "the parent directory of {} does not exist",
            path.display()
        ))),
        Err(e) => Err(io_status(&format!("creating {}", path.display()), e)),
    }
}

fn bind(staging: &Path, target: &Path, read_only: bool, flags: &[String]) -> Result<(), Status> {
    nix::mount::mount(
        Some(staging),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Status::internal(format!(
            "bind-mounting {} on {}: {e}",
            staging.display(),
            target.display()
        ))
    })?;
    // A bind remount replaces the mount's flags: keep the FUSE mount's nosuid and nodev.
    let mut extra = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    for f in flags {
        extra |= mount_flag(f)?;
    }
    if read_only {
        extra |= MsFlags::MS_RDONLY;
    }
    if read_only || !flags.is_empty() {
        let remount = nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
            None::<&str>,
        );
        if let Err(e) = remount {
            let _ = unmount_path(target);
            return Err(Status::internal(format!(
                "applying {flags:?}{} to {}: {e}",
                if read_only { " + ro" } else { "" },
                target.display()
            )));
        }
    }
    Ok(())
}

fn mount_options(id: &str, read_only: bool) -> MountOptions {
    MountOptions {
        read_only,
        threads: 0,
        // Pods run as any user.
        allow_other: true,
        fs_name: format!("tessera:{id}"),
    }
}

fn open_volume(plugin: &Plugin, id: &VolumeId) -> Result<(Pool, tessera_store::Volume), Status> {
    let not_found = || Status::not_found(format!("volume {id} does not exist"));
    let pool = plugin.pool_of(id).cloned().ok_or_else(not_found)?;
    match pool.open_volume(&id.volume) {
        Ok(v) if v.is_read_only() => Err(not_found()),
        Ok(v) => Ok((pool, v)),
        Err(StoreError::NotFound(_)) => Err(not_found()),
        Err(e) => Err(from_store(&format!("opening volume {id}"), e)),
    }
}

fn parse_id(field: &str, id: &str) -> Result<VolumeId, Status> {
    match ids::parse_volume_id(field, id)? {
        Parsed::Ok(v) => Ok(v),
        Parsed::Foreign => Err(Status::not_found(format!("volume {id} does not exist"))),
    }
}

impl NodeMounts {
    pub fn new(state_dir: &Path) -> NodeMounts {
        NodeMounts {
            state_path: state_dir.join(NODE_STATE_FILE),
            state: NodeState::default(),
            staged: HashMap::new(),
            ephemeral: HashMap::new(),
        }
    }

    fn save(&self) -> Result<(), Status> {
        write_json(&self.state_path, &self.state).map_err(|e| {
            Status::unavailable(format!(
                "saving node state {}: {e}",
                self.state_path.display()
            ))
        })
    }

    /// Where a volume is in use on this node, if it is.
    pub fn use_of(&self, volume_id: &str) -> Option<String> {
        if let Some(s) = self.state.staged.get(volume_id) {
            return Some(format!("staged at {}", s.staging_path.display()));
        }
        self.state
            .published
            .iter()
            .find(|(_, p)| p.volume_id == volume_id)
            .map(|(t, _)| format!("published at {}", t.display()))
    }

    /// Flushes every mount's dirty data to the store (on shutdown).
    pub fn flush_all(&self) {
        for m in self.staged.values().chain(self.ephemeral.values()) {
            if let Err(e) = m.flush() {
                warn!("flushing {}: {e}", m.dir().display());
            }
        }
    }

    /// Makes the FUSE session of a staged volume run at its staging path (again).
    fn ensure_session(
        &mut self,
        plugin: &Plugin,
        id: &VolumeId,
        staged: &Staged,
    ) -> Result<(), Status> {
        let key = id.to_string();
        if let Some(m) = self.staged.get_mut(&key) {
            if m.is_serving() && probe(&staged.staging_path)? == MountProbe::Mounted {
                return Ok(());
            }
            warn!(volume = %id, "FUSE session at {} is gone; remounting", staged.staging_path.display());
            if let Some(m) = self.staged.remove(&key) {
                if let Err(e) = m.unmount() {
                    warn!("cleaning the old session of {id}: {e}");
                }
            }
        }
        clear_mounts(&staged.staging_path)?;
        ensure_dir(&staged.staging_path)?;
        let (_, volume) = open_volume(plugin, id)?;
        let mount = tessera_fs::mount_background(
            volume,
            &staged.staging_path,
            &mount_options(&key, staged.read_only),
        )
        .map_err(|e| mount_status(&format!("mounting {id}"), e))?;
        self.staged.insert(key, mount);
        Ok(())
    }

    fn stage(
        &mut self,
        plugin: &Plugin,
        id: &VolumeId,
        staging: PathBuf,
        read_only: bool,
    ) -> Result<(), Status> {
        let key = id.to_string();
        if let Some(existing) = self.state.staged.get(&key).cloned() {
            if existing.staging_path != staging {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is already staged at {}",
                    existing.staging_path.display()
                )));
            }
            if existing.read_only != read_only {
                return Err(Status::already_exists(format!(
                    "volume {id} is staged at {} {}, incompatible with this request",
                    staging.display(),
                    if existing.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    }
                )));
            }
            return self.ensure_session(plugin, id, &existing);
        }
        if let Some((other, _)) = self
            .state
            .staged
            .iter()
            .find(|(_, s)| s.staging_path == staging)
        {
            return Err(Status::already_exists(format!(
                "{} is the staging path of another volume, {other}",
                staging.display()
            )));
        }
        if probe(&staging)? == MountProbe::Mounted {
            return Err(Status::failed_precondition(format!(
                "{} already has a mount this plugin did not make",
                staging.display()
            )));
        }
        let staged = Staged {
            staging_path: staging,
            read_only,
        };
        self.ensure_session(plugin, id, &staged)?;
        self.state.staged.insert(key.clone(), staged.clone());
        if let Err(e) = self.save() {
            if let Some(m) = self.staged.remove(&key) {
                let _ = m.unmount();
            }
            self.state.staged.remove(&key);
            return Err(e);
        }
        info!(volume = %id, path = %staged.staging_path.display(), read_only, "staged");
        Ok(())
    }

    fn unstage(&mut self, volume_id: &str, staging: &Path) -> Result<(), Status> {
        let targets: Vec<String> = self
            .state
            .published
            .iter()
            .filter(|(_, p)| p.volume_id == volume_id && !p.ephemeral)
            .map(|(t, _)| t.display().to_string())
            .collect();
        if !targets.is_empty() {
            return Err(Status::failed_precondition(format!(
                "volume {volume_id} is still published at {}; unpublish it first",
                targets.join(", ")
            )));
        }
        match self.state.staged.get(volume_id) {
            Some(s) if s.staging_path == staging => {
                if let Some(m) = self.staged.remove(volume_id) {
                    m.unmount()
                        .map_err(|e| mount_status(&format!("unmounting {volume_id}"), e))?;
                }
                clear_mounts(staging)?;
                self.state.staged.remove(volume_id);
                self.save()?;
                info!(volume = %volume_id, path = %staging.display(), "unstaged");
                Ok(())
            }
            Some(s) => Err(Status::failed_precondition(format!(
                "volume {volume_id} is staged at {}, not at {}",
                s.staging_path.display(),
                staging.display()
            ))),
            // Not ours any more (or never): make sure nothing is left mounted there.
            None => clear_mounts(staging),
        }
    }

    fn publish(
        &mut self,
        plugin: &Plugin,
        req: &csi::NodePublishVolumeRequest,
        target: PathBuf,
        mode: Mode,
    ) -> Result<(), Status> {
        let cap = req.volume_capability.as_ref().expect("checked");
        let flags = mount_flags_of(cap);
        let ephemeral = req
            .volume_context
            .get(EPHEMERAL_CONTEXT_KEY)
            .is_some_and(|v| v == "true");
        let read_only = req.readonly || is_read_only_mode(mode);
        let wanted = Published {
            volume_id: if ephemeral {
                ephemeral_id(req)?.to_string()
            } else {
                req.volume_id.clone()
            },
            read_only,
            mount_flags: flags.clone(),
            ephemeral,
            restored: false,
        };
        if let Some(existing) = self.state.published.get(&target) {
            let same = Published {
                restored: false,
                ..existing.clone()
            };
            if same != wanted {
                return Err(Status::already_exists(format!(
                    "{} is already published with another volume or other options",
                    target.display()
                )));
            }
            if probe(&target)? == MountProbe::Mounted {
                if existing.restored {
                    // The kubelet set this target up again for a (re)starting container.
                    self.state.published.insert(target, wanted);
                    self.save()?;
                }
                return Ok(());
            }
            warn!("{} lost its mount; publishing it again", target.display());
        } else if probe(&target)? == MountProbe::Mounted {
            return Err(Status::failed_precondition(format!(
                "{} already has a mount this plugin did not make",
                target.display()
            )));
        }
        if ephemeral {
            self.publish_ephemeral(plugin, req, &target, &wanted)?;
        } else {
            let id = parse_id("volume_id", &req.volume_id)?;
            let staging = plugin.kubelet_path("staging_target_path", &req.staging_target_path)?;
            let Some(staged) = self.state.staged.get(&req.volume_id).cloned() else {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is not staged on this node; NodeStageVolume comes first"
                )));
            };
            if staged.staging_path != staging {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is staged at {}, not at {}",
                    staged.staging_path.display(),
                    staging.display()
                )));
            }
            if staged.read_only && !read_only {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is staged read-only; it cannot be published read-write"
                )));
            }
            if is_single_target_mode(mode) {
                if let Some((t, _)) = self
                    .state
                    .published
                    .iter()
                    .find(|(t, p)| p.volume_id == req.volume_id && **t != target)
                {
                    return Err(Status::failed_precondition(format!(
                        "volume {id} is already published at {} and access mode {} allows \
                         one target only",
                        t.display(),
                        mode.as_str_name()
                    )));
                }
            }
            self.ensure_session(plugin, &id, &staged)?;
            clear_mounts(&target)?;
            ensure_dir(&target)?;
            bind(&staged.staging_path, &target, read_only, &flags)?;
        }
        self.state.published.insert(target.clone(), wanted);
        self.save()?;
        info!(volume = %req.volume_id, target = %target.display(), read_only, ephemeral, "published");
        Ok(())
    }

    fn publish_ephemeral(
        &mut self,
        plugin: &Plugin,
        req: &csi::NodePublishVolumeRequest,
        target: &Path,
        wanted: &Published,
    ) -> Result<(), Status> {
        let id = ephemeral_id(req)?;
        let pool = plugin.pool_of(&id).cloned().ok_or_else(|| {
            Status::invalid_argument(format!("pool {:?} is not served by this node", id.pool))
        })?;
        let mut options = VolumeOptions {
            capacity: DEFAULT_EPHEMERAL_SIZE,
            ..VolumeOptions::default()
        };
        for (k, v) in &req.volume_context {
            match k.as_str() {
                "size" => options.capacity = parse_quantity(v).map_err(Status::invalid_argument)?,
                "chunkSize" => options.chunk_size = crate::controller::chunk_size(v)?,
                "compression" => options.compression = crate::controller::compression(v)?,
                "pool" => {}
                k if k.starts_with("csi.storage.k8s.io/") => {}
                other => {
                    return Err(Status::invalid_argument(format!(
                        "unknown volume attribute {other:?} for an inline volume \
                         (Tessera reads: size, pool, chunkSize, compression)"
                    )))
                }
            }
        }
        let key = id.to_string();
        let ours = self
            .state
            .published
            .values()
            .any(|p| p.ephemeral && p.volume_id == key);
        let created = match pool.create_volume(&id.volume, options) {
            Ok(_) => {
                info!(volume = %id, "created inline ephemeral volume");
                true
            }
            // Ours from an earlier publish of this target (being repaired).
            Err(StoreError::Exists(_)) if ours => false,
            Err(StoreError::Exists(_)) => {
                return Err(Status::already_exists(format!(
                    "a volume named {id} already exists and is not this inline volume"
                )))
            }
            Err(e) => return Err(from_store(&format!("creating inline volume {id}"), e)),
        };
        let mounted = (|| {
            if let Some(m) = self.ephemeral.remove(target) {
                let _ = m.unmount();
            }
            clear_mounts(target)?;
            ensure_dir(target)?;
            let (_, volume) = open_volume(plugin, &id)?;
            tessera_fs::mount_background(volume, target, &mount_options(&key, wanted.read_only))
                .map_err(|e| mount_status(&format!("mounting inline volume {id}"), e))
        })();
        match mounted {
            Ok(mount) => {
                self.ephemeral.insert(target.to_path_buf(), mount);
                Ok(())
            }
            Err(status) => {
                if created {
                    let _ = pool.delete_volume(&id.volume);
                }
                Err(status)
            }
        }
    }

    fn unpublish(&mut self, plugin: &Plugin, target: &Path) -> Result<(), Status> {
        let entry = self.state.published.get(target).cloned();
        if let Some(m) = self.ephemeral.remove(target) {
            m.unmount()
                .map_err(|e| mount_status(&format!("unmounting {}", target.display()), e))?;
        }
        clear_mounts(target)?;
        if probe(target)? == MountProbe::Plain {
            match std::fs::remove_dir(target) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => warn!("leaving {} in place: {e}", target.display()),
            }
        }
        if let Some(p) = entry {
            if p.ephemeral {
                let id = parse_id("volume_id", &p.volume_id)?;
                if let Some(pool) = plugin.pool_of(&id) {
                    match pool.delete_volume(&id.volume) {
                        Ok(()) | Err(StoreError::NotFound(_)) => {
                            info!(volume = %id, "deleted inline ephemeral volume")
                        }
                        Err(e) => return Err(from_store(&format!("deleting inline {id}"), e)),
                    }
                }
            }
            self.state.published.remove(target);
            self.save()?;
            info!(volume = %p.volume_id, target = %target.display(), "unpublished");
        }
        Ok(())
    }

    /// Brings back the mounts recorded in the state file (after a restart). What can no
    /// longer be served (its volume or its pod directory is gone) is unmounted and
    /// forgotten. A state file that cannot be read is set aside, not fatal.
    pub fn restore(&mut self, plugin: &Plugin) {
        let state: NodeState = match read_json(&self.state_path) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                let aside = self.state_path.with_extension(format!(
                    "json.unreadable-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                ));
                warn!(
                    "cannot read {} ({e}); moving it to {} and starting without staged volumes",
                    self.state_path.display(),
                    aside.display()
                );
                let _ = std::fs::rename(&self.state_path, &aside);
                NodeState::default()
            }
        };
        self.state = state.clone();
        for (id, staged) in &state.staged {
            let restored =
                parse_id("volume_id", id).and_then(|vid| self.ensure_session(plugin, &vid, staged));
            match restored {
                Ok(()) => info!(volume = %id, "restored staged volume"),
                Err(e) => {
                    warn!(volume = %id, "cannot restore staging at {}: {}; cleaning up", staged.staging_path.display(), e.message());
                    let _ = clear_mounts(&staged.staging_path);
                    self.state.staged.remove(id);
                }
            }
        }
        for (target, p) in &state.published {
            let restored = if target.parent().is_none_or(|d| !d.is_dir()) {
                Err(Status::not_found("its pod directory is gone"))
            } else if p.ephemeral {
                self.restore_ephemeral(plugin, target, p)
            } else {
                match self.state.staged.get(&p.volume_id) {
                    Some(staged) => clear_mounts(target)
                        .and_then(|()| ensure_dir(target))
                        .and_then(|()| {
                            bind(&staged.staging_path, target, p.read_only, &p.mount_flags)
                        }),
                    None => Err(Status::not_found("its volume is no longer staged")),
                }
            };
            match restored {
                Ok(()) => {
                    info!(volume = %p.volume_id, target = %target.display(), "restored publish");
                    if let Some(e) = self.state.published.get_mut(target) {
                        e.restored = true;
                    }
                }
                Err(e) => {
                    warn!(volume = %p.volume_id, "cannot restore {}: {}; cleaning up", target.display(), e.message());
                    let _ = clear_mounts(target);
                    self.state.published.remove(target);
                }
            }
        }
        if let Err(e) = self.save() {
            warn!("{}", e.message());
        }
    }

    fn restore_ephemeral(
        &mut self,
        plugin: &Plugin,
        target: &Path,
        p: &Published,
    ) -> Result<(), Status> {
        let id = parse_id("volume_id", &p.volume_id)?;
        clear_mounts(target)?;
        ensure_dir(target)?;
        let (_, volume) = open_volume(plugin, &id)?;
        let mount =
            tessera_fs::mount_background(volume, target, &mount_options(&p.volume_id, p.read_only))
                .map_err(|e| mount_status(&format!("mounting inline volume {id}"), e))?;
        self.ephemeral.insert(target.to_path_buf(), mount);
        Ok(())
    }

    /// Flushes every mount and lets go of the sessions without unmounting (on
    /// shutdown): they end with the process, and the next start mounts them again.
    pub fn release_for_exit(&mut self) {
        self.flush_all();
        for m in self.staged.drain().map(|(_, m)| m) {
            std::mem::forget(m);
        }
        for m in self.ephemeral.drain().map(|(_, m)| m) {
            std::mem::forget(m);
        }
    }
}

/// The store volume behind an inline ephemeral volume: the kubelet's volume id, in the
/// pool the attributes name.
fn ephemeral_id(req: &csi::NodePublishVolumeRequest) -> Result<VolumeId, Status> {
    let name = ids::object_name("volume_id", &req.volume_id)?;
    let pool = req
        .volume_context
        .get("pool")
        .cloned()
        .unwrap_or_else(|| DEFAULT_POOL.to_string());
    Ok(VolumeId::new(&pool, &name))
}

pub struct NodeService {
    plugin: Arc<Plugin>,
}

impl NodeService {
    pub fn new(plugin: Arc<Plugin>) -> NodeService {
        NodeService { plugin }
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<csi::NodeStageVolumeRequest>,
    ) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("volume_id", &req.volume_id)?;
        let staging = self
            .plugin
            .kubelet_path("staging_target_path", &req.staging_target_path)?;
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        let mode = check_capability(cap, CapCheck::Node)?;
        self.plugin
            .credentials
            .check(OperationKind::NodeStage, &req.secrets)?;
        let id = parse_id("volume_id", &req.volume_id)?;
        let _guard = self.plugin.lock(format!("node:{}", req.volume_id)).await;
        let plugin = self.plugin.clone();
        blocking(move || {
            let read_only = is_read_only_mode(mode);
            plugin.node.lock().stage(&plugin, &id, staging, read_only)
        })
        .await?;
        Ok(Response::new(csi::NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("volume_id", &req.volume_id)?;
        let staging = self
            .plugin
            .kubelet_path("staging_target_path", &req.staging_target_path)?;
        let _guard = self.plugin.lock(format!("node:{}", req.volume_id)).await;
        let plugin = self.plugin.clone();
        blocking(move || plugin.node.lock().unstage(&req.volume_id, &staging)).await?;
        Ok(Response::new(csi::NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("volume_id", &req.volume_id)?;
        let target = self.plugin.kubelet_path("target_path", &req.target_path)?;
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        let mode = check_capability(cap, CapCheck::Node)?;
        let ephemeral = req
            .volume_context
            .get(EPHEMERAL_CONTEXT_KEY)
            .is_some_and(|v| v == "true");
        if !ephemeral {
            if req.staging_target_path.is_empty() {
                return Err(Status::failed_precondition(
                    "staging_target_path is not set: this plugin stages volumes \
                     (STAGE_UNSTAGE_VOLUME) before publishing them",
                ));
            }
            self.plugin
                .kubelet_path("staging_target_path", &req.staging_target_path)?;
        }
        self.plugin
            .credentials
            .check(OperationKind::NodePublish, &req.secrets)?;
        let _guard = self.plugin.lock(format!("node:{}", req.volume_id)).await;
        let plugin = self.plugin.clone();
        blocking(move || plugin.node.lock().publish(&plugin, &req, target, mode)).await?;
        Ok(Response::new(csi::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("volume_id", &req.volume_id)?;
        let target = self.plugin.kubelet_path("target_path", &req.target_path)?;
        let _guard = self.plugin.lock(format!("node:{}", req.volume_id)).await;
        let plugin = self.plugin.clone();
        blocking(move || plugin.node.lock().unpublish(&plugin, &target)).await?;
        Ok(Response::new(csi::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("volume_id", &req.volume_id)?;
        let path = self.plugin.kubelet_path("volume_path", &req.volume_path)?;
        let plugin = self.plugin.clone();
        let response = blocking(move || {
            // An inline volume's store name lives in the node state, not in its id.
            let (recorded, restored, staged_here) = {
                let node = plugin.node.lock();
                let entry = node.state.published.get(&path);
                let staged_here = node
                    .state
                    .staged
                    .get(&req.volume_id)
                    .is_some_and(|s| s.staging_path == path);
                (
                    entry.map(|p| p.volume_id.clone()),
                    entry.is_some_and(|p| p.restored),
                    staged_here,
                )
            };
            let id = parse_id("volume_id", recorded.as_deref().unwrap_or(&req.volume_id))?;
            // The path must hold this volume: by the node's records, or (records lost)
            // by the mount's source.
            let ours = staged_here
                || recorded.is_some()
                || tessera_fs::mount_source(&path).is_some_and(|s| s == format!("tessera:{id}"));
            if !ours {
                if probe(&path)? == MountProbe::Missing {
                    return Err(Status::not_found(format!(
                        "volume path {} does not exist",
                        path.display()
                    )));
                }
                return Err(Status::not_found(format!(
                    "volume {} is not staged or published at {}",
                    req.volume_id,
                    path.display()
                )));
            }
            let (_, volume) = open_volume(&plugin, &id)?;
            let condition = match probe(&path)? {
                MountProbe::Missing => {
                    return Err(Status::not_found(format!(
                        "volume path {} does not exist",
                        path.display()
                    )))
                }
                MountProbe::Mounted if restored => csi::VolumeCondition {
                    abnormal: true,
                    message: format!(
                        "the plugin restarted and mounted {} again; containers that were \
                         running before keep a dead copy of the old mount until they restart",
                        path.display()
                    ),
                },
                MountProbe::Mounted => csi::VolumeCondition {
                    abnormal: false,
                    message: "mounted and served".into(),
                },
                MountProbe::Dead => csi::VolumeCondition {
                    abnormal: true,
                    message: format!(
                        "{} is a dead FUSE mount (transport endpoint is not connected): the \
                         session serving volume {id} is gone; restaging or restarting the \
                         plugin brings it back",
                        path.display()
                    ),
                },
                MountProbe::Plain => csi::VolumeCondition {
                    abnormal: true,
                    message: format!("{} is not mounted", path.display()),
                },
            };
            let st = volume
                .statfs()
                .map_err(|e| from_store(&format!("statfs of {id}"), e))?;
            Ok(csi::NodeGetVolumeStatsResponse {
                usage: vec![
                    csi::VolumeUsage {
                        available: st.capacity.saturating_sub(st.used) as i64,
                        total: st.capacity as i64,
                        used: st.used as i64,
                        unit: csi::volume_usage::Unit::Bytes as i32,
                    },
                    csi::VolumeUsage {
                        // Inodes are not preallocated: the limit is the space.
                        available: 0,
                        total: 0,
                        used: st.inodes as i64,
                        unit: csi::volume_usage::Unit::Inodes as i32,
                    },
                ],
                volume_condition: Some(condition),
            })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn node_expand_volume(
        &self,
        request: Request<csi::NodeExpandVolumeRequest>,
    ) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("volume_id", &req.volume_id)?;
        let path = self.plugin.kubelet_path("volume_path", &req.volume_path)?;
        if let Some(cap) = &req.volume_capability {
            check_capability(cap, CapCheck::Node)?;
        }
        let (required, limit) = match &req.capacity_range {
            Some(r) if r.required_bytes < 0 || r.limit_bytes < 0 => {
                return Err(Status::invalid_argument(
                    "capacity_range must not be negative",
                ))
            }
            Some(r) => (r.required_bytes, r.limit_bytes),
            None => (0, 0),
        };
        self.plugin
            .credentials
            .check(OperationKind::Expand, &req.secrets)?;
        let plugin = self.plugin.clone();
        let capacity = blocking(move || {
            if probe(&path)? == MountProbe::Missing {
                return Err(Status::not_found(format!(
                    "volume path {} does not exist",
                    path.display()
                )));
            }
            // The quota is enforced by the store behind the mount: growing it here is
            // the whole job (and a no-op after ControllerExpandVolume).
            crate::controller::expand(&plugin, &req.volume_id, required, limit)
        })
        .await?;
        Ok(Response::new(csi::NodeExpandVolumeResponse {
            capacity_bytes: capacity as i64,
        }))
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        let caps = [
            Cap::StageUnstageVolume,
            Cap::GetVolumeStats,
            Cap::ExpandVolume,
            Cap::VolumeCondition,
            Cap::SingleNodeMultiWriter,
        ];
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities: caps
                .into_iter()
                .map(|c| csi::NodeServiceCapability {
                    r#type: Some(csi::node_service_capability::Type::Rpc(
                        csi::node_service_capability::Rpc { r#type: c as i32 },
                    )),
                })
                .collect(),
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: self.plugin.node_id.clone(),
            max_volumes_per_node: self.plugin.max_volumes,
            accessible_topology: Some(self.plugin.topology()),
        }))
    }
}
