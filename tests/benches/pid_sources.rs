//! Where a Docker sync could take its containers' PIDs from instead of one
//! inspect per container: measured on the rig's host dockerd 20.10 (its
//! containerd 1.6 a process of its own) and on Docker 28 (its own
//! containerd 2.1, inside the engine's container), each with `WW_PID_N`
//! (default 500) running containers, in `WW_PID_ROUNDS` (default 9)
//! interleaved rounds:
//!
//! - **inspects**: today's sync floor, the list of alive containers, then
//!   an inspect each, 16 at once (the baseline of every ratio);
//! - **list**: the list alone, with every field: what a sync without
//!   inspects cannot go under;
//! - **Tasks.List**: dockerd's containerd asked for the tasks of namespace
//!   `moby` (their PIDs and states);
//! - **init.pid**: the PID files containerd's shims leave in its state
//!   directory (`io.containerd.runtime.v2.task/moby/<id>/init.pid`), read
//!   here: no engine call, but a layout no API promises.
//!
//! Wall time (median), dockerd's and containerd's CPU (mean, from every
//! thread's schedstat; the shims' CPU is not counted), and the per-round
//! ratio to the inspects.
//!
//! Then `WW_PID_BURSTS` (default 5) bursts of 50 concurrent starts: when
//! each start's event arrives (the floor), and when its PID is known from
//! the shim's PID file or from an inspect, each asked as the event
//! arrives. No goal is asserted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
};
use bollard::Docker;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::ListTasksRequest;
use futures::{StreamExt, TryStreamExt};
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::containerd::namespaced;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::measure::{env_or, host_dockerd_pid, median, ms, percentile, threads_cpu};
use whalewatcher_tests::rig::{self, Rig};

/// One dockerd and the containerd it keeps its containers in.
struct Engines<'a> {
    name: &'static str,
    docker: &'a rig::Engine,
    dockerd: u32,
    containerd: u32,
    containerd_socket: PathBuf,
    /// `<containerd state>/io.containerd.runtime.v2.task/moby`.
    task_dir: PathBuf,
}

/// The PID of the process `comm` that has `arg` among its arguments.
fn process_with(comm: &str, arg: &str) -> u32 {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .unwrap_or_else(|| panic!("no {comm} runs with {arg:?}"))
}

/// The child of `parent` whose command is `comm`.
fn child_named(parent: u32, comm: &str) -> u32 {
    std::fs::read_dir(format!("/proc/{parent}/task"))
        .expect("the tasks of the parent")
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .unwrap_or_else(|| panic!("{parent} has no child {comm}"))
}

impl<'a> Engines<'a> {
    /// The host dockerd and the host containerd it was started with.
    fn host(rig: &'a Rig) -> Self {
        let socket = PathBuf::from(&rig.host_containerd.endpoint);
        let containerd = process_with("containerd", &rig.host_containerd.endpoint);
        // The rig starts it with `--state DIR`.
        let cmdline = std::fs::read(format!("/proc/{containerd}/cmdline")).expect("cmdline");
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let state = args
            .iter()
            .position(|arg| arg == "--state")
            .map(|at| PathBuf::from(&args[at + 1]))
            .expect("the host containerd's --state");
        Engines {
            name: "host dockerd 20.10",
            docker: &rig.host_docker,
            dockerd: host_dockerd_pid(),
            containerd,
            containerd_socket: socket,
            task_dir: state.join("io.containerd.runtime.v2.task/moby"),
        }
    }

    /// Docker 28 and the containerd it started, both in the engine's
    /// container: reached through the dockerd's `/proc/PID/root`.
    fn docker28(rig: &'a Rig) -> Self {
        let dockerd = rig.engine_pid(&rig.docker28);
        let root = PathBuf::from(format!("/proc/{dockerd}/root/run/docker/containerd"));
        Engines {
            name: "Docker 28",
            docker: &rig.docker28,
            dockerd,
            containerd: child_named(dockerd, "containerd"),
            containerd_socket: root.join("containerd.sock"),
            task_dir: root.join("daemon/io.containerd.runtime.v2.task/moby"),
        }
    }
}

