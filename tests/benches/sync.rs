//! whalewatcher against the engine floor and against what users pick
//! instead, on the rig's engines; run by `scripts/bench` (see
//! BENCHMARKS.md), which also installs the Python docker SDK.
//!
//! For each N of `WW_BENCH_N` (default `100,300,500`) running containers on
//! the host dockerd, in `WW_BENCH_ROUNDS` (default 9) interleaved rounds:
//! whalewatcher's initial sync (until ready) against the floor (bollard
//! list + 16 concurrent inspects over reused connections), list +
//! sequential inspects (the Go original's algorithm), `docker ps -q |
//! xargs docker inspect`, and the Python docker SDK's `containers.list()`
//! (`WW_BENCH_PYTHON`: a python with `docker` installed; skipped, and said
//! so, without it); dockerd's CPU time per synced container; the portfolio's
//! memory per container. Then the latency from the engine's event
//! timestamp to the watcher's event, idle and during a burst of 50
//! concurrent starts, with lost events counted; and the initial sync of
//! containerd and of CRI at 100 containers against their raw API floor.
//!
//! Medians and per-round ratios; no goal is asserted here.

use std::alloc::System;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, StartContainerOptions,
};
use bollard::Docker;
use futures::{StreamExt, TryStreamExt};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use whalewatcher_core::{Container, Engine, EventKind, Portfolio, RetryPolicy, Watcher};
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::containerd::ContainerdTest;
use whalewatcher_tests::cri::CriTest;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::measure::{env_or, host_dockerd_pid, median, ms, percentile, threads_cpu};
use whalewatcher_tests::rig::{self, Rig};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CONCURRENCY: usize = 16;
const BURST: usize = 50;

/// Runs a watcher of `engine` until its first sync is done; its wall time.
async fn initial_sync(engine: impl Engine) -> (Duration, usize) {
    let watcher = Watcher::new(engine, RetryPolicy::none());
    let started = Instant::now();
    let watching = watcher.spawn();
    watcher.ready().await.expect("the first sync");
    let took = started.elapsed();
    let alive = watcher.portfolio().len();
    watching.stop().await.expect("watch ended cleanly");
    watcher.close().await;
    (took, alive)
}

