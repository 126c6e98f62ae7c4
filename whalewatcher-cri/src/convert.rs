//! Pure conversions of CRI records and events into the core's model.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_cri::v1::{
    ContainerEventResponse, ContainerEventType, ContainerStatus, NamespaceMode, PodSandboxStatus,
    VersionResponse,
};
use serde::Deserialize;
use whalewatcher_core::{
    Container, EngineEvent, EventKind, Exit, HostNamespaces, Labels, Mount, NetworkAddress,
    NetworkIdentity, PodInfo, Resources, COMPOSE_PROJECT_LABEL,
};

// The label names and values of the Go module (engineclient/cri/cri.go),
// which tools built on it key on.

/// The label holding the name of a container's pod.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// The label holding the Kubernetes namespace of a container's pod.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The label holding the UID of a container's pod.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// The label holding a container's name within its pod; a sandbox's is its
/// sandbox id.
pub const POD_CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Marks a pod's sandbox ("pause") container; present only on sandboxes,
/// its value is empty.
pub const POD_SANDBOX_LABEL: &str = "io.kubernetes.sandbox";
/// Prefixes annotation keys, which become labels, so they cannot clash
/// with label keys.
pub const ANNOTATION_KEY_PREFIX: &str = "io.kubernetes.annotation/";

/// The pod of a container or sandbox, shared by all of the pod's, with
/// where the pod is on the network, which its containers share too.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pod {
    pub info: Arc<PodInfo>,
    pub network: Arc<NetworkIdentity>,
}

/// The network name given to a pod's addresses: the CRI names none.
pub const POD_NETWORK: &str = "pod";

/// The pod a sandbox's status describes: metadata, labels, annotations,
/// which host namespaces it shares, its addresses.
pub(crate) fn pod_of(status: &PodSandboxStatus) -> Pod {
    let metadata = status.metadata.clone().unwrap_or_default();
    let options = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref());
    let node = |mode: Option<i32>| mode == Some(NamespaceMode::Node as i32);
    let host_namespaces = HostNamespaces {
        network: node(options.map(|o| o.network)),
        pid: node(options.map(|o| o.pid)),
        ipc: node(options.map(|o| o.ipc)),
    };
    let addresses: Vec<NetworkAddress> = status
        .network
        .iter()
        .flat_map(|n| {
            std::iter::once(n.ip.as_str()).chain(n.additional_ips.iter().map(|ip| ip.ip.as_str()))
        })
        .filter(|ip| !ip.is_empty())
        .map(|ip| NetworkAddress {
            network: POD_NETWORK.into(),
            ip: ip.into(),
        })
        .collect();
    let network = if addresses.is_empty() {
        // Most pods of a node share the host's network or wait for an
        // address: one value each, for all of them.
        static HOST: OnceLock<Arc<NetworkIdentity>> = OnceLock::new();
        static POD: OnceLock<Arc<NetworkIdentity>> = OnceLock::new();
        let (shared, mode) = match host_namespaces.network {
            true => (&HOST, "host"),
            false => (&POD, "pod"),
        };
        shared
            .get_or_init(|| Arc::new(network_identity(mode, Vec::new())))
            .clone()
    } else {
        Arc::new(network_identity("pod", addresses))
    };
    Pod {
        info: Arc::new(PodInfo {
            uid: metadata.uid.into(),
            name: metadata.name.into(),
            namespace: metadata.namespace.into(),
            sandbox_id: status.id.as_str().into(),
            labels: status.labels.iter().collect(),
            annotations: status.annotations.iter().collect(),
            host_namespaces,
        }),
        network,
    }
}

fn network_identity(mode: &str, addresses: Vec<NetworkAddress>) -> NetworkIdentity {
    NetworkIdentity {
        mode: mode.into(),
        addresses: addresses.into(),
        ports: Box::default(),
    }
}

/// The part of a verbose status's `info` JSON we need. Both containers and
/// sandboxes report their PID there (containerd, cri-o); only containers
/// name their sandbox.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct VerboseInfo {
    #[serde(default)]
    pub pid: u32,
    #[serde(rename = "sandboxID", default)]
    pub sandbox_id: Option<String>,
    /// cri-o tells it here.
    #[serde(default)]
    pub privileged: Option<bool>,
    /// containerd: the container's CRI configuration.
    #[serde(default)]
    pub config: Option<InfoConfig>,
    #[serde(rename = "runtimeSpec", default)]
    pub runtime_spec: Option<InfoSpec>,
}

