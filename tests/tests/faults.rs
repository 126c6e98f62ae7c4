//! Faults on real engines: engine restarts, event streams cut without a
//! restart, churn during syncs, a slow consumer, broken endpoints. After
//! each, the portfolio must equal the engine's truth and a subscriber must
//! have seen exactly the difference.
//!
//! The tests restart engines and cut their connections, so they take the
//! rig one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use whalewatcher_containerd::ContainerdEngine;
use whalewatcher_core::{EngineError, Event, EventKind, EventSource, RetryPolicy, Watcher};
use whalewatcher_cri::CriEngine;
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::containerd::ContainerdTest;
use whalewatcher_tests::cri::CriTest;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::http_proxy::{HttpProxy, Rules};
use whalewatcher_tests::measure::{cpu_time, median};
use whalewatcher_tests::rig::{self, Rig};
use whalewatcher_tests::scripted_http::{Misbehaviour, ScriptedHttp};
use whalewatcher_tests::watching::Watching;
use whalewatcher_tests::workload::{ContainerdWorkload, CriWorkload, MobyWorkload, Workload};
use whalewatcher_tests::{eventually, within, DEADLINE, TEST_LABEL};

/// One fault test at a time: they restart engines and cut connections.
static RIG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The containerd namespace of these tests' containers.
const NAMESPACE: &str = "whalewatcher-faults";

fn mine(w: &Watching, label: &str) -> BTreeMap<String, u32> {
    w.mine(label)
        .into_iter()
        .map(|(id, c)| (id, c.pid()))
        .collect()
}