/// The floor: one list, then the inspects, `concurrency` at a time, over
/// one connection-reusing client.
async fn list_and_inspect(docker: &Docker, concurrency: usize) -> usize {
    let list = docker
        .list_containers(None::<ListContainersOptions>)
        .await
        .expect("list");
    let inspected: Vec<_> = futures::stream::iter(list)
        .map(|c| async move {
            docker
                .inspect_container(c.id.as_deref().unwrap(), None::<InspectContainerOptions>)
                .await
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await
        .expect("inspects");
    inspected.len()
}

/// A fresh connection-reusing bollard client (the moby engine's transport).
fn docker_client(endpoint: &str) -> MobyEngine {
    MobyEngine::new(endpoint).expect("endpoint")
}

fn docker_cli_pipeline(endpoint: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("sh")
        .args([
            "-c",
            &format!("docker -H {endpoint} ps -q | xargs docker -H {endpoint} inspect >/dev/null"),
        ])
        .status()
        .expect("sh");
    assert!(status.success());
    started.elapsed()
}

const PYTHON_LIST: &str = "import sys, time, docker
client = docker.DockerClient(base_url=sys.argv[1])
started = time.perf_counter()
n = len(client.containers.list())
print((time.perf_counter() - started) * 1e3, n)";

/// The Python SDK's `containers.list()`, timed inside Python (interpreter
/// start and import excluded).
fn python_sdk(python: &str, endpoint: &str) -> Duration {
    let output = Command::new(python)
        .args(["-c", PYTHON_LIST, endpoint])
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let millis: f64 = text.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_secs_f64(millis / 1e3)
}

#[derive(Default)]
struct DockerSamples {
    ww: Vec<f64>,
    floor: Vec<f64>,
    sequential: Vec<f64>,
    cli: Vec<f64>,
    python: Vec<f64>,
    /// dockerd's CPU per container during whalewatcher's sync, and during
    /// the floor's (ms, from every thread's schedstat).
    cpu_per_container: Vec<f64>,
    floor_cpu_per_container: Vec<f64>,
    /// This process's CPU per container during whalewatcher's sync (ms),
    /// and its ratio to dockerd's in the same sync.
    client_cpu_per_container: Vec<f64>,
    ratio_client_dockerd: Vec<f64>,
    ratio_floor: Vec<f64>,
    ratio_sequential: Vec<f64>,
    ratio_cli: Vec<f64>,
    ratio_python: Vec<f64>,
}

/// The sync benchmark on the dockerd `engine`, whose process is `dockerd`
/// here (`where_` names it in the report).
async fn docker_sync(
    engine: &rig::Engine,
    dockerd: u32,
    where_: &str,
    n: usize,
    rounds: usize,
    python: Option<&str>,
) {
    let endpoint = engine.endpoint.as_str();
    let t = DockerTest::connect(engine, &format!("bench-{n}")).await;
    eprintln!("[bench] starting {n} containers on the {where_} dockerd");
    futures::stream::iter(0..n)
        .for_each_concurrent(8, |i| {
            let t = &t;
            async move {
                t.run(&format!("b{i}"), &[]).await;
            }
        })
        .await;
    // Warm dockerd's caches the same for everyone.
    let total = list_and_inspect(docker_client(endpoint).docker(), CONCURRENCY).await;
    let mut s = DockerSamples::default();
    for round in 0..rounds {
        eprintln!("[bench] N={n} round {}/{rounds}", round + 1);
        // Each round starts with another method, so that none always runs
        // on a dockerd its predecessor just warmed (or tired).
        let (mut ww, mut cpu, mut floor, mut sequential, mut cli, mut py) =
            (None, None, None, None, None, None);
        let (mut floor_cpu, mut client_cpu) = (None, None);
        let me = std::process::id();
        let methods = if python.is_some() { 5 } else { 4 };
        for step in 0..methods {
            match (round + step) % methods {
                0 => {
                    let (before, mine) = (threads_cpu(dockerd), threads_cpu(me));
                    let (took, alive) = initial_sync(docker_client(endpoint)).await;
                    cpu = Some(threads_cpu(dockerd) - before);
                    client_cpu = Some(threads_cpu(me) - mine);
                    assert_eq!(alive, total, "whalewatcher saw them all");
                    ww = Some(took);
                }
                1 => {
                    let client = docker_client(endpoint);
                    let before = threads_cpu(dockerd);
                    let started = Instant::now();
                    assert_eq!(list_and_inspect(client.docker(), CONCURRENCY).await, total);
                    floor = Some(started.elapsed());
                    floor_cpu = Some(threads_cpu(dockerd) - before);
                }
                2 => {
                    let client = docker_client(endpoint);
                    let started = Instant::now();
                    assert_eq!(list_and_inspect(client.docker(), 1).await, total);
                    sequential = Some(started.elapsed());
                }
                3 => cli = Some(docker_cli_pipeline(endpoint)),
                _ => py = python.map(|python| python_sdk(python, endpoint)),
            }
        }
        let (ww, cpu, floor, sequential, cli) = (
            ww.unwrap(),
            cpu.unwrap(),
            floor.unwrap(),
            sequential.unwrap(),
            cli.unwrap(),
        );
        s.ww.push(ms(ww));
        s.floor.push(ms(floor));
        s.sequential.push(ms(sequential));
        s.cli.push(ms(cli));
        s.cpu_per_container.push(ms(cpu) / total as f64);
        s.floor_cpu_per_container
            .push(ms(floor_cpu.unwrap()) / total as f64);
        let client_cpu = client_cpu.unwrap();
        s.client_cpu_per_container
            .push(ms(client_cpu) / total as f64);
        s.ratio_client_dockerd.push(ms(client_cpu) / ms(cpu));
        s.ratio_floor.push(ms(ww) / ms(floor));
        s.ratio_sequential.push(ms(sequential) / ms(ww));
        s.ratio_cli.push(ms(cli) / ms(ww));
        if let Some(py) = py {
            s.python.push(ms(py));
            s.ratio_python.push(ms(py) / ms(ww));
        }
    }
    println!();
    println!(
        "## Initial sync, {where_} dockerd {}, {total} running containers, {rounds} interleaved rounds",
        engine.version
    );
    println!();
    println!("| method | median ms | per-round ratio (median) |");
    println!("|---|---:|---:|");
    println!(
        "| whalewatcher initial sync (until ready) | {:.1} | 1 |",
        median(&s.ww)
    );
    println!(
        "| floor: bollard list + {CONCURRENCY} concurrent inspects, reused connections | {:.1} | whalewatcher / floor = {:.2}× |",
        median(&s.floor),
        median(&s.ratio_floor)
    );
    println!(
        "| list + sequential inspects (the Go original's algorithm) | {:.1} | {:.2}× whalewatcher |",
        median(&s.sequential),
        median(&s.ratio_sequential)
    );
    println!(
        "| `docker ps -q \\| xargs docker inspect` | {:.1} | {:.2}× whalewatcher |",
        median(&s.cli),
        median(&s.ratio_cli)
    );
    if python.is_some() {
        println!(
            "| Python docker SDK `containers.list()` | {:.1} | {:.2}× whalewatcher |",
            median(&s.python),
            median(&s.ratio_python)
        );
    } else {
        println!("| Python docker SDK | not measured: set WW_BENCH_PYTHON | |");
    }
    println!();
    println!(
        "dockerd CPU per synced container: {:.3} ms in whalewatcher's sync, {:.3} ms in the floor's (medians; every thread's schedstat)",
        median(&s.cpu_per_container),
        median(&s.floor_cpu_per_container)
    );
    println!(
        "whalewatcher's own CPU per synced container (this process): {:.3} ms, {:.3}x dockerd's in the same sync (median of the rounds' ratios)",
        median(&s.client_cpu_per_container),
        median(&s.ratio_client_dockerd)
    );
    let (bytes, count) = portfolio_memory(endpoint).await;
    println!(
        "portfolio memory per tracked container: {bytes:.0} bytes ({count} containers, every allocation: ids, labels, image strings)"
    );
    drop(t);
}

/// A copy of a container that shares nothing with it: a clone would share
/// the id (and image strings), which then go uncounted.
fn deep_copy(c: &Container) -> Container {
    let mut copy = Container::new(c.id().to_owned(), c.name(), c.pid())
        .with_labels(c.labels().iter().collect::<Vec<_>>())
        .with_project(c.project())
        .with_paused(c.is_paused());
    if let Some(image) = c.image() {
        copy = copy.with_image(image);
    }
    if let Some(image_id) = c.image_id() {
        copy = copy.with_image_id(image_id);
    }
    if let Some(created) = c.created() {
        copy = copy.with_created(created);
    }
    if let Some(started) = c.started() {
        copy = copy.with_started(started);
    }
    if let Some(restarts) = c.restarts() {
        copy = copy.with_restarts(restarts);
    }
    copy
}

/// The heap bytes a portfolio of the engine's containers holds per
/// container, everything counted: copies of a listed set, sharing nothing
/// with it, in a fresh portfolio. The allocator's counts are process-wide,
/// and connections closing on other threads free memory meanwhile: the
/// median of several tries.
async fn portfolio_memory(endpoint: &str) -> (f64, usize) {
    let listed = {
        let engine = docker_client(endpoint);
        engine.list().await.expect("list")
    };
    let mut per_container = Vec::new();
    for _ in 0..7 {
        let region = Region::new(GLOBAL);
        let mut portfolio = Portfolio::new();
        for container in &listed {
            portfolio.insert(deep_copy(container));
        }
        let change = region.change();
        // A reallocation counts in both already (bytes_reallocated is the
        // same growth once more).
        let bytes = change.bytes_allocated as f64 - change.bytes_deallocated as f64;
        assert_eq!(portfolio.len(), listed.len());
        per_container.push(bytes / listed.len() as f64);
    }
    (median(&per_container), listed.len())
}

/// Latency from the engine's event timestamp to the watcher's event, for
/// starts one at a time and for a burst of concurrent starts.
async fn event_latency(rig: &Rig) {
    let endpoint = rig.host_docker.endpoint.as_str();
    let t = DockerTest::connect(&rig.host_docker, "bench-events").await;
    let watcher = Watcher::new(docker_client(endpoint), RetryPolicy::default());
    let watching = watcher.spawn();
    watcher.ready().await.expect("synced");
    let (_, mut events) = watcher.subscribe();

    // Receives the started events of `ids`; the latencies in ms, and how
    // many never came within the deadline.
    async fn started(
        events: &mut whalewatcher_core::EventStream,
        ids: &[String],
    ) -> (Vec<f64>, usize) {
        let mut latencies = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while latencies.len() < ids.len() {
            let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await else {
                break;
            };
            let event = event.expect("the bench reads fast enough");
            if event.kind != EventKind::Started || !ids.iter().any(|id| id == event.container.id())
            {
                continue;
            }
            let stamp = event.timestamp.expect("docker events carry timeNano");
            let latency = SystemTime::now().duration_since(stamp).unwrap_or_default();
            latencies.push(ms(latency));
        }
        let lost = ids.len() - latencies.len();
        (latencies, lost)
    }

    // The events are read while the starts are in flight: a start's HTTP
    // answer comes after its event.
    let docker = docker_client(endpoint);
    let start = |id: String| {
        let docker = docker.docker().clone();
        async move {
            docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
                .expect("start");
        }
    };
    let mut idle = Vec::new();
    let mut idle_lost = 0;
    for i in 0..30 {
        let id = t.create(&format!("idle{i}"), &[], Default::default()).await;
        let ((latency, lost), ()) = tokio::join!(
            started(&mut events, std::slice::from_ref(&id)),
            start(id.clone())
        );
        idle.extend(latency);
        idle_lost += lost;
    }
    // The raw stream goes live while the containers are created (seconds);
    // the burst is their starts.
    let raw = tokio::spawn(raw_event_latency(endpoint.to_owned()));
    let mut ids = Vec::new();
    for i in 0..BURST {
        ids.push(
            t.create(
                &format!("burst{i}"),
                &[(BURST_LABEL, "1")],
                Default::default(),
            )
            .await,
        );
    }
    let ((burst, burst_lost), _) = tokio::join!(
        started(&mut events, &ids),
        futures::future::join_all(ids.iter().cloned().map(start))
    );
    let (raw, raw_inspected, raw_lost, slowest) = raw.await.unwrap();
    let alive = watcher
        .portfolio()
        .containers()
        .filter(|c| ids.iter().any(|id| id == c.id()))
        .count();

    println!();
    println!(
        "## Event latency, host dockerd {}: engine timeNano → the watcher's started event",
        rig.host_docker.version
    );
    println!();
    println!("| load | events | p50 ms | p99 ms | lost |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| idle, one start at a time | {} | {:.2} | {:.2} | {idle_lost} |",
        idle.len(),
        percentile(&idle, 50.0),
        percentile(&idle, 99.0)
    );
    println!(
        "| burst of {BURST} concurrent starts | {} | {:.2} | {:.2} | {burst_lost} |",
        burst.len(),
        percentile(&burst, 50.0),
        percentile(&burst, 99.0)
    );
    println!(
        "| the same burst, dockerd's raw event stream (floor: the event arrives) | {} | {:.2} | {:.2} | {raw_lost} |",
        raw.len(),
        percentile(&raw, 50.0),
        percentile(&raw, 99.0)
    );
    println!(
        "| the same burst, raw event + one bollard inspect each, unbounded (floor: PID known) | {} | {:.2} | {:.2} | {raw_lost} |",
        raw_inspected.len(),
        percentile(&raw_inspected, 50.0),
        percentile(&raw_inspected, 99.0)
    );
    println!("(after the burst the portfolio holds {alive} of its {BURST} containers)");
    println!(
        "the slowest raw event + inspect: its event came {:.1} ms after its timeNano (event {} of {BURST}), its inspect took {:.1} ms with {} inspects in flight",
        slowest.arrived, slowest.events_by_then, slowest.inspect, slowest.in_flight
    );
    watching.stop().await.expect("watch ended cleanly");
    drop(t);
}

/// Marks the containers of the burst.
const BURST_LABEL: &str = "whalewatcher-bench.burst";

/// Where the time of the slowest raw event + inspect went (ms).
#[derive(Clone, Copy, Debug, Default)]
struct SlowestInspect {
    /// From the engine's timeNano to the event's arrival.
    arrived: f64,
    /// The inspect's own round trip.
    inspect: f64,
    /// Inspects in flight when it was sent (itself included).
    in_flight: usize,
    /// Of the burst's starts, how many had their event by then.
    events_by_then: usize,
}

/// The floors of event latency: dockerd's own event stream, read with
/// bollard, for the starts of the burst's containers — as the event
/// arrives, and once one inspect of each (started at once, unbounded)
/// is back; latencies in ms, how many events never came, and where the
/// slowest one's time went.
async fn raw_event_latency(endpoint: String) -> (Vec<f64>, Vec<f64>, usize, SlowestInspect) {
    let client = std::sync::Arc::new(docker_client(&endpoint));
    let label = format!("{BURST_LABEL}=1");
    let filters = std::collections::HashMap::from([
        ("type", vec!["container"]),
        ("event", vec!["start"]),
        ("label", vec![label.as_str()]),
    ]);
    let options = bollard::query_parameters::EventsOptionsBuilder::new()
        .filters(&filters)
        .build();
    let mut stream = client.docker().events(Some(options));
    let (mut arrived, mut inspects) = (Vec::new(), Vec::new());
    let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while arrived.len() < BURST {
        let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, stream.next()).await else {
            break;
        };
        let nanos = u64::try_from(message.time_nano.unwrap_or_default()).unwrap_or_default();
        let stamp = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
        arrived.push(ms(SystemTime::now()
            .duration_since(stamp)
            .unwrap_or_default()));
        let id = message.actor.and_then(|a| a.id).unwrap_or_default();
        let (client, in_flight) = (client.clone(), in_flight.clone());
        let trace = SlowestInspect {
            arrived: *arrived.last().expect("just pushed"),
            in_flight: in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
            events_by_then: arrived.len(),
            inspect: 0.0,
        };
        inspects.push(tokio::spawn(async move {
            let sent = Instant::now();
            client
                .docker()
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .expect("inspect");
            in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            let total = ms(SystemTime::now().duration_since(stamp).unwrap_or_default());
            (
                total,
                SlowestInspect {
                    inspect: ms(sent.elapsed()),
                    ..trace
                },
            )
        }));
    }
    let lost = BURST - arrived.len();
    let done: Vec<(f64, SlowestInspect)> = futures::future::join_all(inspects)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let slowest = done
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, trace)| *trace)
        .unwrap_or_default();
    let inspected = done.into_iter().map(|(total, _)| total).collect();
    (arrived, inspected, lost, slowest)
}

