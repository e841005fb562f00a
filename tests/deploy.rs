//! Checks that what `deploy/` ships agrees with the plugin it deploys: the plain manifests
//! parse and name every object; the driver name is `tessera_csi::DRIVER_NAME`; the
//! DaemonSet passes only flags `tessera csi --help` lists, and its socket, plugin, kubelet
//! and registration paths line up; StorageClasses use only parameters the plugin reads;
//! the example credentials satisfy the plugin's own credentials check; the Helm chart
//! carries the same values and flags; the Dockerfile builds and runs `tessera`.
//!
//! No cluster is needed: everything is read from the files and from the built binary.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;
use tessera_csi::{Credentials, OperationKind, DRIVER_NAME};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// Secret keys of the StorageClass / VolumeSnapshotClass parameters that hold secrets.
const SECRET_PARAM_PREFIX: &str = "csi.storage.k8s.io/";

/// The volume attributes an inline ephemeral volume may carry (docs/kubernetes.md).
const INLINE_ATTRIBUTES: [&str; 4] = ["size", "pool", "chunkSize", "compression"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every non-empty YAML document of a file.
fn parse_yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(de).unwrap_or_else(|e| {
            panic!(
                "{}: document {} is not valid YAML: {e}",
                path.display(),
                i + 1
            )
        });
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

/// One object of the plain manifests, with the file it came from.
struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        str_at(&self.value, &["kind"]).unwrap_or("")
    }

    fn name(&self) -> &str {
        str_at(&self.value, &["metadata", "name"]).unwrap_or("")
    }

    fn namespace(&self) -> &str {
        str_at(&self.value, &["metadata", "namespace"]).unwrap_or("default")
    }

    fn what(&self) -> String {
        format!("{}: {} {}", self.file, self.kind(), self.name())
    }
}

fn manifest_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// The YAML files of deploy/kubernetes, sorted.
fn manifest_files() -> Vec<PathBuf> {
    let dir = manifest_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("reading a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());
    files
}

/// Every document of every file in deploy/kubernetes.
fn manifests() -> Vec<Doc> {
    let mut docs = Vec::new();
    for path in manifest_files() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for value in parse_yaml_docs(&path) {
            docs.push(Doc {
                file: file.clone(),
                value,
            });
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [Doc], kind: &str) -> Vec<&'a Doc> {
    docs.iter().filter(|d| d.kind() == kind).collect()
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    Some(cur)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn seq_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_sequence)
        .map(|s| s.as_slice())
        .unwrap_or(&[])
}

/// A mapping of strings (parameters, stringData, volumeAttributes) as a HashMap.
fn string_map(v: &Value, path: &[&str], what: &str) -> HashMap<String, String> {
    let Some(m) = get(v, path) else {
        return HashMap::new();
    };
    let m = m
        .as_mapping()
        .unwrap_or_else(|| panic!("{what}: {} is not a mapping", path.join(".")));
    m.iter()
        .map(|(k, v)| {
            let k = k
                .as_str()
                .unwrap_or_else(|| panic!("{what}: a key of {} is not a string", path.join(".")));
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("{what}: {}.{k} is not a scalar: {other:?}", path.join(".")),
            };
            (k.to_string(), v)
        })
        .collect()
}

/// `--flag=value` or `--flag` → (`--flag`, value).
fn split_flag(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((flag, value)) => (flag, Some(value)),
        None => (arg, None),
    }
}

/// The value of `--flag=value` among a container's args.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().find_map(|a| match split_flag(a) {
        (f, Some(v)) if f == flag => Some(v),
        _ => None,
    })
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| split_flag(a).0 == flag)
}

