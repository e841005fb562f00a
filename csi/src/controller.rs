//! The CSI Controller service: volumes, snapshots, clones and expansion on this node's
//! pools.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tessera_proto::csi::v1 as csi;
use tessera_proto::csi::v1::controller_server::Controller;
use tessera_proto::csi::v1::controller_service_capability::rpc::Type as Cap;
use tessera_proto::csi::v1::volume_content_source::{
    SnapshotSource, Type as SourceType, VolumeSource,
};
use tessera_store::{Compression, Pool, StoreError, VolumeInfo, VolumeOptions};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::catalog::{self, RecordState, Source, VolumeRecord};
use crate::credentials::OperationKind;
use crate::ids::{self, Parsed, SnapshotId, VolumeId};
use crate::plugin::{check_capability, CapCheck, Plugin};
use crate::quantity::parse_quantity;
use crate::status::{blocking, from_store};
use crate::DEFAULT_POOL;

/// StorageClass parameters Tessera reads. Keys under `csi.storage.k8s.io/` belong to
/// Kubernetes' sidecars and are ignored.
pub const PARAMETERS: [&str; 5] = ["pool", "description", "fsType", "chunkSize", "compression"];

/// Capacity of a volume whose request names none.
pub const DEFAULT_CAPACITY: u64 = tessera_store::DEFAULT_CAPACITY;

pub struct ControllerService {
    plugin: Arc<Plugin>,
}

impl ControllerService {
    pub fn new(plugin: Arc<Plugin>) -> ControllerService {
        ControllerService { plugin }
    }
}

/// A validated CreateVolume request.
struct Create {
    name: String,
    pool: String,
    record: VolumeRecord,
    options: VolumeOptions,
    /// Whether chunkSize / compression were given (a clone must not contradict its source).
    explicit_layout: bool,
    description: Option<String>,
}