/// What we read of the CRI configuration in containerd's verbose info.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct InfoConfig {
    #[serde(default)]
    pub linux: Option<InfoConfigLinux>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct InfoConfigLinux {
    #[serde(default)]
    pub security_context: Option<InfoSecurityContext>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct InfoSecurityContext {
    #[serde(default)]
    pub privileged: bool,
}

/// What we read of the OCI runtime spec in the verbose info: the cgroup.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct InfoSpec {
    #[serde(default)]
    pub linux: Option<InfoSpecLinux>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct InfoSpecLinux {
    #[serde(rename = "cgroupsPath", default)]
    pub cgroups_path: Option<String>,
}

impl VerboseInfo {
    /// Parses the `info` entry of a verbose status; `None` when missing or
    /// not JSON.
    pub fn parse(info: &HashMap<String, String>) -> Option<VerboseInfo> {
        serde_json::from_str(info.get("info")?).ok()
    }

    /// Whether the container is privileged: cri-o says it, containerd
    /// repeats the configuration.
    pub fn privileged(&self) -> Option<bool> {
        self.privileged.or_else(|| {
            let linux = self.config.as_ref()?.linux.as_ref();
            let context = linux.and_then(|l| l.security_context.as_ref());
            Some(context.is_some_and(|c| c.privileged))
        })
    }

    /// The cgroup the runtime put the container in.
    pub fn cgroup(&self) -> Option<&str> {
        let path = self
            .runtime_spec
            .as_ref()?
            .linux
            .as_ref()?
            .cgroups_path
            .as_deref();
        path.filter(|p| !p.is_empty())
    }
}

/// A running container of `pod`, with the pod as labels and the
/// annotations as prefixed labels, and what else its status tells: image,
/// times, attempt.
pub(crate) fn container(status: &ContainerStatus, info: &VerboseInfo, pod: &Pod) -> Container {
    let pid = info.pid;
    let name = status.metadata.as_ref().map_or("", |m| m.name.as_str());
    let extra = [(POD_CONTAINER_NAME_LABEL, name)];
    let mut container = build(
        Arc::from(status.id.as_str()),
        name,
        &status.labels,
        &status.annotations,
        pod,
        &extra,
        pid,
    );
    if let Some(image) = status.image.as_ref().filter(|i| !i.image.is_empty()) {
        container = container.with_image(image.image.as_str());
    }
    // The image's id as kubelet reports it (imageID): the reference in use.
    let image_id = [&status.image_ref, &status.image_id]
        .into_iter()
        .find(|id| !id.is_empty());
    if let Some(image_id) = image_id {
        container = container.with_image_id(image_id.as_str());
    }
    if let Some(started) = time(status.started_at) {
        container = container.with_started(started);
    }
    if let Some(privileged) = info.privileged() {
        container = container.with_privileged(privileged);
    }
    if let Some(cgroup) = info.cgroup() {
        container = container.with_cgroup(cgroup);
    }
    container = container
        .with_resources(resources(status))
        .with_mounts(mounts(status));
    with_times_and_attempt(
        container,
        status.created_at,
        status.metadata.as_ref().map(|m| m.attempt),
    )
}

/// The container's limits as its status tells them (0: not set).
fn resources(status: &ContainerStatus) -> Resources {
    let linux = status.resources.as_ref().and_then(|r| r.linux.as_ref());
    let positive = |n: i64| u64::try_from(n).ok().filter(|n| *n > 0);
    let text = |s: &str| (!s.is_empty()).then(|| s.into());
    Resources {
        cgroup_parent: None,
        memory_limit: linux.and_then(|l| positive(l.memory_limit_in_bytes)),
        cpu_quota: linux.map(|l| l.cpu_quota).filter(|q| *q > 0),
        cpu_period: linux.and_then(|l| positive(l.cpu_period)),
        cpu_shares: linux.and_then(|l| positive(l.cpu_shares)),
        cpuset_cpus: linux.and_then(|l| text(&l.cpuset_cpus)),
        cpuset_mems: linux.and_then(|l| text(&l.cpuset_mems)),
    }
}

/// The CRI's mounts: host paths bound into the container.
fn mounts(status: &ContainerStatus) -> Vec<Mount> {
    status
        .mounts
        .iter()
        .map(|m| Mount {
            destination: m.container_path.as_str().into(),
            source: m.host_path.as_str().into(),
            kind: "bind".into(),
            read_only: m.readonly,
        })
        .collect()
}

/// A ready pod sandbox, as a container marked with the sandbox label and
/// named by its sandbox id, which is also its container name in the pod
/// (a pod's name is unique only within its Kubernetes namespace).
pub(crate) fn sandbox(status: &PodSandboxStatus, pod: &Pod, pid: u32) -> Container {
    let id = status.id.as_str();
    let extra = [(POD_SANDBOX_LABEL, ""), (POD_CONTAINER_NAME_LABEL, id)];
    // Its id, shared with its pod's record where that is its own.
    let shared_id = match &*pod.info.sandbox_id == id {
        true => pod.info.sandbox_id.clone(),
        false => Arc::from(id),
    };
    let sandbox = build(
        shared_id,
        id,
        &status.labels,
        &status.annotations,
        pod,
        &extra,
        pid,
    );
    with_times_and_attempt(
        sandbox,
        status.created_at,
        status.metadata.as_ref().map(|m| m.attempt),
    )
}

fn with_times_and_attempt(
    container: Container,
    created_at: i64,
    attempt: Option<u32>,
) -> Container {
    let container = match time(created_at) {
        Some(created) => container.with_created(created),
        None => container,
    };
    match attempt {
        Some(attempt) => container.with_restarts(attempt),
        None => container,
    }
}

/// CRI's nanoseconds since 1970; `None` for 0 (not set).
fn time(nanos: i64) -> Option<SystemTime> {
    let nanos = u64::try_from(nanos).ok().filter(|n| *n > 0)?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

fn build(
    id: Arc<str>,
    name: &str,
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
    pod: &Pod,
    extra: &[(&str, &str)],
    pid: u32,
) -> Container {
    let all: Labels = labels
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str()))
        .chain(
            annotations
                .iter()
                .map(|(k, v)| (format!("{ANNOTATION_KEY_PREFIX}{k}"), v.as_str())),
        )
        .chain([
            (POD_NAME_LABEL.to_owned(), &*pod.info.name),
            (POD_NAMESPACE_LABEL.to_owned(), &*pod.info.namespace),
            (POD_UID_LABEL.to_owned(), &*pod.info.uid),
        ])
        .chain(extra.iter().map(|(k, v)| ((*k).to_owned(), *v)))
        .collect();
    let mut container = Container::new(id, name, pid);
    // A pod without a uid (a sandbox without metadata) is no grouping.
    if !pod.info.uid.is_empty() {
        container = container.with_pod(pod.info.clone());
    }
    container = container.with_shared_network(pod.network.clone());
    if let Some(project) = labels.get(COMPOSE_PROJECT_LABEL) {
        container = container.with_project(project.as_str());
    }
    container.with_labels(all)
}

