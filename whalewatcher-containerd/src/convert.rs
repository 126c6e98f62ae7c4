//! Pure conversions of containerd's records and events into the core's
//! model.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::events::{TaskExit, TaskOom, TaskPaused, TaskResumed, TaskStart};
use containerd_client::services::v1::Container as Record;
use containerd_client::types::v1::{Process, Status};
use containerd_client::types::Envelope;
use prost::Message;
use whalewatcher_core::{Container, EngineEvent, EventKind, Exit, Labels, COMPOSE_PROJECT_LABEL};

use crate::kept::KeptRecord;

/// The label nerdctl stores a container's name in.
pub const NERDCTL_NAME_LABEL: &str = "nerdctl/name";

/// The id the portfolio shows: `namespace/id`, or just `id` in `default`.
pub(crate) fn display_id(namespace: &str, id: &str) -> String {
    if namespace == "default" {
        id.to_owned()
    } else {
        format!("{namespace}/{id}")
    }
}

/// The namespace and containerd id of a display id.
pub(crate) fn split_display_id(display_id: &str) -> (&str, &str) {
    display_id
        .split_once('/')
        .unwrap_or(("default", display_id))
}

/// The container a task belongs to. A task from the task *list* names its
/// container in `id` and leaves `container_id` empty (seen on containerd
/// 1.7); a task from a get fills `container_id`.
/// How a stopped task exited; `None` for a task in any other state.
pub(crate) fn stopped_exit(task: &Process) -> Option<whalewatcher_core::Exit> {
    (Status::try_from(task.status).ok()? == Status::Stopped).then(|| whalewatcher_core::Exit {
        code: i32::try_from(task.exit_status).ok(),
        oom_killed: None,
    })
}

pub(crate) fn task_container_id(task: &Process) -> &str {
    if task.container_id.is_empty() {
        &task.id
    } else {
        &task.container_id
    }
}

/// What a container record gives its container: containerd-client's full
/// record (for a packer, and a single inspect), or the kept fields alone
/// (a sync's stream).
pub(crate) trait RecordFields {
    fn id(&self) -> &str;
    fn label(&self, key: &str) -> Option<&str>;
    fn labels(&self) -> Labels;
    fn image(&self) -> &str;
    fn created_at(&self) -> Option<&prost_types::Timestamp>;
}

/// The same fields, by the same names, in both: a map of labels (hashed
/// in the full record, sorted in the kept one).
macro_rules! record_fields {
    ($($record:ty),*) => {$(
        impl RecordFields for $record {
            fn id(&self) -> &str {
                &self.id
            }
            fn label(&self, key: &str) -> Option<&str> {
                self.labels.get(key).map(String::as_str)
            }
            fn labels(&self) -> Labels {
                self.labels.iter().collect()
            }
            fn image(&self) -> &str {
                &self.image
            }
            fn created_at(&self) -> Option<&prost_types::Timestamp> {
                self.created_at.as_ref()
            }
        }
    )*};
}

record_fields!(Record, KeptRecord);

/// The label in which containerd's restart monitor counts a container's
/// restarts.
pub(crate) const RESTART_COUNT_LABEL: &str = "containerd.io/restart.count";

/// The container of a record and its task, if the task is alive: running,
/// or pausing/paused.
pub(crate) fn container(
    namespace: &str,
    record: &impl RecordFields,
    task: &Process,
) -> Option<Container> {
    let paused = match Status::try_from(task.status).ok()? {
        Status::Running => false,
        Status::Paused | Status::Pausing => true,
        _ => return None,
    };
    if task.pid == 0 {
        return None;
    }
    // As the Go module does: the nerdctl name, else the id, prefixed by
    // the namespace outside `default`, so names are unique across
    // namespaces.
    let name = display_id(
        namespace,
        record.label(NERDCTL_NAME_LABEL).unwrap_or(record.id()),
    );
    let project = record.label(COMPOSE_PROJECT_LABEL).unwrap_or_default();
    let mut container = Container::new(display_id(namespace, record.id()), name, task.pid)
        .with_labels(record.labels())
        .with_project(project)
        .with_paused(paused);
    // containerd tells the image as named and the creation time; neither
    // an image id (that would take an image service call) nor a start
    // time. Restarts only as its restart monitor (`ctr run --restart`,
    // nerdctl) counts them, in a label.
    if let Some(restarts) = record
        .label(RESTART_COUNT_LABEL)
        .and_then(|n| n.parse().ok())
    {
        container = container.with_restarts(restarts);
    }
    if !record.image().is_empty() {
        container = container.with_image(record.image());
    }
    if let Some(created) = record.created_at().and_then(time) {
        container = container.with_created(created);
    }
    Some(container)
}

