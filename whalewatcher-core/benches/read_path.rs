//! The read path: how fast a reader gets a snapshot and looks a container
//! up by id while the watcher applies events, and how many bytes a tracked
//! container costs.
//!
//! Run with `cargo bench -p whalewatcher-core --bench read_path`.
//!
//! A snapshot is an `Arc` handed out again until the portfolio changes;
//! the first reader after a change makes the next one, which may wait
//! while the watcher applies one revision in memory. This measures what
//! readers pay: the same reads with the writer idle (the baseline) and
//! applying 1,000 events/s, in one run, reported as ratios.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use whalewatcher_core::testing::ScriptedEngine;
use whalewatcher_core::{
    CancellationToken, Container, Portfolio, RetryPolicy, StringPool, Watcher,
};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const CONTAINERS: usize = 10_000;
const EVENTS_PER_SECOND: u64 = 1_000;
const BATCH: usize = 100;
const BATCHES: usize = 50_000;

fn id(i: usize) -> String {
    format!("{i:064x}") // Docker-style 64 hex digits
}

/// A container with what the Go module keeps: id, name, PID, project,
/// labels.
fn container(i: usize) -> Container {
    Container::new(id(i), format!("container-{i}"), 1000 + i as u32)
        .with_project(if i.is_multiple_of(10) {
            ""
        } else {
            "project-a"
        })
        .with_labels([
            ("com.docker.compose.project", "project-a".to_owned()),
            ("com.docker.compose.service", format!("service-{}", i % 7)),
            ("org.opencontainers.image.version", "1.2.3".to_owned()),
            ("com.example.team", "observability".to_owned()),
            ("com.example.instance", format!("{i}")),
        ])
}

/// The same with what the engines tell besides, each string its own
/// allocation, as an inspect answer makes it: image, image id, times,
/// restarts.
fn detailed(i: usize) -> Container {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000 + i as u64);
    container(i)
        .with_image(String::from("docker.io/library/nginx:1.27"))
        .with_image_id(format!("sha256:{:064x}", i % 3))
        .with_created(time)
        .with_started(time)
        .with_restarts(0)
}

/// The same as the watcher keeps it: image strings shared through its pool.
fn shared(i: usize) -> Container {
    thread_local! {
        static POOL: std::cell::RefCell<StringPool> = Default::default();
    }
    POOL.with(|pool| detailed(i).with_shared_strings(&mut pool.borrow_mut()))
}

fn label_bytes(container: &Container) -> usize {
    container
        .labels()
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum()
}

/// Live bytes and allocations per container of a portfolio of containers
/// made by `make`, everything counted: ids, names, labels, the index.
fn bytes_per_container(make: fn(usize) -> Container) -> (f64, f64, f64) {
    let region = Region::new(ALLOCATOR);
    let portfolio: Portfolio = (0..CONTAINERS).map(make).collect();
    let change = region.change();
    // A reallocation counts in both already (bytes_reallocated is the
    // same growth once more).
    let live = change.bytes_allocated as isize - change.bytes_deallocated as isize;
    let labels: usize = portfolio.containers().map(|c| label_bytes(c)).sum();
    let allocations = (change.allocations - change.deallocations) as f64;
    let n = CONTAINERS as f64;
    assert_eq!(portfolio.len(), CONTAINERS);
    (live as f64 / n, labels as f64 / n, allocations / n)
}

/// Bytes per tracked container, with what the Go module keeps and with
/// the richer record, measured the same way in one run.
fn memory() {
    println!("memory, {CONTAINERS} containers with 5 labels each (64-char ids), all allocations:");
    println!("  record                         bytes  label text  without labels  allocations");
    let mut without = Vec::new();
    for (what, make) in [
        (
            "the Go module's fields",
            container as fn(usize) -> Container,
        ),
        ("+ image, image id, times", detailed),
        ("  image strings shared", shared),
    ] {
        let (bytes, labels, allocations) = bytes_per_container(make);
        println!(
            "  {what:<28} {bytes:8.1}  {labels:10.1}  {:14.1}  {allocations:11.1}",
            bytes - labels
        );
        without.push(bytes - labels);
    }
    println!(
        "  the richer record costs {:.1} bytes per container, {:.1} with the watcher's shared image strings",
        without[1] - without[0],
        without[2] - without[0]
    );
}

struct Reads {
    ns_per_lookup: Vec<f64>,
    revisions_seen: u64,
}