/// Whether `help` mentions `flag` as a whole word (`--pool` does not match `--pools`).
fn mentions_flag(help: &str, flag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    help.match_indices(flag).any(|(i, _)| {
        let before = help[..i].chars().next_back();
        let after = help[i + flag.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// `tessera ARGS` must succeed; returns stdout.
fn tessera(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("TESSERA_DATA_DIR")
        .env_remove("CSI_ENDPOINT")
        .env_remove("NODE_ID")
        .env_remove("RUST_LOG")
        .output()
        .expect("running tessera");
    assert!(
        out.status.success(),
        "tessera {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The socket path of a `unix://` endpoint.
fn socket_of(endpoint: &str) -> &str {
    endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or_else(|| panic!("--endpoint {endpoint:?} is not a unix:// endpoint"))
}

fn parent_of(path: &str) -> String {
    Path::new(path)
        .parent()
        .unwrap_or_else(|| panic!("{path:?} has no parent directory"))
        .to_string_lossy()
        .into_owned()
}

/// The node DaemonSet's pod spec, its containers and volumes.
struct NodePod {
    spec: Value,
}

struct Container {
    name: String,
    image: String,
    args: Vec<String>,
    value: Value,
}

impl NodePod {
    fn load(docs: &[Doc]) -> NodePod {
        let sets = of_kind(docs, "DaemonSet");
        assert_eq!(
            sets.len(),
            1,
            "expected one DaemonSet in deploy/kubernetes, found {:?}",
            sets.iter().map(|d| d.what()).collect::<Vec<_>>()
        );
        let spec = get(&sets[0].value, &["spec", "template", "spec"])
            .unwrap_or_else(|| panic!("{} has no spec.template.spec", sets[0].what()))
            .clone();
        NodePod { spec }
    }

    fn containers(&self) -> Vec<Container> {
        seq_at(&self.spec, &["containers"])
            .iter()
            .map(|c| Container {
                name: str_at(c, &["name"]).unwrap_or("").to_string(),
                image: str_at(c, &["image"]).unwrap_or("").to_string(),
                args: seq_at(c, &["args"])
                    .iter()
                    .map(|a| {
                        a.as_str()
                            .unwrap_or_else(|| {
                                panic!("an arg of a container is not a string: {a:?}")
                            })
                            .to_string()
                    })
                    .collect(),
                value: c.clone(),
            })
            .collect()
    }

    fn container(&self, name: &str) -> Container {
        self.containers()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("the DaemonSet has no container named {name:?}"))
    }

    /// The container whose image contains `image_part`.
    fn sidecar(&self, image_part: &str) -> Container {
        self.containers()
            .into_iter()
            .find(|c| c.image.contains(image_part))
            .unwrap_or_else(|| panic!("the DaemonSet has no container with a {image_part} image"))
    }

    fn volume(&self, name: &str) -> Value {
        seq_at(&self.spec, &["volumes"])
            .iter()
            .find(|v| str_at(v, &["name"]) == Some(name))
            .unwrap_or_else(|| panic!("the DaemonSet has no volume named {name:?}"))
            .clone()
    }

    fn host_path(&self, volume: &str) -> String {
        str_at(&self.volume(volume), &["hostPath", "path"])
            .unwrap_or_else(|| panic!("the DaemonSet's volume {volume:?} is not a hostPath"))
            .trim_end_matches('/')
            .to_string()
    }
}

impl Container {
    fn mounts(&self) -> &[Value] {
        seq_at(&self.value, &["volumeMounts"])
    }

    /// The volume mount at `path`.
    fn mount_at(&self, path: &str) -> Value {
        self.mounts()
            .iter()
            .find(|m| str_at(m, &["mountPath"]).map(|p| p.trim_end_matches('/')) == Some(path))
            .unwrap_or_else(|| {
                panic!(
                    "container {} mounts nothing at {path} (it needs it there)",
                    self.name
                )
            })
            .clone()
    }

    fn mount_volume_at(&self, path: &str) -> String {
        str_at(&self.mount_at(path), &["name"])
            .expect("a volume mount without a name")
            .to_string()
    }

    fn env_field_ref(&self, name: &str) -> Option<String> {
        seq_at(&self.value, &["env"])
            .iter()
            .find(|e| str_at(e, &["name"]) == Some(name))
            .and_then(|e| str_at(e, &["valueFrom", "fieldRef", "fieldPath"]))
            .map(str::to_string)
    }

    /// The containerPort of a named port, or the number itself.
    fn port(&self, port: &Value) -> u64 {
        if let Some(n) = port.as_u64() {
            return n;
        }
        let name = port.as_str().expect("a port is a number or a name");
        seq_at(&self.value, &["ports"])
            .iter()
            .find(|p| str_at(p, &["name"]) == Some(name))
            .and_then(|p| get(p, &["containerPort"]))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("container {} has no port named {name:?}", self.name))
    }
}

#[test]
fn manifests_parse_and_name_every_object() {
    let docs = manifests();
    for doc in &docs {
        for (path, what) in [
            (&["apiVersion"][..], "apiVersion"),
            (&["kind"][..], "kind"),
            (&["metadata", "name"][..], "metadata.name"),
        ] {
            let value = str_at(&doc.value, path).unwrap_or("");
            assert!(
                !value.trim().is_empty(),
                "{}: a document has no {what}: {:?}",
                doc.file,
                doc.value
            );
        }
    }
    // Object names are unique per kind and namespace.
    // (credentials-example.yaml deliberately replaces the `{}` credentials Secret.)
    let mut seen = BTreeSet::new();
    for doc in &docs {
        if doc.file.ends_with("credentials-example.yaml")
            && doc.kind() == "Secret"
            && doc.name() == "tessera-credentials"
        {
            continue;
        }
        let key = (
            doc.kind().to_string(),
            doc.namespace().to_string(),
            doc.name().to_string(),
        );
        assert!(seen.insert(key), "{} is defined twice", doc.what());
    }

    // kustomization.yaml lists the core files, and only those: the examples are applied
    // separately.
    let kustomization = of_kind(&docs, "Kustomization");
    assert_eq!(kustomization.len(), 1, "expected one kustomization.yaml");
    let listed: BTreeSet<String> = seq_at(&kustomization[0].value, &["resources"])
        .iter()
        .map(|r| {
            r.as_str()
                .expect("a kustomization resource is a path")
                .to_string()
        })
        .collect();
    for file in &listed {
        assert!(
            manifest_dir().join(file).is_file(),
            "kustomization.yaml lists {file}, which does not exist in deploy/kubernetes"
        );
    }
    for path in manifest_files() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let example = file.starts_with("example") || file == "credentials-example.yaml";
        if file == "kustomization.yaml" {
            continue;
        }
        assert_eq!(
            listed.contains(&file),
            !example,
            "kustomization.yaml should list the core manifest {file} and no example \
             (listed: {listed:?})"
        );
    }
}

#[test]
fn driver_name_is_the_plugins() {
    let docs = manifests();
    let drivers = of_kind(&docs, "CSIDriver");
    assert_eq!(
        drivers.len(),
        1,
        "expected one CSIDriver in deploy/kubernetes"
    );
    let driver = drivers[0];
    assert_eq!(
        driver.name(),
        DRIVER_NAME,
        "{}: the CSIDriver's name is not the plugin's driver name",
        driver.file
    );
    let spec = get(&driver.value, &["spec"]).expect("the CSIDriver has a spec");
    for (field, want) in [
        ("attachRequired", false),
        ("podInfoOnMount", true),
        ("storageCapacity", true),
        ("requiresRepublish", false),
    ] {
        assert_eq!(
            get(spec, &[field]).and_then(Value::as_bool),
            Some(want),
            "{}: CSIDriver spec.{field} should be {want}",
            driver.file
        );
    }
    assert_eq!(
        str_at(spec, &["fsGroupPolicy"]),
        Some("File"),
        "{}: CSIDriver spec.fsGroupPolicy should be File (FUSE honours chown/chmod)",
        driver.file
    );
    let modes: BTreeSet<&str> = seq_at(spec, &["volumeLifecycleModes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        modes,
        BTreeSet::from(["Persistent", "Ephemeral"]),
        "{}: CSIDriver spec.volumeLifecycleModes",
        driver.file
    );

    let classes = of_kind(&docs, "StorageClass");
    assert!(!classes.is_empty(), "no StorageClass in deploy/kubernetes");
    for class in classes {
        assert_eq!(
            str_at(&class.value, &["provisioner"]),
            Some(DRIVER_NAME),
            "{}: the provisioner is not the plugin's driver name",
            class.what()
        );
    }
    let snapshot_classes = of_kind(&docs, "VolumeSnapshotClass");
    assert!(
        !snapshot_classes.is_empty(),
        "no VolumeSnapshotClass in deploy/kubernetes"
    );
    for class in snapshot_classes {
        assert_eq!(
            str_at(&class.value, &["driver"]),
            Some(DRIVER_NAME),
            "{}: the driver is not the plugin's driver name",
            class.what()
        );
    }
    // Inline ephemeral volumes in the examples.
    for pod in of_kind(&docs, "Pod") {
        for volume in seq_at(&pod.value, &["spec", "volumes"]) {
            if let Some(driver) = str_at(volume, &["csi", "driver"]) {
                assert_eq!(
                    driver,
                    DRIVER_NAME,
                    "{}: an inline volume names another driver",
                    pod.what()
                );
                for key in string_map(volume, &["csi", "volumeAttributes"], &pod.what()).keys() {
                    assert!(
                        INLINE_ATTRIBUTES.contains(&key.as_str()),
                        "{}: inline volume attribute {key:?} is not one the plugin reads \
                         ({INLINE_ATTRIBUTES:?})",
                        pod.what()
                    );
                }
            }
        }
    }
}

#[test]
fn daemonset_agrees_with_the_binary() {
    let docs = manifests();
    let pod = NodePod::load(&docs);
    let plugin = pod.container("tessera");

    // Flags: the subcommand first, then only flags the binary knows.
    assert_eq!(
        plugin.args.first().map(String::as_str),
        Some("csi"),
        "the tessera container's args should start with the subcommand `csi`: {:?}",
        plugin.args
    );
    let csi_help = tessera(&["csi", "--help"]);
    let top_help = tessera(&["--help"]);
    for arg in plugin.args.iter().skip(1) {
        let (flag, _) = split_flag(arg);
        assert!(
            flag.starts_with("--"),
            "tessera container arg {arg:?} is not a --flag (args: {:?})",
            plugin.args
        );
        assert!(
            mentions_flag(&csi_help, flag),
            "the DaemonSet passes {flag}, which `tessera csi --help` does not list:\n{csi_help}"
        );
    }
    for flag in [
        "--data-dir",
        "--endpoint",
        "--node-id",
        "--kubelet-dir",
        "--credentials-file",
    ] {
        assert!(
            flag_value(&plugin.args, flag).is_some(),
            "the tessera container should pass {flag}=…; args: {:?}",
            plugin.args
        );
    }
    assert!(
        mentions_flag(&top_help, "--data-dir"),
        "`tessera --help` does not list --data-dir:\n{top_help}"
    );

    // --node-id comes from the downward API.
    let node_id = flag_value(&plugin.args, "--node-id").unwrap();
    let var = node_id
        .strip_prefix("$(")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("--node-id={node_id} should be $(VAR) of the node's name"));
    assert_eq!(
        plugin.env_field_ref(var).as_deref(),
        Some("spec.nodeName"),
        "--node-id=$({var}) but env {var} of the tessera container is not spec.nodeName"
    );

    // The kubelet directory: same path in the container, Bidirectional propagation.
    let kubelet_dir = flag_value(&plugin.args, "--kubelet-dir")
        .unwrap()
        .trim_end_matches('/');
    let kubelet_mount = plugin.mount_at(kubelet_dir);
    assert_eq!(
        str_at(&kubelet_mount, &["mountPropagation"]),
        Some("Bidirectional"),
        "the kubelet dir mount at {kubelet_dir} needs mountPropagation: Bidirectional"
    );
    let kubelet_volume = str_at(&kubelet_mount, &["name"]).unwrap();
    assert_eq!(
        pod.host_path(kubelet_volume),
        kubelet_dir,
        "the kubelet dir volume's hostPath differs from --kubelet-dir (the kubelet sends \
         host paths, so they must be the same inside the container)"
    );

    // The socket: --endpoint's directory is the plugin dir, <kubelet-dir>/plugins/<driver>.
    let endpoint = flag_value(&plugin.args, "--endpoint").unwrap();
    let socket = socket_of(endpoint);
    let socket_dir = parent_of(socket);
    let plugin_volume = plugin.mount_volume_at(&socket_dir);
    let plugin_dir = pod.host_path(&plugin_volume);
    assert_eq!(
        plugin_dir,
        format!("{kubelet_dir}/plugins/{DRIVER_NAME}"),
        "the volume {plugin_volume:?} mounted at the socket's directory {socket_dir} should be \
         the hostPath <kubelet-dir>/plugins/<driver>"
    );

    // The registrar tells the kubelet where the socket is on the host.
    let registrar = pod.sidecar("csi-node-driver-registrar");
    let registration_path = flag_value(&registrar.args, "--kubelet-registration-path")
        .unwrap_or_else(|| panic!("node-driver-registrar has no --kubelet-registration-path"));
    assert_eq!(
        registration_path,
        format!("{plugin_dir}/csi.sock"),
        "node-driver-registrar's --kubelet-registration-path is not the plugin dir's csi.sock \
         (the endpoint is {endpoint})"
    );
    assert_eq!(
        Path::new(socket).file_name().and_then(|n| n.to_str()),
        Some("csi.sock"),
        "the socket named by --endpoint should be csi.sock, as the registration path says"
    );
    let registration_volume = registrar.mount_volume_at("/registration");
    assert_eq!(
        pod.host_path(&registration_volume),
        format!("{kubelet_dir}/plugins_registry"),
        "node-driver-registrar's /registration is not <kubelet-dir>/plugins_registry"
    );

    // Every sidecar reaches the socket at the same path, through the same volume.
    for part in [
        "csi-node-driver-registrar",
        "csi-provisioner",
        "csi-snapshotter",
        "csi-resizer",
        "livenessprobe",
    ] {
        pod.sidecar(part);
    }
    for c in pod.containers().iter().filter(|c| c.name != plugin.name) {
        let address = flag_value(&c.args, "--csi-address")
            .unwrap_or_else(|| panic!("sidecar {} has no --csi-address", c.name));
        assert_eq!(
            address, socket,
            "sidecar {}'s --csi-address differs from the plugin's --endpoint socket",
            c.name
        );
        assert_eq!(
            c.mount_volume_at(&socket_dir),
            plugin_volume,
            "sidecar {} mounts another volume than the plugin's at {socket_dir}",
            c.name
        );
    }

    // Distributed provisioning, capacity tracking and snapshotting.
    let provisioner = pod.sidecar("csi-provisioner");
    for flag in [
        "--node-deployment",
        "--enable-capacity",
        "--capacity-ownerref-level",
        "--strict-topology",
        "--immediate-topology",
        "--extra-create-metadata",
    ] {
        assert!(
            has_flag(&provisioner.args, flag),
            "csi-provisioner lacks {flag}: {:?}",
            provisioner.args
        );
    }
    for (var, field) in [
        ("NODE_NAME", "spec.nodeName"),
        ("NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        assert_eq!(
            provisioner.env_field_ref(var).as_deref(),
            Some(field),
            "csi-provisioner needs env {var} from {field} (node deployment, capacity owner)"
        );
    }
    let snapshotter = pod.sidecar("csi-snapshotter");
    assert!(
        has_flag(&snapshotter.args, "--node-deployment"),
        "csi-snapshotter lacks --node-deployment: {:?}",
        snapshotter.args
    );
    assert_eq!(
        snapshotter.env_field_ref("NODE_NAME").as_deref(),
        Some("spec.nodeName"),
        "csi-snapshotter with --node-deployment needs env NODE_NAME from spec.nodeName"
    );

    // Health: the plugin's livenessProbe hits the livenessprobe sidecar's port.
    let probe = pod.sidecar("livenessprobe");
    let health_port: u64 = flag_value(&probe.args, "--health-port")
        .unwrap_or("9808")
        .parse()
        .expect("--health-port is a number");
    let probe_port = get(&plugin.value, &["livenessProbe", "httpGet", "port"])
        .unwrap_or_else(|| panic!("the tessera container has no livenessProbe.httpGet.port"));
    assert_eq!(
        plugin.port(probe_port),
        health_port,
        "the tessera container's livenessProbe port differs from livenessprobe's --health-port"
    );

    // Privileged, with /dev/fuse and the data dir.
    assert_eq!(
        get(&plugin.value, &["securityContext", "privileged"]).and_then(Value::as_bool),
        Some(true),
        "the tessera container must be privileged (FUSE and bind mounts)"
    );
    let fuse = pod.volume(&plugin.mount_volume_at("/dev/fuse"));
    assert_eq!(
        (
            str_at(&fuse, &["hostPath", "path"]),
            str_at(&fuse, &["hostPath", "type"])
        ),
        (Some("/dev/fuse"), Some("CharDevice")),
        "/dev/fuse should be the host's, as a CharDevice hostPath"
    );
    let data_dir = flag_value(&plugin.args, "--data-dir").unwrap();
    let data_volume = plugin.mount_volume_at(data_dir);
    assert_eq!(
        pod.host_path(&data_volume),
        data_dir,
        "the data dir volume's hostPath differs from --data-dir"
    );

    // Credentials: the file lives in a Secret volume that must exist (the plugin refuses
    // to start without its credentials file rather than run unprotected).
    let credentials_file = flag_value(&plugin.args, "--credentials-file").unwrap();
    let credentials_volume = pod.volume(&plugin.mount_volume_at(&parent_of(credentials_file)));
    assert!(
        str_at(&credentials_volume, &["secret", "secretName"]).is_some(),
        "--credentials-file={credentials_file} should come from a Secret volume"
    );
    assert_eq!(
        get(&credentials_volume, &["secret", "optional"]).and_then(Value::as_bool),
        Some(false),
        "the credentials Secret volume must not be optional"
    );
}

#[test]
fn storage_classes_use_parameters_the_plugin_reads() {
    let docs = manifests();
    for class in of_kind(&docs, "StorageClass") {
        for key in string_map(&class.value, &["parameters"], &class.what()).keys() {
            assert!(
                tessera_csi::controller::PARAMETERS.contains(&key.as_str())
                    || key.starts_with(SECRET_PARAM_PREFIX),
                "{}: parameter {key:?} is not one the plugin reads ({:?}) nor under \
                 {SECRET_PARAM_PREFIX}",
                class.what(),
                tessera_csi::controller::PARAMETERS
            );
        }
        assert_eq!(
            str_at(&class.value, &["volumeBindingMode"]),
            Some("WaitForFirstConsumer"),
            "{}: volumeBindingMode should be WaitForFirstConsumer (volumes are node-local)",
            class.what()
        );
        assert_eq!(
            get(&class.value, &["allowVolumeExpansion"]).and_then(Value::as_bool),
            Some(true),
            "{}: allowVolumeExpansion should be true",
            class.what()
        );
    }

    // The examples refer to objects that exist.
    let names = |kind: &str| -> BTreeSet<String> {
        of_kind(&docs, kind)
            .iter()
            .map(|d| d.name().to_string())
            .collect()
    };
    let (classes, snapshot_classes) = (names("StorageClass"), names("VolumeSnapshotClass"));
    for claim in of_kind(&docs, "PersistentVolumeClaim") {
        let class = str_at(&claim.value, &["spec", "storageClassName"]).unwrap_or("");
        assert!(
            classes.contains(class),
            "{}: storageClassName {class:?} is not defined in deploy/kubernetes",
            claim.what()
        );
        if let Some(source) = get(&claim.value, &["spec", "dataSource"]) {
            let kind = str_at(source, &["kind"]).unwrap_or("");
            let name = str_at(source, &["name"]).unwrap_or("");
            assert!(
                names(kind).contains(name),
                "{}: dataSource {kind} {name:?} is not defined in deploy/kubernetes",
                claim.what()
            );
        }
    }
    for snapshot in of_kind(&docs, "VolumeSnapshot") {
        let class = str_at(&snapshot.value, &["spec", "volumeSnapshotClassName"]).unwrap_or("");
        assert!(
            snapshot_classes.contains(class),
            "{}: volumeSnapshotClassName {class:?} is not defined in deploy/kubernetes",
            snapshot.what()
        );
    }
}

/// The Secret parameters (`csi.storage.k8s.io/<prefix>-secret-name`) that carry the
/// credentials of an operation kind, and the kind of class they go in.
fn secret_params(kind: OperationKind) -> (&'static str, &'static [&'static str]) {
    match kind.name() {
        "provision" => ("StorageClass", &["provisioner"]),
        "controller_publish" => ("StorageClass", &["controller-publish"]),
        "node_stage" => ("StorageClass", &["node-stage"]),
        "node_publish" => ("StorageClass", &["node-publish"]),
        "expand" => ("StorageClass", &["controller-expand", "node-expand"]),
        "snapshot" => ("VolumeSnapshotClass", &["snapshotter"]),
        other => panic!("operation kind {other:?} is new: teach tests/deploy.rs its parameters"),
    }
}

#[test]
fn example_credentials_satisfy_the_plugin() {
    let docs = manifests();
    let pod = NodePod::load(&docs);
    let plugin = pod.container("tessera");
    let credentials_file = flag_value(&plugin.args, "--credentials-file")
        .expect("the tessera container passes --credentials-file");
    let key = Path::new(credentials_file)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let volume = pod.volume(&plugin.mount_volume_at(&parent_of(credentials_file)));
    let secret_name = str_at(&volume, &["secret", "secretName"]).unwrap();

    let secrets = of_kind(&docs, "Secret");
    let holder = secrets
        .iter()
        .find(|s| s.name() == secret_name && s.namespace() == "tessera-system")
        .unwrap_or_else(|| {
            panic!("no example Secret {secret_name} in tessera-system holds the credentials file")
        });
    let data = string_map(&holder.value, &["stringData"], &holder.what());
    let json = data
        .get(&key)
        .unwrap_or_else(|| panic!("{} has no stringData key {key}", holder.what()));

    // The plugin's own loader must accept it.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(&key);
    std::fs::write(&path, json).expect("writing the credentials file");
    let credentials = Credentials::load(&path)
        .unwrap_or_else(|e| panic!("{}: the plugin rejects {key}: {e}", holder.what()));

    let lookup = |name: &str, namespace: &str, class: &str| -> HashMap<String, String> {
        let secret = secrets
            .iter()
            .find(|s| s.name() == name && s.namespace() == namespace)
            .unwrap_or_else(|| {
                panic!("{class} names Secret {namespace}/{name}, which deploy/kubernetes lacks")
            });
        string_map(&secret.value, &["stringData"], &secret.what())
    };

    let mut protected = BTreeSet::new();
    for class in of_kind(&docs, "StorageClass")
        .into_iter()
        .chain(of_kind(&docs, "VolumeSnapshotClass"))
    {
        let params = string_map(&class.value, &["parameters"], &class.what());
        if !params.keys().any(|k| k.ends_with("-secret-name")) {
            continue;
        }
        protected.insert(class.kind().to_string());
        for kind in OperationKind::ALL {
            let (class_kind, prefixes) = secret_params(kind);
            if class_kind != class.kind() || !credentials.requires(kind) {
                continue;
            }
            for prefix in prefixes {
                let name_key = format!("{SECRET_PARAM_PREFIX}{prefix}-secret-name");
                let ns_key = format!("{SECRET_PARAM_PREFIX}{prefix}-secret-namespace");
                let (Some(name), Some(namespace)) = (params.get(&name_key), params.get(&ns_key))
                else {
                    panic!(
                        "{}: {} credentials are configured but the class lacks {name_key} / \
                         {ns_key}",
                        class.what(),
                        kind.name()
                    );
                };
                let sent = lookup(name, namespace, &class.what());
                if let Err(status) = credentials.check(kind, &sent) {
                    panic!(
                        "{}: Secret {namespace}/{name} ({name_key}) does not satisfy the plugin's \
                         {} credentials: {status:?}",
                        class.what(),
                        kind.name()
                    );
                }
            }
        }
    }
    assert_eq!(
        protected,
        BTreeSet::from([
            "StorageClass".to_string(),
            "VolumeSnapshotClass".to_string()
        ]),
        "the examples should have a StorageClass and a VolumeSnapshotClass with secrets"
    );
}

fn helm_dir() -> PathBuf {
    repo().join("deploy/helm/tessera-csi")
}

#[test]
fn helm_chart_matches_the_manifests() {
    let chart_docs = parse_yaml_docs(&helm_dir().join("Chart.yaml"));
    assert_eq!(
        chart_docs.len(),
        1,
        "Chart.yaml should be one YAML document"
    );
    let chart = &chart_docs[0];
    assert_eq!(
        str_at(chart, &["apiVersion"]),
        Some("v2"),
        "Chart.yaml apiVersion"
    );
    assert_eq!(
        str_at(chart, &["name"]),
        Some("tessera-csi"),
        "Chart.yaml name"
    );
    assert!(
        str_at(chart, &["version"]).is_some(),
        "Chart.yaml has no version"
    );

    let values_docs = parse_yaml_docs(&helm_dir().join("values.yaml"));
    assert_eq!(
        values_docs.len(),
        1,
        "values.yaml should be one YAML document"
    );
    let values = &values_docs[0];
    assert_eq!(
        str_at(values, &["driverName"]),
        Some(DRIVER_NAME),
        "values.yaml driverName is not the plugin's driver name"
    );

    let docs = manifests();
    let pod = NodePod::load(&docs);
    let plugin = pod.container("tessera");
    for (key, flag) in [("kubeletDir", "--kubelet-dir"), ("dataDir", "--data-dir")] {
        assert_eq!(
            str_at(values, &[key]),
            flag_value(&plugin.args, flag),
            "values.yaml {key} differs from the plain DaemonSet's {flag}"
        );
    }
    let image = |v: &Value| -> String {
        format!(
            "{}:{}",
            str_at(v, &["repository"]).unwrap_or("?"),
            str_at(v, &["tag"]).unwrap_or("?")
        )
    };
    let plugin_image = image(get(values, &["image"]).expect("values.yaml has image"));
    assert_eq!(
        plugin_image, plugin.image,
        "values.yaml image differs from the plain DaemonSet's tessera image"
    );
    let sidecar_images: BTreeSet<String> = get(values, &["sidecars"])
        .and_then(Value::as_mapping)
        .expect("values.yaml has sidecars")
        .values()
        .filter_map(|s| get(s, &["image"]).map(image))
        .collect();
    for c in pod.containers().iter().filter(|c| c.name != plugin.name) {
        assert!(
            sidecar_images.contains(&c.image),
            "the plain DaemonSet's {} image {} is not among values.yaml's sidecars: \
             {sidecar_images:?}",
            c.name,
            c.image
        );
    }

    // Templates: plain ones parse; the DaemonSet template passes the same flags.
    let templates = helm_dir().join("templates");
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(&templates)
        .unwrap_or_else(|e| panic!("listing {}: {e}", templates.display()))
    {
        let path = entry.expect("a directory entry").path();
        let text = read(&path);
        let is_yaml = path.extension().is_some_and(|x| x == "yaml" || x == "yml");
        if is_yaml && !text.contains("{{") {
            parse_yaml_docs(&path);
        }
        texts.push((path, text));
    }
    let find_kind = |kind: &str| -> Vec<&(PathBuf, String)> {
        texts
            .iter()
            .filter(|(_, t)| t.contains(&format!("kind: {kind}\n")))
            .collect()
    };
    for kind in [
        "CSIDriver",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "StorageClass",
        "VolumeSnapshotClass",
    ] {
        assert!(
            !find_kind(kind).is_empty(),
            "no template of the Helm chart renders a {kind}"
        );
    }
    let daemonsets = find_kind("DaemonSet");
    assert!(
        !daemonsets.is_empty(),
        "no template of the Helm chart renders a DaemonSet"
    );
    let mut wanted: Vec<String> = plugin
        .args
        .iter()
        .skip(1)
        .map(|a| split_flag(a).0.to_string())
        .collect();
    wanted.extend(
        [
            "--endpoint=unix:///csi/csi.sock",
            "--node-id=$(NODE_NAME)",
            "--kubelet-dir",
            "--data-dir",
            "--csi-address=/csi/csi.sock",
            "--kubelet-registration-path",
            "--node-deployment=true",
            "--enable-capacity=true",
            "mountPropagation: Bidirectional",
            "privileged: true",
            "optional: false",
        ]
        .map(String::from),
    );
    for (path, text) in daemonsets {
        for want in &wanted {
            assert!(
                text.contains(want.as_str()),
                "{} does not mention {want:?}, which the plain DaemonSet has",
                path.display()
            );
        }
    }
}

/// The Dockerfile's instructions, with continuation lines joined and comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && cur.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(trimmed);
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[test]
fn dockerfile_builds_and_runs_tessera() {
    let path = repo().join("deploy/Dockerfile");
    let instructions = dockerfile_instructions(&read(&path));
    let keyword = |i: &String| {
        i.split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
    };

    let froms: Vec<&String> = instructions
        .iter()
        .filter(|i| keyword(i) == "FROM")
        .collect();
    assert!(
        froms.len() >= 2,
        "deploy/Dockerfile should be multi-stage (a builder and a runtime): {froms:?}"
    );
    let builds: Vec<&String> = instructions
        .iter()
        .filter(|i| keyword(i) == "RUN" && i.contains("cargo build"))
        .collect();
    assert!(
        builds
            .iter()
            .any(|b| b.contains("--release") && b.contains("--bin tessera")),
        "deploy/Dockerfile should run `cargo build --release --bin tessera`: {builds:?}"
    );
    for package in ["libclang-dev", "clang", "pkg-config"] {
        assert!(
            instructions
                .iter()
                .any(|i| keyword(i) == "RUN" && i.split_whitespace().any(|w| w == package)),
            "deploy/Dockerfile's builder should install {package}"
        );
    }

    let entrypoints: Vec<&String> = instructions
        .iter()
        .filter(|i| keyword(i) == "ENTRYPOINT")
        .collect();
    assert_eq!(
        entrypoints.len(),
        1,
        "deploy/Dockerfile should have one ENTRYPOINT"
    );
    let exec_form = entrypoints[0]["ENTRYPOINT".len()..].trim();
    let entry: Vec<String> = serde_json::from_str(exec_form).unwrap_or_else(|e| {
        panic!("ENTRYPOINT {exec_form} should be in exec (JSON array) form: {e}")
    });
    let binary = entry.first().expect("ENTRYPOINT names a program");
    assert_eq!(
        Path::new(binary).file_name().and_then(|n| n.to_str()),
        Some("tessera"),
        "deploy/Dockerfile's ENTRYPOINT is not the tessera binary: {entry:?}"
    );

    // The runtime stage (after the last FROM) copies the binary to the ENTRYPOINT's path and
    // installs what the mounts need.
    let last_from = instructions
        .iter()
        .rposition(|i| keyword(i) == "FROM")
        .unwrap();
    let runtime = &instructions[last_from..];
    assert!(
        runtime.iter().any(|i| keyword(i) == "COPY"
            && i.contains("--from=")
            && i.split_whitespace().next_back() == Some(binary.as_str())),
        "the runtime stage of deploy/Dockerfile does not COPY the built binary to {binary}"
    );
    for package in ["fuse3", "util-linux"] {
        assert!(
            runtime
                .iter()
                .any(|i| keyword(i) == "RUN" && i.split_whitespace().any(|w| w == package)),
            "the runtime stage of deploy/Dockerfile should install {package}"
        );
    }
}
