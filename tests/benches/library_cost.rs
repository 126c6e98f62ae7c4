//! The library's own CPU per container, with the engine taken out of the
//! picture: a loopback Docker endpoint (`whalewatcher_tests::loopback_docker`,
//! in a thread of its own) serves N running containers from memory, each
//! inspect body made from one captured on the rig's dockerd 26.
//!
//! For each N of `WW_COST_N` (default `1000,10000`) in `WW_COST_ROUNDS`
//! (default 5) rounds:
//! - the parse floor: the N bodies deserialized into just the fields the
//!   record keeps (one thread; its CPU time);
//! - whalewatcher's initial sync against the endpoint: wall time, and the
//!   client's CPU (every thread of this process but the endpoint's);
//! - the ratio of the client's CPU to the floor, per round;
//! - for comparison, the same bodies parsed into bollard's full model
//!   (what every inspect cost before the engine parsed only what it keeps).
//!
//! Medians; no goal is asserted here. Run: `cargo bench -p
//! whalewatcher-tests --bench library_cost`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use whalewatcher_core::{RetryPolicy, Watcher};
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::loopback_docker::{
    container_id, process_cpu, thread_cpu, LoopbackDocker, DOCKERD_26_INSPECT,
};
use whalewatcher_tests::measure::{env_or, median, ms, this_thread_id};

/// The fields of an inspect body that the record keeps, and nothing else.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Kept {
    id: String,
    name: String,
    image: String,
    created: String,
    restart_count: i64,
    state: KeptState,
    config: KeptConfig,
    host_config: KeptHostConfig,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeptState {
    running: bool,
    paused: bool,
    pid: i64,
    started_at: String,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeptConfig {
    image: String,
    labels: HashMap<String, String>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeptHostConfig {
    privileged: bool,
}

/// The N bodies the endpoint serves, as the client receives them.
fn bodies(n: usize) -> Vec<Vec<u8>> {
    let template: serde_json::Value = serde_json::from_str(DOCKERD_26_INSPECT).unwrap();
    (0..n)
        .map(|i| {
            let mut body = template.clone();
            body["Id"] = container_id(i).into();
            body["Name"] = format!("/loopback-{i}").into();
            serde_json::to_vec(&body).unwrap()
        })
        .collect()
}

/// The floor: the CPU to deserialize every body into [`Kept`].
fn parse_floor(bodies: &[Vec<u8>]) -> Duration {
    let before = thread_cpu(this_thread_id());
    for body in bodies {
        let kept: Kept = serde_json::from_slice(body).expect("a body");
        std::hint::black_box(kept);
    }
    thread_cpu(this_thread_id()) - before
}

/// The CPU to deserialize every body into bollard's full model, as the
/// moby engine did for every inspect before it parsed only the kept
/// fields (it still does for a packer).
fn parse_bollard(bodies: &[Vec<u8>]) -> Duration {
    let before = thread_cpu(this_thread_id());
    for body in bodies {
        let full: bollard::models::ContainerInspectResponse =
            serde_json::from_slice(body).expect("a body");
        std::hint::black_box(full);
    }
    thread_cpu(this_thread_id()) - before
}

/// One initial sync against `endpoint`: wall time, the client's CPU.
async fn sync(endpoint: &LoopbackDocker, n: usize) -> (Duration, Duration) {
    let (process_before, server_before) = (process_cpu(), endpoint.cpu());
    let started = Instant::now();
    let watcher = Watcher::new(
        MobyEngine::new(endpoint.endpoint()).expect("engine"),
        RetryPolicy::none(),
    );
    let watching = watcher.spawn();
    watcher.ready().await.expect("synced");
    let wall = started.elapsed();
    assert_eq!(watcher.portfolio().len(), n, "every container synced");
    let client = (process_cpu() - process_before).saturating_sub(endpoint.cpu() - server_before);
    watching.stop().await.expect("stopped");
    (wall, client)
}

fn main() {
    let sizes: Vec<usize> = env_or("WW_COST_N", "1000,10000".to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("WW_COST_N: numbers"))
        .collect();
    let rounds: usize = env_or("WW_COST_ROUNDS", 5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir();
    println!(
        "{:>7} {:>10} {:>10} {:>10} {:>12} {:>12} {:>8} {:>13} {:>13}",
        "N",
        "sync ms",
        "client ms",
        "floor ms",
        "client µs/c",
        "floor µs/c",
        "ratio",
        "bollard µs/c",
        "bollard/floor"
    );
    for n in sizes {
        let endpoint = LoopbackDocker::start(&dir, DOCKERD_26_INSPECT, n);
        let bodies = bodies(n);
        let (mut walls, mut clients, mut floors, mut ratios) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut fulls, mut full_ratios) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternating which goes first.
            let floor_first = round % 2 == 0;
            let floor = floor_first.then(|| parse_floor(&bodies));
            let (wall, client) = runtime.block_on(sync(&endpoint, n));
            let floor = floor.unwrap_or_else(|| parse_floor(&bodies));
            walls.push(ms(wall));
            clients.push(ms(client));
            floors.push(ms(floor));
            ratios.push(client.as_secs_f64() / floor.as_secs_f64());
            let full = parse_bollard(&bodies);
            fulls.push(ms(full));
            full_ratios.push(full.as_secs_f64() / floor.as_secs_f64());
        }
        let per = |total: f64| total * 1e3 / n as f64;
        println!(
            "{n:>7} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>8.2} {:>13.1} {:>13.2}",
            median(&walls),
            median(&clients),
            median(&floors),
            per(median(&clients)),
            per(median(&floors)),
            median(&ratios),
            per(median(&fulls)),
            median(&full_ratios),
        );
    }
}