/// The alive containers' ids, from the list.
async fn alive(docker: &Docker) -> Vec<String> {
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&std::collections::HashMap::from([(
            "status",
            vec!["running", "paused"],
        )]))
        .build();
    docker
        .list_containers(Some(options))
        .await
        .expect("list")
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// Today's floor: the list, then an inspect each, 16 at once.
async fn inspects(docker: &Docker) -> usize {
    let ids = alive(docker).await;
    let inspected: Vec<_> = futures::stream::iter(ids)
        .map(|id| async move {
            docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .expect("inspects");
    inspected.len()
}

/// containerd's tasks of namespace `moby`: id → PID.
async fn tasks(socket: &Path) -> BTreeSet<(String, u32)> {
    let channel = containerd_client::connect(socket)
        .await
        .unwrap_or_else(|e| panic!("containerd at {}: {e}", socket.display()));
    let request = namespaced(ListTasksRequest::default(), "moby");
    TasksClient::new(channel)
        .list(request)
        .await
        .expect("Tasks.List")
        .into_inner()
        .tasks
        .into_iter()
        .map(|task| (task.id, task.pid))
        .collect()
}

/// The shims' PID files: id → PID.
fn pid_files(task_dir: &Path) -> BTreeSet<(String, u32)> {
    std::fs::read_dir(task_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", task_dir.display()))
        .flatten()
        .filter_map(|entry| {
            let pid = std::fs::read_to_string(entry.path().join("init.pid")).ok()?;
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                pid.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// One method's samples: wall, dockerd CPU, containerd CPU (ms), and the
/// wall ratio to the inspects of the same round.
#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    dockerd: Vec<f64>,
    containerd: Vec<f64>,
    ratio: Vec<f64>,
}

const METHODS: [&str; 4] = ["inspects", "list", "Tasks.List", "init.pid"];

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

async fn measure(engines: &Engines<'_>, n: usize, rounds: usize) {
    let t = DockerTest::connect(engines.docker, &format!("pid-sources-{n}")).await;
    eprintln!("[bench] starting {n} containers on {}", engines.name);
    futures::stream::iter(0..n)
        .for_each_concurrent(8, |i| {
            let t = &t;
            async move {
                t.run(&format!("p{i}"), &[]).await;
            }
        })
        .await;
    let docker = MobyEngine::new(&engines.docker.endpoint).expect("endpoint");
    let docker = docker.docker();
    // Every source sees the same containers, and the two PID sources the
    // same PIDs.
    let total = alive(docker).await.len();
    let from_tasks = tasks(&engines.containerd_socket).await;
    assert_eq!(from_tasks.len(), total, "a task per alive container");
    assert_eq!(pid_files(&engines.task_dir), from_tasks, "the same PIDs");
    inspects(docker).await;

    let mut samples: Vec<Samples> = METHODS.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds {
        let mut walls = [Duration::ZERO; METHODS.len()];
        for step in 0..METHODS.len() {
            let method = (round + step) % METHODS.len();
            let (dockerd, containerd) = (
                threads_cpu(engines.dockerd),
                threads_cpu(engines.containerd),
            );
            let started = Instant::now();
            let found = match method {
                0 => inspects(docker).await,
                1 => alive(docker).await.len(),
                2 => tasks(&engines.containerd_socket).await.len(),
                _ => pid_files(&engines.task_dir).len(),
            };
            walls[method] = started.elapsed();
            assert_eq!(found, total, "{}", METHODS[method]);
            let s = &mut samples[method];
            s.wall.push(ms(walls[method]));
            s.dockerd.push(ms(threads_cpu(engines.dockerd) - dockerd));
            s.containerd
                .push(ms(threads_cpu(engines.containerd) - containerd));
        }
        for (method, wall) in walls.iter().enumerate() {
            samples[method].ratio.push(ms(*wall) / ms(walls[0]));
        }
    }

    println!(
        "\n{}, {total} alive containers, {rounds} rounds:\n",
        engines.name
    );
    println!(
        "| source | wall, median | ratio | dockerd CPU | containerd CPU | engines' CPU, ratio |"
    );
    println!("|---|---|---|---|---|---|");
    let engines_cpu = |s: &Samples| mean(&s.dockerd) + mean(&s.containerd);
    let baseline = engines_cpu(&samples[0]);
    for (name, s) in METHODS.iter().zip(&samples) {
        println!(
            "| {name} | {:.1} ms | {:.2}× | {:.1} ms | {:.1} ms | {:.2}× |",
            median(&s.wall),
            median(&s.ratio),
            mean(&s.dockerd),
            mean(&s.containerd),
            engines_cpu(s) / baseline
        );
    }
}

/// Containers started at once in a burst.
const BURST: usize = 50;

/// A start's latencies, from the engine's `timeNano` (ms): its event
/// here, its PID from the shim's PID file, its PID from an inspect.
#[derive(Default)]
struct StartLatencies {
    event: Vec<f64>,
    pid_file: Vec<f64>,
    inspect: Vec<f64>,
}

/// Bursts of [`BURST`] concurrent starts, `rounds` times: when each start's
/// event arrives, and when its PID is known from the shim's PID file (read
/// as the event arrives) and from an inspect (sent as the event arrives,
/// as the watcher does).
async fn bursts(engines: &Engines<'_>, rounds: usize) {
    let t = DockerTest::connect(engines.docker, "pid-sources-burst").await;
    let client = std::sync::Arc::new(MobyEngine::new(&engines.docker.endpoint).expect("endpoint"));
    let since = |stamp: SystemTime| ms(SystemTime::now().duration_since(stamp).unwrap_or_default());
    let mut latencies = StartLatencies::default();
    for round in 0..rounds {
        let mut ids = Vec::new();
        for i in 0..BURST {
            ids.push(
                t.create(&format!("r{round}s{i}"), &[], Default::default())
                    .await,
            );
        }
        let mut filters = t.label_filter();
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert("event".into(), vec!["start".into()]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut events = client.docker().events(Some(options));
        let docker = client.docker().clone();
        let starting = ids.clone();
        let starts = tokio::spawn(async move {
            futures::future::join_all(starting.iter().map(|id| docker.start_container(id, None)))
                .await
        });
        let mut inspects = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while inspects.len() < BURST {
            let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await else {
                panic!("{} of {BURST} start events came", inspects.len());
            };
            let event = event.expect("the event stream");
            let nanos = u64::try_from(event.time_nano.unwrap_or_default()).unwrap_or_default();
            let stamp = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
            latencies.event.push(since(stamp));
            let id = event.actor.and_then(|a| a.id).expect("the container's id");
            let pid = std::fs::read_to_string(engines.task_dir.join(&id).join("init.pid"))
                .expect("the shim's PID file");
            latencies.pid_file.push(since(stamp));
            assert!(
                pid.trim().parse::<u32>().is_ok_and(|pid| pid > 0),
                "{pid:?}"
            );
            let client = client.clone();
            inspects.push(tokio::spawn(async move {
                let inspected = client
                    .docker()
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await
                    .expect("inspect");
                assert!(inspected
                    .state
                    .and_then(|s| s.pid)
                    .is_some_and(|pid| pid > 0));
                since(stamp)
            }));
        }
        for inspect in futures::future::join_all(inspects).await {
            latencies.inspect.push(inspect.expect("the inspect's task"));
        }
        for started in starts.await.expect("the starts' task") {
            started.expect("a start");
        }
    }

    println!(
        "\n{}, {rounds} bursts of {BURST} concurrent starts, from the engine's timeNano:\n",
        engines.name
    );
    println!("| a start's PID known | p50 | p99 | p99 / the event's |");
    println!("|---|---|---|---|");
    let floor = percentile(&latencies.event, 99.0);
    for (what, values) in [
        ("its event arrives (the floor)", &latencies.event),
        ("the event, then the shim's PID file", &latencies.pid_file),
        ("the event, then an inspect", &latencies.inspect),
    ] {
        println!(
            "| {what} | {:.1} ms | {:.1} ms | {:.2}× |",
            percentile(values, 50.0),
            percentile(values, 99.0),
            percentile(values, 99.0) / floor
        );
    }
}

#[tokio::main]
async fn main() {
    let n = env_or("WW_PID_N", 500);
    let rounds = env_or("WW_PID_ROUNDS", 9);
    let bursts_of = env_or("WW_PID_BURSTS", 5);
    let rig = Rig::load();
    println!("# Where a Docker sync could take its PIDs from");
    for engines in [Engines::host(&rig), Engines::docker28(&rig)] {
        measure(&engines, n, rounds).await;
        bursts(&engines, bursts_of).await;
    }
}