/// Waits until the portfolio shows exactly the engine's truth; the time
/// it took.
async fn wait_for_truth(w: &Watching, load: &dyn Workload, what: &str) -> Duration {
    let started = Instant::now();
    let mut last = (BTreeMap::new(), BTreeMap::new());
    let converged = tokio::time::timeout(DEADLINE, async {
        loop {
            let truth = load.truth().await;
            last = (mine(w, load.label()), truth);
            if last.0 == last.1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        converged.is_ok(),
        "{what}: the portfolio never equalled the truth:\n portfolio {:?}\n truth     {:?}",
        last.0,
        last.1
    );
    started.elapsed()
}

/// Starts a fence and reads the subscriber's events until its start: all
/// events before it are then in. Returns this test's events since `from`
/// (the fence's start included).
async fn fenced_events(
    w: &mut Watching,
    load: &dyn Workload,
    fence: &str,
    from: usize,
) -> Vec<(Change, String)> {
    let before: BTreeSet<String> = load.truth().await.into_keys().collect();
    load.start(fence).await;
    let fence_ids: Vec<String> = load
        .truth()
        .await
        .into_keys()
        .filter(|id| !before.contains(id))
        .collect();
    assert!(!fence_ids.is_empty(), "the fence {fence} did not start");
    for id in &fence_ids {
        w.events_of(id, "the fence's start", |k| k.contains(&EventKind::Started))
            .await;
    }
    w.seen[from..]
        .iter()
        .filter(|e| e.container.label(TEST_LABEL) == Some(load.label()))
        .map(|e| (change(e.kind), e.container.id().to_owned()))
        .collect()
}

/// An event kind, orderable for sets of expected events.
type Change = &'static str;

fn change(kind: EventKind) -> Change {
    kind.as_str()
}

/// The events that take a subscriber from `before` to `after`: exited for
/// the vanished, started for the new, in no particular order.
fn difference(
    before: &BTreeMap<String, u32>,
    after: &BTreeMap<String, u32>,
) -> BTreeSet<(Change, String)> {
    let exited = before
        .keys()
        .filter(|id| !after.contains_key(*id))
        .map(|id| ("exited", id.clone()));
    let started = after
        .keys()
        .filter(|id| !before.contains_key(*id))
        .map(|id| ("started", id.clone()));
    exited.chain(started).collect()
}

fn assert_exactly(seen: Vec<(Change, String)>, expected: BTreeSet<(Change, String)>) {
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "duplicate events: {seen:?}");
    assert_eq!(unique, expected, "the events are not the difference");
}

/// Five engine restarts in a row; before each, two containers run, and one
/// more starts as soon as the engine answers again (while the watcher is
/// still resynchronizing). After each: every container of before is gone
/// (the restart changed everything), their exits came from the resync's
/// difference (source sync), the subscriber saw exactly the difference,
/// and the engine id is the same. Prints the watcher's own times: how long
/// each resync took, and how long after the engine answered again it was
/// published (retry backoff included).
async fn five_restarts(
    name: &str,
    rig: &Rig,
    engine_rig: &rig::Engine,
    w: &mut Watching,
    load: &dyn Workload,
) {
    w.watcher.ready().await.expect("synced");
    let initial = w.watcher.status().sync_duration.expect("synced");
    let id = w.watcher.id();
    assert!(!id.is_empty());
    let (mut resyncs, mut published) = (Vec::new(), Vec::new());
    for round in 0..5 {
        load.start(&format!("r{round}a")).await;
        load.start(&format!("r{round}b")).await;
        wait_for_truth(w, load, "before the restart").await;
        let fence = fenced_events(w, load, &format!("f{round}a"), 0).await;
        drop(fence);
        let before = load.truth().await;
        let from = w.seen.len();

        let mut status = w.watcher.subscribe_status();
        rig.restart(engine_rig, 2);
        within("the watcher to notice the loss", async {
            status.wait_for(|s| !s.is_synced()).await.unwrap();
        })
        .await;
        let synced_at = tokio::spawn(async move {
            status.wait_for(|s| s.is_synced()).await.unwrap();
            Instant::now()
        });
        let up = within("the engine to answer again", async {
            while !load.answers().await {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Instant::now()
        })
        .await;
        load.start(&format!("r{round}new")).await;
        let synced_at = within("the resync", synced_at).await.unwrap();
        published.push(synced_at.saturating_duration_since(up));
        resyncs.push(w.watcher.status().sync_duration.expect("synced"));
        wait_for_truth(w, load, "after the restart").await;
        let seen = fenced_events(w, load, &format!("f{round}b"), from).await;
        let after = load.truth().await;
        assert!(
            before.keys().all(|id| !after.contains_key(id)),
            "{name}: the restart left containers alive: {before:?} / {after:?}"
        );
        for gone in before.keys() {
            let exit = w.seen[from..]
                .iter()
                .find(|e| e.kind == EventKind::Exited && e.container.id() == gone)
                .unwrap_or_else(|| panic!("{name}: no exit of {gone}"));
            assert_eq!(
                exit.source,
                EventSource::Sync,
                "{name}: the exit of {gone} must come from the resync's difference"
            );
        }
        assert_exactly(seen, difference(&before, &after));
        assert_eq!(
            w.watcher.id(),
            id,
            "{name}: the engine id changed with a restart"
        );
    }
    let ms = |d: &[Duration]| -> Vec<f64> { d.iter().map(|d| d.as_secs_f64() * 1e3).collect() };
    let (resyncs, published) = (ms(&resyncs), ms(&published));
    println!(
        "{name}: initial sync {:.1} ms; 5 resyncs took {:.1} ms (median; max {:.1}), published {:.0} ms (median; max {:.0}) after the engine answered again, retry backoff included",
        initial.as_secs_f64() * 1e3,
        median(&resyncs),
        resyncs.iter().cloned().fold(0.0, f64::max),
        median(&published),
        published.iter().cloned().fold(0.0, f64::max),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_restarts_of_dockerd_end_in_the_truth_with_exactly_the_difference() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let load = MobyWorkload(DockerTest::connect(&rig.docker, "faults-dockerd").await);
    let mut w = Watching::start(MobyEngine::new(&rig.docker.endpoint).unwrap());
    five_restarts("dockerd 26", &rig, &rig.docker, &mut w, &load).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_restarts_of_podman_end_in_the_truth_with_exactly_the_difference() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let load = MobyWorkload(DockerTest::connect(&rig.podman, "faults-podman").await);
    let mut w = Watching::start(MobyEngine::new(&rig.podman.endpoint).unwrap());
    five_restarts("podman 5", &rig, &rig.podman, &mut w, &load).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_restarts_of_containerd_end_in_the_truth_with_exactly_the_difference() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let load = ContainerdWorkload::new(
        std::sync::Arc::new(ContainerdTest::connect(&rig.containerd, "faults-containerd").await),
        NAMESPACE,
    );
    let mut w = Watching::start(ContainerdEngine::new(rig.containerd.socket()).expect("engine"));
    five_restarts("containerd 1.7", &rig, &rig.containerd, &mut w, &load).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_restarts_of_the_cri_engine_end_in_the_truth_with_exactly_the_difference() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let load = CriWorkload(CriTest::connect(&rig.containerd, "faults-cri").await);
    let mut w = Watching::start(CriEngine::new(rig.containerd.socket()).expect("engine"));
    five_restarts("CRI (containerd 1.7)", &rig, &rig.containerd, &mut w, &load).await;
    w.stop().await;
}

/// Sends SIGCONT to a stopped engine when dropped: a failing test never
/// leaves the rig's engine frozen.
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        whalewatcher_tests::run_command("kill", &["-CONT", &self.0.to_string()]);
    }
}

/// The engine's process frozen (SIGSTOP) for longer than the liveness
/// bound under a watcher with the default probe: the watcher reports it
/// lost within the bound (10 s quiet + 5 s ping deadline), synchronized
/// again after SIGCONT, the portfolio the truth, and a container whose
/// process was killed during the freeze exited.
async fn frozen(
    name: &str,
    rig: &Rig,
    engine_rig: &rig::Engine,
    w: &mut Watching,
    load: &dyn Workload,
) {
    const BOUND: Duration = Duration::from_secs(15);
    w.watcher.ready().await.expect("synced");
    load.start("frozen-a").await;
    load.start("frozen-b").await;
    wait_for_truth(w, load, "before the freeze").await;
    let (victim, victim_pid) = load.truth().await.into_iter().next().expect("a container");
    let from = w.seen.len();
    let mut status = w.watcher.subscribe_status();
    let engine_pid = rig.engine_pid(engine_rig);
    let thaw = Thaw(engine_pid);
    whalewatcher_tests::run_command("kill", &["-STOP", &engine_pid.to_string()]);
    let frozen_at = Instant::now();
    // Killed by its process (the PID is the engine's, in the engine's
    // container): the frozen engine cannot tell.
    whalewatcher_tests::run_command(
        "docker",
        &[
            "-H",
            &rig.host_docker.endpoint,
            "exec",
            engine_rig.container(),
            "kill",
            "-KILL",
            &victim_pid.to_string(),
        ],
    );
    let lost = tokio::time::timeout(
        BOUND * 2,
        status.wait_for(|s| s.state == whalewatcher_core::SyncState::Lost),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{name}: a frozen engine still counts as synced after {:?}",
            BOUND * 2
        )
    })
    .expect("status")
    .clone();
    let lost_after = frozen_at.elapsed();
    assert!(
        matches!(
            lost.last_error,
            Some(EngineError::Timeout { call: "ping", .. })
        ),
        "{name}: {lost:?}"
    );
    // The bound, and a second for the rig's scheduling.
    assert!(
        lost_after <= BOUND + Duration::from_secs(1),
        "{name}: lost only after {lost_after:?}"
    );
    // Frozen for longer than the bound, then thawed.
    tokio::time::sleep((BOUND + Duration::from_secs(2)).saturating_sub(frozen_at.elapsed())).await;
    drop(thaw);
    within("the watcher synchronized again", async {
        status.wait_for(|s| s.is_synced()).await.unwrap();
    })
    .await;
    wait_for_truth(w, load, "after the thaw").await;
    w.events_of(&victim, "the killed container's exit", |kinds| {
        kinds.contains(&EventKind::Exited)
    })
    .await;
    let exit = w.seen[from..]
        .iter()
        .find(|e| e.kind == EventKind::Exited && e.container.id() == victim)
        .expect("its exit")
        .clone();
    println!(
        "{name}: lost {:.1} s after the freeze; the killed container's exit: source {:?}, {:?}",
        lost_after.as_secs_f64(),
        exit.source,
        exit.exit
    );
    // Heard or not (dockerd replays it; containerd's exit went out while
    // the watch was away), the exit says how: killed.
    assert_eq!(
        exit.exit.and_then(|exit| exit.code),
        Some(137),
        "{name}: the exit of the container killed during the freeze: {exit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_dockerd_is_lost_within_the_bound_and_back_after_it_thaws() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let load = MobyWorkload(DockerTest::connect(&rig.docker, "faults-frozen-dockerd").await);
    let mut w = Watching::start(MobyEngine::new(&rig.docker.endpoint).unwrap());
    frozen("dockerd 26", &rig, &rig.docker, &mut w, &load).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_containerd_is_lost_within_the_bound_and_back_after_it_thaws() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let load = ContainerdWorkload::new(
        std::sync::Arc::new(ContainerdTest::connect(&rig.containerd2, "faults-frozen-cd").await),
        NAMESPACE,
    );
    let mut w = Watching::start(ContainerdEngine::new(rig.containerd2.socket()).expect("engine"));
    frozen("containerd 2.1", &rig, &rig.containerd2, &mut w, &load).await;
    w.stop().await;
}

