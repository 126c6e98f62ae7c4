//! What discovery costs on the rig (five engines, three of them in
//! containers), each figure against a floor measured in the same round:
//!
//! - a scan, with the rig alone and with `WW_DISCOVERY_IDLE` (default
//!   2,000) more idle processes: the first (probes and first syncs
//!   included) and a rescan, wall time and this process's CPU; the floor
//!   is one read of every `/proc/PID/stat`, the least any search by
//!   process reads;
//! - PID translation per container of the nested podman (10 containers):
//!   a container that just started while the others are known (what the
//!   fleet pays per start), any container with a fresh translator (a
//!   walk of the engine's PID namespace), a known one (one `NSpid`
//!   check); the floor is one read of the container's `/proc/PID/status`;
//! - a fleet snapshot read, against a read of one watcher's portfolio;
//!   and each container with its PID here, against the portfolio's.
//!
//! Medians over `WW_DISCOVERY_ROUNDS` (default 5) rounds; ratios are
//! medians of the per-round ratios. Nothing is asserted. Run:
//! `cargo bench -p whalewatcher-tests --bench discovery` (the rig up).

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use whalewatcher_core::PidTranslation;
use whalewatcher_discovery::{Api, Discovery, PidTranslator};
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::measure::{env_or, median, ms, this_process_cpu};
use whalewatcher_tests::rig::Rig;

/// Containers on the nested podman, for the PID translation.
const CONTAINERS: usize = 10;

/// Wall time and this process's CPU of `work`.
async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration, Duration) {
    let (cpu, wall) = (this_process_cpu(), Instant::now());
    let out = work.await;
    (out, wall.elapsed(), this_process_cpu() - cpu)
}

/// The floor of a search by process: every `/proc/PID/stat` read once.
fn read_every_stat() -> usize {
    let mut read = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            read += black_box(stat).len().min(1);
        }
    }
    read
}

/// `n` idle processes of our own, ended (by PID) when dropped.
struct Idle(Vec<Child>);

impl Idle {
    fn spawn(n: usize) -> Self {
        let children = (0..n)
            .map(|_| {
                Command::new("sleep")
                    .arg("3600")
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("sleep starts")
            })
            .collect();
        Idle(children)
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Default)]
struct ScanRounds {
    processes: usize,
    floor_ms: Vec<f64>,
    floor_cpu: Vec<f64>,
    first_ms: Vec<f64>,
    first_cpu: Vec<f64>,
    rescan_ms: Vec<f64>,
    rescan_cpu: Vec<f64>,
    rescan_ratio: Vec<f64>,
    rescan_cpu_ratio: Vec<f64>,
}

