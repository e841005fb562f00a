//! The CSI plugin, driven the way the kubelet and the sidecars drive it: `tessera csi`
//! runs as a child process, and the tests call it over its real unix socket. Staging
//! makes a real FUSE mount, publishing real bind mounts, and "pods" are child processes
//! reading and writing through the target paths.
//!
//! Every call that changes something is made twice, to check it is idempotent.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{check_prereqs, find_mounts, force_unmount, wait_timeout, BIN, MIB};
use tessera_proto::csi::v1 as csi;
use tessera_proto::csi::v1::controller_client::ControllerClient;
use tessera_proto::csi::v1::identity_client::IdentityClient;
use tessera_proto::csi::v1::node_client::NodeClient;
use tessera_proto::csi::v1::volume_capability::access_mode::Mode;
use tonic::transport::Channel;
use tonic::{Code, Status};

const NODE: &str = "node-1";

/// A plugin process on a temporary pool and kubelet directory.
struct Plugin {
    base: tempfile::TempDir,
    child: Option<Child>,
    credentials: Option<PathBuf>,
    rt: tokio::runtime::Runtime,
    identity: Option<IdentityClient<Channel>>,
    controller: Option<ControllerClient<Channel>>,
    node: Option<NodeClient<Channel>>,
}

impl Plugin {
    fn start() -> Plugin {
        Plugin::start_with(None)
    }

    fn start_with(credentials: Option<&str>) -> Plugin {
        check_prereqs();
        let base = tempfile::Builder::new()
            .prefix("tessera-csi-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::create_dir_all(base.path().join("kubelet/pods")).unwrap();
        let credentials = credentials.map(|text| {
            let p = base.path().join("credentials.json");
            std::fs::write(&p, text).unwrap();
            p
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut p = Plugin {
            base,
            child: None,
            credentials,
            rt,
            identity: None,
            controller: None,
            node: None,
        };
        p.spawn();
        p
    }

    fn data(&self) -> PathBuf {
        self.base.path().join("data")
    }
    fn kubelet(&self) -> PathBuf {
        self.base.path().join("kubelet")
    }
    fn socket(&self) -> PathBuf {
        self.base.path().join("plugin/csi.sock")
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.base.path().join("plugin.log")).unwrap_or_default()
    }

    /// Where the kubelet stages a volume, and where it publishes it for pod `pod`.
    fn staging(&self, vol: &str) -> String {
        let p = self.kubelet().join(format!(
            "plugins/kubernetes.io/csi/csi.tessera.io/{vol}/globalmount"
        ));
        std::fs::create_dir_all(&p).unwrap();
        p.display().to_string()
    }
    fn target(&self, pod: &str, vol: &str) -> String {
        let parent = self
            .kubelet()
            .join(format!("pods/{pod}/volumes/kubernetes.io~csi/{vol}"));
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("mount").display().to_string()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.base.path().join("plugin.log"))
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(self.data())
            .arg("csi")
            .arg(format!("--endpoint=unix://{}", self.socket().display()))
            .arg(format!("--node-id={NODE}"))
            .arg("--kubelet-dir")
            .arg(self.kubelet())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(c) = &self.credentials {
            cmd.arg("--credentials-file").arg(c);
        }
        self.child = Some(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        let socket = self.socket();
        let channel = loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("plugin exited with {status}:\n{}", self.log());
            }
            if socket.exists() {
                let path = socket.clone();
                let connected = self.rt.block_on(async move {
                    tonic::transport::Endpoint::try_from("http://csi.plugin")?
                        .connect_with_connector(tower::service_fn(
                            move |_: tonic::transport::Uri| {
                                let path = path.clone();
                                async move {
                                    let s = tokio::net::UnixStream::connect(path).await?;
                                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                                }
                            },
                        ))
                        .await
                });
                if let Ok(ch) = connected {
                    break ch;
                }
            }
            assert!(
                Instant::now() < deadline,
                "plugin socket did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.identity = Some(IdentityClient::new(channel.clone()));
        self.controller = Some(ControllerClient::new(channel.clone()));
        self.node = Some(NodeClient::new(channel));
    }

    /// SIGKILL: the FUSE sessions die with the process and their mounts go dead.
    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    /// SIGTERM, and a clean exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let status = wait_timeout(&mut child, Duration::from_secs(60));
            match status {
                Some(s) => assert!(s.success(), "plugin exited with {s}:\n{}", self.log()),
                None => {
                    let _ = child.kill();
                    panic!("plugin did not stop on SIGTERM:\n{}", self.log());
                }
            }
        }
    }

