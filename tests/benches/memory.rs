//! Memory under steady churn: the heap (live blocks and bytes, by a
//! counting allocator) and the RSS of a fleet that follows three
//! Docker-API engines of the rig — the host dockerd 20.10, dockerd 28 and
//! podman 5.8 — while each churns (start, pause, unpause, kill, remove:
//! some 7 events a second in all), sampled every `WW_MEMORY_SAMPLE_SECS`
//! (default 30) for `WW_MEMORY_SECS` (default 1800). A follower reads
//! every fleet event, as `whalewatch --follow` does.
//!
//! `WW_MEMORY_MODE=discovery` (the default) finds the engines as
//! `whalewatch` does with no option (every engine of the rig, rescanned
//! every 5 s); `named` adds the three as members by hand.
//!
//! After the warm-up (the first `WW_MEMORY_WARMUP_SECS`, default 300),
//! the heap should stay flat and the RSS within +5 %: the summary line
//! says both, from the warm-up's last sample to the end. At the end the
//! fleet must equal the engines' truth.
//!
//! `WW_MEMORY_CLI=target/release/whalewatch` also runs that binary with
//! `--follow` (no engine option in discovery mode; the three named in
//! named mode), its output read and dropped, and samples its RSS too.
//!
//! `cargo bench -p whalewatcher-tests --bench memory` (needs the rig).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use whalewatcher_core::{Fleet, FleetMember, RetryPolicy, Watcher};
use whalewatcher_discovery::Discovery;
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::measure::status_kib;
use whalewatcher_tests::rig::{self, Rig};
use whalewatcher_tests::TEST_LABEL;

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// A small, seedable generator (xorshift64*).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// The heap now, as (live blocks, live bytes) since `region` began.
fn heap(region: &Region<'_, std::alloc::System>) -> (i64, i64) {
    let change = region.change();
    (
        change.allocations as i64 - change.deallocations as i64,
        change.bytes_allocated as i64 - change.bytes_deallocated as i64,
    )
}

