//! The library's own CPU per container, with the engine taken out of the
//! picture: a loopback endpoint (`whalewatcher_tests::loopback`, in a
//! thread of its own) serves N running containers from memory, made from
//! records captured on the rig's engines — dockerd 26's inspect bodies,
//! containerd 1.7's records and tasks, its CRI plugin's verbose statuses.
//!
//! For each engine kind of `WW_COST_KINDS` (default
//! `docker,containerd,cri`), each N of `WW_COST_N` (default `1000,10000`),
//! in `WW_COST_ROUNDS` (default 5) rounds:
//! - the parse floor: the messages a sync receives, decoded into just the
//!   fields the record keeps (`whalewatcher_tests::kept`; one thread, its
//!   CPU time);
//! - whalewatcher's initial sync against the endpoint: wall time, and the
//!   client's CPU (every thread of this process but the endpoint's);
//! - the ratio of the client's CPU to the floor, per round;
//! - each of that on a runtime of `WW_COST_RUNTIMES` (default
//!   `multi,current`): tokio's multi-thread runtime with two workers, or
//!   its current-thread runtime, where no task wakes another thread;
//! - the same messages decoded into the full model of the engine crate's
//!   dependency (bollard, containerd-client, k8s-cri): for Docker, what
//!   every inspect cost before the engine parsed only what it keeps.
//!
//! Medians; no goal is asserted here. Run: `cargo bench -p
//! whalewatcher-tests --bench library_cost`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use whalewatcher_core::RetryPolicy;
use whalewatcher_tests::kept;
use whalewatcher_tests::loopback::{Kind, Loopback};
use whalewatcher_tests::measure::{env_or, median, ms, this_process_cpu, this_thread_cpu};

/// The floor: the CPU to decode every message into the kept fields.
fn parse_floor(kind: Kind, messages: &[(&str, Bytes)]) -> Duration {
    let before = this_thread_cpu();
    for (what, message) in messages {
        kept::parse(kind, what, message);
    }
    this_thread_cpu() - before
}

/// The CPU to decode every message into the full model.
fn parse_full(kind: Kind, messages: &[(&str, Bytes)]) -> Duration {
    let before = this_thread_cpu();
    for (what, message) in messages {
        kept::parse_full(kind, what, message);
    }
    this_thread_cpu() - before
}

/// One initial sync against `endpoint`: wall time, the client's CPU.
async fn sync(kind: Kind, endpoint: &dyn Loopback, n: usize) -> (Duration, Duration) {
    let (process_before, server_before) = (this_process_cpu(), endpoint.cpu());
    let started = Instant::now();
    let watcher = kind
        .watcher(&endpoint.endpoint())
        .retry(RetryPolicy::none())
        .build();
    let watching = watcher.spawn();
    watcher.ready().await.expect("synced");
    let wall = started.elapsed();
    assert_eq!(watcher.portfolio().len(), n, "every container synced");
    let client =
        (this_process_cpu() - process_before).saturating_sub(endpoint.cpu() - server_before);
    watching.stop().await.expect("stopped");
    (wall, client)
}

fn main() {
    let kinds = Kind::parse_list(&env_or("WW_COST_KINDS", "docker,containerd,cri".to_owned()));
    let sizes: Vec<usize> = env_or("WW_COST_N", "1000,10000".to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("WW_COST_N: numbers"))
        .collect();
    let rounds: usize = env_or("WW_COST_ROUNDS", 5);
    let runtimes: Vec<(String, tokio::runtime::Runtime)> =
        env_or("WW_COST_RUNTIMES", "multi,current".to_owned())
            .split(',')
            .map(|name| (name.trim().to_owned(), runtime(name.trim())))
            .collect();
    let dir = std::env::temp_dir();
    println!(
        "{:>10} {:>7} {:>8} {:>10} {:>10} {:>10} {:>12} {:>12} {:>8} {:>12} {:>12}",
        "engine",
        "N",
        "runtime",
        "sync ms",
        "client ms",
        "floor ms",
        "client µs/c",
        "floor µs/c",
        "ratio",
        "full µs/c",
        "full/floor"
    );
    for kind in kinds {
        for &n in &sizes {
            let endpoint = kind.start(&dir, n);
            let messages = kind.sync_messages(n);
            for (runtime_name, runtime) in &runtimes {
                let (mut walls, mut clients, mut floors, mut ratios) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let (mut fulls, mut full_ratios) = (Vec::new(), Vec::new());
                for round in 0..rounds {
                    // Alternating which goes first.
                    let floor_first = round % 2 == 0;
                    let floor = floor_first.then(|| parse_floor(kind, &messages));
                    let (wall, client) = runtime.block_on(sync(kind, endpoint.as_ref(), n));
                    let floor = floor.unwrap_or_else(|| parse_floor(kind, &messages));
                    walls.push(ms(wall));
                    clients.push(ms(client));
                    floors.push(ms(floor));
                    ratios.push(client.as_secs_f64() / floor.as_secs_f64());
                    let full = parse_full(kind, &messages);
                    fulls.push(ms(full));
                    full_ratios.push(full.as_secs_f64() / floor.as_secs_f64());
                }
                let per = |total: f64| total * 1e3 / n as f64;
                println!(
                "{:>10} {n:>7} {runtime_name:>8} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>12.1} {:>8.2} {:>12.1} {:>12.2}",
                kind.name(),
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
    }
}

/// A tokio runtime by name: `multi` (two workers) or `current`.
fn runtime(name: &str) -> tokio::runtime::Runtime {
    let mut builder = match name {
        "multi" => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
        "current" => tokio::runtime::Builder::new_current_thread(),
        other => panic!("WW_COST_RUNTIMES: {other:?} is neither multi nor current"),
    };
    builder.enable_all().build().expect("a runtime")
}
