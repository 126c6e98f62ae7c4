//! Engines that misbehave the way real deployments do, in front of (or
//! instead of) the rig's real engines: a socket that accepts and never
//! answers, a docker-socket-proxy that forbids `/info`, a proxy whose idle
//! timeout ends every event stream soon after the list. The watcher must
//! neither hang, nor stop, nor hammer the engine.

use std::time::{Duration, Instant};

use whalewatcher_containerd::ContainerdEngine;
use whalewatcher_core::{Deadlines, Engine, EngineError, RetryPolicy, WatchError, Watcher};
use whalewatcher_cri::CriEngine;
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::http_proxy::{HttpProxy, Rules};
use whalewatcher_tests::rig::Rig;
use whalewatcher_tests::silent::SilentSocket;
use whalewatcher_tests::{eventually, within};

/// Deadlines short enough for a test, long enough for any healthy engine.
fn short_deadlines() -> Deadlines {
    let mut deadlines = Deadlines::default();
    deadlines.info = Duration::from_secs(1);
    deadlines.subscribe = Duration::from_secs(1);
    deadlines.list = Duration::from_secs(1);
    deadlines.inspect = Duration::from_secs(1);
    deadlines
}

/// Watches `engine` behind a silent socket: the first sync must fail with
/// a timeout after about the deadline, and the watch must go on retrying.
async fn times_out(engine: impl Engine, silent: &SilentSocket) {
    let watcher = Watcher::builder(engine)
        .deadlines(short_deadlines())
        .build();
    let began = Instant::now();
    let watching = watcher.spawn();
    let ready = within("ready() against a silent socket", watcher.ready()).await;
    let waited = began.elapsed();
    assert!(
        matches!(ready, Err(EngineError::Timeout { .. })),
        "{}: {ready:?}",
        watcher.api()
    );
    // The 1 s deadline, on tokio's millisecond timer: not at once, and
    // not hanging.
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{}: ready() after {waited:?}",
        watcher.api()
    );
    assert!(silent.accepted() > 0, "the engine never connected");
    eventually("a second attempt", || async {
        watcher.status().attempts >= 2
    })
    .await;
    within("the watch to stop", watching.stop())
        .await
        .expect("cancelled cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_answers_times_out_on_every_engine_instead_of_hanging() {
    let dir = std::env::temp_dir();
    let silent = SilentSocket::start(&dir);
    let endpoint = format!("unix://{}", silent.socket().display());
    times_out(MobyEngine::new(&endpoint).unwrap(), &silent).await;
    let silent = SilentSocket::start(&dir);
    times_out(
        ContainerdEngine::new(silent.socket()).expect("engine"),
        &silent,
    )
    .await;
    let silent = SilentSocket::start(&dir);
    times_out(CriEngine::new(silent.socket()).expect("engine"), &silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_behind_a_proxy_that_forbids_info_is_synced_and_followed() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "hostile-no-info").await;
    let before = t.run("before", &[]).await;
    let rules = Rules {
        forbidden: vec!["/info"],
        ..Rules::default()
    };
    let proxy = HttpProxy::docker(&rig.host_docker, rules);
    let watcher = Watcher::new(
        MobyEngine::new(proxy.endpoint()).unwrap(),
        RetryPolicy::default(),
    );
    let watching = watcher.spawn();

    within("ready()", watcher.ready())
        .await
        .expect("synced without /info");
    assert!(watcher.portfolio().container(&before).is_some());
    let after = t.run("after", &[]).await;
    eventually("the start after the sync to be followed", || async {
        watcher.portfolio().container(&after).is_some()
    })
    .await;
    assert!(!proxy.requests("/info").is_empty(), "/info was not asked");
    assert_eq!(watcher.id(), "", "no id without /info");
    // The ping (allowed) tells the version all the same.
    assert_eq!(watcher.version(), rig.host_docker.version);
    assert_eq!(watcher.engine_type(), whalewatcher_moby::DOCKER_TYPE);
    assert_eq!(
        proxy.requests("/containers/json").len(),
        1,
        "relisted although events work"
    );
    assert!(watcher.status().is_synced());
    watching.stop().await.expect("cancelled cleanly");
}

/// The gaps between the list requests of a watcher whose event streams a
/// proxy ends 200 ms after they began, until `lists` lists were made.
async fn gaps_between_lists(proxy: &HttpProxy, lists: usize) -> Vec<Duration> {
    eventually(&format!("{lists} lists"), || async {
        proxy.requests("/containers/json").len() >= lists
    })
    .await;
    proxy
        .requests("/containers/json")
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_ended_by_an_idle_timeout_back_off_and_a_bounded_policy_gives_up() {
    let rig = Rig::load();
    let rules = Rules {
        end_events_after: Some(Duration::from_millis(200)),
        ..Rules::default()
    };
    let proxy = HttpProxy::docker(&rig.host_docker, rules);
    let engine = || MobyEngine::new(proxy.endpoint()).unwrap();

    let watcher = Watcher::new(engine(), RetryPolicy::default());
    let watching = watcher.spawn();
    let gaps = gaps_between_lists(&proxy, 6).await;
    watching.stop().await.expect("cancelled cleanly");
    println!("gaps between relists: {gaps:?}");
    // Each session is synced and lost 200 ms later, never proven; the
    // default delays double from [50, 100) ms.
    assert!(
        gaps[4] >= gaps[0] * 2,
        "the relists do not back off: {gaps:?}"
    );

    let proxy = HttpProxy::docker(
        &rig.host_docker,
        Rules {
            end_events_after: Some(Duration::from_millis(200)),
            ..Rules::default()
        },
    );
    let watcher = Watcher::new(
        MobyEngine::new(proxy.endpoint()).unwrap(),
        RetryPolicy::default().max_retries(3),
    );
    let ended = within(
        "the bounded watch to give up",
        watcher.watch(Default::default()),
    )
    .await;
    assert!(
        matches!(
            ended,
            Err(WatchError::GaveUp {
                attempts: 4,
                last: EngineError::StreamEnded { .. }
            })
        ),
        "{ended:?}"
    );
    assert_eq!(proxy.requests("/containers/json").len(), 4);
}