/// Cuts every connection of the watcher (its event stream among them) and
/// refuses new ones; meanwhile one container dies and one starts; then lets
/// the watcher back in.
async fn cut_stream(
    w: &mut Watching,
    proxy: &HttpProxy,
    load: &dyn Workload,
    (victim, kill): (&str, impl std::future::Future<Output = ()>),
) {
    wait_for_truth(w, load, "before the cut").await;
    fenced_events(w, load, "fence-before", 0).await;
    let before = load.truth().await;
    let from = w.seen.len();
    proxy.cut_and_hold();
    eventually("the watcher to notice the loss", || async {
        !w.watcher.status().is_synced()
    })
    .await;
    kill.await;
    load.start("during-cut").await;
    proxy.restore();
    wait_for_truth(w, load, "after the cut").await;
    let seen = fenced_events(w, load, "fence-after", from).await;
    let after = load.truth().await;
    let expected = difference(&before, &after);
    assert!(
        expected.iter().any(|(kind, _)| *kind == "exited"),
        "the test killed nothing"
    );
    assert_exactly(seen, expected);
    // Its exit went out while the watcher could not hear: replayed
    // (dockerd) or not (containerd, CRI: then the exit the engine still
    // keeps), it says how the container ended: killed.
    let exit = w.seen[from..]
        .iter()
        .find(|e| e.kind == EventKind::Exited && e.container.id() == victim)
        .unwrap_or_else(|| panic!("no exit of {victim}"));
    assert_eq!(exit.exit.and_then(|exit| exit.code), Some(137), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_docker_event_stream_is_resynchronized_without_loss() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "faults-cut-docker").await;
    let victim = t.run("victim", &[]).await;
    let proxy = HttpProxy::docker(&rig.host_docker, Rules::default());
    let mut w = Watching::synced(MobyEngine::new(proxy.endpoint()).unwrap()).await;
    let load = MobyWorkload(t);
    let kill = load.0.kill(&victim);
    cut_stream(&mut w, &proxy, &load, (&victim, kill)).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_containerd_event_stream_is_resynchronized_without_loss() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let t = std::sync::Arc::new(
        ContainerdTest::connect(&rig.containerd, "faults-cut-containerd").await,
    );
    let victim = format!("victim-{}", t.label);
    {
        let (t, victim) = (t.clone(), victim.clone());
        tokio::task::spawn_blocking(move || t.run(NAMESPACE, &victim, &[]))
            .await
            .unwrap();
    }
    let proxy = HttpProxy::grpc(&rig.containerd, Rules::default());
    let mut w = Watching::synced(ContainerdEngine::new(proxy.socket()).expect("engine")).await;
    let load = ContainerdWorkload::new(t.clone(), NAMESPACE);
    let shown = format!("{NAMESPACE}/{victim}");
    let kill = async move {
        tokio::task::spawn_blocking(move || t.kill(NAMESPACE, &victim))
            .await
            .unwrap();
    };
    cut_stream(&mut w, &proxy, &load, (&shown, kill)).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_cri_event_stream_is_resynchronized_without_loss() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let t = CriTest::connect(&rig.containerd, "faults-cut-cri").await;
    let victim_pod = t.run_pod("victim", "faults").await;
    let victim = t.run_container(&victim_pod, "main").await;
    let proxy = HttpProxy::grpc(&rig.containerd, Rules::default());
    let mut w = Watching::synced(CriEngine::new(proxy.socket()).expect("engine")).await;
    let load = CriWorkload(t);
    let kill = load.0.stop_container(&victim);
    cut_stream(&mut w, &proxy, &load, (&victim, kill)).await;
    w.stop().await;
}