/// containerd's native API at 100 tasks: the watcher's initial sync
/// against the raw floor (the engine's own list: per namespace one
/// container list and one task list).
/// The sync benchmark on the containerd `engine` (native API).
async fn containerd_sync(engine: &rig::Engine, rounds: usize) {
    const N: usize = 100;
    let t = ContainerdTest::connect(engine, "bench-containerd").await;
    let namespace = "whalewatcher-bench";
    eprintln!("[bench] starting {N} containerd tasks");
    for i in 0..N {
        t.run(namespace, &format!("b{i}-{}", t.label), &[]);
    }
    let watched =
        || whalewatcher_containerd::ContainerdEngine::new(engine.socket()).expect("engine");
    let (mut ww, mut floor, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternating which goes first.
        let mut sync = None;
        let mut raw = None;
        for step in 0..2 {
            if (round + step) % 2 == 0 {
                sync = Some(initial_sync(watched()).await);
            } else {
                raw = Some(containerd_floor(engine.socket()).await);
            }
        }
        let ((sync, alive), (raw, counted)) = (sync.unwrap(), raw.unwrap());
        assert_eq!(
            alive, counted,
            "the watcher and the floor saw the same tasks"
        );
        assert!(alive >= N, "{alive}");
        ww.push(ms(sync));
        floor.push(ms(raw));
        ratio.push(ms(sync) / ms(raw));
    }
    println!();
    println!(
        "## containerd {} (native API), {N} tasks, {rounds} interleaved rounds",
        engine.version
    );
    println!();
    println!(
        "whalewatcher initial sync {:.1} ms; raw floor (namespaces, containers, tasks) {:.1} ms; ratio {:.2}× (per-round median)",
        median(&ww),
        median(&floor),
        median(&ratio)
    );
}