/// One engine's churn: keeps 5 to 20 of its containers, and every phase
/// starts, pauses, unpauses, kills or removes one.
async fn churn(t: DockerTest, seed: u64, until: Instant) -> DockerTest {
    let mut dice = Dice(seed | 1);
    let (mut alive, mut paused, mut dead): (Vec<String>, Vec<String>, Vec<String>) =
        Default::default();
    let mut serial = 0;
    while Instant::now() < until {
        let pick = |list: &mut Vec<String>, dice: &mut Dice| {
            (!list.is_empty()).then(|| list.swap_remove(dice.below(list.len())))
        };
        match dice.below(5) {
            _ if alive.len() + paused.len() < 5 => {
                serial += 1;
                alive.push(t.run(&format!("m{serial}"), &[]).await);
            }
            0 if alive.len() + paused.len() < 20 => {
                serial += 1;
                alive.push(t.run(&format!("m{serial}"), &[]).await);
            }
            1 => {
                if let Some(id) = pick(&mut alive, &mut dice) {
                    t.pause(&id).await;
                    paused.push(id);
                }
            }
            2 => {
                if let Some(id) = pick(&mut paused, &mut dice) {
                    t.unpause(&id).await;
                    alive.push(id);
                }
            }
            3 => {
                if let Some(id) = pick(&mut alive, &mut dice) {
                    t.kill(&id).await;
                    dead.push(id);
                }
            }
            _ => {
                if let Some(id) = pick(&mut dead, &mut dice) {
                    t.remove(&id).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    t
}

/// The soak's alive containers on `t`'s engine: id → paused.
async fn truth(t: &DockerTest) -> BTreeMap<String, bool> {
    let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&t.label_filter())
        .build();
    let listed = t.docker.list_containers(Some(options)).await.expect("list");
    listed
        .into_iter()
        .filter(|c| {
            matches!(
                c.state.as_ref().map(|s| s.to_string()).as_deref(),
                Some("running" | "paused")
            )
        })
        .map(|c| {
            let paused = c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("paused");
            (c.id.unwrap_or_default(), paused)
        })
        .collect()
}

/// What the fleet shows of `label`'s containers: id → paused.
fn shown(fleet: &Fleet, label: &str) -> BTreeMap<String, bool> {
    fleet
        .snapshot()
        .containers()
        .map(|c| c.container().clone())
        .filter(|c| c.label(TEST_LABEL) == Some(label))
        .map(|c| (c.id().to_owned(), c.is_paused()))
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total = env_secs("WW_MEMORY_SECS", 1800);
    let every = env_secs("WW_MEMORY_SAMPLE_SECS", 30);
    let warmup = env_secs("WW_MEMORY_WARMUP_SECS", 300).min(total / 2);
    let discovery_mode = std::env::var("WW_MEMORY_MODE").as_deref() != Ok("named");
    let rig = Rig::load();
    let engines: [(&str, &rig::Engine); 3] = [
        ("dockerd 20.10", &rig.host_docker),
        ("dockerd 28", &rig.docker28),
        ("podman 5.8", &rig.podman58),
    ];
    println!(
        "memory: {} s, a sample every {} s, warm-up {} s, {} mode",
        total.as_secs(),
        every.as_secs(),
        warmup.as_secs(),
        if discovery_mode { "discovery" } else { "named" }
    );
    let region = Region::new(ALLOCATOR);
    let fleet = Fleet::new();
    let discovery = discovery_mode.then(|| Discovery::builder().fleet(fleet.clone()).build());
    let rescanning = match &discovery {
        Some(discovery) => {
            discovery.scan().await.expect("a scan");
            Some(discovery.spawn())
        }
        None => {
            for (_, engine) in engines {
                let watcher = Watcher::new(
                    MobyEngine::new(&engine.endpoint).expect("engine"),
                    RetryPolicy::default(),
                );
                fleet
                    .add(FleetMember::new(watcher).close_on_leave())
                    .expect("a new fleet takes members");
            }
            None
        }
    };
    // The follower, as whalewatch --follow: reads every change.
    let (_, mut changes) = fleet.subscribe();
    let follower = tokio::spawn(async move {
        let (mut seen, mut lagged) = (0u64, 0u64);
        while let Some(change) = changes.next().await {
            match change {
                Ok(_) => seen += 1,
                Err(lag) => lagged += lag.missed,
            }
        }
        (seen, lagged)
    });

    // The CLI as a process, when asked for.
    let cli = std::env::var("WW_MEMORY_CLI").ok().map(|binary| {
        // A relative path is the workspace's (cargo runs a bench in its
        // package's folder), as the doc's example writes it.
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let binary = workspace.join(binary).display().to_string();
        let mut command = tokio::process::Command::new(&binary);
        command.arg("--follow");
        if !discovery_mode {
            for (_, engine) in engines {
                command.args(["--docker", &engine.endpoint]);
            }
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} runs: {e}"));
        let mut out = child.stdout.take().expect("piped");
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut out, &mut sink).await;
        });
        child
    });
    let cli_pid = cli.as_ref().and_then(|child| child.id());
    let began = Instant::now();
    let until = began + total;
    let mut churning = Vec::new();
    let mut labels = Vec::new();
    for (n, (name, engine)) in engines.iter().enumerate() {
        let t = DockerTest::connect(engine, &format!("memory-{n}")).await;
        labels.push((*name, t.label.clone()));
        churning.push(tokio::spawn(churn(
            t,
            began.elapsed().as_nanos() as u64 + n as u64,
            until,
        )));
    }
    let pid = std::process::id();
    let mut samples: Vec<(u64, i64, i64, u64)> = Vec::new();
    let mut cli_rss: Vec<u64> = Vec::new();
    println!("  second  heap blocks   heap KiB   RSS KiB   CLI RSS KiB");
    loop {
        let (blocks, bytes) = heap(&region);
        let rss = status_kib(pid, "VmRSS:");
        let at = began.elapsed().as_secs();
        let cli = cli_pid.map(|pid| status_kib(pid, "VmRSS:"));
        cli_rss.extend(cli);
        println!(
            "  {at:6}  {blocks:11}  {:9}  {rss:8}  {}",
            bytes / 1024,
            cli.map(|kib| format!("{kib:12}")).unwrap_or_default()
        );
        samples.push((at, blocks, bytes, rss));
        if Instant::now() + every > until + every / 2 {
            break;
        }
        tokio::time::sleep(every).await;
    }
    let mut tests = Vec::new();
    for churned in churning {
        tests.push(churned.await.expect("the churn ran"));
    }
    // The fleet settles on the truth.
    for (t, (name, label)) in tests.iter().zip(&labels) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let truth = truth(t).await;
            if shown(&fleet, label) == truth {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the fleet did not settle on the truth:\n fleet {:?}\n truth {truth:?}",
                shown(&fleet, label)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let after_warmup = samples
        .iter()
        .rev()
        .find(|s| s.0 <= warmup.as_secs())
        .copied()
        .unwrap_or(samples[0]);
    let last = *samples.last().expect("a sample");
    let peak_heap = samples
        .iter()
        .filter(|s| s.0 >= after_warmup.0)
        .map(|s| s.2)
        .max()
        .unwrap_or_default();
    if let Some(rescanning) = rescanning {
        rescanning.stop().await.expect("rescans ran");
    }
    fleet.close().await;
    let (seen, lagged) = follower.await.expect("the follower");
    println!(
        "memory: {seen} fleet events ({lagged} missed by lag); from second {} to {}: \
         heap {:+} blocks, {:+} KiB (peak {} KiB); RSS {} -> {} KiB ({:+.1} %)",
        after_warmup.0,
        last.0,
        last.1 - after_warmup.1,
        (last.2 - after_warmup.2) / 1024,
        peak_heap / 1024,
        after_warmup.3,
        last.3,
        (last.3 as f64 / after_warmup.3 as f64 - 1.0) * 100.0
    );
    if !cli_rss.is_empty() {
        let warm = samples
            .iter()
            .position(|s| s.0 == after_warmup.0)
            .unwrap_or(0);
        let (from, to) = (
            cli_rss[warm.min(cli_rss.len() - 1)],
            cli_rss[cli_rss.len() - 1],
        );
        println!(
            "memory: whalewatch --follow RSS {from} -> {to} KiB ({:+.1} %) from second {} to {}",
            (to as f64 / from as f64 - 1.0) * 100.0,
            after_warmup.0,
            last.0
        );
    }
    drop(cli);
    drop(tests);
}
