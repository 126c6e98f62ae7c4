//! whalewatcher-cri against the rig's containerd 1.7 CRI plugin, the host's
//! containerd 1.6 (no CRI events) and a scripted endpoint that ends the
//! event stream at once (cri-o without pod events).
//!
//! containerd 1.7's CRI events are one queue shared by all streams (the
//! engine reads containerd's own event service there); the tests that
//! watch a rig's engine still take it one at a time. Engine
//! restarts and cut event streams are in `faults.rs`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_cri::v1::{
    Container, ContainerState, ContainerStatus, ContainerStatusResponse, GetEventsRequest,
    ListContainersResponse, ListPodSandboxResponse, PodSandbox, PodSandboxMetadata,
    PodSandboxState, PodSandboxStatus, PodSandboxStatusResponse, VersionResponse,
};
use whalewatcher_core::{
    CancellationToken, EngineError, EventKind, RetryPolicy, WatchError, Watcher,
};
use whalewatcher_cri::{
    CriEngine, ANNOTATION_KEY_PREFIX, CRI_TYPE, POD_CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL,
    POD_NAME_LABEL, POD_SANDBOX_LABEL, POD_UID_LABEL,
};
use whalewatcher_tests::cri::CriTest;
use whalewatcher_tests::http_proxy::{HttpProxy, Rules};
use whalewatcher_tests::rig::{self, Rig};
use whalewatcher_tests::scripted_grpc::{Answer, ScriptedGrpc};
use whalewatcher_tests::watching::Watching;
use whalewatcher_tests::{run_command, within, TEST_LABEL};

/// One watcher on the rig's CRI engine at a time.
static ENGINE_CONTAINERD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static ENGINE_CONTAINERD2: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The lock of the rig's engine `cd`.
fn lock(cd: &rig::Engine) -> &'static tokio::sync::Mutex<()> {
    match cd.container() {
        c if c.ends_with("-containerd") => &ENGINE_CONTAINERD,
        c if c.ends_with("-containerd2") => &ENGINE_CONTAINERD2,
        other => panic!("no lock for the engine in {other}"),
    }
}

fn engine(cd: &rig::Engine) -> CriEngine {
    configured(cd).build().expect("engine")
}

/// A builder for the rig's engine, for more settings.
fn configured(cd: &rig::Engine) -> whalewatcher_cri::CriEngineBuilder {
    CriEngine::builder().endpoint(cd.socket())
}

fn portfolio_view(w: &Watching, t: &CriTest) -> BTreeMap<String, u32> {
    w.mine(&t.label)
        .into_iter()
        .map(|(id, c)| (id, c.pid()))
        .collect()
}

