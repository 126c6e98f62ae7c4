//! What a watcher costs while nothing happens: a watcher of N loopback
//! containers (`WW_IDLE_N`, default 10,000; `tests/src/loopback.rs`, an
//! endpoint whose event stream stays quiet) of each engine kind of
//! `WW_IDLE_KINDS` (default `docker,containerd,cri`) is left alone for
//! `WW_IDLE_SECS` (default 20) seconds. Measured from every thread's
//! `/proc/self/task/TID/schedstat` (CPU time, times scheduled), the
//! endpoint's thread and the main thread left out:
//!
//! - the baseline: the same runtime, no watcher, for the same time;
//! - the watcher: wake-ups per minute and CPU per minute, over the
//!   first period after its sync and over the next; with its liveness
//!   probe (the default: a ping after 10 s of quiet) and without it, so
//!   the probe's cost is the difference of two rows of one run;
//!
//! The memory a watcher holds is the scale bench's (`scale.rs`): there
//! each watcher has a process of its own.
//!
//! Nothing is asserted. Run: `cargo bench -p whalewatcher-tests --bench idle`.

use std::time::Duration;

use whalewatcher_core::RetryPolicy;
use whalewatcher_tests::loopback::Kind;
use whalewatcher_tests::measure::{env_or, this_thread_id};

/// CPU time and times scheduled of every thread but `left_out`.
fn threads(left_out: &[u32]) -> (Duration, u64) {
    let (mut cpu, mut runs) = (Duration::ZERO, 0);
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        if left_out.contains(&tid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")) else {
            continue;
        };
        let fields: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        cpu += Duration::from_nanos(fields[0]);
        runs += fields[2];
    }
    (cpu, runs)
}

/// Wake-ups and CPU, per minute, of the threads but `left_out` over `secs`.
fn per_minute(left_out: &[u32], secs: u64) -> (f64, f64) {
    let (cpu0, runs0) = threads(left_out);
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu1, runs1) = threads(left_out);
    let minutes = secs as f64 / 60.0;
    (
        (runs1 - runs0) as f64 / minutes,
        (cpu1 - cpu0).as_secs_f64() * 1e3 / minutes,
    )
}

fn main() {
    let n: usize = env_or("WW_IDLE_N", 10_000);
    let secs: u64 = env_or("WW_IDLE_SECS", 20);
    let kinds = Kind::parse_list(&env_or("WW_IDLE_KINDS", "docker,containerd,cri".to_owned()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    // Let the runtime's threads start and settle.
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    let (base_wakeups, base_cpu) = per_minute(&[this_thread_id()], secs);
    println!("# A watcher left alone, {n} containers, {secs} s\n");
    println!("| | wake-ups per minute | CPU per minute |");
    println!("|---|---|---|");
    println!("| baseline: the runtime, no watcher | {base_wakeups:.1} | {base_cpu:.3} ms |");
    for kind in kinds {
        for (probe, period) in [
            ("probe on (default)", Some(Duration::from_secs(10))),
            ("probe off", None),
        ] {
            let endpoint = kind.start(&std::env::temp_dir(), n);
            let left_out = [endpoint.thread_id(), this_thread_id()];
            let watcher = kind
                .watcher(&endpoint.endpoint())
                .retry(RetryPolicy::none())
                .probe_when_quiet(period)
                .build();
            let watching = runtime.block_on(async {
                let watching = watcher.spawn();
                watcher.ready().await.expect("synced");
                watching
            });
            assert_eq!(watcher.portfolio().len(), n, "every container synced");
            let (first_wakeups, first_cpu) = per_minute(&left_out, secs);
            // Then again: the one-shot timers of a new session (its
            // stability mark) are behind it.
            let (wakeups, cpu) = per_minute(&left_out, secs);
            assert!(watcher.status().is_synced(), "{probe}: still synced");
            runtime.block_on(async { watching.stop().await.expect("stopped") });
            let name = kind.name();
            println!(
                "| {name}, {probe}: the first {secs} s after its sync | {first_wakeups:.1} | {first_cpu:.3} ms |"
            );
            println!("| {name}, {probe}: the {secs} s after those | {wakeups:.1} | {cpu:.3} ms |");
        }
    }
}