    fn call<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.rt.block_on(f()).map(|r| r.into_inner())
    }

    fn identity(&self) -> IdentityClient<Channel> {
        self.identity.clone().unwrap()
    }
    fn ctl(&self) -> ControllerClient<Channel> {
        self.controller.clone().unwrap()
    }
    fn node(&self) -> NodeClient<Channel> {
        self.node.clone().unwrap()
    }

    fn create(&self, req: csi::CreateVolumeRequest) -> Result<csi::Volume, Status> {
        let mut c = self.ctl();
        self.call(|| async move { c.create_volume(req).await })
            .map(|r| r.volume.unwrap())
    }
    fn delete(&self, id: &str, secrets: &Secrets) -> Result<(), Status> {
        let mut c = self.ctl();
        let req = csi::DeleteVolumeRequest {
            volume_id: id.into(),
            secrets: secrets.clone(),
        };
        self.call(|| async move { c.delete_volume(req).await })
            .map(drop)
    }
    fn stage(&self, id: &str, staging: &str, secrets: &Secrets) -> Result<(), Status> {
        self.stage_cap(id, staging, secrets, cap(Mode::SingleNodeMultiWriter))
    }
    fn stage_cap(
        &self,
        id: &str,
        staging: &str,
        secrets: &Secrets,
        capability: csi::VolumeCapability,
    ) -> Result<(), Status> {
        let mut n = self.node();
        let req = csi::NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.into(),
            volume_capability: Some(capability),
            secrets: secrets.clone(),
            ..Default::default()
        };
        self.call(|| async move { n.node_stage_volume(req).await })
            .map(drop)
    }
    fn unstage(&self, id: &str, staging: &str) -> Result<(), Status> {
        let mut n = self.node();
        let req = csi::NodeUnstageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.into(),
        };
        self.call(|| async move { n.node_unstage_volume(req).await })
            .map(drop)
    }
    /// As the kubelet publishes a ReadWriteOnce volume of a driver with
    /// SINGLE_NODE_MULTI_WRITER.
    fn publish(
        &self,
        id: &str,
        staging: &str,
        target: &str,
        readonly: bool,
        secrets: &Secrets,
    ) -> Result<(), Status> {
        self.publish_mode(
            id,
            staging,
            target,
            readonly,
            secrets,
            Mode::SingleNodeMultiWriter,
        )
    }
    fn publish_mode(
        &self,
        id: &str,
        staging: &str,
        target: &str,
        readonly: bool,
        secrets: &Secrets,
        mode: Mode,
    ) -> Result<(), Status> {
        let mut n = self.node();
        let req = csi::NodePublishVolumeRequest {
            volume_id: id.into(),
            staging_target_path: staging.into(),
            target_path: target.into(),
            volume_capability: Some(cap(mode)),
            readonly,
            secrets: secrets.clone(),
            ..Default::default()
        };
        self.call(|| async move { n.node_publish_volume(req).await })
            .map(drop)
    }
    fn unpublish(&self, id: &str, target: &str) -> Result<(), Status> {
        let mut n = self.node();
        let req = csi::NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.into(),
        };
        self.call(|| async move { n.node_unpublish_volume(req).await })
            .map(drop)
    }
    fn stats(&self, id: &str, path: &str) -> Result<csi::NodeGetVolumeStatsResponse, Status> {
        let mut n = self.node();
        let req = csi::NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            staging_target_path: String::new(),
        };
        self.call(|| async move { n.node_get_volume_stats(req).await })
    }
    fn expand(&self, id: &str, bytes: u64, secrets: &Secrets) -> Result<i64, Status> {
        let mut c = self.ctl();
        let req = csi::ControllerExpandVolumeRequest {
            volume_id: id.into(),
            capacity_range: Some(range(bytes)),
            secrets: secrets.clone(),
            volume_capability: Some(cap(Mode::SingleNodeWriter)),
        };
        self.call(|| async move { c.controller_expand_volume(req).await })
            .map(|r| r.capacity_bytes)
    }
    fn node_expand(
        &self,
        id: &str,
        path: &str,
        bytes: u64,
        secrets: &Secrets,
    ) -> Result<i64, Status> {
        let mut n = self.node();
        let req = csi::NodeExpandVolumeRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            capacity_range: Some(range(bytes)),
            secrets: secrets.clone(),
            ..Default::default()
        };
        self.call(|| async move { n.node_expand_volume(req).await })
            .map(|r| r.capacity_bytes)
    }
    fn snapshot(
        &self,
        source: &str,
        name: &str,
        secrets: &Secrets,
    ) -> Result<csi::Snapshot, Status> {
        let mut c = self.ctl();
        let req = csi::CreateSnapshotRequest {
            source_volume_id: source.into(),
            name: name.into(),
            secrets: secrets.clone(),
            parameters: HashMap::new(),
        };
        self.call(|| async move { c.create_snapshot(req).await })
            .map(|r| r.snapshot.unwrap())
    }
    fn delete_snapshot(&self, id: &str, secrets: &Secrets) -> Result<(), Status> {
        let mut c = self.ctl();
        let req = csi::DeleteSnapshotRequest {
            snapshot_id: id.into(),
            secrets: secrets.clone(),
        };
        self.call(|| async move { c.delete_snapshot(req).await })
            .map(drop)
    }
    fn list_snapshots(
        &self,
        req: csi::ListSnapshotsRequest,
    ) -> Result<csi::ListSnapshotsResponse, Status> {
        let mut c = self.ctl();
        self.call(|| async move { c.list_snapshots(req).await })
    }
    fn list_volumes(&self, max: i32, token: &str) -> Result<csi::ListVolumesResponse, Status> {
        let mut c = self.ctl();
        let req = csi::ListVolumesRequest {
            max_entries: max,
            starting_token: token.into(),
        };
        self.call(|| async move { c.list_volumes(req).await })
    }
    fn volume_ids(&self) -> Vec<String> {
        self.list_volumes(0, "")
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.volume.unwrap().volume_id)
            .collect()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Leave no mount behind, deepest first (bind mounts on top of FUSE mounts).
        let base = self.base.path().to_path_buf();
        let mut points: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
            .filter(|p| p.starts_with(&base))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            force_unmount(&p);
        }
    }
}

type Secrets = HashMap<String, String>;

fn no_secrets() -> Secrets {
    HashMap::new()
}

fn cap(mode: Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(
            csi::volume_capability::MountVolume {
                fs_type: String::new(),
                mount_flags: vec![],
                volume_mount_group: String::new(),
            },
        )),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

fn range(bytes: u64) -> csi::CapacityRange {
    csi::CapacityRange {
        required_bytes: bytes as i64,
        limit_bytes: 0,
    }
}

fn create_req(name: &str, bytes: u64) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(range(bytes)),
        volume_capabilities: vec![cap(Mode::SingleNodeWriter)],
        parameters: HashMap::from([("description".to_string(), "test volume".to_string())]),
        ..Default::default()
    }
}

fn from_snapshot(mut req: csi::CreateVolumeRequest, snapshot_id: &str) -> csi::CreateVolumeRequest {
    req.volume_content_source = Some(csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Snapshot(
            csi::volume_content_source::SnapshotSource {
                snapshot_id: snapshot_id.into(),
            },
        )),
    });
    req
}

fn from_volume(mut req: csi::CreateVolumeRequest, volume_id: &str) -> csi::CreateVolumeRequest {
    req.volume_content_source = Some(csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Volume(
            csi::volume_content_source::VolumeSource {
                volume_id: volume_id.into(),
            },
        )),
    });
    req
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {}", s.message());
            assert!(!s.message().is_empty(), "{what}: status without a message");
        }
    }
}

/// A "pod": a shell run as a separate process, as a container would.
fn pod(script: &str) -> (bool, String) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn is_fuse_mount(path: &str) -> bool {
    find_mounts(Path::new(path))
        .last()
        .is_some_and(|m| m.fstype == "fuse.tessera")
}

fn is_mounted(path: &str) -> bool {
    !find_mounts(Path::new(path)).is_empty()
}