/// Starts `n` containers and stops every other one, 4 at a time.
async fn churn(t: &DockerTest, prefix: &str, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(4, |i| async move {
            let id = t.run(&format!("{prefix}{i}"), &[]).await;
            if i % 2 == 0 {
                t.kill(&id).await;
            }
        })
        .await;
}

/// 100 containers started and 50 of them killed while the watcher's list
/// is in flight — once for the initial sync, once for a resync after the
/// connection was cut: a proxy holds dockerd's list answer (as taken when
/// asked) until the churn's 150 events have passed on to the watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_100_during_the_initial_sync_and_during_a_resync_ends_in_the_truth() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "faults-churn").await;
    let proxy = HttpProxy::docker(&rig.host_docker, Rules::default());
    proxy.hold_answers(&["/containers/json"]);
    let mut w = Watching::start(MobyEngine::new(proxy.endpoint()).unwrap());
    let ((), passed) = proxy.overlap(churn(&t, "initial", 100), 150).await;
    println!("initial sync: {passed} events passed while the list waited");
    w.watcher.ready().await.expect("synced");
    let load = MobyWorkload(t);
    wait_for_truth(&w, &load, "churn during the initial sync").await;
    assert_eq!(mine(&w, load.label()).len(), 50);

    fenced_events(&mut w, &load, "fence-before", 0).await;
    let from = w.seen.len();
    let before = load.truth().await;
    proxy.cut_and_hold();
    eventually("the watcher to notice the loss", || async {
        !w.watcher.status().is_synced()
    })
    .await;
    proxy.hold_answers(&["/containers/json"]);
    proxy.restore();
    let ((), passed) = proxy.overlap(churn(&load.0, "resync", 100), 150).await;
    println!("resync: {passed} events passed while the list waited");
    wait_for_truth(&w, &load, "churn during a resync").await;
    assert_eq!(mine(&w, load.label()).len(), 101);
    let seen = fenced_events(&mut w, &load, "fence-after", from).await;
    let after = load.truth().await;
    // Containers that started and died while the watcher was away may or
    // may not be seen; what the subscriber saw must add up to the truth.
    let mut view: BTreeSet<String> = before.keys().cloned().collect();
    for (kind, id) in &seen {
        match *kind {
            "started" => assert!(view.insert(id.clone()), "a second start of {id}"),
            "exited" => assert!(view.remove(id), "an exit of {id} never started"),
            _ => {}
        }
    }
    assert_eq!(view, after.keys().cloned().collect::<BTreeSet<_>>());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_lags_and_the_portfolio_stays_current() {
    let _alone = RIG.lock().await;
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "faults-slow").await;
    let watcher = Watcher::builder(MobyEngine::new(&rig.host_docker.endpoint).unwrap())
        .event_capacity(8)
        .build();
    let watching = watcher.spawn();
    watcher.ready().await.expect("synced");
    let (before, mut slow) = watcher.subscribe();

    // A burst of 50 starts while the subscriber reads nothing.
    let names: Vec<String> = (0..50).map(|i| format!("burst{i}")).collect();
    let ids: Vec<String> = futures::future::join_all(names.iter().map(|n| t.run(n, &[]))).await;
    eventually("the portfolio to hold the whole burst", || async {
        let portfolio = watcher.portfolio();
        ids.iter().all(|id| portfolio.container(id).is_some())
    })
    .await;
    // What was ready at once is one revision: the 50 starts took 47 to
    // 49 in three runs here.
    let published = watcher.portfolio().revision() - before.revision();
    println!("the burst of 50 starts took {published} revisions");
    assert!(published > 8, "the burst took only {published} revisions");
    let first = within("the slow subscriber's next item", slow.next())
        .await
        .expect("stream open");
    let lagged = first.expect_err("a subscriber 50 events behind with room for 8 has lagged");
    assert_eq!(lagged.missed, published - 8, "{lagged}");
    // After the lag it goes on with the oldest events still buffered; a
    // fresh subscription starts from a current snapshot.
    assert!(matches!(slow.next().await, Some(Ok(Event { .. }))));
    let (snapshot, _) = watcher.subscribe();
    assert!(ids.iter().all(|id| snapshot.container(id).is_some()));
    watching.stop().await.unwrap();
}

