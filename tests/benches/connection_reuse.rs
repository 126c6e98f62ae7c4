//! What reusing connections gains the moby engine: a full list (the
//! initial sync's engine work: list + one inspect per container, 16 at
//! once) over bollard-style fresh connections per request versus the
//! engine's default pooled connections, against the rig's host dockerd.
//!
//! `cargo bench -p whalewatcher-tests --bench connection_reuse` (needs the
//! rig: `docker/setup`). `WW_BENCH_CONTAINERS` sets N (default 200).
//! Interleaved rounds; medians and the per-round ratios, with dockerd's own
//! CPU time from /proc.

use std::time::Instant;

use whalewatcher_core::Engine;
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::measure::{cpu_time, host_dockerd_pid, median};
use whalewatcher_tests::rig::Rig;

const ROUNDS: usize = 15;

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("WW_BENCH_CONTAINERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rig = Rig::load();
    let dockerd = host_dockerd_pid();

    let t = DockerTest::connect(&rig.host_docker, "bench-reuse").await;
    eprintln!(
        "starting {n} containers on {} ...",
        rig.host_docker.endpoint
    );
    for i in 0..n {
        t.run(&format!("bench{i}"), &[]).await;
    }
    let reusing = MobyEngine::new(&rig.host_docker.endpoint).unwrap();
    let fresh = MobyEngine::builder()
        .endpoint(rig.host_docker.endpoint.clone())
        .fresh_connection_per_request()
        .build()
        .unwrap();
    // Warm up both (version negotiation, pools).
    let total = reusing.list().await.unwrap().len();
    assert!(total >= n);
    fresh.list().await.unwrap();

    let (mut wall_fresh, mut wall_reuse, mut cpu_fresh, mut cpu_reuse, mut ratios) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let measure = async |engine: &MobyEngine| {
            let cpu = cpu_time(dockerd);
            let started = Instant::now();
            let listed = engine.list().await.unwrap().len();
            let wall = started.elapsed().as_secs_f64() * 1e3;
            assert_eq!(listed, total);
            (wall, (cpu_time(dockerd) - cpu).as_secs_f64() * 1e3)
        };
        let (wf, cf) = measure(&fresh).await;
        let (wr, cr) = measure(&reusing).await;
        wall_fresh.push(wf);
        cpu_fresh.push(cf);
        wall_reuse.push(wr);
        cpu_reuse.push(cr);
        ratios.push(wf / wr);
    }
    println!(
        "moby list of {total} containers (host dockerd {}), {ROUNDS} interleaved rounds",
        rig.host_docker.version
    );
    println!("                         wall ms (median)   dockerd CPU ms (median)");
    println!(
        "  fresh connection/req   {:>10.1}          {:>10.1}",
        median(&wall_fresh),
        median(&cpu_fresh)
    );
    println!(
        "  reused connections     {:>10.1}          {:>10.1}",
        median(&wall_reuse),
        median(&cpu_reuse)
    );
    println!(
        "  fresh/reused: wall {:.2}x (per-round median), dockerd CPU {:.2}x",
        median(&ratios),
        median(&cpu_fresh) / median(&cpu_reuse)
    );
}