fn read(path: &str) -> String {
    let mut s = String::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

#[test]
fn identity_reports_the_driver() {
    let p = Plugin::start();
    let mut i = p.identity();
    let info = p
        .call(|| async move { i.get_plugin_info(csi::GetPluginInfoRequest {}).await })
        .unwrap();
    assert_eq!(info.name, tessera_csi::DRIVER_NAME);
    assert!(!info.vendor_version.is_empty());
    let mut i = p.identity();
    let caps = p
        .call(|| async move {
            i.get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
                .await
        })
        .unwrap();
    use csi::plugin_capability::{service, volume_expansion, Type as PluginCap};
    let mut services = Vec::new();
    let mut expansion = Vec::new();
    for c in caps.capabilities {
        match c.r#type.unwrap() {
            PluginCap::Service(s) => services.push(s.r#type),
            PluginCap::VolumeExpansion(e) => expansion.push(e.r#type),
        }
    }
    services.sort();
    assert_eq!(
        services,
        vec![
            service::Type::ControllerService as i32,
            service::Type::VolumeAccessibilityConstraints as i32
        ]
    );
    assert_eq!(expansion, vec![volume_expansion::Type::Online as i32]);
    let mut i = p.identity();
    let probe = p
        .call(|| async move { i.probe(csi::ProbeRequest {}).await })
        .unwrap();
    assert_eq!(probe.ready, Some(true));
    let mut n = p.node();
    let info = p
        .call(|| async move { n.node_get_info(csi::NodeGetInfoRequest {}).await })
        .unwrap();
    assert_eq!(info.node_id, NODE);
    assert_eq!(
        info.accessible_topology.unwrap().segments[tessera_csi::TOPOLOGY_KEY],
        NODE
    );
    let mut n = p.node();
    let caps = p
        .call(|| async move {
            n.node_get_capabilities(csi::NodeGetCapabilitiesRequest {})
                .await
        })
        .unwrap();
    use csi::node_service_capability::rpc::Type as NodeCap;
    assert_same_set(
        caps.capabilities
            .into_iter()
            .map(|c| match c.r#type.unwrap() {
                csi::node_service_capability::Type::Rpc(r) => r.r#type,
            })
            .collect(),
        [
            NodeCap::StageUnstageVolume,
            NodeCap::GetVolumeStats,
            NodeCap::ExpandVolume,
            NodeCap::VolumeCondition,
            NodeCap::SingleNodeMultiWriter,
        ]
        .map(|c| c as i32)
        .to_vec(),
    );
    let mut c = p.ctl();
    let caps = p
        .call(|| async move {
            c.controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
                .await
        })
        .unwrap();
    use csi::controller_service_capability::rpc::Type as Ctl;
    assert_same_set(
        caps.capabilities
            .into_iter()
            .map(|c| match c.r#type.unwrap() {
                csi::controller_service_capability::Type::Rpc(r) => r.r#type,
            })
            .collect(),
        [
            Ctl::CreateDeleteVolume,
            Ctl::CreateDeleteSnapshot,
            Ctl::ListSnapshots,
            Ctl::CloneVolume,
            Ctl::ExpandVolume,
            Ctl::ListVolumes,
            Ctl::GetCapacity,
            Ctl::SingleNodeMultiWriter,
        ]
        .map(|c| c as i32)
        .to_vec(),
    );
}

