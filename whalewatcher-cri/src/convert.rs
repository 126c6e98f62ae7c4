//! Pure conversions of CRI records and events into the core's model.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_cri::v1::{
    ContainerEventResponse, ContainerEventType, ContainerStatus, PodSandboxMetadata,
    PodSandboxStatus, VersionResponse,
};
use serde::Deserialize;
use whalewatcher_core::{
    Container, EngineEvent, EventKind, Exit, Labels, PodInfo, COMPOSE_PROJECT_LABEL,
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

/// The pod of a container or sandbox, shared by all of the pod's.
pub(crate) type Pod = Arc<PodInfo>;

/// The pod a sandbox's metadata describes.
pub(crate) fn pod_of(metadata: Option<&PodSandboxMetadata>) -> Pod {
    Arc::new(
        metadata
            .map(|m| PodInfo {
                uid: m.uid.as_str().into(),
                name: m.name.as_str().into(),
                namespace: m.namespace.as_str().into(),
            })
            .unwrap_or_else(|| PodInfo {
                uid: "".into(),
                name: "".into(),
                namespace: "".into(),
            }),
    )
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
}

impl VerboseInfo {
    /// Parses the `info` entry of a verbose status; `None` when missing or
    /// not JSON.
    pub fn parse(info: &HashMap<String, String>) -> Option<VerboseInfo> {
        serde_json::from_str(info.get("info")?).ok()
    }
}

/// A running container of `pod`, with the pod as labels and the
/// annotations as prefixed labels, and what else its status tells: image,
/// times, attempt.
pub(crate) fn container(status: &ContainerStatus, pod: &Pod, pid: u32) -> Container {
    let name = status.metadata.as_ref().map_or("", |m| m.name.as_str());
    let extra = [(POD_CONTAINER_NAME_LABEL, name)];
    let mut container = build(
        &status.id,
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
    with_times_and_attempt(
        container,
        status.created_at,
        status.metadata.as_ref().map(|m| m.attempt),
    )
}

/// A ready pod sandbox, as a container marked with the sandbox label and
/// named by its sandbox id, which is also its container name in the pod
/// (a pod's name is unique only within its Kubernetes namespace).
pub(crate) fn sandbox(status: &PodSandboxStatus, pod: &Pod, pid: u32) -> Container {
    let id = status.id.as_str();
    let extra = [(POD_SANDBOX_LABEL, ""), (POD_CONTAINER_NAME_LABEL, id)];
    let sandbox = build(
        id,
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
    id: &str,
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
            (POD_NAME_LABEL.to_owned(), &*pod.name),
            (POD_NAMESPACE_LABEL.to_owned(), &*pod.namespace),
            (POD_UID_LABEL.to_owned(), &*pod.uid),
        ])
        .chain(extra.iter().map(|(k, v)| ((*k).to_owned(), *v)))
        .collect();
    let mut container = Container::new(id, name, pid);
    // A pod without a uid (a sandbox without metadata) is no grouping.
    if !pod.uid.is_empty() {
        container = container.with_pod(pod.clone());
    }
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
        pod_of(Some(&PodSandboxMetadata {
            name: "web".into(),
            namespace: "shop".into(),
            uid: "u-1".into(),
            attempt: 0,
        }))
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
        let c = container(&status, &pod(), 42);
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
                sandbox_id: Some("s1".into())
            })
        );
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
