//! whalewatcher-moby against the real Docker-API engines of the rig: host
//! dockerd 20.10 (over its unix socket, plain tcp and TLS), dockerd 26 and
//! podman 5. Every scenario runs on each.
//!
//! Tests on one engine run in parallel, so each compares only the
//! containers that carry its own test label.

use std::collections::BTreeMap;
use std::sync::Arc;

use bollard::models::HostConfig;
use bollard::query_parameters::{ListContainersOptionsBuilder, RestartContainerOptionsBuilder};
use futures::StreamExt;
use whalewatcher_core::{
    CancellationToken, Container, EngineError, EventKind, RetryPolicy, WatchError, Watcher,
    COMPOSE_PROJECT_LABEL,
};
use whalewatcher_moby::{
    MobyEngine, DOCKER_TYPE, INFRA_LABEL, PODMAN_TYPE, POD_ID_LABEL, POD_NAME_LABEL,
    PRIVILEGED_LABEL,
};
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::http_proxy::{HttpProxy, Rules};
use whalewatcher_tests::rig::{self, Rig};
use whalewatcher_tests::watching::Watching;
use whalewatcher_tests::{eventually, run_command, within, TEST_LABEL};

fn moby(engine: &rig::Engine) -> MobyEngine {
    moby_builder(engine).build().expect("engine")
}

/// A builder for `engine`, with its TLS certificates if it has any.
fn moby_builder(engine: &rig::Engine) -> whalewatcher_moby::MobyEngineBuilder {
    let builder = MobyEngine::builder().endpoint(engine.endpoint.clone());
    match &engine.tls_certs {
        Some(certs) => builder.tls_certs(certs),
        None => builder,
    }
}

/// What the engine itself says of one alive container.
#[derive(Debug, PartialEq)]
struct Truth {
    name: String,
    pid: u32,
    paused: bool,
    project: String,
    privileged: bool,
    labels: BTreeMap<String, String>,
}

/// What the engine itself says of this test's alive containers.
async fn truth(t: &DockerTest) -> BTreeMap<String, Truth> {
    // All of them, judged by inspect: podman's list without `all` leaves
    // out paused containers.
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&t.label_filter())
        .build();
    let mut truth = BTreeMap::new();
    for summary in t.docker.list_containers(Some(options)).await.expect("list") {
        let id = summary.id.expect("id");
        let Some(inspected) = t.inspect_if_present(&id).await else {
            continue; // removed since the list
        };
        let state = inspected.state.expect("state");
        if !(state.running == Some(true) || state.paused == Some(true)) {
            continue;
        }
        let labels: BTreeMap<String, String> = inspected
            .config
            .and_then(|c| c.labels)
            .unwrap_or_default()
            .into_iter()
            .collect();
        truth.insert(
            id,
            Truth {
                name: inspected
                    .name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
                pid: state.pid.unwrap_or(0) as u32,
                paused: state.paused == Some(true),
                project: labels
                    .get(COMPOSE_PROJECT_LABEL)
                    .cloned()
                    .unwrap_or_default(),
                privileged: inspected.host_config.and_then(|h| h.privileged) == Some(true),
                labels,
            },
        );
    }
    truth
}