#[track_caller]
fn assert_same_set(mut got: Vec<i32>, mut want: Vec<i32>) {
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn kubelet_lifecycle_with_snapshot_and_clones() {
    let p = Plugin::start();
    let none = no_secrets();

    // Create (twice: same volume), and a different request for the same name.
    let vol = p.create(create_req("pvc-life", 64 * MIB)).unwrap();
    assert_eq!(p.create(create_req("pvc-life", 64 * MIB)).unwrap(), vol);
    assert_eq!(vol.capacity_bytes, 64 * MIB as i64);
    assert_eq!(
        vol.accessible_topology[0].segments[tessera_csi::TOPOLOGY_KEY],
        NODE
    );
    assert_code(
        p.create(create_req("pvc-life", 32 * MIB)),
        Code::AlreadyExists,
        "same name, other capacity",
    );
    let id = vol.volume_id.clone();

    // Stage: a real FUSE mount.
    let staging = p.staging("pvc-life");
    p.stage(&id, &staging, &none).unwrap();
    p.stage(&id, &staging, &none).unwrap();
    assert!(is_fuse_mount(&staging), "staging is not a tessera mount");
    assert_eq!(
        find_mounts(Path::new(&staging)).len(),
        1,
        "stage twice mounted twice"
    );

    // Publish twice: one read-write, one read-only target; each call twice.
    let rw = p.target("pod-a", "pvc-life");
    let ro = p.target("pod-b", "pvc-life");
    for _ in 0..2 {
        p.publish(&id, &staging, &rw, false, &none).unwrap();
        p.publish(&id, &staging, &ro, true, &none).unwrap();
    }
    assert_eq!(find_mounts(Path::new(&rw)).len(), 1);
    assert!(find_mounts(Path::new(&ro))[0]
        .options
        .split(',')
        .any(|o| o == "ro"));

    // Pods write and read through the targets.
    let (ok, out) = pod(&format!(
        "set -e; mkdir {rw}/data; echo hello > {rw}/data/greeting; sync; cat {rw}/data/greeting"
    ));
    assert!(ok, "pod a: {out}");
    assert_eq!(out, "hello\n");
    let (ok, out) = pod(&format!("cat {ro}/data/greeting"));
    assert!(ok && out == "hello\n", "pod b reads: {out}");
    let (ok, out) = pod(&format!("echo nope > {ro}/data/other"));
    assert!(
        !ok && out.contains("Read-only"),
        "pod b must not write: {out}"
    );
    let (ok, out) = pod(&format!(
        "head -c 3000000 /dev/urandom > {rw}/data/blob && sync"
    ));
    assert!(ok, "{out}");

    // Stats.
    let stats = p.stats(&id, &rw).unwrap();
    let bytes = stats
        .usage
        .iter()
        .find(|u| u.unit == csi::volume_usage::Unit::Bytes as i32)
        .unwrap();
    assert_eq!(bytes.total, 64 * MIB as i64);
    assert!(bytes.used >= 3_000_000, "{bytes:?}");
    assert!(!stats.volume_condition.unwrap().abnormal);

    // Expand (controller, then node), twice each.
    for _ in 0..2 {
        assert_eq!(p.expand(&id, 128 * MIB, &none).unwrap(), 128 * MIB as i64);
        assert_eq!(
            p.node_expand(&id, &rw, 128 * MIB, &none).unwrap(),
            128 * MIB as i64
        );
    }
    let st = nix::sys::statvfs::statvfs(Path::new(&rw)).unwrap();
    assert_eq!(
        st.blocks() as u64 * st.fragment_size() as u64,
        128 * MIB,
        "the mount sees the new size"
    );

    // Snapshot (twice), then change the volume.
    let snap = p.snapshot(&id, "snap-life", &none).unwrap();
    assert_eq!(
        p.snapshot(&id, "snap-life", &none).unwrap().snapshot_id,
        snap.snapshot_id
    );
    assert!(snap.ready_to_use);
    assert_eq!(snap.source_volume_id, id);
    assert_eq!(snap.size_bytes, 128 * MIB as i64);
    assert!(snap.creation_time.is_some());
    let listed = p
        .list_snapshots(csi::ListSnapshotsRequest {
            source_volume_id: id.clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(listed.entries.len(), 1);
    let (ok, out) = pod(&format!("echo changed > {rw}/data/greeting && sync"));
    assert!(ok, "{out}");

    // A clone of the snapshot sees the old content; a clone of the volume the new.
    let clone_req = from_snapshot(create_req("pvc-from-snap", 128 * MIB), &snap.snapshot_id);
    let clone = p.create(clone_req.clone()).unwrap();
    assert_eq!(p.create(clone_req).unwrap(), clone);
    assert!(clone.content_source.is_some());
    let copy_req = from_volume(create_req("pvc-from-vol", 128 * MIB), &id);
    let copy = p.create(copy_req.clone()).unwrap();
    assert_eq!(p.create(copy_req).unwrap(), copy);
    assert_code(
        p.create(from_snapshot(
            create_req("pvc-small", 16 * MIB),
            &snap.snapshot_id,
        )),
        Code::OutOfRange,
        "a clone smaller than its snapshot",
    );

    for (v, want) in [(&clone, "hello\n"), (&copy, "changed\n")] {
        let name = v.volume_id.split('/').nth(1).unwrap().to_string();
        let staging = p.staging(&name);
        let target = p.target("pod-c", &name);
        for _ in 0..2 {
            p.stage(&v.volume_id, &staging, &none).unwrap();
            p.publish(&v.volume_id, &staging, &target, false, &none)
                .unwrap();
        }
        assert_eq!(read(&format!("{target}/data/greeting")), want, "{name}");
        assert_eq!(
            std::fs::metadata(format!("{target}/data/blob"))
                .unwrap()
                .len(),
            3_000_000
        );
        for _ in 0..2 {
            p.unpublish(&v.volume_id, &target).unwrap();
        }
        assert!(!Path::new(&target).exists(), "unpublish leaves the target");
        for _ in 0..2 {
            p.unstage(&v.volume_id, &staging).unwrap();
        }
        assert!(!is_mounted(&staging));
        for _ in 0..2 {
            p.delete(&v.volume_id, &none).unwrap();
        }
    }

    // A staged volume cannot be deleted; unstaging comes after unpublishing.
    assert_code(
        p.delete(&id, &none),
        Code::FailedPrecondition,
        "delete while staged",
    );
    assert_code(
        p.unstage(&id, &staging),
        Code::FailedPrecondition,
        "unstage while published",
    );

    for _ in 0..2 {
        p.unpublish(&id, &rw).unwrap();
        p.unpublish(&id, &ro).unwrap();
    }
    assert!(!is_mounted(&rw) && !is_mounted(&ro));
    for _ in 0..2 {
        p.unstage(&id, &staging).unwrap();
    }
    assert!(!is_mounted(&staging));
    for _ in 0..2 {
        p.delete(&id, &none).unwrap();
        p.delete_snapshot(&snap.snapshot_id, &none).unwrap();
    }
    assert!(p.volume_ids().is_empty(), "{:?}", p.volume_ids());
    assert!(p
        .list_snapshots(csi::ListSnapshotsRequest::default())
        .unwrap()
        .entries
        .is_empty());
    p.stop_check();
}

impl Plugin {
    /// A clean SIGTERM shutdown, then the pool is consistent.
    fn stop_check(mut self) {
        self.stop();
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(self.data())
            .arg("fsck")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fsck after the plugin: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bad_requests_get_the_status_the_spec_names() {
    let p = Plugin::start();
    let none = no_secrets();
    let mut req = create_req("", MIB);
    assert_code(p.create(req.clone()), Code::InvalidArgument, "no name");
    req.name = "Bad Name!".into();
    assert_code(
        p.create(req.clone()),
        Code::InvalidArgument,
        "unusable name",
    );
    req.name = "pvc-bad".into();
    req.volume_capabilities.clear();
    assert_code(
        p.create(req.clone()),
        Code::InvalidArgument,
        "no capabilities",
    );
    let mut block = create_req("pvc-bad", MIB);
    block.volume_capabilities[0].access_type = Some(csi::volume_capability::AccessType::Block(
        csi::volume_capability::BlockVolume {},
    ));
    assert_code(p.create(block), Code::InvalidArgument, "block volume");
    let mut rwx = create_req("pvc-bad", MIB);
    rwx.volume_capabilities = vec![cap(Mode::MultiNodeMultiWriter)];
    assert_code(p.create(rwx), Code::InvalidArgument, "multi-node writer");
    for (k, v) in [
        ("colour", "blue"),
        ("chunkSize", "3Mi"),
        ("compression", "gzip"),
        ("pool", "elsewhere"),
    ] {
        let mut r = create_req("pvc-bad", MIB);
        r.parameters.insert(k.into(), v.into());
        assert_code(
            p.create(r),
            Code::InvalidArgument,
            &format!("parameter {k}={v}"),
        );
    }
    let mut r = create_req("pvc-bad", MIB);
    r.capacity_range = Some(csi::CapacityRange {
        required_bytes: 10 * MIB as i64,
        limit_bytes: MIB as i64,
    });
    assert_code(p.create(r), Code::OutOfRange, "required above limit");
    let mut r = create_req("pvc-bad", MIB);
    r.capacity_range = Some(csi::CapacityRange {
        required_bytes: -1,
        limit_bytes: 0,
    });
    assert_code(p.create(r), Code::InvalidArgument, "negative capacity");
    let mut r = create_req("pvc-bad", MIB);
    r.accessibility_requirements = Some(csi::TopologyRequirement {
        requisite: vec![csi::Topology {
            segments: HashMap::from([(
                tessera_csi::TOPOLOGY_KEY.to_string(),
                "node-9".to_string(),
            )]),
        }],
        preferred: vec![],
    });
    assert_code(
        p.create(r),
        Code::ResourceExhausted,
        "another node's topology",
    );
    assert_code(
        p.create(from_snapshot(
            create_req("pvc-bad", MIB),
            "default/nope@gone",
        )),
        Code::NotFound,
        "clone of a missing snapshot",
    );
    assert_code(
        p.create(from_volume(create_req("pvc-bad", MIB), "default/nope")),
        Code::NotFound,
        "clone of a missing volume",
    );
    assert!(p.volume_ids().is_empty(), "a failed create left a volume");

    let vol = p.create(create_req("pvc-ok", 8 * MIB)).unwrap();
    let id = vol.volume_id.as_str();
    let staging = p.staging("pvc-ok");
    let outside = p.base.path().join("elsewhere").display().to_string();
    std::fs::create_dir_all(&outside).unwrap();
    assert_code(
        p.stage("default/missing", &staging, &none),
        Code::NotFound,
        "stage unknown",
    );
    assert_code(
        p.stage("reallyfakevolumeid", &staging, &none),
        Code::NotFound,
        "stage foreign id",
    );
    assert_code(
        p.stage("", &staging, &none),
        Code::InvalidArgument,
        "stage no id",
    );
    assert_code(
        p.stage("default/a\u{7}b", &staging, &none),
        Code::InvalidArgument,
        "control char",
    );
    assert_code(
        p.stage(id, "", &none),
        Code::InvalidArgument,
        "stage no path",
    );
    assert_code(
        p.stage(id, &outside, &none),
        Code::InvalidArgument,
        "stage outside kubelet dir",
    );
    assert_code(
        p.stage(id, "relative/path", &none),
        Code::InvalidArgument,
        "relative path",
    );
    let sneaky = format!("{}/pods/../../elsewhere", p.kubelet().display());
    assert_code(
        p.stage(id, &sneaky, &none),
        Code::InvalidArgument,
        "dot-dot path",
    );
    let link = p.kubelet().join("pods/escape");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    assert_code(
        p.stage(id, &format!("{}/staging", link.display()), &none),
        Code::InvalidArgument,
        "symlink out of the kubelet dir",
    );
    assert!(
        !is_mounted(&format!("{}/staging", link.display()))
            && !Path::new(&outside).join("staging").exists(),
        "a refused stage mounted or created something"
    );
    let last_link = p.kubelet().join("pods/last-link");
    std::os::unix::fs::symlink(&outside, &last_link).unwrap();
    assert_code(
        p.stage(id, &last_link.display().to_string(), &none),
        Code::InvalidArgument,
        "a symlink as the staging path itself",
    );
    assert!(
        !is_mounted(&outside),
        "a refused stage mounted through a symlink"
    );
    let mut block_cap = cap(Mode::SingleNodeWriter);
    block_cap.access_type = Some(csi::volume_capability::AccessType::Block(
        csi::volume_capability::BlockVolume {},
    ));
    assert_code(
        p.stage_cap(id, &staging, &none, block_cap),
        Code::FailedPrecondition,
        "stage as a block device",
    );
    assert_code(
        p.publish(id, "", &p.target("pod-y", "pvc-ok"), false, &none),
        Code::FailedPrecondition,
        "publish without a staging path",
    );
    let mut n = p.node();
    let no_cap = csi::NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.clone(),
        ..Default::default()
    };
    assert_code(
        p.call(|| async move { n.node_stage_volume(no_cap).await }),
        Code::InvalidArgument,
        "stage without capability",
    );
    let target = p.target("pod-x", "pvc-ok");
    assert_code(
        p.publish(id, &staging, &target, false, &none),
        Code::FailedPrecondition,
        "publish before stage",
    );
    assert!(!is_mounted(&target));
    assert_code(
        p.expand("default/missing", MIB, &none),
        Code::NotFound,
        "expand unknown",
    );
    assert_code(
        p.stats(id, &target),
        Code::NotFound,
        "stats of a missing path",
    );
    assert_code(
        p.list_volumes(0, "bogus"),
        Code::Aborted,
        "bad starting_token",
    );
    assert_code(
        p.list_volumes(-1, ""),
        Code::InvalidArgument,
        "negative max_entries",
    );
    assert_code(
        p.snapshot("default/missing", "snap-x", &none),
        Code::NotFound,
        "snapshot of a missing volume",
    );
    p.snapshot(id, "snap-ok", &none).unwrap();
    let other = p.create(create_req("pvc-other", MIB)).unwrap();
    assert_code(
        p.snapshot(&other.volume_id, "snap-ok", &none),
        Code::AlreadyExists,
        "snapshot name taken by another volume's snapshot",
    );
    // Deleting what does not exist succeeds (the CO retries deletes).
    p.delete("default/never-was", &none).unwrap();
    p.delete("reallyfakevolumeid", &none).unwrap();
    p.delete_snapshot("default/x@never", &none).unwrap();
    p.unpublish(id, &target).unwrap();
    p.unstage(id, &staging).unwrap();
    let mut c = p.ctl();
    assert_code(
        p.call(|| async move {
            c.controller_get_volume(csi::ControllerGetVolumeRequest {
                volume_id: "default/pvc-ok".into(),
            })
            .await
        }),
        Code::Unimplemented,
        "ControllerGetVolume",
    );

    // Paging.
    p.create(create_req("pvc-third", MIB)).unwrap();
    let page1 = p.list_volumes(2, "").unwrap();
    assert_eq!(page1.entries.len(), 2);
    assert!(!page1.next_token.is_empty());
    let page2 = p.list_volumes(2, &page1.next_token).unwrap();
    assert_eq!(page2.entries.len(), 1);
    assert!(page2.next_token.is_empty());
    p.stop_check();
}

#[test]
fn credentials_guard_each_kind_of_operation() {
    let creds = r#"{
        "provision": {"prov-user": "alice", "prov-key": "p-secret-1"},
        "controller_publish": {"cp-key": "c-secret-2"},
        "node_stage": {"stage-key": "s-secret-3"},
        "node_publish": {"publish-key": "n-secret-4"},
        "expand": {"expand-key": "e-secret-5"},
        "snapshot": {"snap-key": "x-secret-6"}
    }"#;
    let p = Plugin::start_with(Some(creds));
    let s = |pairs: &[(&str, &str)]| -> Secrets {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let prov = s(&[("prov-user", "alice"), ("prov-key", "p-secret-1")]);
    let prov_wrong = s(&[("prov-user", "alice"), ("prov-key", "guess")]);

    // provision: CreateVolume and DeleteVolume.
    let mut req = create_req("pvc-cred", 8 * MIB);
    assert_code(
        p.create(req.clone()),
        Code::Unauthenticated,
        "create without secrets",
    );
    req.secrets = prov_wrong.clone();
    assert_code(
        p.create(req.clone()),
        Code::PermissionDenied,
        "create with a wrong secret",
    );
    assert!(p.volume_ids().is_empty(), "a denied create made a volume");
    req.secrets = prov.clone();
    let id = p.create(req).unwrap().volume_id;

    // controller_publish.
    let publish = |secrets: Secrets| {
        let mut c = p.ctl();
        let req = csi::ControllerPublishVolumeRequest {
            volume_id: id.clone(),
            node_id: NODE.into(),
            volume_capability: Some(cap(Mode::SingleNodeWriter)),
            secrets,
            ..Default::default()
        };
        p.call(|| async move { c.controller_publish_volume(req).await })
    };
    assert_code(
        publish(no_secrets()),
        Code::Unauthenticated,
        "controller publish",
    );
    assert_code(
        publish(s(&[("cp-key", "no")])),
        Code::PermissionDenied,
        "controller publish",
    );
    publish(s(&[("cp-key", "c-secret-2")])).unwrap();

    // node_stage.
    let staging = p.staging("pvc-cred");
    assert_code(
        p.stage(&id, &staging, &no_secrets()),
        Code::Unauthenticated,
        "stage",
    );
    assert_code(
        p.stage(&id, &staging, &s(&[("stage-key", "no")])),
        Code::PermissionDenied,
        "stage",
    );
    assert!(!is_mounted(&staging), "a denied stage mounted");
    p.stage(&id, &staging, &s(&[("stage-key", "s-secret-3")]))
        .unwrap();

    // node_publish.
    let target = p.target("pod-cred", "pvc-cred");
    assert_code(
        p.publish(&id, &staging, &target, false, &no_secrets()),
        Code::Unauthenticated,
        "publish",
    );
    assert_code(
        p.publish(&id, &staging, &target, false, &s(&[("publish-key", "no")])),
        Code::PermissionDenied,
        "publish",
    );
    assert!(!is_mounted(&target), "a denied publish mounted");
    p.publish(
        &id,
        &staging,
        &target,
        false,
        &s(&[("publish-key", "n-secret-4")]),
    )
    .unwrap();

    // expand: controller and node.
    assert_code(
        p.expand(&id, 16 * MIB, &no_secrets()),
        Code::Unauthenticated,
        "expand",
    );
    assert_code(
        p.expand(&id, 16 * MIB, &s(&[("expand-key", "no")])),
        Code::PermissionDenied,
        "expand",
    );
    assert_code(
        p.node_expand(&id, &target, 16 * MIB, &s(&[("expand-key", "no")])),
        Code::PermissionDenied,
        "node expand",
    );
    let stats = p.stats(&id, &target).unwrap();
    assert_eq!(
        stats.usage[0].total,
        8 * MIB as i64,
        "a denied expand resized"
    );
    p.expand(&id, 16 * MIB, &s(&[("expand-key", "e-secret-5")]))
        .unwrap();

    // snapshot: create and delete.
    assert_code(
        p.snapshot(&id, "snap-cred", &no_secrets()),
        Code::Unauthenticated,
        "snapshot",
    );
    assert_code(
        p.snapshot(&id, "snap-cred", &s(&[("snap-key", "no")])),
        Code::PermissionDenied,
        "snapshot",
    );
    assert!(p
        .list_snapshots(csi::ListSnapshotsRequest::default())
        .unwrap()
        .entries
        .is_empty());
    let snap = p
        .snapshot(&id, "snap-cred", &s(&[("snap-key", "x-secret-6")]))
        .unwrap();
    assert_code(
        p.delete_snapshot(&snap.snapshot_id, &no_secrets()),
        Code::Unauthenticated,
        "delete snapshot",
    );
    p.delete_snapshot(&snap.snapshot_id, &s(&[("snap-key", "x-secret-6")]))
        .unwrap();

    p.unpublish(&id, &target).unwrap();
    p.unstage(&id, &staging).unwrap();
    assert_code(
        p.delete(&id, &prov_wrong),
        Code::PermissionDenied,
        "delete with a wrong secret",
    );
    assert_eq!(p.volume_ids(), vec![id.clone()], "a denied delete deleted");
    p.delete(&id, &prov).unwrap();

    let log = p.log();
    assert!(
        log.contains("created volume"),
        "the plugin logs its work:\n{log}"
    );
    for secret in [
        "p-secret-1",
        "c-secret-2",
        "s-secret-3",
        "n-secret-4",
        "e-secret-5",
        "x-secret-6",
        "guess",
    ] {
        assert!(!log.contains(secret), "the log shows a secret:\n{log}");
    }
    p.stop_check();
}

#[test]
fn a_killed_plugin_restores_its_mounts() {
    let mut p = Plugin::start();
    let none = no_secrets();
    let id = p
        .create(create_req("pvc-crash", 32 * MIB))
        .unwrap()
        .volume_id;
    let staging = p.staging("pvc-crash");
    p.stage(&id, &staging, &none).unwrap();
    {
        let mut f = std::fs::File::create(format!("{staging}/before")).unwrap();
        std::io::Write::write_all(&mut f, b"fsynced before the crash\n").unwrap();
        f.sync_all().unwrap();
    }

    // Killed between stage and publish: the staging mount is dead until the restart.
    p.kill();
    assert_eq!(
        nix::sys::statfs::statfs(Path::new(&staging)).map(drop),
        Err(nix::errno::Errno::ENOTCONN),
        "staging should be a dead mount"
    );
    p.spawn();
    assert!(is_fuse_mount(&staging));
    let target = p.target("pod-crash", "pvc-crash");
    p.publish(&id, &staging, &target, false, &none).unwrap();
    assert_eq!(
        read(&format!("{target}/before")),
        "fsynced before the crash\n"
    );
    let (ok, out) = pod(&format!(
        "echo written by the pod > {target}/during && sync"
    ));
    assert!(ok, "{out}");

    // Killed between publish and unpublish: the target is dead until the restart, which
    // mounts it again and flags it (running containers hold the old, dead mount).
    p.kill();
    assert_eq!(
        nix::sys::statfs::statfs(Path::new(&target)).map(drop),
        Err(nix::errno::Errno::ENOTCONN),
        "the target should be a dead mount"
    );
    p.spawn();
    let condition = p.stats(&id, &target).unwrap().volume_condition.unwrap();
    assert!(condition.abnormal, "{condition:?}");
    assert_eq!(read(&format!("{target}/during")), "written by the pod\n");
    // A restarted kubelet stages and publishes again: both succeed and the flag clears.
    p.stage(&id, &staging, &none).unwrap();
    p.publish(&id, &staging, &target, false, &none).unwrap();
    assert!(
        !p.stats(&id, &target)
            .unwrap()
            .volume_condition
            .unwrap()
            .abnormal
    );
    for _ in 0..2 {
        p.unpublish(&id, &target).unwrap();
    }
    p.unstage(&id, &staging).unwrap();
    p.delete(&id, &none).unwrap();

    // A dead mount the plugin no longer knows is cleaned up by unpublish/unstage.
    let id2 = p.create(create_req("pvc-dead", 8 * MIB)).unwrap().volume_id;
    let staging2 = p.staging("pvc-dead");
    let target2 = p.target("pod-dead", "pvc-dead");
    p.stage(&id2, &staging2, &none).unwrap();
    p.publish(&id2, &staging2, &target2, false, &none).unwrap();
    p.kill();
    std::fs::remove_file(p.data().join("csi-node-state.json")).unwrap();
    p.spawn();
    let stats = p.stats(&id2, &target2).unwrap();
    assert!(
        stats.volume_condition.unwrap().abnormal,
        "a dead mount is abnormal"
    );
    p.unpublish(&id2, &target2).unwrap();
    p.unstage(&id2, &staging2).unwrap();
    assert!(!is_mounted(&target2) && !is_mounted(&staging2));
    p.delete(&id2, &none).unwrap();
    p.stop_check();
}

#[test]
fn concurrent_creates_of_one_name_make_one_volume() {
    let p = Plugin::start();
    // The clients' connection is driven by the plugin handle's runtime: run the calls
    // there, as concurrent tasks.
    let results: Vec<Result<csi::Volume, Status>> = p.rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let mut c = p.ctl();
            tasks.push(tokio::spawn(async move {
                c.create_volume(create_req("pvc-race", 16 * MIB))
                    .await
                    .map(|r| r.into_inner().volume.unwrap())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let first = results[0].as_ref().unwrap().clone();
    for r in &results {
        assert_eq!(r.as_ref().unwrap(), &first);
    }
    assert_eq!(p.volume_ids(), vec![first.volume_id.clone()]);
    p.stop_check();
}

#[test]
fn inline_ephemeral_volume_lives_with_its_pod() {
    let p = Plugin::start();
    let target = p.target("pod-eph", "scratch");
    let publish = |target: &str| {
        let mut n = p.node();
        let req = csi::NodePublishVolumeRequest {
            volume_id: "csi-0123abcd".into(),
            target_path: target.into(),
            volume_capability: Some(cap(Mode::SingleNodeWriter)),
            volume_context: HashMap::from([
                (
                    tessera_csi::EPHEMERAL_CONTEXT_KEY.to_string(),
                    "true".to_string(),
                ),
                ("size".to_string(), "32Mi".to_string()),
                (
                    "csi.storage.k8s.io/pod.name".to_string(),
                    "pod-eph".to_string(),
                ),
            ]),
            ..Default::default()
        };
        p.call(|| async move { n.node_publish_volume(req).await })
    };
    publish(&target).unwrap();
    publish(&target).unwrap();
    assert!(is_fuse_mount(&target));
    let (ok, out) = pod(&format!("echo scratch > {target}/x && cat {target}/x"));
    assert!(ok && out == "scratch\n", "{out}");
    let stats = p.stats("csi-0123abcd", &target).unwrap();
    assert_eq!(stats.usage[0].total, 32 * MIB as i64);
    assert_eq!(p.volume_ids(), vec!["default/csi-0123abcd".to_string()]);
    for _ in 0..2 {
        p.unpublish("csi-0123abcd", &target).unwrap();
    }
    assert!(!is_mounted(&target));
    assert!(
        p.volume_ids().is_empty(),
        "the inline volume outlived its pod"
    );
    p.stop_check();
}

#[test]
fn controller_queries_and_kubernetes_shaped_requests() {
    let p = Plugin::start();
    // The provisioner's --extra-create-metadata keys and fsType are accepted.
    let mut req = create_req("pvc-k8s", 8 * MIB);
    for (k, v) in [
        ("csi.storage.k8s.io/pvc/name", "data"),
        ("csi.storage.k8s.io/pvc/namespace", "default"),
        ("csi.storage.k8s.io/pv/name", "pvc-k8s"),
        ("fsType", "ext4"),
        ("chunkSize", "256Ki"),
        ("compression", "zstd"),
    ] {
        req.parameters.insert(k.into(), v.into());
    }
    req.volume_capabilities = vec![
        cap(Mode::SingleNodeMultiWriter),
        cap(Mode::SingleNodeSingleWriter),
    ];
    let vol = p.create(req.clone()).unwrap();
    assert_eq!(p.create(req.clone()).unwrap(), vol);
    let mut other = req.clone();
    other
        .parameters
        .insert("description".into(), "something else".into());
    assert_code(
        p.create(other),
        Code::AlreadyExists,
        "same name, other description",
    );
    let mut other = req.clone();
    other.parameters.insert("compression".into(), "lz4".into());
    assert_code(
        p.create(other),
        Code::AlreadyExists,
        "same name, other compression",
    );
    assert_code(
        p.create(from_volume(req.clone(), &vol.volume_id)),
        Code::AlreadyExists,
        "same name, now with a source",
    );
    let long = "x".repeat(125);
    assert_code(
        p.create(create_req(&long, MIB)),
        Code::InvalidArgument,
        "id over 128 bytes",
    );

    // ValidateVolumeCapabilities.
    let validate = |id: &str, caps: Vec<csi::VolumeCapability>| {
        let mut c = p.ctl();
        let req = csi::ValidateVolumeCapabilitiesRequest {
            volume_id: id.into(),
            volume_capabilities: caps,
            ..Default::default()
        };
        p.call(|| async move { c.validate_volume_capabilities(req).await })
    };
    let ok = validate(
        &vol.volume_id,
        vec![cap(Mode::SingleNodeWriter), cap(Mode::MultiNodeReaderOnly)],
    )
    .unwrap();
    assert!(ok.confirmed.is_some(), "{ok:?}");
    let no = validate(&vol.volume_id, vec![cap(Mode::MultiNodeMultiWriter)]).unwrap();
    assert!(
        no.confirmed.is_none() && no.message.contains("MULTI_NODE_MULTI_WRITER"),
        "{no:?}"
    );
    assert_code(
        validate("default/ghost", vec![cap(Mode::SingleNodeWriter)]),
        Code::NotFound,
        "validate missing",
    );
    assert_code(
        validate(&vol.volume_id, vec![]),
        Code::InvalidArgument,
        "validate without capabilities",
    );

    // GetCapacity: this node's free space, none elsewhere.
    let capacity = |params: &[(&str, &str)], node: Option<&str>| {
        let mut c = p.ctl();
        let req = csi::GetCapacityRequest {
            volume_capabilities: vec![cap(Mode::SingleNodeWriter)],
            parameters: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            accessible_topology: node.map(|n| csi::Topology {
                segments: HashMap::from([(tessera_csi::TOPOLOGY_KEY.to_string(), n.to_string())]),
            }),
        };
        p.call(|| async move { c.get_capacity(req).await })
    };
    assert!(capacity(&[], Some(NODE)).unwrap().available_capacity > 0);
    assert_eq!(capacity(&[], Some("node-9")).unwrap().available_capacity, 0);
    assert_code(
        capacity(&[("pool", "nope")], None),
        Code::InvalidArgument,
        "capacity of an unknown pool",
    );

    // ListSnapshots filters and paging.
    for name in ["snap-a", "snap-b", "snap-c"] {
        p.snapshot(&vol.volume_id, name, &no_secrets()).unwrap();
    }
    let one = p
        .list_snapshots(csi::ListSnapshotsRequest {
            snapshot_id: format!("{}@snap-b", vol.volume_id),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(one.entries.len(), 1);
    let none = p
        .list_snapshots(csi::ListSnapshotsRequest {
            snapshot_id: "reallyfakesnapshotid".into(),
            ..Default::default()
        })
        .unwrap();
    assert!(none.entries.is_empty());
    let page1 = p
        .list_snapshots(csi::ListSnapshotsRequest {
            max_entries: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page1.entries.len(), 2);
    let page2 = p
        .list_snapshots(csi::ListSnapshotsRequest {
            max_entries: 2,
            starting_token: page1.next_token.clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page2.entries.len(), 1);
    assert!(page2.next_token.is_empty());
    assert_code(
        p.list_snapshots(csi::ListSnapshotsRequest {
            starting_token: "junk".into(),
            ..Default::default()
        }),
        Code::Aborted,
        "bad snapshot token",
    );
    // ControllerUnpublish of a volume that is gone succeeds.
    let mut c = p.ctl();
    p.call(|| async move {
        c.controller_unpublish_volume(csi::ControllerUnpublishVolumeRequest {
            volume_id: "default/gone".into(),
            node_id: NODE.into(),
            secrets: HashMap::new(),
        })
        .await
    })
    .unwrap();
    p.stop_check();
}

#[test]
fn access_modes_and_foreign_mounts() {
    let p = Plugin::start();
    let none = no_secrets();
    let id = p
        .create(create_req("pvc-modes", 8 * MIB))
        .unwrap()
        .volume_id;
    let staging = p.staging("pvc-modes");
    p.stage(&id, &staging, &none).unwrap();
    let t1 = p.target("pod-1", "pvc-modes");
    let t2 = p.target("pod-2", "pvc-modes");
    // SINGLE_NODE_WRITER and SINGLE_NODE_SINGLE_WRITER (ReadWriteOncePod): one target.
    for mode in [Mode::SingleNodeWriter, Mode::SingleNodeSingleWriter] {
        p.publish_mode(&id, &staging, &t1, false, &none, mode)
            .unwrap();
        assert_code(
            p.publish_mode(&id, &staging, &t2, false, &none, mode),
            Code::FailedPrecondition,
            &format!("second target for {mode:?}"),
        );
        assert!(!is_mounted(&t2));
        p.unpublish(&id, &t1).unwrap();
    }
    // The same target again with other options.
    p.publish(&id, &staging, &t1, false, &none).unwrap();
    assert_code(
        p.publish(&id, &staging, &t1, true, &none),
        Code::AlreadyExists,
        "same target, now read-only",
    );
    // Stats of a path that is not this volume's.
    let elsewhere = p.kubelet().join("pods/pod-3");
    std::fs::create_dir_all(&elsewhere).unwrap();
    assert_code(
        p.stats(&id, &elsewhere.display().to_string()),
        Code::NotFound,
        "stats of another path",
    );
    p.unpublish(&id, &t1).unwrap();
    p.unstage(&id, &staging).unwrap();

    // Staged read-only (ReadOnlyMany): read-only publishes only.
    p.stage_cap(&id, &staging, &none, cap(Mode::MultiNodeReaderOnly))
        .unwrap();
    p.publish_mode(&id, &staging, &t1, false, &none, Mode::MultiNodeReaderOnly)
        .unwrap();
    let (ok, out) = pod(&format!("touch {t1}/x"));
    assert!(!ok && out.contains("Read-only"), "{out}");
    assert_code(
        p.publish(&id, &staging, &t2, false, &none),
        Code::FailedPrecondition,
        "read-write publish of a read-only staged volume",
    );
    p.unpublish(&id, &t1).unwrap();
    p.unstage(&id, &staging).unwrap();

    // Somebody else's mount at a target is never unmounted by the plugin.
    std::fs::create_dir_all(&t2).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "foreign", &t2])
        .status()
        .unwrap();
    assert!(status.success());
    p.unpublish(&id, &t2).unwrap();
    assert!(is_mounted(&t2), "unpublish removed a foreign mount");
    p.stage(&id, &staging, &none).unwrap();
    assert_code(
        p.publish(&id, &staging, &t2, false, &none),
        Code::FailedPrecondition,
        "publish over a foreign mount",
    );
    p.unstage(&id, &staging).unwrap();
    force_unmount(Path::new(&t2));
    p.delete(&id, &none).unwrap();
    p.stop_check();
}

#[test]
fn shutdown_with_mounted_volumes_is_quick_and_restart_flags_restored_targets() {
    let mut p = Plugin::start();
    let none = no_secrets();
    let id = p.create(create_req("pvc-term", 8 * MIB)).unwrap().volume_id;
    let staging = p.staging("pvc-term");
    let target = p.target("pod-term", "pvc-term");
    p.stage(&id, &staging, &none).unwrap();
    p.publish(&id, &staging, &target, false, &none).unwrap();
    std::fs::write(format!("{target}/note"), "kept\n").unwrap();
    let started = Instant::now();
    p.stop();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "SIGTERM with a staged volume took {:?}",
        started.elapsed()
    );
    p.spawn();
    assert_eq!(
        read(&format!("{target}/note")),
        "kept\n",
        "data written before SIGTERM"
    );
    let stats = p.stats(&id, &target).unwrap();
    let condition = stats.volume_condition.unwrap();
    assert!(
        condition.abnormal && condition.message.contains("restart"),
        "{condition:?}"
    );
    // The kubelet publishing it again for a new container clears the flag.
    p.publish(&id, &staging, &target, false, &none).unwrap();
    assert!(
        !p.stats(&id, &target)
            .unwrap()
            .volume_condition
            .unwrap()
            .abnormal
    );
    p.unpublish(&id, &target).unwrap();
    p.unstage(&id, &staging).unwrap();
    p.delete(&id, &none).unwrap();
    p.stop_check();
}
