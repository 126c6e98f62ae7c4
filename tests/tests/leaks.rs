//! Nothing leaks where leaks happen: after real work — a first sync with
//! containers, started containers and their inspects, a cut event stream
//! and the resync after it, an engine restart, a watcher closed while an
//! inspect is in flight — and the watch cancelled, the watcher closed and
//! dropped, this process's open file descriptors and live tokio tasks are
//! back at their baseline, on every engine. First it shows that the check
//! sees a watcher leaked on purpose.
//!
//! One test in a binary of its own, so no other test's connections move
//! the counts.

use std::time::Duration;

use futures::StreamExt;
use whalewatcher_containerd::ContainerdEngine;
use whalewatcher_core::{Engine, EventKind, RetryPolicy, Watcher};
use whalewatcher_cri::CriEngine;
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::containerd::ContainerdTest;
use whalewatcher_tests::cri::{CriTest, Pod};
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::http_proxy::{HttpProxy, Rules};
use whalewatcher_tests::rig::Rig;
use whalewatcher_tests::{eventually, within, DEADLINE};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

type Counts = (usize, usize);

fn counts() -> Counts {
    (open_fds(), alive_tasks())
}

/// Waits up to `patience` for the counts to come back to `baseline`
/// (connections close on the runtime's other thread a moment after their
/// owners are gone); the counts left above it, if they do not.
async fn leaked(baseline: Counts, patience: Duration) -> Option<Counts> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let now = counts();
        if now.0 <= baseline.0 && now.1 <= baseline.1 {
            return None;
        }
        if tokio::time::Instant::now() >= deadline {
            return Some(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn back_to(baseline: Counts, engine: &str) {
    if let Some(now) = leaked(baseline, DEADLINE).await {
        panic!("{engine}: file descriptors and tasks {now:?}, not back at {baseline:?}");
    }
}

/// What starts containers on an engine.
enum Load<'a> {
    Docker(&'a DockerTest),
    Containerd(&'a ContainerdTest),
    Cri(&'a CriTest, &'a Pod),
}

impl Load<'_> {
    /// Starts a container; returns its id as the watcher shows it.
    async fn start(&self, name: &str) -> String {
        match self {
            Load::Docker(t) => t.run(name, &[]).await,
            Load::Containerd(t) => {
                let id = format!("{name}-{}", t.label);
                t.run("default", &id, &[]);
                id
            }
            Load::Cri(t, pod) => t.run_container(pod, name).await,
        }
    }

    /// The path of the engine's inspect call, to hold its answer.
    fn inspect_path(&self) -> &'static str {
        match self {
            Load::Docker(_) => "/json",
            Load::Containerd(_) => "/containerd.services.tasks.v1.Tasks/Get",
            Load::Cri(..) => "/runtime.v1.RuntimeService/ContainerStatus",
        }
    }
}

/// Watches `engine` (through `proxy`): a first sync with a container,
/// three started containers (each inspected), a cut stream and the resync,
/// then a close while an inspect is held.
async fn work(engine: impl Engine, proxy: &HttpProxy, load: &Load<'_>, round: usize) {
    let watcher = Watcher::new(engine, RetryPolicy::default());
    let watching = watcher.spawn();
    watcher.ready().await.expect("synced");
    let (_, mut events) = watcher.subscribe();
    assert!(
        !watcher.portfolio().is_empty(),
        "{}: no containers",
        watcher.api()
    );

    // Started containers, each costing an inspect.
    for n in 0..3 {
        let id = load.start(&format!("leak{n}-{round}")).await;
        within("its start", async {
            loop {
                let event = events.next().await.expect("open").expect("no lag");
                if event.kind == EventKind::Started && event.container.id() == id {
                    return;
                }
            }
        })
        .await;
    }

    // A cut stream and the resync.
    proxy.cut_and_hold();
    eventually("the loss noticed", || async {
        !watcher.status().is_synced()
    })
    .await;
    proxy.restore();
    eventually("the resync", || async { watcher.status().is_synced() }).await;

    // Closed while an inspect is in flight.
    proxy.hold_answers(&[load.inspect_path()]);
    load.start(&format!("leak-held-{round}")).await;
    eventually("an inspect held", || async { proxy.held() > 0 }).await;
    watching.stop().await.expect("cancelled cleanly");
    watcher.close().await;
    // Closed: the subscription ends after what was published.
    within("the subscription to end", async {
        while events.next().await.is_some() {}
    })
    .await;
    proxy.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_leaves_no_file_descriptor_and_no_task_behind() {
    let rig = Rig::load();

    // The check sees a watcher leaked on purpose: its watch still running.
    let baseline = counts();
    let leaky = Watcher::new(
        MobyEngine::new(&rig.host_docker.endpoint).unwrap(),
        RetryPolicy::default(),
    );
    let watching = leaky.spawn();
    leaky.ready().await.expect("synced");
    let seen = leaked(baseline, Duration::from_secs(2)).await;
    assert!(seen.is_some(), "a running watcher went unnoticed");
    println!("a leaked watcher shows: {seen:?} against {baseline:?}");
    watching.stop().await.expect("cancelled cleanly");
    drop(leaky);
    back_to(baseline, "after the leaked watcher was stopped").await;

    // The engines' own clients and the proxies are there from the start.
    let docker = DockerTest::connect(&rig.host_docker, "leaks").await;
    let podman = DockerTest::connect(&rig.podman, "leaks").await;
    let containerd = ContainerdTest::connect(&rig.containerd, "leaks").await;
    let cri = CriTest::connect(&rig.containerd, "leaks").await;
    let pod = cri.run_pod("leaks", "leaks").await;
    docker.run("first", &[]).await;
    podman.run("first", &[]).await;
    containerd.run("default", &format!("first-{}", containerd.label), &[]);
    let docker_proxy = HttpProxy::docker(&rig.host_docker, Rules::default());
    let podman_proxy = HttpProxy::docker(&rig.podman, Rules::default());
    let grpc_proxy = HttpProxy::grpc(&rig.containerd, Rules::default());
    let baseline = counts();

    for round in 0..2 {
        let docker_engine = MobyEngine::new(docker_proxy.endpoint()).unwrap();
        work(docker_engine, &docker_proxy, &Load::Docker(&docker), round).await;
        back_to(baseline, &format!("host dockerd, round {round}")).await;
        let podman_engine = MobyEngine::new(podman_proxy.endpoint()).unwrap();
        work(podman_engine, &podman_proxy, &Load::Docker(&podman), round).await;
        back_to(baseline, &format!("podman, round {round}")).await;
        let containerd_engine = ContainerdEngine::new(grpc_proxy.socket()).expect("engine");
        let load = Load::Containerd(&containerd);
        work(containerd_engine, &grpc_proxy, &load, round).await;
        back_to(baseline, &format!("containerd, round {round}")).await;
        let cri_engine = CriEngine::new(grpc_proxy.socket()).expect("engine");
        work(cri_engine, &grpc_proxy, &Load::Cri(&cri, &pod), round).await;
        back_to(baseline, &format!("CRI, round {round}")).await;
    }

    // An engine restart (dockerd 26's container), watched directly.
    let restarted = DockerTest::connect(&rig.docker, "leaks").await;
    restarted.run("before-restart", &[]).await;
    let baseline = counts();
    let watcher = Watcher::new(
        MobyEngine::new(&rig.docker.endpoint).unwrap(),
        RetryPolicy::default(),
    );
    let watching = watcher.spawn();
    watcher.ready().await.expect("synced");
    rig.restart(&rig.docker, 2);
    eventually("the loss noticed", || async {
        !watcher.status().is_synced()
    })
    .await;
    eventually("the resync after the restart", || async {
        watcher.status().is_synced()
    })
    .await;
    watching.stop().await.expect("cancelled cleanly");
    watcher.close().await;
    drop(watcher);
    back_to(baseline, "dockerd 26 after a restart").await;
}
