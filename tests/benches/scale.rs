//! What a process that holds the portfolio costs at N = 1,000, 10,000 and
//! 50,000 containers, with the engine taken out of the picture: a loopback
//! endpoint (`whalewatcher_tests::loopback`) in this process serves the
//! containers, and the watcher runs in a child process of its own (this
//! binary again), so that its CPU and memory are its alone.
//!
//! Per engine kind (`WW_SCALE_KINDS`, default `docker,containerd,cri`), N
//! (`WW_SCALE_N`, default `1000,10000,50000`) and round
//! (`WW_SCALE_ROUNDS`, default 3), the child:
//! - syncs: wall time, its CPU per container;
//! - holds the portfolio: resident memory (`VmRSS` after the sync minus
//!   before the watcher), heap (every allocation counted) and heap
//!   blocks (allocations alive, each with malloc's own overhead) per
//!   container;
//! - resyncs after an engine restart (the endpoint ends its event stream
//!   and serves a tenth of the containers exited and as many new ones)
//!   while a subscriber reads every event: the resync's own time, the
//!   peak resident memory of the resync against the steady one
//!   (make-before-break holds the old portfolio beside the new one), the
//!   events the subscriber got and whether it lagged.
//!
//! Medians; nothing is asserted but that the child's counts add up. Run:
//! `cargo bench -p whalewatcher-tests --bench scale`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use whalewatcher_core::{RetryPolicy, SyncState};
use whalewatcher_tests::loopback::{Kind, Loopback};
use whalewatcher_tests::measure::{env_or, median, ms, status_kib, threads_cpu};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The child's role: set to the endpoint it watches.
const CHILD_ENDPOINT: &str = "WW_SCALE_CHILD_ENDPOINT";
/// The kind of engine the child watches.
const CHILD_KIND: &str = "WW_SCALE_CHILD_KIND";
const CHILD_N: &str = "WW_SCALE_CHILD_N";
/// How many events the restart makes: exits and starts.
const CHILD_EXPECTED: &str = "WW_SCALE_CHILD_EXPECTED";
/// How long the child waits for the restart and the resync.
const DEADLINE: Duration = Duration::from_secs(120);

/// What the child measured.
#[derive(Serialize, Deserialize, Debug)]
struct Measured {
    sync_ms: f64,
    sync_cpu_ms: f64,
    rss_kib: u64,
    sync_peak_rss_kib: u64,
    heap_bytes: i64,
    heap_blocks: i64,
    resync_ms: f64,
    resync_peak_rss_kib: u64,
    rss_after_resync_kib: u64,
    events: u64,
    lagged: u64,
}

/// The heap in use now, by the counting allocator (a reallocation counts
/// in both already; `bytes_reallocated` is the same growth once more).
fn heap(region: &Region<'_, std::alloc::System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
}

fn child(kind: Kind, endpoint: String, n: usize, expected: u64) {
    let pid = std::process::id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let region = Region::new(ALLOCATOR);
    let rss_before = status_kib(pid, "VmRSS:");
    let measured = runtime.block_on(async {
        let cpu_before = threads_cpu(pid);
        let started = Instant::now();
        let watcher = kind
            .watcher(&endpoint)
            .retry(RetryPolicy::from_delays(|| {
                std::iter::repeat(Duration::from_millis(10))
            }))
            .build();
        let watching = watcher.spawn();
        watcher.ready().await.expect("synced");
        let sync = started.elapsed();
        let sync_cpu = threads_cpu(pid) - cpu_before;
        assert_eq!(watcher.portfolio().len(), n, "every container synced");
        let rss = status_kib(pid, "VmRSS:").saturating_sub(rss_before);
        let sync_peak = status_kib(pid, "VmHWM:").saturating_sub(rss_before);
        let heap_bytes = heap(&region);
        let heap_blocks = {
            let change = region.change();
            change.allocations as i64 - change.deallocations as i64
        };

        // A subscriber that reads everything from now on, until the
        // restart's difference is in (or it lagged).
        let (_, mut events) = watcher.subscribe();
        let reading = tokio::spawn(async move {
            let (mut count, mut lagged) = (0, 0);
            while let Some(item) = events.next().await {
                match item {
                    Ok(_) => count += 1,
                    Err(lag) => lagged += lag.missed,
                }
                if count == expected || lagged > 0 {
                    break;
                }
            }
            (count, lagged)
        });
        // Only the resync's peak from now on.
        std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
        let mut status = watcher.subscribe_status();
        println!("synced");
        let resynced = tokio::time::timeout(DEADLINE, async {
            status
                .wait_for(|s| s.state == SyncState::Lost)
                .await
                .expect("lost");
            status
                .wait_for(|s| s.state == SyncState::Synced)
                .await
                .expect("synced again")
                .clone()
        })
        .await
        .expect("the restart and the resync within the deadline");
        let (events, lagged) = tokio::time::timeout(DEADLINE, reading)
            .await
            .expect("the subscriber got the resync's difference")
            .expect("the subscriber");
        let peak = status_kib(pid, "VmHWM:");
        let rss_after = status_kib(pid, "VmRSS:");
        assert_eq!(watcher.portfolio().len(), n, "every container resynced");
        watching.stop().await.expect("stopped");
        Measured {
            sync_ms: ms(sync),
            sync_cpu_ms: ms(sync_cpu),
            rss_kib: rss,
            sync_peak_rss_kib: sync_peak,
            heap_bytes,
            heap_blocks,
            resync_ms: ms(resynced.sync_duration.expect("a sync duration")),
            resync_peak_rss_kib: peak.saturating_sub(rss_before),
            rss_after_resync_kib: rss_after.saturating_sub(rss_before),
            events,
            lagged,
        }
    });
    println!("{}", serde_json::to_string(&measured).expect("JSON"));
}