/// A container's labels as the engine set them: without the markers the
/// engine crate adds (privileged, podman's pod).
fn engine_labels(c: &Container) -> BTreeMap<String, String> {
    let added = [PRIVILEGED_LABEL, POD_ID_LABEL, POD_NAME_LABEL, INFRA_LABEL];
    c.labels()
        .iter()
        .filter(|(k, _)| !added.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Whether the portfolio shows exactly the engine's truth for this test:
/// ids, names, PIDs, pause states, projects, privileged markers, and every
/// label.
async fn matches_truth(w: &Watching, t: &DockerTest) -> bool {
    let truth = truth(t).await;
    let mine = w.mine(&t.label);
    mine.len() == truth.len()
        && truth.iter().all(|(id, truth)| {
            mine.get(id).is_some_and(|c| {
                c.name() == truth.name
                    && c.pid() == truth.pid
                    && c.is_paused() == truth.paused
                    && c.project() == truth.project
                    && c.labels().contains_key(PRIVILEGED_LABEL) == truth.privileged
                    && engine_labels(c) == truth.labels
            })
        })
}

async fn wait_for_truth(w: &Watching, t: &DockerTest, what: &str) {
    let deadline = tokio::time::Instant::now() + whalewatcher_tests::DEADLINE;
    while !matches_truth(w, t).await {
        if tokio::time::Instant::now() >= deadline {
            let truth = truth(t).await;
            let mine = w.mine(&t.label);
            let only_truth: Vec<_> = truth
                .iter()
                .filter(|(id, _)| !mine.contains_key(*id))
                .collect();
            let only_mine: Vec<_> = mine
                .values()
                .filter(|c| !truth.contains_key(c.id()))
                .collect();
            let differing: Vec<_> = mine
                .values()
                .filter_map(|c| truth.get(c.id()).map(|t| (c, t)))
                .filter(|(c, t)| {
                    c.pid() != t.pid || c.is_paused() != t.paused || engine_labels(c) != t.labels
                })
                .collect();
            panic!(
                "timed out waiting for {what}:\n only in the engine: {only_truth:?}\n \
                 only in the portfolio: {only_mine:?}\n differing: {differing:?}\n events: {:?}",
                w.watcher.status()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

// ---- scenarios, each run on every engine ----

/// ~20 containers in two compose projects and standalone, one paused, one
/// privileged (where the engine can run one), a few stopped.
async fn initial_sync_equals_the_truth(engine: &rig::Engine, can_run_privileged: bool) {
    let t = DockerTest::connect(engine, "moby-initial-sync").await;
    let shop = format!("shop-{}", t.label);
    let blog = format!("blog-{}", t.label);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            t.run(&format!("shop{i}"), &[(COMPOSE_PROJECT_LABEL, &shop)])
                .await,
        );
    }
    for i in 0..5 {
        ids.push(
            t.run(&format!("blog{i}"), &[(COMPOSE_PROJECT_LABEL, &blog)])
                .await,
        );
    }
    for i in 0..6 {
        ids.push(
            t.run(&format!("solo{i}"), &[("purpose", "standalone")])
                .await,
        );
    }
    t.pause(&ids[0]).await;
    if can_run_privileged {
        let privileged = HostConfig {
            privileged: Some(true),
            ..Default::default()
        };
        t.run_with("privileged", &[], privileged).await;
    }
    for i in 0..2 {
        let stopped = t.run(&format!("stopped{i}"), &[]).await;
        t.kill(&stopped).await;
    }
    t.create("never-started", &[], HostConfig::default()).await;

    let w = Watching::synced(moby(engine)).await;
    assert!(
        matches_truth(&w, &t).await,
        "portfolio differs from the engine's truth"
    );
    let portfolio = w.watcher.portfolio();
    assert_eq!(portfolio.project(&shop).map(|p| p.len()), Some(6));
    assert_eq!(portfolio.project(&blog).map(|p| p.len()), Some(5));
    assert!(portfolio.container(&ids[0]).unwrap().is_paused());
    let privileged = w
        .mine(&t.label)
        .values()
        .filter(|c| c.labels().contains_key(PRIVILEGED_LABEL))
        .count();
    assert_eq!(privileged, usize::from(can_run_privileged));
    assert_eq!(w.mine(&t.label).len(), 17 + usize::from(can_run_privileged));
    assert!(
        w.mine(&t.label)
            .values()
            .all(|c| !c.name().starts_with('/')),
        "names without the leading slash"
    );
    w.stop().await;
}

/// The engine's own lifecycle events of container `id` since `since`, up
/// to its exit.
async fn engine_log(t: &DockerTest, id: &str, since: u64) -> Vec<EventKind> {
    let filters = std::collections::HashMap::from([
        ("container", vec![id]),
        ("event", vec!["start", "die", "pause", "unpause"]),
    ]);
    let options = bollard::query_parameters::EventsOptionsBuilder::new()
        .since(&since.to_string())
        .filters(&filters)
        .build();
    let mut events = t.docker.events(Some(options));
    let mut kinds = Vec::new();
    within("the engine's own event log", async {
        while kinds.last() != Some(&EventKind::Exited) {
            let event = events.next().await.expect("stream open").expect("event");
            kinds.push(match event.action.as_deref() {
                Some("start") => EventKind::Started,
                Some("pause") => EventKind::Paused,
                Some("unpause") => EventKind::Unpaused,
                _ => EventKind::Exited,
            });
        }
    })
    .await;
    kinds
}

/// start, pause, unpause, kill: portfolio and events follow, in order.
async fn lifecycle_is_followed_in_order(engine: &rig::Engine) {
    let t = DockerTest::connect(engine, "moby-lifecycle").await;
    let mut w = Watching::synced(moby(engine)).await;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;

    let id = t.run("life", &[]).await;
    w.events_of(&id, "started", |k| k.contains(&EventKind::Started))
        .await;
    assert!(w
        .watcher
        .portfolio()
        .container(&id)
        .is_some_and(|c| c.pid() > 0));
    t.pause(&id).await;
    w.events_of(&id, "paused", |k| k.contains(&EventKind::Paused))
        .await;
    t.unpause(&id).await;
    w.events_of(&id, "unpaused", |k| k.contains(&EventKind::Unpaused))
        .await;
    t.kill(&id).await;
    let kinds = w
        .events_of(&id, "exited", |k| k.contains(&EventKind::Exited))
        .await;
    assert!(w.watcher.portfolio().container(&id).is_none());
    assert_eq!(
        &kinds[..3],
        [EventKind::Started, EventKind::Paused, EventKind::Unpaused]
    );
    // Under load dockerd may log a late second pause/unpause pair (its
    // monitor handles the task's paused event after the unpause); the
    // subscriber must see exactly what the engine logged, in order.
    let engine_log = engine_log(&t, &id, since).await;
    assert_eq!(
        kinds, engine_log,
        "the subscriber's events differ from the engine's"
    );
    w.stop().await;
}

/// A restart keeps the id: die, then start; it ends present and running.
async fn restart_ends_present_and_running(engine: &rig::Engine) {
    let t = DockerTest::connect(engine, "moby-restart").await;
    let mut w = Watching::synced(moby(engine)).await;
    let id = t.run("restarted", &[]).await;
    w.events_of(&id, "started", |k| k.contains(&EventKind::Started))
        .await;
    let first_pid = w.watcher.portfolio().container(&id).unwrap().pid();

    let now = RestartContainerOptionsBuilder::new().t(0).build();
    t.docker
        .restart_container(&id, Some(now))
        .await
        .expect("restart");
    let kinds = w
        .events_of(&id, "exit and start again", |k| {
            k.iter().filter(|k| **k == EventKind::Started).count() == 2
        })
        .await;
    assert_eq!(
        kinds,
        [EventKind::Started, EventKind::Exited, EventKind::Started]
    );
    let c = w
        .watcher
        .portfolio()
        .container(&id)
        .cloned()
        .expect("present");
    assert!(!c.is_paused());
    assert_ne!(c.pid(), first_pid, "a new initial process");
    wait_for_truth(&w, &t, "the portfolio to equal the truth").await;
    w.stop().await;
}

/// 30 containers started and 15 of them killed while the watcher's list is
/// in flight: a proxy holds the engine's list answer (as taken when asked)
/// until the churn's 45 events have passed on to the watcher.
async fn churn_during_the_initial_sync_ends_in_the_truth(engine: &rig::Engine) {
    let t = DockerTest::connect(engine, "moby-churn").await;
    let before = t.run("before", &[]).await;
    let proxy = HttpProxy::docker(engine, Rules::default());
    proxy.hold_answers(&["/containers/json"]);
    let w = Watching::start(MobyEngine::new(proxy.endpoint()).unwrap());
    let churn = async {
        for i in 0..30 {
            let id = t.run(&format!("churn{i}"), &[]).await;
            if i % 2 == 0 {
                t.kill(&id).await;
            }
        }
    };
    let ((), passed) = proxy.overlap(churn, 45).await;
    println!(
        "{}: {passed} events passed while the list waited",
        engine.endpoint
    );
    w.watcher.ready().await.expect("synced");
    wait_for_truth(&w, &t, "the portfolio to equal the truth after churn").await;
    assert_eq!(w.mine(&t.label).len(), 16);
    assert!(w.mine(&t.label).contains_key(&before));
    w.stop().await;
}

async fn unknown_id_is_not_found(engine: &rig::Engine) {
    let moby = moby(engine);
    use whalewatcher_core::Engine;
    // What no container can be called, too: spaces, a query, a path.
    for unknown in [
        "no-such-container-anywhere",
        "no such one",
        "x?all=1",
        "../info",
        "",
    ] {
        let err = moby.inspect(unknown).await.unwrap_err();
        assert!(
            matches!(err, EngineError::NotFound { ref id } if id == unknown),
            "{unknown:?}: {err:?}"
        );
    }
}

/// Inspects racing a container's removal: each answer is the container,
/// or that it has no process or is gone, never an error. (podman 5 answers
/// an inspect that loses the race with HTTP 500 "no such container".)
async fn inspects_racing_a_removal_end_as_gone_never_as_an_error(engine: &rig::Engine) {
    use whalewatcher_core::Engine;
    const REMOVALS: usize = 5;
    const INSPECTORS: usize = 4;
    let t = DockerTest::connect(engine, "moby-race").await;
    let moby = Arc::new(moby(engine));
    let mut answers = BTreeMap::<&str, usize>::new();
    for i in 0..REMOVALS {
        let id = t.run(&format!("raced{i}"), &[]).await;
        let inspectors: Vec<_> = (0..INSPECTORS)
            .map(|_| {
                let (moby, id) = (moby.clone(), id.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    loop {
                        let answer = moby.inspect(&id).await;
                        let gone = matches!(answer, Err(EngineError::NotFound { .. }));
                        seen.push(answer.map(|_| ()));
                        if gone {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        t.kill(&id).await;
        t.remove(&id).await;
        for inspector in inspectors {
            let seen = within("the inspects to see the removal", inspector)
                .await
                .expect("an inspector");
            for answer in seen {
                let kind = match answer {
                    Ok(()) => "alive",
                    Err(EngineError::Processless { .. }) => "processless",
                    Err(EngineError::NotFound { .. }) => "gone",
                    Err(error) => panic!("an inspect racing the removal of {id}: {error:?}"),
                };
                *answers.entry(kind).or_default() += 1;
            }
        }
    }
    println!("{}: {answers:?}", engine.endpoint);
}

/// A packer completes each record from the raw inspect response; the
/// engine's own client is reachable through the watcher; a named engine
/// type holds before and after the first connect.
async fn the_packer_the_client_and_a_named_type_work(engine: &rig::Engine) {
    let t = DockerTest::connect(engine, "moby-packer").await;
    let id = t.run("packed", &[]).await;
    let packed = moby_builder(engine)
        .engine_type("example.org/docker-compatible")
        .packer(|container, raw| {
            let image = raw.config.as_ref().and_then(|c| c.image.clone());
            container.with_rucksack(Arc::new(image.unwrap_or_default()))
        })
        .build()
        .expect("engine");
    let w = Watching::start(packed);
    assert_eq!(w.watcher.engine_type(), "example.org/docker-compatible");
    w.watcher.ready().await.expect("synced");
    assert_eq!(w.watcher.engine_type(), "example.org/docker-compatible");
    let portfolio = w.watcher.portfolio();
    let container = portfolio.container(&id).expect("the packed container");
    let image = t
        .docker
        .inspect_container(&id, None)
        .await
        .expect("inspect")
        .config
        .and_then(|c| c.image)
        .expect("an image");
    assert_eq!(container.rucksack::<String>(), Some(&image));
    assert_eq!(container.label(TEST_LABEL), Some(t.label.as_str()));
    let client = w
        .watcher
        .engine_as::<MobyEngine>()
        .expect("a moby engine")
        .docker();
    client
        .ping()
        .await
        .expect("the engine's own client answers");
    w.stop().await;
}

macro_rules! on_every_engine {
    ($($engine:ident: privileged $privileged:expr, type $type:expr;)*) => {$(
        mod $engine {
            use super::*;

            fn engine() -> rig::Engine {
                Rig::load().$engine
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn initial_sync_equals_the_truth() {
                super::initial_sync_equals_the_truth(&engine(), $privileged).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lifecycle_is_followed_in_order() {
                super::lifecycle_is_followed_in_order(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn restart_ends_present_and_running() {
                super::restart_ends_present_and_running(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn churn_during_the_initial_sync_ends_in_the_truth() {
                super::churn_during_the_initial_sync_ends_in_the_truth(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unknown_id_is_not_found() {
                super::unknown_id_is_not_found(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn inspects_racing_a_removal_end_as_gone_never_as_an_error() {
                super::inspects_racing_a_removal_end_as_gone_never_as_an_error(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_packer_the_client_and_a_named_type_work() {
                super::the_packer_the_client_and_a_named_type_work(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn engine_type_id_and_version_are_reported() {
                let engine = engine();
                let w = Watching::synced(moby(&engine)).await;
                assert_eq!(w.watcher.engine_type(), $type);
                assert_eq!(w.watcher.version(), engine.version);
                assert!(!w.watcher.id().is_empty());
                assert_eq!(w.watcher.api(), engine.endpoint);
                // The same engine, asked again: the same id (podman's
                // /info ID is new on every call).
                let again = Watching::start(moby(&engine));
                again.watcher.ready().await.expect("synced");
                assert_eq!(again.watcher.id(), w.watcher.id());
                again.stop().await;
                w.stop().await;
            }
        }
    )*};
}

// `docker run --privileged` fails on the rig's host dockerd 20.10 (runc
// cannot apply all capabilities in this VM); the marker's conversion is
// unit-tested, and checked live on dockerd 26 and podman.
on_every_engine! {
    host_docker: privileged false, type DOCKER_TYPE;
    host_docker_tcp: privileged false, type DOCKER_TYPE;
    host_docker_tls: privileged false, type DOCKER_TYPE;
    docker: privileged true, type DOCKER_TYPE;
    podman: privileged true, type PODMAN_TYPE;
    docker28: privileged true, type DOCKER_TYPE;
    podman58: privileged true, type PODMAN_TYPE;
}

// ---- podman only ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pods_show_as_labels_and_its_die_event_is_followed() {
    podman_pods_and_die_events(&Rig::load().podman).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_5_8_pods_show_as_labels_and_its_die_event_is_followed() {
    podman_pods_and_die_events(&Rig::load().podman58).await;
}

async fn podman_pods_and_die_events(engine: &rig::Engine) {
    let rig = Rig::load();
    let t = DockerTest::connect(engine, "moby-podman-pod").await;
    let pod = format!("pod-{}", t.label);
    let podman = |args: &[&str]| {
        let head = [
            "-H",
            rig.host_docker.endpoint.as_str(),
            "exec",
            engine.container(),
            "podman",
        ];
        run_command("docker", &[&head[..], args].concat())
    };
    let test_label = format!("{TEST_LABEL}={}", t.label);
    let image = engine.image();
    let pause = image.replace("busybox", "pause");
    podman(&[
        "pod",
        "create",
        "--name",
        &pod,
        "--network",
        "none",
        "--infra-image",
        &pause,
        "--label",
        &test_label,
    ]);
    struct RemovePod<F: Fn(&[&str]) -> String>(F, String);
    impl<F: Fn(&[&str]) -> String> Drop for RemovePod<F> {
        fn drop(&mut self) {
            (self.0)(&["pod", "rm", "-f", "-t", "0", &self.1]);
        }
    }
    let _cleanup = RemovePod(podman, pod.clone());

    let mut w = Watching::synced(moby(engine)).await;
    let id = podman(&[
        "run",
        "-d",
        "--pod",
        &pod,
        "--label",
        &test_label,
        image,
        "sleep",
        "2147483647",
    ]);
    let id = id.trim().to_owned();
    w.events_of(&id, "the pod's container started", |k| {
        k.contains(&EventKind::Started)
    })
    .await;
    let c = w
        .watcher
        .portfolio()
        .container(&id)
        .cloned()
        .expect("present");
    assert_eq!(c.label(POD_NAME_LABEL), Some(pod.as_str()));
    let pod_id = c.label(POD_ID_LABEL).expect("pod id").to_owned();
    assert!(c.label(INFRA_LABEL).is_none());
    eventually(
        "the pod's infra container to be alive and marked",
        || async {
            w.watcher.portfolio().containers().any(|c| {
                c.label(POD_ID_LABEL) == Some(pod_id.as_str())
                    && c.labels().contains_key(INFRA_LABEL)
            })
        },
    )
    .await;

    // What podman itself sends on the container's death. The Go module's
    // notes say podman 3 and 4 left the labels out of it; podman 5.4 and
    // 5.8 send them. The watcher removes by id either way (the core's
    // exit_without_project_or_labels_removes_by_id plays the label-less
    // event).
    let filters = std::collections::HashMap::from([("container", vec![id.as_str()])]);
    let since = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1
    );
    let options = bollard::query_parameters::EventsOptionsBuilder::new()
        .since(&since)
        .filters(&filters)
        .build();
    let mut raw = t.docker.events(Some(options));
    t.kill(&id).await;
    let died = within("podman's die event", async {
        loop {
            let event = raw.next().await.expect("events").expect("an event");
            if matches!(event.action.as_deref(), Some("die" | "died")) {
                return event;
            }
        }
    })
    .await;
    let attributes = died.actor.and_then(|a| a.attributes).expect("attributes");
    assert_eq!(attributes.get("exitCode").map(String::as_str), Some("137"));
    assert_eq!(
        attributes.get(TEST_LABEL),
        Some(&t.label),
        "podman 5 sends the labels with the die event: {attributes:?}"
    );
    w.events_of(&id, "exited", |k| k.contains(&EventKind::Exited))
        .await;
    assert!(w.watcher.portfolio().container(&id).is_none());
    w.stop().await;
}

// ---- bad input ----

#[tokio::test]
async fn a_missing_socket_is_unreachable_and_not_retried_without_a_policy() {
    let moby = MobyEngine::new("unix:///run/whalewatcher-rig/no-such.sock").expect("engine");
    let watcher = Watcher::new(moby, RetryPolicy::none());
    let ended = watcher.watch(CancellationToken::new()).await;
    match ended {
        Err(WatchError::GaveUp {
            attempts: 1,
            last: EngineError::Unreachable { endpoint, .. },
        }) => {
            assert_eq!(endpoint, "unix:///run/whalewatcher-rig/no-such.sock")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        watcher.ready().await,
        Err(EngineError::Unreachable { .. })
    ));
}

#[tokio::test]
async fn a_socket_that_does_not_speak_the_docker_api_is_a_typed_error_retried_with_backoff() {
    let dir = std::env::temp_dir().join(format!("ww-garbage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("garbage.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = stream
                    .write_all(b"SSH-2.0-not-docker\r\n\x00\x01garbage")
                    .await;
            }
        }
    });

    let moby = MobyEngine::new(socket.to_str().unwrap()).expect("engine");
    let watcher = Watcher::new(moby, RetryPolicy::default());
    let watching = watcher.spawn();
    let ready = watcher.ready().await;
    assert!(
        matches!(
            ready,
            Err(EngineError::Unreachable { .. } | EngineError::Protocol { .. })
        ),
        "{ready:?}"
    );
    // Observe the retries over a fixed window.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    watching.stop().await.unwrap();
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    // Backoff from 100 ms, doubling: a handful of attempts in 2 s, not a spin.
    let attempts = watcher.status().attempts;
    assert!((2..=8).contains(&attempts), "{attempts} attempts in 2 s");
    // Each attempt asks for version, info, the clock and the list at once,
    // on connections of their own: a bounded handful per attempt.
    let connections = accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        connections <= 6 * attempts as usize,
        "{connections} connections in {attempts} attempts"
    );
}

// ---- TLS: what a user with the wrong certificates reads ----

/// The whole message a watch of the rig's TLS relay, with the client
/// certificates in `certs`, gives up with.
async fn tls_failure(certs: &str) -> String {
    let rig = Rig::load();
    let moby = MobyEngine::builder()
        .endpoint(rig.host_docker_tls.endpoint.clone())
        .tls_certs(certs)
        .build()
        .expect("engine");
    let ended = Watcher::new(moby, RetryPolicy::none())
        .watch(CancellationToken::new())
        .await;
    match ended {
        Err(WatchError::GaveUp { attempts: 1, last }) => {
            assert!(matches!(last, EngineError::Unreachable { .. }), "{last:?}");
            whalewatcher_core::describe(&last)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tls_trusting_another_ca_names_the_ca_file() {
    let rig = Rig::load();
    let message = tls_failure(&rig.tls.wrong_ca).await;
    let expected = format!("not signed by the CA in {}/ca.pem", rig.tls.wrong_ca);
    assert!(message.contains(&expected), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[tokio::test]
async fn tls_without_a_client_certificate_says_the_engine_wants_one() {
    let rig = Rig::load();
    let message = tls_failure(&rig.tls.no_client_cert).await;
    let expected = format!(
        "the engine wants a client certificate, and {} has no cert.pem and key.pem",
        rig.tls.no_client_cert
    );
    assert!(message.contains(&expected), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn tls_without_a_ca_certificate_fails_to_build_naming_the_file() {
    let rig = Rig::load();
    let err = MobyEngine::builder()
        .endpoint(rig.host_docker_tls.endpoint)
        .tls_certs("/run/whalewatcher-rig/no-such-certs")
        .build()
        .expect_err("no ca.pem");
    assert!(
        matches!(&err, EngineError::InvalidEndpoint { reason, .. }
            if reason.contains("the CA certificate /run/whalewatcher-rig/no-such-certs/ca.pem")),
        "{err:?}"
    );
}
