//! Smoke tests that prove the rig: each engine runs a container, shows it
//! with a PID, and reports its start as an event.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptionsBuilder;
use containerd_client::events::TaskStart;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{GetRequest, ListNamespacesRequest};
use futures::StreamExt;
use k8s_cri::v1::{ContainerEventType, ContainerStatusRequest, GetEventsRequest};
use prost::Message;
use whalewatcher_tests::containerd::{namespaced, wait_for_event, ContainerdTest};
use whalewatcher_tests::cri::CriTest;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::rig::{self, Rig};
use whalewatcher_tests::within;

/// A container runs, the API shows it with a PID, a start event arrives.
async fn docker_api_smoke(engine: &rig::Engine, test: &str) {
    let t = DockerTest::connect(engine, test).await;
    let version = t.docker.version().await.expect("version").version;
    assert_eq!(version.as_deref(), Some(engine.version.as_str()));

    // Replay from a second ago, so the subscription cannot miss the start.
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let mut filters = t.label_filter();
    filters.insert("type".into(), vec!["container".into()]);
    filters.insert("event".into(), vec!["start".into()]);
    let options = EventsOptionsBuilder::new()
        .since(&since.to_string())
        .filters(&filters)
        .build();
    let mut events = t.docker.events(Some(options));

    let id = t.run("smoke", &[]).await;
    let inspected = t
        .docker
        .inspect_container(&id, None)
        .await
        .expect("inspect");
    let state = inspected.state.expect("state");
    assert_eq!(state.running, Some(true));
    assert!(state.pid.unwrap_or(0) > 0, "no PID: {state:?}");

    let started = within("the start event", async {
        loop {
            let event = events
                .next()
                .await
                .expect("event stream open")
                .expect("event");
            if event.actor.as_ref().and_then(|a| a.id.as_deref()) == Some(id.as_str()) {
                return event;
            }
        }
    })
    .await;
    assert_eq!(started.action.as_deref(), Some("start"));
}

#[tokio::test(flavor = "multi_thread")]
async fn host_dockerd_runs_a_container_with_a_pid_and_reports_its_start() {
    let rig = Rig::load();
    docker_api_smoke(&rig.host_docker, "smoke-host-docker").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerd_26_runs_a_container_with_a_pid_and_reports_its_start() {
    let rig = Rig::load();
    assert!(
        rig.docker.version.starts_with("26."),
        "{}",
        rig.docker.version
    );
    docker_api_smoke(&rig.docker, "smoke-docker26").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_runs_a_container_with_a_pid_and_reports_its_start_through_the_docker_api() {
    let rig = Rig::load();
    assert!(
        rig.podman.version.starts_with("5."),
        "{}",
        rig.podman.version
    );
    docker_api_smoke(&rig.podman, "smoke-podman").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_lists_namespaces_runs_a_task_and_reports_its_start() {
    let rig = Rig::load();
    let t = ContainerdTest::connect(&rig.containerd, "smoke-containerd").await;
    let mut events = t.subscribe(&["topic==\"/tasks/start\""]).await;

    let id = format!("smoke-{}", t.label);
    t.run("rig-smoke", &id, &[]);

    let namespaces = NamespacesClient::new(t.channel.clone())
        .list(ListNamespacesRequest::default())
        .await
        .expect("namespaces")
        .into_inner()
        .namespaces;
    let names: Vec<&str> = namespaces.iter().map(|n| n.name.as_str()).collect();
    assert!(
        names.contains(&"rig-smoke") && names.contains(&"default"),
        "{names:?}"
    );

    let envelope = wait_for_event(&mut events, "/tasks/start of the task", |e| {
        e.namespace == "rig-smoke"
            && e.event
                .as_ref()
                .and_then(|any| TaskStart::decode(any.value.as_slice()).ok())
                .is_some_and(|start| start.container_id == id)
    })
    .await;
    let started = TaskStart::decode(envelope.event.unwrap().value.as_slice()).unwrap();

    let task = TasksClient::new(t.channel.clone())
        .get(namespaced(
            GetRequest {
                container_id: id.clone(),
                exec_id: String::new(),
            },
            "rig-smoke",
        ))
        .await
        .expect("task")
        .into_inner()
        .process
        .expect("process");
    assert!(task.pid > 0);
    assert_eq!(task.pid, started.pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_runs_a_host_network_pod_whose_verbose_status_has_a_pid_and_reports_started() {
    let rig = Rig::load();
    let t = CriTest::connect(&rig.containerd, "smoke-cri").await;

    // The call returns only with the first event; events while nobody
    // listens are queued by containerd and replayed, so none is lost.
    let (tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let mut client = t.client.clone();
    let listener = tokio::spawn(async move {
        let mut events = client
            .get_container_events(GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner();
        while let Some(Ok(event)) = events.next().await {
            if event.container_event_type == ContainerEventType::ContainerStartedEvent as i32 {
                let _ = tx.send(event.container_id);
            }
        }
    });

    let pod = t.run_pod("smoke", "rig-smoke").await;
    let id = t.run_container(&pod, "sleeper").await;

    let status = t
        .client
        .clone()
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .expect("container status")
        .into_inner();
    let info: HashMap<String, serde_json::Value> =
        serde_json::from_str(status.info.get("info").expect("verbose info")).expect("info JSON");
    assert!(info["pid"].as_u64().unwrap_or(0) > 0, "no pid in {info:?}");

    within("CONTAINER_STARTED_EVENT of the container", async {
        while started.recv().await.expect("event stream ended") != id {}
    })
    .await;
    listener.abort();
    tokio::time::sleep(Duration::ZERO).await;
}

/// The containers a `DockerTest` made, as the host dockerd lists them.
fn left_by(rig: &Rig, label: &str) -> Vec<String> {
    let filter = format!("label={}={label}", whalewatcher_tests::TEST_LABEL);
    whalewatcher_tests::run_command(
        "docker",
        &[
            "-H",
            &rig.host_docker.endpoint,
            "ps",
            "-aq",
            "--filter",
            &filter,
        ],
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_test_on_the_tcp_and_tls_relays_removes_its_containers_when_dropped() {
    let rig = Rig::load();
    for engine in [&rig.host_docker_tcp, &rig.host_docker_tls] {
        let t = DockerTest::connect(engine, "relay-cleanup").await;
        t.run("left", &[]).await;
        let label = t.label.clone();
        assert_eq!(left_by(&rig, &label).len(), 1, "{}", engine.endpoint);
        drop(t);
        assert_eq!(
            left_by(&rig, &label),
            Vec::<String>::new(),
            "{}: removed on drop",
            engine.endpoint
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_test_removes_more_containers_than_one_cleanup_batch_when_dropped() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "batch-cleanup").await;
    futures::stream::iter((0..25).map(|n| {
        let name = format!("b{n:02}");
        let t = &t;
        async move { t.run(&name, &[]).await }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    let label = t.label.clone();
    assert_eq!(left_by(&rig, &label).len(), 25);
    drop(t);
    assert_eq!(
        left_by(&rig, &label),
        Vec::<String>::new(),
        "removed on drop"
    );
}

/// What a test says when a docker command hangs: the host dockerd's
/// goroutine dump, read from where that dockerd writes it.
#[test]
fn the_host_dockerds_goroutine_dump_is_read() {
    Rig::load();
    let stuck = rig::host_dockerd_stuck_goroutines().expect("a dump");
    assert_eq!(stuck, "", "the host dockerd waits on locks for minutes");
    // At once again: dockerd's second dump of the same second replaces the
    // first under its name, and is found as new all the same.
    rig::host_dockerd_stuck_goroutines().expect("a second dump");
}