/// Runs one child against `endpoint`: restarts the endpoint (`restart`)
/// once the child has synced; returns what the child measured.
fn round(
    kind: Kind,
    endpoint: &dyn Loopback,
    n: usize,
    expected: u64,
    restart: impl FnOnce(),
) -> Measured {
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .env(CHILD_KIND, kind.name())
        .env(CHILD_ENDPOINT, endpoint.endpoint())
        .env(CHILD_N, n.to_string())
        .env(CHILD_EXPECTED, expected.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = || {
        lines
            .next()
            .expect("a line from the child")
            .expect("the child's output")
    };
    assert_eq!(next(), "synced");
    restart();
    let measured = serde_json::from_str(&next()).expect("the child's figures");
    assert!(child.wait().expect("the child ends").success());
    measured
}

fn main() {
    if let Ok(endpoint) = std::env::var(CHILD_ENDPOINT) {
        let kind = Kind::parse_list(&env_or(CHILD_KIND, String::new()))[0];
        return child(
            kind,
            endpoint,
            env_or(CHILD_N, 0),
            env_or(CHILD_EXPECTED, 0),
        );
    }
    let kinds = Kind::parse_list(&env_or(
        "WW_SCALE_KINDS",
        "docker,containerd,cri".to_owned(),
    ));
    let sizes: Vec<usize> = env_or("WW_SCALE_N", "1000,10000,50000".to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("WW_SCALE_N: numbers"))
        .collect();
    let rounds: usize = env_or("WW_SCALE_ROUNDS", 3);
    println!("| engine | N | sync | sync CPU per container | RSS per container | heap per container | heap blocks per container | sync peak RSS / steady | resync | resync peak RSS / steady | events after the restart | lagged |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (kind, n) in kinds
        .iter()
        .flat_map(|kind| sizes.iter().map(move |n| (*kind, *n)))
    {
        let endpoint = kind.start(&std::env::temp_dir(), n);
        // Containers first..first + n run; each restart exits the oldest
        // tenth and starts as many new ones.
        let mut first = 0;
        let tenth = n / 10;
        let mut all = Vec::new();
        for _ in 0..rounds {
            let expected = 2 * tenth as u64;
            let measured = round(kind, endpoint.as_ref(), n, expected, || {
                first += tenth;
                endpoint.restart(first..first + n);
            });
            assert!(
                measured.events == expected || measured.lagged > 0,
                "the difference: {tenth} exited, {tenth} started ({measured:?})"
            );
            all.push(measured);
        }
        let med = |f: fn(&Measured) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
        println!(
            "| {} | {n} | {:.1} ms | {:.1} µs | {:.0} B | {:.0} B | {:.1} | {:.2}x | {:.1} ms | {:.2}x | {:.0} | {:.0} |",
            kind.name(),
            med(|m| m.sync_ms),
            med(|m| m.sync_cpu_ms) * 1e3 / n as f64,
            med(|m| m.rss_kib as f64) * 1024.0 / n as f64,
            med(|m| m.heap_bytes as f64) / n as f64,
            med(|m| m.heap_blocks as f64) / n as f64,
            med(|m| m.sync_peak_rss_kib as f64 / m.rss_kib as f64),
            med(|m| m.resync_ms),
            med(|m| m.resync_peak_rss_kib as f64 / m.rss_kib as f64),
            med(|m| m.events as f64),
            med(|m| m.lagged as f64),
        );
    }
}