/// A protobuf timestamp as a [`SystemTime`]; `None` before 1970.
fn time(timestamp: &prost_types::Timestamp) -> Option<SystemTime> {
    let nanos = u64::try_from(timestamp.seconds).ok()? * 1_000_000_000
        + u64::try_from(timestamp.nanos).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// The container an OOM event is about (`/tasks/oom`), as display id.
pub(crate) fn oom_killed(envelope: &Envelope) -> Option<String> {
    if envelope.topic != "/tasks/oom" {
        return None;
    }
    let oom = TaskOom::decode(envelope.event.as_ref()?.value.as_slice()).ok()?;
    Some(display_id(&envelope.namespace, &oom.container_id))
}

/// The lifecycle event in an envelope, if it is one. A `/tasks/exit` of an
/// exec'd process (its id differs from the container's) is not the
/// container dying, so it is no event here.
pub(crate) fn engine_event(envelope: &Envelope) -> Option<EngineEvent> {
    let any = envelope.event.as_ref()?;
    let (kind, container_id) = match envelope.topic.as_str() {
        "/tasks/start" => (
            EventKind::Started,
            TaskStart::decode(any.value.as_slice()).ok()?.container_id,
        ),
        "/tasks/exit" => {
            let exit = TaskExit::decode(any.value.as_slice()).ok()?;
            if !exit.id.is_empty() && exit.id != exit.container_id {
                return None;
            }
            let mut event = EngineEvent::new(
                EventKind::Exited,
                display_id(&envelope.namespace, &exit.container_id),
            )
            .with_exit(Exit {
                code: i32::try_from(exit.exit_status).ok(),
                oom_killed: None,
            });
            event.timestamp = envelope.timestamp.as_ref().and_then(time);
            return Some(event);
        }
        "/tasks/paused" => (
            EventKind::Paused,
            TaskPaused::decode(any.value.as_slice()).ok()?.container_id,
        ),
        "/tasks/resumed" => (
            EventKind::Unpaused,
            TaskResumed::decode(any.value.as_slice()).ok()?.container_id,
        ),
        _ => return None,
    };
    let mut event = EngineEvent::new(kind, display_id(&envelope.namespace, &container_id));
    event.timestamp = envelope.timestamp.as_ref().and_then(time);
    Some(event)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn envelope(namespace: &str, topic: &str, event: impl Message) -> Envelope {
        Envelope {
            timestamp: Some(prost_types::Timestamp {
                seconds: 2,
                nanos: 5,
            }),
            namespace: namespace.into(),
            topic: topic.into(),
            event: Some(prost_types::Any {
                type_url: "containerd.events.X".into(),
                value: event.encode_to_vec(),
            }),
        }
    }

    #[test]
    fn display_ids_carry_the_namespace_except_in_default() {
        assert_eq!(display_id("default", "web"), "web");
        assert_eq!(display_id("shop", "web"), "shop/web");
        assert_eq!(split_display_id("shop/web"), ("shop", "web"));
        assert_eq!(split_display_id("web"), ("default", "web"));
    }

    #[test]
    fn alive_tasks_become_containers_with_nerdctl_name_and_project() {
        let record = Record {
            id: "c1".into(),
            labels: HashMap::from([
                // The Go module's label, as a literal.
                ("nerdctl/name".into(), "web".into()),
                (COMPOSE_PROJECT_LABEL.into(), "shop".into()),
            ]),
            ..Default::default()
        };
        let task = |status: Status| Process {
            container_id: "c1".into(),
            pid: 42,
            status: status as i32,
            ..Default::default()
        };
        let c = container("ns", &record, &task(Status::Running)).unwrap();
        assert_eq!(
            (c.id(), c.name(), c.pid(), c.project()),
            ("ns/c1", "ns/web", 42, "shop")
        );
        assert!(!c.is_paused());
        assert!(container("ns", &record, &task(Status::Pausing))
            .unwrap()
            .is_paused());
        assert!(container("ns", &record, &task(Status::Paused))
            .unwrap()
            .is_paused());
        for dead in [Status::Created, Status::Stopped, Status::Unknown] {
            assert!(container("ns", &record, &task(dead)).is_none(), "{dead:?}");
        }
        assert_eq!(c.image(), None);
        let imaged = Record {
            image: "docker.io/library/busybox:latest".into(),
            created_at: Some(prost_types::Timestamp {
                seconds: 3,
                nanos: 4,
            }),
            ..record.clone()
        };
        let c = container("ns", &imaged, &task(Status::Running)).unwrap();
        assert_eq!(c.image(), Some("docker.io/library/busybox:latest"));
        assert_eq!(
            c.created(),
            Some(UNIX_EPOCH + Duration::from_nanos(3_000_000_004))
        );
        assert_eq!(
            (c.image_id(), c.started(), c.restarts()),
            (None, None, None)
        );
        let unnamed = Record {
            id: "c2".into(),
            ..Default::default()
        };
        let name = |namespace| {
            container(namespace, &unnamed, &task(Status::Running))
                .unwrap()
                .name()
                .to_owned()
        };
        // As the Go module names them: `whalewatcher-testing/rappelfatz`.
        assert_eq!(name("default"), "c2");
        assert_eq!(name("ns"), "ns/c2");
        let named = container("default", &record, &task(Status::Running)).unwrap();
        assert_eq!(named.name(), "web");
        // Restarts as containerd's restart monitor counts them.
        let mut restarted = record.clone();
        restarted
            .labels
            .insert(RESTART_COUNT_LABEL.into(), "3".into());
        let c = container("ns", &restarted, &task(Status::Running)).unwrap();
        assert_eq!(c.restarts(), Some(3));
    }

    #[test]
    fn listed_tasks_name_their_container_in_id() {
        let listed = Process {
            id: "c1".into(),
            pid: 3,
            ..Default::default()
        };
        assert_eq!(task_container_id(&listed), "c1");
        let got = Process {
            container_id: "c1".into(),
            ..Default::default()
        };
        assert_eq!(task_container_id(&got), "c1");
    }

    #[test]
    fn task_events_map_and_exec_exits_do_not_remove_the_container() {
        let start = envelope(
            "ns",
            "/tasks/start",
            TaskStart {
                container_id: "c1".into(),
                pid: 7,
            },
        );
        let event = engine_event(&start).unwrap();
        assert_eq!(
            (event.kind, event.id.as_str()),
            (EventKind::Started, "ns/c1")
        );
        assert_eq!(
            event.timestamp,
            Some(UNIX_EPOCH + Duration::from_nanos(2_000_000_005))
        );

        let exit = |id: &str| TaskExit {
            container_id: "c1".into(),
            id: id.into(),
            exit_status: 137,
            ..Default::default()
        };
        let exited = engine_event(&envelope("ns", "/tasks/exit", exit("c1"))).unwrap();
        assert_eq!(
            (exited.kind, exited.id.as_str()),
            (EventKind::Exited, "ns/c1")
        );
        assert_eq!(
            exited.exit,
            Some(Exit {
                code: Some(137),
                oom_killed: None
            })
        );
        assert_eq!(
            exited.timestamp,
            Some(UNIX_EPOCH + Duration::from_nanos(2_000_000_005))
        );
        let oom = envelope(
            "ns",
            "/tasks/oom",
            TaskOom {
                container_id: "c1".into(),
            },
        );
        assert_eq!(oom_killed(&oom).as_deref(), Some("ns/c1"));
        assert_eq!(engine_event(&oom), None);
        assert_eq!(oom_killed(&start), None);
        assert!(engine_event(&envelope("ns", "/tasks/exit", exit("exec-1"))).is_none());

        let paused = envelope(
            "default",
            "/tasks/paused",
            TaskPaused {
                container_id: "c1".into(),
            },
        );
        assert_eq!(engine_event(&paused).unwrap().id, "c1");
        let resumed = envelope(
            "default",
            "/tasks/resumed",
            TaskResumed {
                container_id: "c1".into(),
            },
        );
        assert_eq!(engine_event(&resumed).unwrap().kind, EventKind::Unpaused);
        assert!(engine_event(&envelope(
            "default",
            "/containers/create",
            TaskPaused::default()
        ))
        .is_none());
    }
}