/// Watches a broken endpoint for two seconds under the default retry
/// policy: the first sync fails with an error of `kind`, the watcher keeps
/// retrying with backoff and without spinning. Returns (attempts, CPU ms).
async fn retries_against(endpoint: &str, expected: fn(&EngineError) -> bool) -> (u64, f64) {
    let watcher = Watcher::new(MobyEngine::new(endpoint).unwrap(), RetryPolicy::default());
    let cpu = cpu_time(std::process::id());
    let watching = watcher.spawn();
    let ready = watcher.ready().await;
    assert!(
        matches!(&ready, Err(error) if expected(error)),
        "{endpoint}: {ready:?}"
    );
    // The backoff window to observe: retries happen in it, or they spin.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = (cpu_time(std::process::id()) - cpu).as_secs_f64() * 1e3;
    watching.stop().await.expect("cancelled cleanly");
    let attempts = watcher.status().attempts;
    assert!((2..=8).contains(&attempts), "{attempts} attempts in 2 s");
    (attempts, spent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_docker_endpoints_are_typed_errors_retried_with_backoff_at_little_cpu() {
    let _alone = RIG.lock().await;
    let dir = std::env::temp_dir();
    let failing = ScriptedHttp::start(&dir, Misbehaviour::ServerError);
    let (attempts, cpu) = retries_against(
        &failing.endpoint(),
        |e| matches!(e, EngineError::Protocol { message, .. } if message.contains("500")),
    )
    .await;
    println!("HTTP 500: {attempts} attempts and {cpu:.0} ms CPU in 2 s");
    assert!(cpu < 500.0, "{cpu:.0} ms CPU in 2 s of retrying: a spin");

    let truncated = ScriptedHttp::start(&dir, Misbehaviour::TruncatedJson);
    let (attempts, cpu) = retries_against(&truncated.endpoint(), |e| {
        matches!(e, EngineError::Protocol { .. })
    })
    .await;
    println!("truncated JSON: {attempts} attempts and {cpu:.0} ms CPU in 2 s");
    assert!(cpu < 500.0, "{cpu:.0} ms CPU in 2 s of retrying: a spin");
    assert!(truncated.requests() > 0);

    let missing = Path::new("/run/whalewatcher-rig/no-such-docker.sock");
    let (attempts, cpu) = retries_against(&format!("unix://{}", missing.display()), |e| {
        matches!(e, EngineError::Unreachable { .. })
    })
    .await;
    println!("missing socket: {attempts} attempts and {cpu:.0} ms CPU in 2 s");
    assert!(cpu < 500.0, "{cpu:.0} ms CPU in 2 s of retrying: a spin");
}