/// The containerd floor, written against containerd-client alone: the
/// namespaces, then each watched namespace's containers and tasks at once;
/// how long it took and how many alive (running or paused) tasks it saw.
async fn containerd_floor(socket: &str) -> (Duration, usize) {
    use containerd_client::services::v1::containers_client::ContainersClient;
    use containerd_client::services::v1::namespaces_client::NamespacesClient;
    use containerd_client::services::v1::tasks_client::TasksClient;
    use containerd_client::services::v1::{
        ListContainersRequest, ListNamespacesRequest, ListTasksRequest,
    };
    use containerd_client::types::v1::Status;
    use whalewatcher_tests::containerd::namespaced;

    let channel = containerd_client::connect(socket)
        .await
        .expect("containerd");
    let started = Instant::now();
    let namespaces = NamespacesClient::new(channel.clone())
        .list(ListNamespacesRequest::default())
        .await
        .expect("namespaces")
        .into_inner()
        .namespaces;
    let watched = namespaces
        .iter()
        .filter(|ns| !["moby", "k8s.io"].contains(&ns.name.as_str()));
    let counts = futures::future::join_all(watched.map(|ns| {
        let channel = channel.clone();
        async move {
            let (mut containers, mut tasks) = (
                ContainersClient::new(channel.clone()),
                TasksClient::new(channel),
            );
            let (containers, tasks) = futures::join!(
                containers.list(namespaced(ListContainersRequest::default(), &ns.name)),
                tasks.list(namespaced(ListTasksRequest::default(), &ns.name)),
            );
            let known: std::collections::HashSet<String> = containers
                .expect("containers")
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            tasks
                .expect("tasks")
                .into_inner()
                .tasks
                .into_iter()
                .filter(|t| known.contains(&t.id) && t.pid != 0)
                .filter(|t| {
                    [Status::Running, Status::Paused, Status::Pausing]
                        .iter()
                        .any(|s| *s as i32 == t.status)
                })
                .count()
        }
    }))
    .await;
    (started.elapsed(), counts.into_iter().sum())
}