/// Takes a snapshot and looks up one container's PID (what a reader asks
/// for), `BATCH` times per timed batch; returns the ns per snapshot+lookup
/// of each batch.
fn read(watcher: &Watcher, ids: &[String]) -> Reads {
    let mut ns_per_lookup = Vec::with_capacity(BATCHES);
    let mut first_revision = None;
    let mut last_revision = 0;
    let mut found = 0usize;
    let mut next = 0usize;
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..BATCH {
            next = (next + 7919) % ids.len();
            let portfolio = watcher.portfolio();
            let pid = portfolio.container(&ids[next]).map(|c| c.pid());
            found += std::hint::black_box(pid).is_some() as usize;
            last_revision = portfolio.revision();
        }
        ns_per_lookup.push(started.elapsed().as_nanos() as f64 / BATCH as f64);
        first_revision.get_or_insert(last_revision);
    }
    assert_eq!(
        found,
        BATCH * BATCHES,
        "every lookup must find its container"
    );
    Reads {
        ns_per_lookup,
        revisions_seen: last_revision - first_revision.unwrap_or(0),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    memory();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let engine = ScriptedEngine::new();
    engine.add((0..CONTAINERS).map(container));
    let watcher = Watcher::new(engine.clone(), RetryPolicy::none());
    let cancel = CancellationToken::new();
    let watching = runtime.spawn({
        let (watcher, cancel) = (watcher.clone(), cancel.clone());
        async move { watcher.watch(cancel).await }
    });
    runtime.block_on(watcher.ready()).unwrap();
    let ids: Vec<String> = (0..CONTAINERS).map(id).collect();

    // The writer: pause/unpause events at a steady rate, when switched on.
    let writing = Arc::new(AtomicBool::new(false));
    let writer = runtime.spawn({
        let (engine, writing, cancel) = (engine.clone(), writing.clone(), cancel.clone());
        async move {
            let mut tick =
                tokio::time::interval(Duration::from_micros(1_000_000 / EVENTS_PER_SECOND));
            let mut i = 0usize;
            while !cancel.is_cancelled() {
                tick.tick().await;
                if writing.load(Ordering::Relaxed) {
                    let id = id(i % CONTAINERS);
                    if (i / CONTAINERS).is_multiple_of(2) {
                        engine.pause(&id)
                    } else {
                        engine.unpause(&id)
                    }
                    i += 1;
                }
            }
        }
    });

    // Interleaved rounds: idle writer (baseline), busy writer.
    let mut idle = Vec::new();
    let mut busy = Vec::new();
    let mut revisions_idle = 0;
    let mut revisions_busy = 0;
    let mut busy_seconds = 0.0;
    for _round in 0..3 {
        writing.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20)); // let the writer settle
        let reads = read(&watcher, &ids);
        revisions_idle += reads.revisions_seen;
        idle.extend(reads.ns_per_lookup);

        writing.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let reads = read(&watcher, &ids);
        busy_seconds += started.elapsed().as_secs_f64();
        revisions_busy += reads.revisions_seen;
        busy.extend(reads.ns_per_lookup);
    }
    cancel.cancel();
    runtime.block_on(async {
        let _ = watching.await;
        let _ = writer.await;
    });

    idle.sort_by(f64::total_cmp);
    busy.sort_by(f64::total_cmp);
    println!();
    println!("read path: snapshot + lookup by id, {CONTAINERS} containers, batches of {BATCH}");
    println!("  writer              p50 ns   p99 ns  p99.9 ns   max ns  portfolio revisions seen");
    for (name, samples, revisions) in [
        ("idle (baseline)", &idle, revisions_idle),
        ("1000 events/s", &busy, revisions_busy),
    ] {
        println!(
            "  {name:<16} {:8.1} {:8.1} {:9.1} {:8.1}  {revisions}",
            percentile(samples, 0.5),
            percentile(samples, 0.99),
            percentile(samples, 0.999),
            samples[samples.len() - 1],
        );
    }
    println!(
        "  busy/idle ratio:     p50 {:.2}x  p99 {:.2}x  p99.9 {:.2}x",
        percentile(&busy, 0.5) / percentile(&idle, 0.5),
        percentile(&busy, 0.99) / percentile(&idle, 0.99),
        percentile(&busy, 0.999) / percentile(&idle, 0.999),
    );
    println!(
        "  events applied while reading: {revisions_busy} in {busy_seconds:.2} s ({:.0}/s)",
        revisions_busy as f64 / busy_seconds
    );
}