async fn scan_rounds(rounds: usize) -> ScanRounds {
    let mut r = ScanRounds::default();
    for _ in 0..rounds {
        let ((), floor, floor_cpu) = timed(async {
            black_box(read_every_stat());
        })
        .await;
        let discovery = Discovery::new();
        let (scan, first, first_cpu) = timed(discovery.scan()).await;
        let scan = scan.expect("a scan");
        r.processes = scan.processes;
        assert!(scan.engines.len() >= 6, "the rig is up: {scan:#?}");
        let (rescan, again, again_cpu) = timed(discovery.scan()).await;
        rescan.expect("a rescan");
        discovery.close().await;
        r.floor_ms.push(ms(floor));
        r.floor_cpu.push(ms(floor_cpu));
        r.first_ms.push(ms(first));
        r.first_cpu.push(ms(first_cpu));
        r.rescan_ms.push(ms(again));
        r.rescan_cpu.push(ms(again_cpu));
        r.rescan_ratio.push(ms(again) / ms(floor));
        r.rescan_cpu_ratio
            .push(ms(again_cpu) / ms(floor_cpu).max(1e-6));
    }
    r
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let idle = env_or("WW_DISCOVERY_IDLE", 2000);
    let rounds = env_or("WW_DISCOVERY_ROUNDS", 5);
    let rig = Rig::load();
    let mut report = format!(
        "# Discovery on the rig, {rounds} rounds\n\n\
         ## Scans\n\n\
         | processes | floor: every stat read | floor CPU | first scan | first scan CPU | rescan | rescan CPU | rescan / floor | rescan CPU / floor CPU |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    );
    for extra in [0, idle] {
        let spawned = Idle::spawn(extra);
        let r = scan_rounds(rounds).await;
        drop(spawned);
        report += &format!(
            "| {} | {:.2} ms | {:.2} ms | {:.1} ms | {:.1} ms | {:.2} ms | {:.2} ms | {:.2}× | {:.2}× |\n",
            r.processes,
            median(&r.floor_ms),
            median(&r.floor_cpu),
            median(&r.first_ms),
            median(&r.first_cpu),
            median(&r.rescan_ms),
            median(&r.rescan_cpu),
            median(&r.rescan_ratio),
            median(&r.rescan_cpu_ratio),
        );
    }

    // PID translation: containers on the nested podman.
    let podman = DockerTest::connect(&rig.podman, "bench-discovery").await;
    for n in 0..CONTAINERS {
        podman.run(&format!("translated{n}"), &[]).await;
    }
    let engine_pids: Vec<u32> = podman.truth().await.into_values().collect();
    let podman_pid = rig.engine_pid(&rig.podman);
    let (mut fresh_us, mut next_us, mut floor_us, mut new_us) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut fresh_ratio, mut next_ratio, mut new_ratio) = (Vec::new(), Vec::new(), Vec::new());
    const REPEAT: usize = 200;
    for round in 0..rounds {
        let (mut fresh, mut next, mut floor) = (0.0, 0.0, 0.0);
        for &pid in &engine_pids {
            let (translator, _) = PidTranslator::of_engine(podman_pid).expect("podman's /proc");
            let began = Instant::now();
            let local = translator.local_pid(pid).expect("a PID here");
            fresh += began.elapsed().as_secs_f64() * 1e6;
            let began = Instant::now();
            for _ in 0..REPEAT {
                black_box(translator.local_pid(black_box(pid)));
            }
            next += began.elapsed().as_secs_f64() * 1e6 / REPEAT as f64;
            let began = Instant::now();
            for _ in 0..REPEAT {
                black_box(std::fs::read_to_string(format!("/proc/{local}/status")).ok());
            }
            floor += began.elapsed().as_secs_f64() * 1e6 / REPEAT as f64;
        }
        // A container that starts while the translator knows the others:
        // what the fleet pays per started container.
        let (translator, _) = PidTranslator::of_engine(podman_pid).expect("podman's /proc");
        for &pid in &engine_pids {
            translator.local_pid(pid).expect("a PID here");
        }
        let before: std::collections::BTreeSet<u32> = engine_pids.iter().copied().collect();
        podman.run(&format!("started{round}"), &[]).await;
        let new_pid = podman
            .truth()
            .await
            .into_values()
            .find(|pid| !before.contains(pid))
            .expect("the new container");
        let began = Instant::now();
        translator
            .local_pid(new_pid)
            .expect("the new container here");
        let new = began.elapsed().as_secs_f64() * 1e6;
        let n = engine_pids.len() as f64;
        fresh_us.push(fresh / n);
        next_us.push(next / n);
        floor_us.push(floor / n);
        new_us.push(new);
        fresh_ratio.push(fresh / floor);
        next_ratio.push(next / floor);
        new_ratio.push(new / (floor / n));
    }
    report += &format!(
        "\n## PID translation, per container of the nested podman ({} containers, one more started per round)\n\n\
         | floor: one read of its status | a container just started (the others known) | any container, a fresh translator | a known container (one NSpid check) | started / floor | fresh / floor | known / floor |\n\
         |---|---|---|---|---|---|---|\n\
         | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {:.1}× | {:.1}× | {:.2}× |\n",
        engine_pids.len(),
        median(&floor_us),
        median(&new_us),
        median(&fresh_us),
        median(&next_us),
        median(&new_ratio),
        median(&fresh_ratio),
        median(&next_ratio),
    );

    // Fleet snapshot reads, against one watcher's portfolio.
    let discovery = Discovery::new();
    let scan = discovery.scan().await.expect("a scan");
    let member = scan
        .engines
        .iter()
        .find(|f| f.api == Api::Podman)
        .expect("podman")
        .member;
    let fleet = discovery.fleet().clone();
    let watcher = fleet
        .snapshot()
        .engine(member)
        .expect("a member")
        .watcher()
        .clone();
    const READS: usize = 1_000_000;
    let (mut snap_ns, mut portfolio_ns, mut snap_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut each_ns, mut each_floor_ns, mut each_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let containers = fleet.snapshot().len();
    for _ in 0..rounds {
        let began = Instant::now();
        for _ in 0..READS {
            black_box(fleet.snapshot());
        }
        let snap = began.elapsed().as_secs_f64() * 1e9 / READS as f64;
        let began = Instant::now();
        for _ in 0..READS {
            black_box(watcher.portfolio());
        }
        let portfolio = began.elapsed().as_secs_f64() * 1e9 / READS as f64;
        snap_ns.push(snap);
        portfolio_ns.push(portfolio);
        snap_ratio.push(snap / portfolio);

        let snapshot = fleet.snapshot();
        let began = Instant::now();
        for _ in 0..READS / 100 {
            for c in snapshot.containers() {
                black_box((c.container().pid(), c.local_pid()));
            }
        }
        let each = began.elapsed().as_secs_f64() * 1e9 / (READS / 100 * containers) as f64;
        let portfolios: Vec<_> = snapshot.engines().map(|e| e.portfolio().clone()).collect();
        let began = Instant::now();
        for _ in 0..READS / 100 {
            for portfolio in &portfolios {
                for c in portfolio.containers() {
                    black_box(c.pid());
                }
            }
        }
        let floor = began.elapsed().as_secs_f64() * 1e9 / (READS / 100 * containers) as f64;
        each_ns.push(each);
        each_floor_ns.push(floor);
        each_ratio.push(each / floor);
    }
    discovery.close().await;
    report += &format!(
        "\n## Fleet reads ({} engines, {containers} containers)\n\n\
         | read | fleet | baseline | fleet / baseline |\n\
         |---|---|---|---|\n\
         | snapshot (baseline: one watcher's portfolio) | {:.1} ns | {:.1} ns | {:.2}× |\n\
         | per container, with its PID here (baseline: the portfolios' containers) | {:.1} ns | {:.1} ns | {:.2}× |\n",
        scan.engines.len(),
        median(&snap_ns),
        median(&portfolio_ns),
        median(&snap_ratio),
        median(&each_ns),
        median(&each_floor_ns),
        median(&each_ratio),
    );
    print!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    std::fs::write(dir.join("discovery.md"), &report).expect("the report");
}
