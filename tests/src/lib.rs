//! Support for the integration tests against the rig's real engines (see
//! `docker/setup`): where each engine is, and how to make, change and clean
//! up containers and pods on it.
//!
//! A test whose engine cannot be reached fails with the reason; nothing
//! here skips.

pub mod commands;
pub mod containerd;
pub mod cri;
pub mod docker;
pub mod http_proxy;
pub mod kept;
pub mod loopback;
pub mod loopback_docker;
pub mod loopback_grpc;
pub mod measure;
pub mod rig;
pub mod scripted_grpc;
pub mod scripted_http;
pub mod silent;
pub mod watching;
pub mod workload;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a test waits for an engine to do something before failing.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The label key that marks what a test created, for cleanup.
pub const TEST_LABEL: &str = "whalewatcher-rig.test";

/// A label value unique to one test run: `test` plus process id and a
/// counter, so parallel tests and earlier runs never collide.
pub fn test_label_value(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Awaits `work`, failing the test with `what` after [`DEADLINE`].
pub async fn within<F: Future>(what: &str, work: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, work).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Waits until `condition` holds, checking every 50 ms; fails the test with
/// `what` after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Runs a command to completion, failing the test with its output if it
/// fails or outlives [`commands::COMMAND_DEADLINE`]; returns its standard
/// output.
pub fn run_command(program: &str, args: &[&str]) -> String {
    let output = commands::output_within(std::process::Command::new(program).args(args))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