async fn wait_for_truth(w: &Watching, t: &CriTest) {
    let mut last = (BTreeMap::new(), BTreeMap::new());
    let converged = tokio::time::timeout(whalewatcher_tests::DEADLINE, async {
        loop {
            last = (portfolio_view(w, t), t.truth().await);
            if last.0 == last.1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        converged.is_ok(),
        "the portfolio never equalled the engine's truth:\n portfolio {:?}\n truth     {:?}",
        last.0,
        last.1
    );
}

async fn two_pods_of_two_containers_equal_the_truth_with_labels_and_pids(cd: &rig::Engine) {
    let _alone = lock(cd).lock().await;
    let rig = Rig::load();
    let t = CriTest::connect(cd, "cri-sync").await;
    let shop = t.run_pod("shop", "retail").await;
    let shop_web = t.run_container(&shop, "web").await;
    let shop_db = t.run_container(&shop, "db").await;
    let blog = t.run_pod("blog", "media").await;
    t.run_container(&blog, "web").await;
    t.run_container(&blog, "cache").await;

    // The engine container's init, now: a restart test changes it.
    let inspect = |format: &str| {
        run_command(
            "docker",
            &[
                "-H",
                &rig.host_docker.endpoint,
                "inspect",
                "-f",
                format,
                cd.container(),
            ],
        )
        .trim()
        .to_owned()
    };
    let engine_pid: u32 = inspect("{{.State.Pid}}").parse().expect("the engine's PID");
    let w = Watching::synced(configured(cd).pid(engine_pid).build().expect("engine")).await;
    let truth = t.truth().await;
    assert_eq!(truth.len(), 6, "2 sandboxes and 4 containers: {truth:?}");
    assert_eq!(portfolio_view(&w, &t), truth);
    assert!(truth.values().all(|pid| *pid > 0));

    // The Go module's names and labels, as literals from its
    // engineclient/cri/cri.go.
    let portfolio = w.watcher.portfolio();
    let sandbox = portfolio.container(&shop.id).expect("the shop sandbox");
    assert_eq!(sandbox.name(), shop.id, "a sandbox is named by its id");
    assert_eq!(sandbox.label("io.kubernetes.sandbox"), Some(""));
    assert_eq!(
        sandbox.label("io.kubernetes.container.name"),
        Some(shop.id.as_str())
    );
    assert_eq!(sandbox.label("io.kubernetes.pod.name"), Some("shop"));
    assert_eq!(sandbox.label("io.kubernetes.pod.namespace"), Some("retail"));
    let web = portfolio.container(&shop_web).expect("the shop's web");
    assert_eq!(web.name(), "web");
    assert_eq!(web.label("io.kubernetes.container.name"), Some("web"));
    assert_eq!(web.label("io.kubernetes.pod.name"), Some("shop"));
    assert_eq!(web.label("io.kubernetes.pod.namespace"), Some("retail"));
    let uid = format!("shop-{}", t.label);
    assert_eq!(web.label("io.kubernetes.pod.uid"), Some(uid.as_str()));
    assert_eq!(web.label(TEST_LABEL), Some(t.label.as_str()));
    assert!(!web.labels().contains_key("io.kubernetes.sandbox"));
    assert_eq!(
        web.label("io.kubernetes.annotation/whalewatcher-rig.test/annotation"),
        Some("container web")
    );
    assert_eq!(
        sandbox.label("io.kubernetes.annotation/whalewatcher-rig.test/annotation"),
        Some("pod shop")
    );
    assert_eq!(
        portfolio
            .container(&shop_db)
            .map(|c| c.label("io.kubernetes.pod.name")),
        Some(Some("shop"))
    );
    // The crate's constants are those values.
    assert_eq!(
        [
            POD_SANDBOX_LABEL,
            POD_CONTAINER_NAME_LABEL,
            POD_NAME_LABEL,
            POD_NAMESPACE_LABEL,
            POD_UID_LABEL,
            ANNOTATION_KEY_PREFIX
        ],
        [
            "io.kubernetes.sandbox",
            "io.kubernetes.container.name",
            "io.kubernetes.pod.name",
            "io.kubernetes.pod.namespace",
            "io.kubernetes.pod.uid",
            "io.kubernetes.annotation/"
        ]
    );

    assert_eq!(w.watcher.engine_type(), CRI_TYPE);
    let version = w.watcher.version();
    assert!(
        version.starts_with("containerd ") && version.ends_with("[API v1]"),
        "{version}"
    );
    assert_eq!(
        w.watcher.id(),
        inspect("{{.Config.Hostname}}"),
        "the engine's UTS host name"
    );
    assert_eq!(w.watcher.pid(), Some(engine_pid));
    w.stop().await;
}

/// tonic refuses a message above 4 MiB unless told otherwise: the list of
/// six containers with an annotation of 800 KB each (or of a few thousand
/// ordinary ones) made the sync fail with "decoded message length too
/// large".
async fn a_list_larger_than_4_mib_syncs(cd: &rig::Engine) {
    let _alone = lock(cd).lock().await;
    let t = CriTest::connect(cd, "cri-heavy").await;
    let pod = t.run_pod("heavy", "rig").await;
    let heavy = HashMap::from([("heavy".to_owned(), "x".repeat(800_000))]);
    for i in 0..6 {
        t.run_annotated_container(&pod, &format!("heavy-{i}"), heavy.clone())
            .await;
    }

    let w = Watching::synced(engine(cd)).await;
    assert_eq!(
        w.mine(&t.label).len(),
        7,
        "the sandbox and its six containers"
    );
    wait_for_truth(&w, &t).await;
    w.stop().await;
}

async fn a_stopped_container_and_a_stopped_pod_are_removed(cd: &rig::Engine) {
    let _alone = lock(cd).lock().await;
    let t = CriTest::connect(cd, "cri-stop").await;
    let mut w = Watching::synced(engine(cd)).await;

    let pod = t.run_pod("stopper", "rig").await;
    let first = t.run_container(&pod, "first").await;
    let second = t.run_container(&pod, "second").await;
    for id in [&pod.id, &first, &second] {
        w.events_of(id, "started", |k| k.contains(&EventKind::Started))
            .await;
    }
    wait_for_truth(&w, &t).await;

    t.stop_container(&first).await;
    let kinds = w
        .events_of(&first, "the stopped container's exit", |k| {
            k.contains(&EventKind::Exited)
        })
        .await;
    assert_eq!(kinds, [EventKind::Started, EventKind::Exited]);
    assert!(w.watcher.portfolio().container(&first).is_none());
    assert!(w.watcher.portfolio().container(&second).is_some());

    t.stop_pod(&pod).await;
    for id in [&second, &pod.id] {
        let kinds = w
            .events_of(id, "the stopped pod's exits", |k| {
                k.contains(&EventKind::Exited)
            })
            .await;
        assert_eq!(kinds, [EventKind::Started, EventKind::Exited], "{id}");
    }
    assert!(w.mine(&t.label).is_empty());
    wait_for_truth(&w, &t).await;
    w.stop().await;
}

async fn a_pod_created_during_the_initial_sync_is_present(cd: &rig::Engine) {
    let _alone = lock(cd).lock().await;
    let t = CriTest::connect(cd, "cri-during").await;
    let before = t.run_pod("before", "rig").await;
    t.run_container(&before, "early").await;

    // The lists' answers (as taken when asked) are held until the new
    // pod's and container's events have passed on to the watcher.
    let proxy = HttpProxy::grpc(cd, Rules::default());
    proxy.hold_answers(&[
        "/runtime.v1.RuntimeService/ListPodSandbox",
        "/runtime.v1.RuntimeService/ListContainers",
    ]);
    let w = Watching::start(CriEngine::new(proxy.socket()).expect("engine"));
    let during = async {
        let pod = t.run_pod("during", "rig").await;
        t.run_container(&pod, "late").await;
    };
    // Created and started, of the sandbox and of the container; on
    // containerd 1.7, whose task events the engine reads, the two starts.
    let events = if cd.version.starts_with("1.") { 2 } else { 4 };
    let ((), passed) = proxy.overlap(during, events).await;
    println!("CRI: {passed} events passed while the lists waited");
    w.watcher.ready().await.expect("synced");
    wait_for_truth(&w, &t).await;
    assert_eq!(w.mine(&t.label).len(), 4);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_1_6_without_cri_events_is_unsupported_once() {
    // Read-only: the host's containerd runs the rig's host dockerd.
    let rig = Rig::load();
    unsupported_once(CriEngine::new(rig.host_containerd.socket()).expect("engine")).await;
}

/// Watches with `engine` until the watch gives up; asserts it did as an
/// engine without CRI events, after one attempt.
async fn unsupported_once(engine: CriEngine) -> Watcher {
    unsupported_after(engine, 1).await
}

/// A watch of `engine` that ends as unsupported after `attempts` sync
/// attempts: one, or two when the refusal came after a sync and a fresh
/// subscribe met it again.
async fn unsupported_after(engine: CriEngine, attempts: u64) -> Watcher {
    let watcher = Watcher::new(engine, RetryPolicy::default());
    let ended = within(
        "the watch to give up",
        watcher.watch(CancellationToken::new()),
    )
    .await;
    match &ended {
        Err(WatchError::Unsupported(EngineError::Unsupported { what, .. }))
            if what == "CRI container events" => {}
        other => panic!("expected the missing CRI events API, got {other:?}"),
    }
    assert_eq!(watcher.status().attempts, attempts, "not in a loop");
    let message = whalewatcher_core::describe(&ended.unwrap_err());
    assert!(
        message.contains("does not support CRI container events"),
        "{message}"
    );
    watcher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_that_ends_at_once_is_unsupported_once() {
    let dir = std::env::temp_dir();
    let version = VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "cri-o".into(),
        runtime_version: "1.31.0".into(),
        runtime_api_version: "v1".into(),
    };
    let events = "/runtime.v1.RuntimeService/GetContainerEvents";
    let engine = ScriptedGrpc::start(
        &dir,
        HashMap::from([
            (
                "/runtime.v1.RuntimeService/Version",
                Answer::message(&version),
            ),
            (events, Answer::ends_at_once()),
            (
                "/runtime.v1.RuntimeService/ListContainers",
                Answer::ends_at_once(),
            ),
            (
                "/runtime.v1.RuntimeService/ListPodSandbox",
                Answer::ends_at_once(),
            ),
        ]),
    );
    let watcher = Watcher::new(
        CriEngine::new(engine.socket()).expect("engine"),
        RetryPolicy::default(),
    );
    let ended = within(
        "the watch to give up",
        watcher.watch(CancellationToken::new()),
    )
    .await;
    let Err(WatchError::Unsupported(error)) = ended else {
        panic!("expected an unsupported engine, got {ended:?}");
    };
    assert!(
        error.to_string().contains("enable_pod_events = true"),
        "{error}"
    );
    assert_eq!(engine.calls(events), 1, "one attempt, not a busy loop");
    assert_eq!(watcher.version(), "cri-o 1.31.0 [API v1]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_call_refused_after_the_barrier_ends_the_session_before_its_sync() {
    // Later than the barrier's round trips, within the 50 ms refusal
    // window (without it, the sync is published first).
    let watcher = refused_late(Duration::from_millis(20), 1).await;
    assert_eq!(watcher.status().sync_duration, None, "synchronized first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_call_refused_after_the_sync_is_unsupported_once() {
    // After the refusal window: a first sync; the refusal on its stream
    // is asked once more by a fresh subscribe, which meets it again: the
    // watch ends.
    let watcher = refused_late(Duration::from_secs(1), 2).await;
    assert!(
        watcher.status().sync_duration.is_some(),
        "never synchronized"
    );
}

/// A watch of a scripted runtime with no containers that refuses the
/// event call only after `delay`; asserts it ended as unsupported after
/// `calls` event calls, not in a loop.
async fn refused_late(delay: Duration, calls: usize) -> Watcher {
    let version = VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "containerd".into(),
        runtime_version: "1.6.20".into(),
        runtime_api_version: "v1".into(),
    };
    let events = "/runtime.v1.RuntimeService/GetContainerEvents";
    let engine = ScriptedGrpc::start(
        &std::env::temp_dir(),
        HashMap::from([
            (
                "/runtime.v1.RuntimeService/Version",
                Answer::message(&version),
            ),
            (events, Answer::unimplemented_after(delay)),
            (
                "/runtime.v1.RuntimeService/ListContainers",
                Answer::message(&ListContainersResponse::default()),
            ),
            (
                "/runtime.v1.RuntimeService/ListPodSandbox",
                Answer::message(&ListPodSandboxResponse::default()),
            ),
        ]),
    );
    let watcher = unsupported_after(
        CriEngine::new(engine.socket()).expect("engine"),
        calls as u64,
    )
    .await;
    assert_eq!(engine.calls(events), calls, "not a busy loop");
    watcher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_costs_one_status_round_trip_per_container_and_sandbox() {
    let method = |name: &str| format!("/runtime.v1.RuntimeService/{name}");
    let running = ContainerState::ContainerRunning as i32;
    let containers = ListContainersResponse {
        containers: (0..3)
            .map(|i| Container {
                id: format!("c{i}"),
                pod_sandbox_id: "s1".into(),
                state: running,
                ..Default::default()
            })
            .collect(),
    };
    let pods = ListPodSandboxResponse {
        items: vec![PodSandbox {
            id: "s1".into(),
            state: PodSandboxState::SandboxReady as i32,
            ..Default::default()
        }],
    };
    // Every status answer is the same: what is counted is the calls.
    let container_status = ContainerStatusResponse {
        status: Some(ContainerStatus {
            id: "c0".into(),
            state: running,
            ..Default::default()
        }),
        info: HashMap::from([("info".into(), r#"{"pid":42,"sandboxID":"s1"}"#.into())]),
    };
    let sandbox_status = PodSandboxStatusResponse {
        status: Some(PodSandboxStatus {
            id: "s1".into(),
            state: PodSandboxState::SandboxReady as i32,
            metadata: Some(PodSandboxMetadata {
                name: "pod".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        info: HashMap::from([("info".into(), r#"{"pid":41}"#.into())]),
        ..Default::default()
    };
    let names = [
        "Version",
        "GetContainerEvents",
        "ListContainers",
        "ListPodSandbox",
        "ContainerStatus",
        "PodSandboxStatus",
    ];
    let [version, events, list_containers, list_pods, status, pod_status] = names.map(method);
    let engine = ScriptedGrpc::start(
        &std::env::temp_dir(),
        [
            (&version, Answer::message(&VersionResponse::default())),
            (&events, Answer::never_ends()),
            (&list_containers, Answer::message(&containers)),
            (&list_pods, Answer::message(&pods)),
            (&status, Answer::message(&container_status)),
            (&pod_status, Answer::message(&sandbox_status)),
        ]
        .map(|(m, a)| (m.clone(), a)),
    );
    let w = Watching::synced(CriEngine::new(engine.socket()).expect("engine")).await;
    let portfolio = w.watcher.portfolio();
    assert_eq!(portfolio.container("s1").map(|s| s.pid()), Some(41));
    assert_eq!(portfolio.container("c0").map(|c| c.pid()), Some(42));
    assert_eq!(
        [list_containers, list_pods, status, pod_status].map(|m| engine.calls(&m)),
        [1, 1, 3, 1],
        "one list each, one status per container and per sandbox"
    );
    w.stop().await;
}

#[tokio::test]
async fn a_missing_socket_is_unreachable_and_says_why() {
    let engine = CriEngine::new("/run/whalewatcher-rig/no-such-cri.sock").expect("engine");
    let watcher = Watcher::new(engine, RetryPolicy::none());
    let ended = watcher.watch(CancellationToken::new()).await;
    let Err(WatchError::GaveUp {
        last: last @ EngineError::Unreachable { .. },
        ..
    }) = ended
    else {
        panic!("expected an unreachable engine, got {ended:?}");
    };
    let message = whalewatcher_core::describe(&last);
    assert!(
        message.contains("there is no /run/whalewatcher-rig/no-such-cri.sock"),
        "{message}"
    );
    assert_eq!(last.io_kind(), Some(std::io::ErrorKind::NotFound));
}

async fn the_packer_sees_container_and_sandbox_statuses_and_the_client_is_reachable(
    cd: &rig::Engine,
) {
    let _alone = lock(cd).lock().await;
    let t = CriTest::connect(cd, "cri-packer").await;
    let pod = t.run_pod("packed", "packing").await;
    let container = t.run_container(&pod, "main").await;
    let packed = configured(cd)
        .packer(|record, inspection| {
            let seen = match inspection {
                whalewatcher_cri::Inspection::Container { status, .. } => {
                    format!("container {}", status.image_ref)
                }
                whalewatcher_cri::Inspection::Sandbox { status, .. } => {
                    let namespace = status.metadata.as_ref().map(|m| m.namespace.clone());
                    format!("sandbox {}", namespace.unwrap_or_default())
                }
            };
            record.with_rucksack(std::sync::Arc::new(seen))
        })
        .build()
        .expect("engine");
    let w = Watching::synced(packed).await;
    let portfolio = w.watcher.portfolio();
    let packed_sandbox = portfolio.container(&pod.id).expect("the sandbox");
    assert_eq!(
        packed_sandbox.rucksack::<String>().map(String::as_str),
        Some("sandbox packing")
    );
    let packed_container = portfolio.container(&container).expect("the container");
    let seen = packed_container.rucksack::<String>().expect("packed");
    assert!(seen.starts_with("container sha256:"), "{seen}");
    let mut client = w
        .watcher
        .engine_as::<CriEngine>()
        .expect("a CRI engine")
        .client()
        .await
        .expect("connected");
    let version = client
        .version(k8s_cri::v1::VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("the engine's own client answers")
        .into_inner();
    assert_eq!(version.runtime_name, "containerd");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_1_6_never_counts_as_synced() {
    // The refusal of the event call and the subscription's barrier race
    // on the server: with one barrier round trip, 112 of 300 subscriptions
    // counted as live here; with five, 1 of 300 on a loaded CI machine.
    // The list waits out the rest of the refusal window, so the refusal
    // ends every session before its sync is published.
    let rig = Rig::load();
    for attempt in 0..300 {
        let watcher =
            unsupported_once(CriEngine::new(rig.host_containerd.socket()).expect("engine")).await;
        assert_eq!(
            watcher.status().sync_duration,
            None,
            "attempt {attempt}: synchronized before the refusal"
        );
    }
}

/// containerd 1.7 serves every CRI event stream from one queue: readers
/// split the events. Two watchers and a `GetContainerEvents` reader of the
/// test's own, at once: each must see every start and exit.
async fn two_watchers_and_a_reader_of_our_own_each_see_every_event(cd: &rig::Engine) {
    let _alone = lock(cd).lock().await;
    let t = CriTest::connect(cd, "cri-share").await;
    // Our own reader. The call answers only with its first event.
    let (tx, mut seen_by_reader) = tokio::sync::mpsc::unbounded_channel();
    let mut client = t.client.clone();
    let reader = tokio::spawn(async move {
        let mut stream = client
            .get_container_events(GetEventsRequest::default())
            .await
            .expect("the event call")
            .into_inner();
        while let Ok(Some(event)) = stream.message().await {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    // A reader that left earlier may linger on the server and swallow
    // events: warm up until ours sees a pod of its own.
    let mut warm = false;
    for attempt in 0..5 {
        let pod = t.run_pod(&format!("warm-{attempt}"), "rig").await;
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(event) = seen_by_reader.recv().await {
                if event.container_id == pod.id {
                    return;
                }
            }
        })
        .await;
        t.stop_pod(&pod).await;
        if seen.is_ok() {
            warm = true;
            break;
        }
    }
    assert!(warm, "our own event reader never saw a pod start");
    let mut one = Watching::synced(engine(cd)).await;
    let mut two = Watching::synced(engine(cd)).await;

    let pod = t.run_pod("shared", "rig").await;
    let container = t.run_container(&pod, "app").await;
    t.stop_container(&container).await;
    t.stop_pod(&pod).await;
    for (n, w) in [&mut one, &mut two].into_iter().enumerate() {
        for id in [&pod.id, &container] {
            let what = format!("watcher {n} to see the start and exit of {id}");
            let kinds = w
                .events_of(id, &what, |k| k.contains(&EventKind::Exited))
                .await;
            assert_eq!(kinds, [EventKind::Started, EventKind::Exited], "{id}");
        }
    }
    let (started, stopped) = (
        k8s_cri::v1::ContainerEventType::ContainerStartedEvent as i32,
        k8s_cri::v1::ContainerEventType::ContainerStoppedEvent as i32,
    );
    let mut missing: Vec<(String, i32)> = [&pod.id, &container]
        .into_iter()
        .flat_map(|id| [((*id).clone(), started), ((*id).clone(), stopped)])
        .collect();
    within("our own reader to see every start and stop", async {
        while !missing.is_empty() {
            let event = seen_by_reader.recv().await.expect("our reader runs");
            missing.retain(|(id, kind)| {
                !(event.container_id == *id && event.container_event_type == *kind)
            });
        }
    })
    .await;
    reader.abort();
    one.stop().await;
    two.stop().await;
}

// ---- on each containerd of the rig ----

macro_rules! on_every_cri_containerd {
    ($($engine:ident),*) => {$(
        mod $engine {
            use super::*;

            fn engine() -> rig::Engine {
                Rig::load().$engine
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_pods_of_two_containers_equal_the_truth_with_labels_and_pids() {
                super::two_pods_of_two_containers_equal_the_truth_with_labels_and_pids(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_list_larger_than_4_mib_syncs() {
                super::a_list_larger_than_4_mib_syncs(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_stopped_container_and_a_stopped_pod_are_removed() {
                super::a_stopped_container_and_a_stopped_pod_are_removed(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_pod_created_during_the_initial_sync_is_present() {
                super::a_pod_created_during_the_initial_sync_is_present(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_watchers_and_a_reader_of_our_own_each_see_every_event() {
                super::two_watchers_and_a_reader_of_our_own_each_see_every_event(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_packer_sees_container_and_sandbox_statuses_and_the_client_is_reachable() {
                super::the_packer_sees_container_and_sandbox_statuses_and_the_client_is_reachable(&engine()).await;
            }
        }
    )*};
}

// The CRI plugins of containerd 1.7 (Debian trixie's) and 2.1 (unstable's).
on_every_cri_containerd!(containerd, containerd2);

/// A channel of the caller's is used as it is: the engine syncs over it
/// although its endpoint names a socket where nothing listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_channel_is_talked_over() {
    let rig = Rig::load();
    let t = CriTest::connect(&rig.containerd, "cri-given-channel").await;
    let pod = t.run_pod("given", "channels").await;
    let channel = containerd_client::connect(rig.containerd.socket())
        .await
        .expect("a channel");
    let engine = CriEngine::builder()
        .endpoint("/run/whalewatcher-rig/no-such-cri.sock")
        .channel(channel)
        .build()
        .expect("engine");
    let w = Watching::synced(engine).await;
    assert!(w.watcher.portfolio().container(&pod.id).is_some());
    w.stop().await;
}