fn tessera_parameters(
    params: &HashMap<String, String>,
) -> Result<BTreeMap<String, String>, Status> {
    let mut out = BTreeMap::new();
    for (k, v) in params {
        if k.starts_with("csi.storage.k8s.io/") {
            continue;
        }
        if !PARAMETERS.contains(&k.as_str()) {
            return Err(Status::invalid_argument(format!(
                "unknown parameter {k:?} (Tessera reads: {})",
                PARAMETERS.join(", ")
            )));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// The `chunkSize` parameter (a Kubernetes quantity), for volumes and inline volumes.
pub fn chunk_size(text: &str) -> Result<u32, Status> {
    let n =
        parse_quantity(text).map_err(|e| Status::invalid_argument(format!("chunkSize: {e}")))?;
    let (min, max) = (
        u64::from(tessera_store::MIN_CHUNK_SIZE),
        u64::from(tessera_store::MAX_CHUNK_SIZE),
    );
    if !n.is_power_of_two() || n < min || n > max {
        return Err(Status::invalid_argument(format!(
            "chunkSize {text:?} must be a power of two from 64Ki to 4Mi"
        )));
    }
    Ok(n as u32)
}

/// The `compression` parameter.
pub fn compression(text: &str) -> Result<Compression, Status> {
    text.parse::<Compression>().map_err(|_| {
        Status::invalid_argument(format!(
            "compression {text:?} is not one of lz4, zstd, none"
        ))
    })
}

fn capacity_range(range: Option<&csi::CapacityRange>) -> Result<(i64, i64), Status> {
    let Some(r) = range else { return Ok((0, 0)) };
    if r.required_bytes < 0 || r.limit_bytes < 0 {
        return Err(Status::invalid_argument(
            "capacity_range must not be negative",
        ));
    }
    if r.limit_bytes > 0 && r.required_bytes > r.limit_bytes {
        return Err(Status::out_of_range(format!(
            "capacity_range asks for at least {} and at most {} bytes",
            r.required_bytes, r.limit_bytes
        )));
    }
    Ok((r.required_bytes, r.limit_bytes))
}

impl Create {
    fn parse(plugin: &Plugin, req: &csi::CreateVolumeRequest) -> Result<Create, Status> {
        let name = ids::object_name("name", &req.name)?;
        if req.volume_capabilities.is_empty() {
            return Err(Status::invalid_argument("volume_capabilities is required"));
        }
        for cap in &req.volume_capabilities {
            check_capability(cap, CapCheck::Controller)?;
        }
        let (required_bytes, limit_bytes) = capacity_range(req.capacity_range.as_ref())?;
        let parameters = tessera_parameters(&req.parameters)?;
        let pool = parameters
            .get("pool")
            .cloned()
            .unwrap_or_else(|| DEFAULT_POOL.to_string());
        if !plugin.pools.contains_key(&pool) {
            return Err(Status::invalid_argument(format!(
                "parameter pool {pool:?} is not served by node {} (pools: {})",
                plugin.node_id,
                plugin.pools.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let mut options = VolumeOptions::default();
        if let Some(c) = parameters.get("chunkSize") {
            options.chunk_size = chunk_size(c)?;
        }
        if let Some(c) = parameters.get("compression") {
            options.compression = compression(c)?;
        }
        let explicit_layout =
            parameters.contains_key("chunkSize") || parameters.contains_key("compression");
        let source = match req
            .volume_content_source
            .as_ref()
            .and_then(|s| s.r#type.as_ref())
        {
            None => None,
            Some(SourceType::Snapshot(s)) => {
                ids::check_field("volume_content_source.snapshot.snapshot_id", &s.snapshot_id)?;
                Some(Source::Snapshot(s.snapshot_id.clone()))
            }
            Some(SourceType::Volume(v)) => {
                ids::check_field("volume_content_source.volume.volume_id", &v.volume_id)?;
                Some(Source::Volume(v.volume_id.clone()))
            }
        };
        if let Some(req) = &req.accessibility_requirements {
            if !req.requisite.is_empty() && !req.requisite.iter().any(|t| plugin.is_this_node(t)) {
                return Err(Status::resource_exhausted(format!(
                    "the requisite topology does not include node {}; this plugin provisions \
                     only on its own node's pools",
                    plugin.node_id
                )));
            }
        }
        if pool.len() + 1 + name.len() > ids::MAX_ID {
            return Err(Status::invalid_argument(format!(
                "name {name:?} is too long: the volume id {pool}/{name} would exceed CSI's \
                 {} bytes",
                ids::MAX_ID
            )));
        }
        let description = parameters.get("description").cloned();
        Ok(Create {
            name,
            pool,
            record: VolumeRecord {
                state: RecordState::Creating,
                required_bytes,
                limit_bytes,
                parameters,
                source,
            },
            options,
            explicit_layout,
            description,
        })
    }

    /// The capacity to give a volume whose source (if any) is `source_capacity` big.
    fn capacity(&self, source_capacity: Option<u64>) -> Result<u64, Status> {
        let (required, limit) = (
            self.record.required_bytes as u64,
            self.record.limit_bytes as u64,
        );
        let floor = source_capacity.unwrap_or(0);
        let cap = if required > 0 {
            required
        } else if let Some(src) = source_capacity {
            src
        } else if limit > 0 {
            limit.min(DEFAULT_CAPACITY)
        } else {
            DEFAULT_CAPACITY
        };
        if cap < floor || (limit > 0 && limit < floor) {
            return Err(Status::out_of_range(format!(
                "the source is {floor} bytes; the new volume cannot be smaller"
            )));
        }
        Ok(cap)
    }
}

fn volume_message(
    plugin: &Plugin,
    id: &VolumeId,
    info: &VolumeInfo,
    record: Option<&VolumeRecord>,
) -> csi::Volume {
    let mut context = HashMap::from([("pool".to_string(), id.pool.clone())]);
    let mut content_source = None;
    if let Some(r) = record {
        if let Some(d) = r.parameters.get("description") {
            context.insert("description".into(), d.clone());
        }
        content_source = r.source.as_ref().map(|s| csi::VolumeContentSource {
            r#type: Some(match s {
                Source::Snapshot(id) => SourceType::Snapshot(SnapshotSource {
                    snapshot_id: id.clone(),
                }),
                Source::Volume(id) => SourceType::Volume(VolumeSource {
                    volume_id: id.clone(),
                }),
            }),
        });
    }
    csi::Volume {
        capacity_bytes: info.capacity as i64,
        volume_id: id.to_string(),
        volume_context: context,
        content_source,
        accessible_topology: vec![plugin.topology()],
    }
}

fn snapshot_message(id: &SnapshotId, info: &VolumeInfo) -> csi::Snapshot {
    csi::Snapshot {
        size_bytes: info.capacity as i64,
        snapshot_id: id.to_string(),
        source_volume_id: id.volume.to_string(),
        creation_time: Some(prost_types::Timestamp {
            seconds: info.created.secs,
            nanos: info.created.nsecs as i32,
        }),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    }
}

/// Looks up a volume id; `None` when it names nothing on this node.
fn find_volume(
    plugin: &Plugin,
    field: &str,
    id: &str,
) -> Result<Option<(VolumeId, Pool, VolumeInfo)>, Status> {
    let Parsed::Ok(vid) = ids::parse_volume_id(field, id)? else {
        return Ok(None);
    };
    let Some(pool) = plugin.pool_of(&vid).cloned() else {
        return Ok(None);
    };
    match pool.volume_info(&vid.volume) {
        Ok(info) if !info.read_only => Ok(Some((vid, pool, info))),
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(from_store(&format!("looking up volume {id}"), e)),
    }
}

fn require_volume(
    plugin: &Plugin,
    field: &str,
    id: &str,
) -> Result<(VolumeId, Pool, VolumeInfo), Status> {
    find_volume(plugin, field, id)?
        .ok_or_else(|| Status::not_found(format!("volume {id} does not exist")))
}

/// Every snapshot on this node with its id, sorted by id.
fn all_snapshots(plugin: &Plugin) -> Result<Vec<(SnapshotId, VolumeInfo)>, Status> {
    let mut out = Vec::new();
    for (pool_name, pool) in &plugin.pools {
        let snaps = pool
            .list_snapshots(None)
            .map_err(|e| from_store("listing snapshots", e))?;
        for info in snaps {
            if let Some((vol, snap)) = tessera_store::split_snapshot_name(&info.name) {
                // The store's own restore staging copies are not CSI snapshots.
                if snap.starts_with('.') {
                    continue;
                }
                out.push((
                    SnapshotId {
                        volume: VolumeId::new(pool_name, vol),
                        snapshot: snap.to_string(),
                    },
                    info,
                ));
            }
        }
    }
    out.sort_by_key(|(id, _)| id.to_string());
    Ok(out)
}

/// Pages through `items` (sorted by id) after `token`, the id that ended the previous page.
fn page<T>(
    items: Vec<(String, T)>,
    max_entries: i32,
    token: &str,
) -> Result<(Vec<T>, String), Status> {
    if max_entries < 0 {
        return Err(Status::invalid_argument("max_entries must not be negative"));
    }
    let start = if token.is_empty() {
        0
    } else {
        let Some(after) = token.strip_prefix("after:") else {
            return Err(Status::aborted(format!(
                "starting_token {token:?} was not issued by this plugin"
            )));
        };
        items.partition_point(|(id, _)| id.as_str() <= after)
    };
    let total = items.len();
    let take = if max_entries == 0 {
        usize::MAX
    } else {
        max_entries as usize
    };
    let mut next = String::new();
    let mut out = Vec::new();
    for (i, (id, item)) in items.into_iter().enumerate().skip(start) {
        if out.len() == take {
            break;
        }
        out.push(item);
        if out.len() == take && i + 1 < total {
            next = format!("after:{id}");
        }
    }
    Ok((out, next))
}

/// Creates the volume a validated request describes (the record is already `creating`).
fn provision(plugin: &Plugin, c: &Create, pool: &Pool) -> Result<VolumeInfo, Status> {
    let name = &c.name;
    let Some(source) = &c.record.source else {
        let options = VolumeOptions {
            capacity: c.capacity(None)?,
            ..c.options
        };
        return pool
            .create_volume(name, options)
            .map_err(|e| from_store(&format!("creating volume {name}"), e));
    };
    let (source_pool, store_source, what) = match source {
        Source::Snapshot(id) => match ids::parse_snapshot_id("snapshot_id", id)? {
            Parsed::Ok(s) => (
                s.volume.pool.clone(),
                s.store_name(),
                format!("snapshot {id}"),
            ),
            Parsed::Foreign => {
                return Err(Status::not_found(format!("snapshot {id} does not exist")))
            }
        },
        Source::Volume(id) => match ids::parse_volume_id("volume_id", id)? {
            Parsed::Ok(v) => (v.pool.clone(), v.volume.clone(), format!("volume {id}")),
            Parsed::Foreign => {
                return Err(Status::not_found(format!("volume {id} does not exist")))
            }
        },
    };
    if !plugin.pools.contains_key(&source_pool) {
        return Err(Status::not_found(format!("{what} does not exist")));
    }
    if source_pool != c.pool {
        return Err(Status::invalid_argument(format!(
            "{what} is in pool {source_pool}; a clone stays in its source's pool, not {}",
            c.pool
        )));
    }
    let src = match pool.volume_info(&store_source) {
        Ok(info) => info,
        Err(StoreError::NotFound(_)) => {
            return Err(Status::not_found(format!("{what} does not exist")))
        }
        Err(e) => return Err(from_store(&format!("looking up {what}"), e)),
    };
    if matches!(source, Source::Volume(_)) && src.read_only {
        return Err(Status::not_found(format!("{what} does not exist")));
    }
    if c.explicit_layout
        && (src.chunk_size != c.options.chunk_size || src.compression != c.options.compression)
    {
        return Err(Status::invalid_argument(format!(
            "a clone keeps its source's layout ({} chunks, {}); chunkSize/compression \
             parameters asking otherwise cannot be honoured",
            src.chunk_size, src.compression
        )));
    }
    let capacity = c.capacity(Some(src.capacity))?;
    // Pending writes in the kernel's page cache belong in the copy.
    if let Some(vol) = store_source.split('@').next() {
        for dir in tessera_fs::mount_points_of(vol) {
            tessera_fs::adapter::sync_mount(&dir);
        }
    }
    let info = pool
        .clone_volume(&store_source, name)
        .map_err(|e| from_store(&format!("cloning {what} into {name}"), e))?;
    if info.capacity == capacity {
        return Ok(info);
    }
    pool.resize_volume(name, capacity)
        .map_err(|e| from_store(&format!("sizing clone {name}"), e))
}

fn create_volume(plugin: &Plugin, c: Create) -> Result<csi::Volume, Status> {
    // A name is unique across this node's pools.
    for (pool_name, pool) in &plugin.pools {
        let existing = catalog::load(pool.dir(), &c.name)
            .map_err(|e| Status::unavailable(format!("reading the record of {}: {e}", c.name)))?;
        let Some(existing) = existing else { continue };
        if existing.state == RecordState::Creating {
            // A plugin stopped half-way: drop whatever it made and start over.
            match pool.delete_volume(&c.name) {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(from_store(&format!("cleaning up {}", c.name), e)),
            }
            catalog::remove(pool.dir(), &c.name)
                .map_err(|e| Status::unavailable(format!("removing record of {}: {e}", c.name)))?;
            continue;
        }
        let id = VolumeId::new(pool_name, &c.name);
        if pool_name != &c.pool || !existing.same_request(&c.record) {
            return Err(Status::already_exists(format!(
                "volume {id} exists and was created with other parameters, capacity or source"
            )));
        }
        match pool.volume_info(&c.name) {
            Ok(info) => return Ok(volume_message(plugin, &id, &info, Some(&existing))),
            Err(StoreError::NotFound(_)) => {
                // Deleted behind the plugin's back (CLI): forget the record, create anew.
                catalog::remove(pool.dir(), &c.name).map_err(|e| {
                    Status::unavailable(format!("removing record of {}: {e}", c.name))
                })?;
            }
            Err(e) => return Err(from_store(&format!("looking up {id}"), e)),
        }
    }
    let pool = plugin.pools[&c.pool].clone();
    match pool.volume_info(&c.name) {
        Ok(_) => {
            return Err(Status::already_exists(format!(
                "volume {} already exists in pool {} and was not created through CSI",
                c.name, c.pool
            )))
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(from_store(&format!("looking up {}", c.name), e)),
    }
    let io =
        |e: std::io::Error| Status::unavailable(format!("writing the record of {}: {e}", c.name));
    catalog::save(pool.dir(), &c.name, &c.record).map_err(io)?;
    let info = match provision(plugin, &c, &pool) {
        Ok(info) => info,
        Err(status) => {
            // Forget the request only once nothing of it is left; otherwise the
            // `creating` record makes the retry clean up first.
            if matches!(
                pool.delete_volume(&c.name),
                Ok(()) | Err(StoreError::NotFound(_))
            ) {
                let _ = catalog::remove(pool.dir(), &c.name);
            }
            return Err(status);
        }
    };
    let ready = VolumeRecord {
        state: RecordState::Ready,
        ..c.record.clone()
    };
    catalog::save(pool.dir(), &c.name, &ready).map_err(io)?;
    let id = VolumeId::new(&c.pool, &c.name);
    info!(volume = %id, capacity = info.capacity, description = ?c.description, "created volume");
    Ok(volume_message(plugin, &id, &info, Some(&ready)))
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<csi::CreateVolumeRequest>,
    ) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        let req = request.into_inner();
        let plugin = self.plugin.clone();
        let create = Create::parse(&plugin, &req)?;
        plugin
            .credentials
            .check(OperationKind::Provision, &req.secrets)?;
        let _guard = plugin.lock(format!("volume:{}", create.name)).await;
        let volume = blocking(move || create_volume(&plugin, create)).await?;
        Ok(Response::new(csi::CreateVolumeResponse {
            volume: Some(volume),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<csi::DeleteVolumeRequest>,
    ) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        let req = request.into_inner();
        let parsed = ids::parse_volume_id("volume_id", &req.volume_id)?;
        self.plugin
            .credentials
            .check(OperationKind::Provision, &req.secrets)?;
        let Parsed::Ok(id) = parsed else {
            return Ok(Response::new(csi::DeleteVolumeResponse {}));
        };
        let Some(pool) = self.plugin.pool_of(&id).cloned() else {
            return Ok(Response::new(csi::DeleteVolumeResponse {}));
        };
        let _guard = self.plugin.lock(format!("volume:{}", id.volume)).await;
        let plugin = self.plugin.clone();
        blocking(move || {
            if let Some(where_) = plugin.node.lock().use_of(&id.to_string()) {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is in use on node {}: {where_}; unpublish and unstage it first",
                    plugin.node_id
                )));
            }
            match pool.volume_info(&id.volume) {
                Ok(info) if info.read_only => return Ok(()),
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => {
                    return catalog::remove(pool.dir(), &id.volume)
                        .map_err(|e| Status::unavailable(format!("removing record: {e}")))
                }
                Err(e) => return Err(from_store(&format!("looking up {id}"), e)),
            }
            match pool.delete_volume(&id.volume) {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(from_store(&format!("deleting volume {id}"), e)),
            }
            catalog::remove(pool.dir(), &id.volume)
                .map_err(|e| Status::unavailable(format!("removing record of {id}: {e}")))?;
            info!(volume = %id, "deleted volume");
            Ok(())
        })
        .await?;
        Ok(Response::new(csi::DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        request: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerPublishVolumeResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("node_id", &req.node_id)?;
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        check_capability(cap, CapCheck::Controller)?;
        ids::check_field("volume_id", &req.volume_id)?;
        self.plugin
            .credentials
            .check(OperationKind::ControllerPublish, &req.secrets)?;
        let plugin = self.plugin.clone();
        blocking(move || {
            require_volume(&plugin, "volume_id", &req.volume_id)?;
            if req.node_id != plugin.node_id {
                return Err(Status::not_found(format!(
                    "node {} is not served by this plugin (node {}); a Tessera volume is \
                     reachable only on its own node",
                    req.node_id, plugin.node_id
                )));
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(csi::ControllerPublishVolumeResponse {
            publish_context: HashMap::new(),
        }))
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("volume_id", &req.volume_id)?;
        self.plugin
            .credentials
            .check(OperationKind::ControllerPublish, &req.secrets)?;
        // Nothing is attached, so there is nothing to undo, even for a volume that is
        // gone (the spec asks for OK then).
        Ok(Response::new(csi::ControllerUnpublishVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<csi::ValidateVolumeCapabilitiesResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("volume_id", &req.volume_id)?;
        if req.volume_capabilities.is_empty() {
            return Err(Status::invalid_argument("volume_capabilities is required"));
        }
        let plugin = self.plugin.clone();
        let id = req.volume_id.clone();
        blocking(move || require_volume(&plugin, "volume_id", &id).map(|_| ())).await?;
        let unsupported = req
            .volume_capabilities
            .iter()
            .find_map(|c| check_capability(c, CapCheck::Controller).err());
        Ok(Response::new(match unsupported {
            Some(status) => csi::ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: status.message().to_string(),
            },
            None => csi::ValidateVolumeCapabilitiesResponse {
                confirmed: Some(csi::validate_volume_capabilities_response::Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                    mutable_parameters: HashMap::new(),
                }),
                message: String::new(),
            },
        }))
    }

    async fn list_volumes(
        &self,
        request: Request<csi::ListVolumesRequest>,
    ) -> Result<Response<csi::ListVolumesResponse>, Status> {
        let req = request.into_inner();
        let plugin = self.plugin.clone();
        let items = blocking(move || {
            let mut items = Vec::new();
            for (pool_name, pool) in &plugin.pools {
                let vols = pool
                    .list_volumes()
                    .map_err(|e| from_store("listing volumes", e))?;
                for info in vols.into_iter().filter(|v| !v.read_only) {
                    let id = VolumeId::new(pool_name, &info.name);
                    let record = catalog::load(pool.dir(), &info.name).ok().flatten();
                    let volume = volume_message(&plugin, &id, &info, record.as_ref());
                    items.push((id.to_string(), volume));
                }
            }
            items.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(items)
        })
        .await?;
        let (volumes, next_token) = page(items, req.max_entries, &req.starting_token)?;
        Ok(Response::new(csi::ListVolumesResponse {
            entries: volumes
                .into_iter()
                .map(|v| csi::list_volumes_response::Entry {
                    volume: Some(v),
                    status: None,
                })
                .collect(),
            next_token,
        }))
    }

    async fn get_capacity(
        &self,
        request: Request<csi::GetCapacityRequest>,
    ) -> Result<Response<csi::GetCapacityResponse>, Status> {
        let req = request.into_inner();
        let params = tessera_parameters(&req.parameters)?;
        let pool_name = params
            .get("pool")
            .cloned()
            .unwrap_or_else(|| DEFAULT_POOL.to_string());
        let Some(pool) = self.plugin.pools.get(&pool_name) else {
            return Err(Status::invalid_argument(format!(
                "parameter pool {pool_name:?} is not served by node {}",
                self.plugin.node_id
            )));
        };
        let elsewhere = req
            .accessible_topology
            .as_ref()
            .is_some_and(|t| !self.plugin.is_this_node(t));
        let unsupported = req
            .volume_capabilities
            .iter()
            .any(|c| check_capability(c, CapCheck::Controller).is_err());
        let available = if elsewhere || unsupported {
            0
        } else {
            let st = nix::sys::statvfs::statvfs(pool.dir()).map_err(|e| {
                Status::unavailable(format!("statvfs {}: {e}", pool.dir().display()))
            })?;
            (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64)
        };
        Ok(Response::new(csi::GetCapacityResponse {
            available_capacity: i64::try_from(available).unwrap_or(i64::MAX),
            maximum_volume_size: None,
            minimum_volume_size: None,
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<csi::ControllerGetCapabilitiesResponse>, Status> {
        let caps = [
            Cap::CreateDeleteVolume,
            Cap::CreateDeleteSnapshot,
            Cap::ListSnapshots,
            Cap::CloneVolume,
            Cap::ExpandVolume,
            Cap::ListVolumes,
            Cap::GetCapacity,
            Cap::SingleNodeMultiWriter,
        ];
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse {
            capabilities: caps
                .into_iter()
                .map(|c| csi::ControllerServiceCapability {
                    r#type: Some(csi::controller_service_capability::Type::Rpc(
                        csi::controller_service_capability::Rpc { r#type: c as i32 },
                    )),
                })
                .collect(),
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<csi::CreateSnapshotRequest>,
    ) -> Result<Response<csi::CreateSnapshotResponse>, Status> {
        let req = request.into_inner();
        let name = ids::object_name("name", &req.name)?;
        ids::check_field("source_volume_id", &req.source_volume_id)?;
        self.plugin
            .credentials
            .check(OperationKind::Snapshot, &req.secrets)?;
        let _guard = self.plugin.lock(format!("snapshot:{name}")).await;
        let plugin = self.plugin.clone();
        let snapshot = blocking(move || {
            if let Some((id, info)) = all_snapshots(&plugin)?
                .into_iter()
                .find(|(id, _)| id.snapshot == name)
            {
                if id.volume.to_string() == req.source_volume_id {
                    return Ok(snapshot_message(&id, &info));
                }
                return Err(Status::already_exists(format!(
                    "snapshot {name} exists, taken of volume {}",
                    id.volume
                )));
            }
            let (vid, pool, _) =
                require_volume(&plugin, "source_volume_id", &req.source_volume_id)?;
            for dir in tessera_fs::mount_points_of(&vid.volume) {
                tessera_fs::adapter::sync_mount(&dir);
            }
            let info = pool
                .create_snapshot(&vid.volume, &name)
                .map_err(|e| from_store(&format!("snapshotting {vid}"), e))?;
            let id = SnapshotId {
                volume: vid,
                snapshot: name,
            };
            info!(snapshot = %id, "created snapshot");
            Ok(snapshot_message(&id, &info))
        })
        .await?;
        Ok(Response::new(csi::CreateSnapshotResponse {
            snapshot: Some(snapshot),
        }))
    }

    async fn delete_snapshot(
        &self,
        request: Request<csi::DeleteSnapshotRequest>,
    ) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        let req = request.into_inner();
        let parsed = ids::parse_snapshot_id("snapshot_id", &req.snapshot_id)?;
        self.plugin
            .credentials
            .check(OperationKind::Snapshot, &req.secrets)?;
        let Parsed::Ok(id) = parsed else {
            return Ok(Response::new(csi::DeleteSnapshotResponse {}));
        };
        let Some(pool) = self.plugin.pool_of(&id.volume).cloned() else {
            return Ok(Response::new(csi::DeleteSnapshotResponse {}));
        };
        let _guard = self.plugin.lock(format!("snapshot:{}", id.snapshot)).await;
        blocking(move || match pool.delete_volume(&id.store_name()) {
            Ok(()) => {
                info!(snapshot = %id, "deleted snapshot");
                Ok(())
            }
            Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(from_store(&format!("deleting snapshot {id}"), e)),
        })
        .await?;
        Ok(Response::new(csi::DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        request: Request<csi::ListSnapshotsRequest>,
    ) -> Result<Response<csi::ListSnapshotsResponse>, Status> {
        let req = request.into_inner();
        let plugin = self.plugin.clone();
        let (max, token) = (req.max_entries, req.starting_token.clone());
        let items = blocking(move || {
            let mut snaps = all_snapshots(&plugin)?;
            if !req.snapshot_id.is_empty() {
                snaps.retain(|(id, _)| id.to_string() == req.snapshot_id);
            }
            if !req.source_volume_id.is_empty() {
                snaps.retain(|(id, _)| id.volume.to_string() == req.source_volume_id);
            }
            Ok(snaps
                .into_iter()
                .map(|(id, info)| (id.to_string(), snapshot_message(&id, &info)))
                .collect::<Vec<_>>())
        })
        .await?;
        let (snapshots, next_token) = page(items, max, &token)?;
        Ok(Response::new(csi::ListSnapshotsResponse {
            entries: snapshots
                .into_iter()
                .map(|s| csi::list_snapshots_response::Entry { snapshot: Some(s) })
                .collect(),
            next_token,
        }))
    }

    async fn controller_expand_volume(
        &self,
        request: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Result<Response<csi::ControllerExpandVolumeResponse>, Status> {
        let req = request.into_inner();
        ids::check_field("volume_id", &req.volume_id)?;
        let range = req
            .capacity_range
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("capacity_range is required"))?;
        let (required, limit) = capacity_range(Some(range))?;
        if let Some(cap) = &req.volume_capability {
            check_capability(cap, CapCheck::Controller)?;
        }
        self.plugin
            .credentials
            .check(OperationKind::Expand, &req.secrets)?;
        let plugin = self.plugin.clone();
        let capacity = blocking(move || expand(&plugin, &req.volume_id, required, limit)).await?;
        Ok(Response::new(csi::ControllerExpandVolumeResponse {
            capacity_bytes: capacity as i64,
            // The quota is the whole story: a FUSE mount sees the new size at once.
            node_expansion_required: false,
        }))
    }

    async fn controller_get_volume(
        &self,
        _request: Request<csi::ControllerGetVolumeRequest>,
    ) -> Result<Response<csi::ControllerGetVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "ControllerGetVolume is not supported (GET_VOLUME is not advertised); use \
             ListVolumes or NodeGetVolumeStats",
        ))
    }

    async fn controller_modify_volume(
        &self,
        _request: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Result<Response<csi::ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "ControllerModifyVolume (alpha) is not supported: a volume's chunk size and \
             compression are fixed at creation",
        ))
    }
}

/// Grows a volume's quota to at least `required` bytes (never shrinks it).
pub fn expand(plugin: &Plugin, volume_id: &str, required: i64, limit: i64) -> Result<u64, Status> {
    let (id, pool, info) = require_volume(plugin, "volume_id", volume_id)?;
    let want = if required > 0 { required } else { limit } as u64;
    if limit > 0 && (limit as u64) < info.capacity {
        return Err(Status::out_of_range(format!(
            "volume {id} is already {} bytes, above the limit of {limit}; volumes do not shrink",
            info.capacity
        )));
    }
    if want <= info.capacity {
        return Ok(info.capacity);
    }
    let info = pool
        .resize_volume(&id.volume, want)
        .map_err(|e| from_store(&format!("expanding {id}"), e))?;
    info!(volume = %id, capacity = info.capacity, "expanded volume");
    Ok(info.capacity)
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn paging() {
        let items: Vec<(String, u32)> = (0..5).map(|i| (format!("p/v{i}"), i)).collect();
        let (a, t) = page(items.clone(), 2, "").unwrap();
        assert_eq!(a, vec![0, 1]);
        let (b, t) = page(items.clone(), 2, &t).unwrap();
        assert_eq!(b, vec![2, 3]);
        let (c, t) = page(items.clone(), 2, &t).unwrap();
        assert_eq!((c, t.as_str()), (vec![4], ""));
        assert_eq!(page(items.clone(), 0, "").unwrap().0.len(), 5);
        assert_eq!(
            page(items.clone(), 1, "garbage").unwrap_err().code(),
            tonic::Code::Aborted
        );
        assert_eq!(
            page(items, -1, "").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