/// The lifecycle event of a CRI container event; creation and deletion
/// are not lifecycle changes of an alive container. Sandboxes report under
/// their own id.
pub(crate) fn engine_event(event: &ContainerEventResponse) -> Option<EngineEvent> {
    let kind = match ContainerEventType::try_from(event.container_event_type).ok()? {
        ContainerEventType::ContainerStartedEvent => EventKind::Started,
        ContainerEventType::ContainerStoppedEvent => EventKind::Exited,
        ContainerEventType::ContainerCreatedEvent | ContainerEventType::ContainerDeletedEvent => {
            return None
        }
    };
    let mut engine_event = EngineEvent::new(kind, event.container_id.clone());
    if let Some(at) = time(event.created_at) {
        engine_event = engine_event.at(at);
    }
    if kind == EventKind::Exited {
        // The event carries the container's status: its exit code, and
        // the reason kubelet reports (OOMKilled).
        let status = event
            .containers_statuses
            .iter()
            .find(|s| s.id == event.container_id);
        if let Some(status) = status {
            engine_event = engine_event.with_exit(Exit {
                code: Some(status.exit_code),
                oom_killed: Some(status.reason == "OOMKilled"),
            });
        }
    }
    Some(engine_event)
}

/// The version as `runtime version [API version]`, for example
/// `containerd v1.7.24 [API v1]`.
pub(crate) fn version(response: &VersionResponse) -> String {
    format!(
        "{} {} [API {}]",
        response.runtime_name, response.runtime_version, response.runtime_api_version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        pod_of(&PodSandboxStatus {
            id: "s1".into(),
            metadata: Some(k8s_cri::v1::PodSandboxMetadata {
                name: "web".into(),
                namespace: "shop".into(),
                uid: "u-1".into(),
                attempt: 0,
            }),
            ..Default::default()
        })
    }

    #[test]
    fn a_pod_tells_its_host_namespaces_and_addresses() {
        use k8s_cri::v1::{LinuxPodSandboxStatus, Namespace, NamespaceOption, PodIp};
        let status = |network: NamespaceMode, ips: &[&str]| PodSandboxStatus {
            id: "s1".into(),
            network: Some(k8s_cri::v1::PodSandboxNetworkStatus {
                ip: ips.first().copied().unwrap_or_default().into(),
                additional_ips: ips[1.min(ips.len())..]
                    .iter()
                    .map(|ip| PodIp { ip: (*ip).into() })
                    .collect(),
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(NamespaceOption {
                        network: network as i32,
                        pid: NamespaceMode::Node as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                }),
            }),
            labels: HashMap::from([("app".to_owned(), "web".to_owned())]),
            ..Default::default()
        };
        let own = pod_of(&status(NamespaceMode::Pod, &["198.18.0.5", "2001:db8::5"]));
        assert_eq!(&*own.info.sandbox_id, "s1");
        assert_eq!(own.info.labels.get("app"), Some("web"));
        assert_eq!(
            own.info.host_namespaces,
            HostNamespaces {
                network: false,
                pid: true,
                ipc: false
            }
        );
        let network = own.network;
        assert_eq!(&*network.mode, "pod");
        let ips: Vec<&str> = network.addresses.iter().map(|a| &*a.ip).collect();
        assert_eq!(ips, ["198.18.0.5", "2001:db8::5"]);
        let host = pod_of(&status(NamespaceMode::Node, &[]));
        assert!(host.info.host_namespaces.network);
        assert_eq!(&*host.network.mode, "host");
    }

    #[test]
    fn a_container_carries_its_pod_name_and_prefixed_annotations_as_labels() {
        let status = ContainerStatus {
            id: "c1".into(),
            metadata: Some(k8s_cri::v1::ContainerMetadata {
                name: "nginx".into(),
                attempt: 3,
            }),
            labels: HashMap::from([
                ("app".to_owned(), "nginx".to_owned()),
                (COMPOSE_PROJECT_LABEL.to_owned(), "shop".to_owned()),
            ]),
            annotations: HashMap::from([("note".to_owned(), "hello".to_owned())]),
            image: Some(k8s_cri::v1::ImageSpec {
                image: "docker.io/library/nginx:1.27".into(),
                ..Default::default()
            }),
            image_ref: "sha256:abcd".into(),
            created_at: 1_700_000_000_000_000_001,
            started_at: 1_700_000_000_000_000_002,
            ..Default::default()
        };
        let info = VerboseInfo {
            pid: 42,
            ..Default::default()
        };
        let c = container(&status, &info, &pod());
        assert_eq!((c.id(), c.name(), c.pid()), ("c1", "nginx", 42));
        assert_eq!(c.project(), "shop");
        // The Go module's values, as literals from engineclient/cri/cri.go.
        assert_eq!(c.label("app"), Some("nginx"));
        assert_eq!(c.label("io.kubernetes.annotation/note"), Some("hello"));
        assert_eq!(c.label("note"), None);
        assert_eq!(c.label("io.kubernetes.pod.name"), Some("web"));
        assert_eq!(c.label("io.kubernetes.pod.namespace"), Some("shop"));
        assert_eq!(c.label("io.kubernetes.pod.uid"), Some("u-1"));
        assert_eq!(c.label("io.kubernetes.container.name"), Some("nginx"));
        assert!(!c.labels().contains_key("io.kubernetes.sandbox"));
        assert!(!c.is_paused());
        // What else the status tells.
        assert_eq!(c.image(), Some("docker.io/library/nginx:1.27"));
        assert_eq!(c.image_id(), Some("sha256:abcd"));
        let at = |n| Some(UNIX_EPOCH + Duration::from_nanos(n));
        assert_eq!(c.created(), at(1_700_000_000_000_000_001));
        assert_eq!(c.started(), at(1_700_000_000_000_000_002));
        assert_eq!(c.restarts(), Some(3));
        assert_eq!(c.pod().map(|p| &*p.uid), Some("u-1"));
    }

    #[test]
    fn a_sandbox_is_named_by_its_id_and_marked_as_the_go_module_does() {
        let status = PodSandboxStatus {
            id: "s1".into(),
            annotations: HashMap::from([("note".to_owned(), "hello".to_owned())]),
            created_at: 5,
            ..Default::default()
        };
        let s = sandbox(&status, &pod(), 7);
        assert_eq!((s.id(), s.name(), s.pid()), ("s1", "s1", 7));
        assert_eq!(s.label("io.kubernetes.sandbox"), Some(""));
        assert_eq!(s.label("io.kubernetes.container.name"), Some("s1"));
        assert_eq!(s.label("io.kubernetes.pod.name"), Some("web"));
        assert_eq!(s.label("io.kubernetes.annotation/note"), Some("hello"));
        assert_eq!(s.project(), "");
        assert_eq!(s.created(), Some(UNIX_EPOCH + Duration::from_nanos(5)));
        assert_eq!((s.image(), s.started()), (None, None));
        assert_eq!(s.pod().map(|p| &*p.name), Some("web"));
    }

    #[test]
    fn verbose_info_yields_pid_and_sandbox() {
        let info = HashMap::from([(
            "info".to_owned(),
            r#"{"sandboxID":"s1","pid":1234,"runtimeSpec":{"ociVersion":"1.1.0"}}"#.to_owned(),
        )]);
        assert_eq!(
            VerboseInfo::parse(&info),
            Some(VerboseInfo {
                pid: 1234,
                sandbox_id: Some("s1".into()),
                runtime_spec: Some(InfoSpec::default()),
                ..Default::default()
            })
        );
        // containerd repeats the configuration; cri-o says it itself.
        let containerd = HashMap::from([(
            "info".to_owned(),
            r#"{"config":{"linux":{"security_context":{"privileged":true}}},
                "runtimeSpec":{"linux":{"cgroupsPath":"/k8s.io/c1"}}}"#
                .to_owned(),
        )]);
        let parsed = VerboseInfo::parse(&containerd).unwrap();
        assert_eq!(
            (parsed.privileged(), parsed.cgroup()),
            (Some(true), Some("/k8s.io/c1"))
        );
        let plain = HashMap::from([("info".to_owned(), r#"{"config":{}}"#.to_owned())]);
        assert_eq!(
            VerboseInfo::parse(&plain).unwrap().privileged(),
            Some(false)
        );
        let crio = HashMap::from([("info".to_owned(), r#"{"privileged":true}"#.to_owned())]);
        assert_eq!(VerboseInfo::parse(&crio).unwrap().privileged(), Some(true));
        let silent = HashMap::from([("info".to_owned(), "{}".to_owned())]);
        assert_eq!(VerboseInfo::parse(&silent).unwrap().privileged(), None);
        assert_eq!(VerboseInfo::parse(&HashMap::new()), None);
        let garbage = HashMap::from([("info".to_owned(), "{".to_owned())]);
        assert_eq!(VerboseInfo::parse(&garbage), None);
    }

    #[test]
    fn started_and_stopped_are_lifecycle_events_created_and_deleted_are_not() {
        let event = |kind: ContainerEventType| ContainerEventResponse {
            container_id: "c1".into(),
            container_event_type: kind as i32,
            created_at: 1_700_000_000_123_456_789,
            ..Default::default()
        };
        let started = engine_event(&event(ContainerEventType::ContainerStartedEvent)).unwrap();
        assert_eq!(
            (started.kind, started.id.as_str()),
            (EventKind::Started, "c1")
        );
        assert_eq!(
            started.timestamp,
            Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789))
        );
        let stopped = engine_event(&event(ContainerEventType::ContainerStoppedEvent)).unwrap();
        assert_eq!(stopped.kind, EventKind::Exited);
        assert_eq!(stopped.exit, None, "no status, nothing told");
        let killed = ContainerEventResponse {
            containers_statuses: vec![ContainerStatus {
                id: "c1".into(),
                exit_code: 137,
                reason: "OOMKilled".into(),
                ..Default::default()
            }],
            ..event(ContainerEventType::ContainerStoppedEvent)
        };
        assert_eq!(
            engine_event(&killed).unwrap().exit,
            Some(Exit {
                code: Some(137),
                oom_killed: Some(true)
            })
        );
        assert_eq!(
            engine_event(&event(ContainerEventType::ContainerCreatedEvent)),
            None
        );
        assert_eq!(
            engine_event(&event(ContainerEventType::ContainerDeletedEvent)),
            None
        );
        let unknown = ContainerEventResponse {
            container_event_type: 99,
            ..Default::default()
        };
        assert_eq!(engine_event(&unknown), None);
    }

    #[test]
    fn version_names_runtime_and_api() {
        let v = VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "containerd".into(),
            runtime_version: "v1.7.24".into(),
            runtime_api_version: "v1".into(),
        };
        assert_eq!(version(&v), "containerd v1.7.24 [API v1]");
    }
}