/// CRI at 100 containers (25 pods of 4): the watcher's initial sync against
/// the raw floor (the two lists and one verbose status per container and
/// sandbox, 16 at once).
async fn cri_sync(rig: &Rig, rounds: usize) {
    use k8s_cri::v1::{
        ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest,
        ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter, PodSandboxState,
        PodSandboxStateValue, PodSandboxStatusRequest,
    };
    let t = CriTest::connect(&rig.containerd, "bench-cri").await;
    eprintln!("[bench] starting 25 pods of 4 containers on the CRI plugin");
    for p in 0..25 {
        let pod = t.run_pod(&format!("bench{p}"), "bench").await;
        for c in 0..4 {
            t.run_container(&pod, &format!("c{c}")).await;
        }
    }
    let (mut ww, mut floor, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let watch = || {
            initial_sync(whalewatcher_cri::CriEngine::new(rig.containerd.socket()).expect("engine"))
        };
        // Alternating which goes first.
        let early = if round % 2 == 0 {
            Some(watch().await)
        } else {
            None
        };
        let (raw, counted) = {
            let channel = containerd_client::connect(rig.containerd.socket())
                .await
                .expect("CRI");
            let client = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(channel);
            let started = Instant::now();
            let (mut a, mut b) = (client.clone(), client.clone());
            // Like the engine: the ready sandboxes, the running containers.
            let (pods, containers) = futures::join!(
                a.list_pod_sandbox(ListPodSandboxRequest {
                    filter: Some(PodSandboxFilter {
                        state: Some(PodSandboxStateValue {
                            state: PodSandboxState::SandboxReady as i32,
                        }),
                        ..Default::default()
                    }),
                }),
                b.list_containers(ListContainersRequest {
                    filter: Some(ContainerFilter {
                        state: Some(ContainerStateValue {
                            state: ContainerState::ContainerRunning as i32,
                        }),
                        ..Default::default()
                    }),
                })
            );
            let pods = pods.unwrap().into_inner().items;
            let containers = containers.unwrap().into_inner().containers;
            let count = pods.len() + containers.len();
            let statuses = pods
                .into_iter()
                .map(|p| (p.id, true))
                .chain(containers.into_iter().map(|c| (c.id, false)));
            futures::stream::iter(statuses)
                .map(|(id, sandbox)| {
                    let mut client = client.clone();
                    async move {
                        if sandbox {
                            client
                                .pod_sandbox_status(PodSandboxStatusRequest {
                                    pod_sandbox_id: id,
                                    verbose: true,
                                })
                                .await
                                .map(|_| ())
                        } else {
                            client
                                .container_status(ContainerStatusRequest {
                                    container_id: id,
                                    verbose: true,
                                })
                                .await
                                .map(|_| ())
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await
                .expect("statuses");
            (started.elapsed(), count)
        };
        let (sync, alive) = match early {
            Some(early) => early,
            None => watch().await,
        };
        assert_eq!(alive, counted, "the watcher and the floor saw the same");
        assert!(alive >= 125, "{alive}");
        ww.push(ms(sync));
        floor.push(ms(raw));
        ratio.push(ms(sync) / ms(raw));
    }
    println!();
    println!(
        "## CRI, containerd {}, 25 pods of 4 containers (125 with the sandboxes), {rounds} interleaved rounds",
        rig.containerd.version
    );
    println!();
    println!(
        "whalewatcher initial sync {:.1} ms; raw floor (2 lists + one verbose status each, {CONCURRENCY} at once) {:.1} ms; ratio {:.2}× (per-round median)",
        median(&ww),
        median(&floor),
        median(&ratio)
    );
}

#[tokio::main]
async fn main() {
    let rig = Rig::load();
    let rounds: usize = env_or("WW_BENCH_ROUNDS", 9);
    let sizes: Vec<usize> = std::env::var("WW_BENCH_N")
        .unwrap_or_else(|_| "100,300,500".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("WW_BENCH_N: numbers, comma-separated")
        })
        .collect();
    let python = std::env::var("WW_BENCH_PYTHON").ok();
    if python.is_none() {
        eprintln!("[bench] WW_BENCH_PYTHON is not set: the Python SDK is left out");
    }
    let host_dockerd = host_dockerd_pid();
    for &n in &sizes {
        docker_sync(
            &rig.host_docker,
            host_dockerd,
            "host",
            n,
            rounds,
            python.as_deref(),
        )
        .await;
    }
    // Today's dockerd (in a container of the rig), at the largest count.
    let largest = sizes.iter().copied().max().unwrap_or(100);
    let dockerd28 = rig.engine_pid(&rig.docker28);
    docker_sync(
        &rig.docker28,
        dockerd28,
        "nested",
        largest,
        rounds,
        python.as_deref(),
    )
    .await;
    event_latency(&rig).await;
    containerd_sync(&rig.containerd, rounds).await;
    containerd_sync(&rig.containerd2, rounds).await;
    cri_sync(&rig, rounds).await;
}
