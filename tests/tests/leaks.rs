//! Nothing leaks: after a watch is cancelled and its watcher closed and
//! dropped, this process's open file descriptors and live tokio tasks are
//! back at their baseline — for each engine. One test in a binary of its
//! own, so no other test's connections move the counts.

use std::time::Duration;

use futures::StreamExt;
use whalewatcher_containerd::ContainerdEngine;
use whalewatcher_core::{Engine, RetryPolicy, Watcher};
use whalewatcher_cri::CriEngine;
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::rig::Rig;
use whalewatcher_tests::watching::spawn_watch;
use whalewatcher_tests::DEADLINE;

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

/// Watches `engine` through a first sync and a subscription, then cancels,
/// closes and drops everything.
async fn watch_once(engine: impl Engine) {
    let watcher = Watcher::new(engine, RetryPolicy::default());
    let (cancel, watch) = spawn_watch(&watcher);
    watcher.ready().await.expect("synced");
    let (_, mut events) = watcher.subscribe();
    // Poll once, so the subscription is in use when it is dropped.
    let _ = tokio::time::timeout(Duration::from_millis(10), events.next()).await;
    cancel.cancel();
    watch.await.unwrap().expect("cancelled cleanly");
    watcher.close().await;
}

/// Waits for the counts to come back to the baseline; connections close on
/// the runtime's other thread a moment after their owners are gone.
async fn back_to(baseline: (usize, usize), engine: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = (open_fds(), alive_tasks());
        if now.0 <= baseline.0 && now.1 <= baseline.1 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{engine}: file descriptors and tasks {now:?}, not back at {baseline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_leaves_no_file_descriptor_and_no_task_behind() {
    let rig = Rig::load();
    let baseline = (open_fds(), alive_tasks());
    for _ in 0..3 {
        watch_once(MobyEngine::new(Some(&rig.host_docker.endpoint)).unwrap()).await;
        back_to(baseline, "host dockerd").await;
        watch_once(MobyEngine::new(Some(&rig.podman.endpoint)).unwrap()).await;
        back_to(baseline, "podman").await;
        watch_once(ContainerdEngine::new(rig.containerd.socket())).await;
        back_to(baseline, "containerd").await;
        watch_once(CriEngine::new(rig.containerd.socket())).await;
        back_to(baseline, "CRI").await;
    }
}
