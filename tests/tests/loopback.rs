//! The loopback endpoints the cost benchmarks measure against: each
//! engine syncs every container they serve, with its PID, and resyncs
//! after their restart. No rig needed.

use std::time::Duration;

use whalewatcher_core::{RetryPolicy, SyncState};
use whalewatcher_tests::loopback::{container_id, Kind};
use whalewatcher_tests::loopback_grpc::NAMESPACE;
use whalewatcher_tests::within;

/// The portfolio id of container `i` of `kind`.
fn id(kind: Kind, i: usize) -> String {
    match kind {
        Kind::Containerd => format!("{NAMESPACE}/{}", container_id(i)),
        Kind::Docker | Kind::Cri => container_id(i),
    }
}

async fn syncs_and_resyncs(kind: Kind) {
    let n: usize = whalewatcher_tests::measure::env_or("WW_LOOPBACK_N", 200);
    let endpoint = kind.start(&std::env::temp_dir(), n);
    let watcher = kind
        .watcher(&endpoint.endpoint())
        .retry(RetryPolicy::from_delays(|| {
            std::iter::repeat(Duration::from_millis(10))
        }))
        .build();
    let watching = watcher.spawn();
    within("the sync", watcher.ready()).await.expect("synced");
    let portfolio = watcher.portfolio();
    assert_eq!(portfolio.len(), n, "{kind:?}: every container synced");
    for i in [0, 1, n - 1] {
        let container = portfolio
            .container(&id(kind, i))
            .unwrap_or_else(|| panic!("{kind:?}: container {i} synced"));
        assert_eq!(container.pid(), 10_000 + i as u32, "{kind:?}: its PID");
    }
    if kind == Kind::Cri {
        let pod = portfolio
            .container(&id(kind, 1))
            .and_then(|c| c.pod().cloned());
        assert_eq!(
            pod.map(|p| p.name.to_string()),
            Some("loopback-0".to_owned())
        );
    }

    let mut status = watcher.subscribe_status();
    endpoint.restart(20..20 + n);
    within("the resync", async {
        status
            .wait_for(|s| s.state == SyncState::Lost)
            .await
            .expect("lost");
        status
            .wait_for(|s| s.state == SyncState::Synced)
            .await
            .expect("synced again");
    })
    .await;
    let portfolio = watcher.portfolio();
    assert_eq!(portfolio.len(), n, "{kind:?}: every container resynced");
    assert!(
        portfolio.container(&id(kind, 0)).is_none(),
        "{kind:?}: 0 gone"
    );
    assert!(
        portfolio.container(&id(kind, n + 19)).is_some(),
        "{kind:?}: {} new",
        n + 19
    );
    watching.stop().await.expect("stopped");
}

#[tokio::test]
async fn docker_loopback_syncs_and_resyncs() {
    syncs_and_resyncs(Kind::Docker).await;
}

#[tokio::test]
async fn containerd_loopback_syncs_and_resyncs() {
    syncs_and_resyncs(Kind::Containerd).await;
}

#[tokio::test]
async fn cri_loopback_syncs_and_resyncs() {
    syncs_and_resyncs(Kind::Cri).await;
}
