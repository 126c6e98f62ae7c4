//! `whalewatch` as a process against the rig's host dockerd with N running
//! containers of its own (`WW_CLI_N`, default 500; `WW_CLI_ROUNDS`,
//! default 5): each round runs `whalewatch --docker … --follow` until it
//! has printed every container of this bench as alive, then reads the
//! process's CPU (every thread's `schedstat`), `VmRSS` and `VmHWM`, and
//! dockerd's CPU over the same time, the baseline of the same round.
//!
//! `WW_CLI_ALSO`, other `whalewatch` binaries (comma-separated paths), are
//! measured in the same rounds, each after the other: an A/B of a change.
//!
//! Medians; nothing asserted. Run (the rig up):
//! `cargo bench -p whalewatch --bench process`.

use std::process::Stdio;

use tokio::io::AsyncBufReadExt;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::measure::{
    cpu_time, env_or, host_dockerd_pid, median, status_kib, threads_cpu,
};
use whalewatcher_tests::rig::Rig;
use whalewatcher_tests::{within, TEST_LABEL};

const WHALEWATCH: &str = env!("CARGO_BIN_EXE_whalewatch");

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_or("WW_CLI_N", 500);
    let rounds = env_or("WW_CLI_ROUNDS", 5);
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "bench-cli").await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let t = &t;
        futures::future::join_all(chunk.iter().map(|i| async move {
            t.run(&format!("c{i}"), &[]).await;
        }))
        .await;
    }
    let dockerd = host_dockerd_pid();
    let filter = format!("label={TEST_LABEL}={}", t.label);
    let mut binaries = vec![WHALEWATCH.to_owned()];
    binaries.extend(
        env_or("WW_CLI_ALSO", String::new())
            .split(',')
            .filter(|path| !path.is_empty())
            .map(str::to_owned),
    );
    let mut measured: Vec<Vec<Round>> = vec![Vec::new(); binaries.len()];
    for _ in 0..rounds {
        for (binary, taken) in binaries.iter().zip(&mut measured) {
            taken.push(round(binary, &rig.host_docker.endpoint, &filter, n, dockerd).await);
        }
    }
    let per = |ms: f64| ms * 1e3 / n as f64;
    println!("# whalewatch --follow, {n} containers on the host dockerd, {rounds} rounds\n");
    println!("| binary | whalewatch CPU | per container | dockerd CPU | per container | whalewatch / dockerd | VmRSS | VmHWM |");
    println!("|---|---|---|---|---|---|---|---|");
    for (binary, taken) in binaries.iter().zip(&measured) {
        let of = |field: fn(&Round) -> f64| median(&taken.iter().map(field).collect::<Vec<_>>());
        println!(
            "| {binary} | {:.1} ms | {:.0} µs | {:.1} ms | {:.0} µs | {:.2}× | {:.1} MiB | {:.1} MiB |",
            of(|r| r.cpu),
            per(of(|r| r.cpu)),
            of(|r| r.dockerd_cpu),
            per(of(|r| r.dockerd_cpu)),
            of(|r| r.cpu / r.dockerd_cpu.max(1.0)),
            of(|r| r.rss) / 1024.0,
            of(|r| r.hwm) / 1024.0,
        );
    }
}

/// One run of a binary until it printed every container: its CPU and
/// dockerd's (ms), its memory (KiB).
#[derive(Clone, Copy, Debug)]
struct Round {
    cpu: f64,
    dockerd_cpu: f64,
    rss: f64,
    hwm: f64,
}

async fn round(binary: &str, endpoint: &str, filter: &str, n: usize, dockerd: u32) -> Round {
    let engine_before = cpu_time(dockerd);
    let mut child = tokio::process::Command::new(binary)
        .args(["--docker", endpoint, "--follow", "--filter", filter])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary} runs: {e}"));
    let pid = child.id().expect("running");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    within("every container alive", async {
        for _ in 0..n {
            lines.next_line().await.expect("output").expect("a line");
        }
    })
    .await;
    let used = threads_cpu(pid);
    let engine = cpu_time(dockerd) - engine_before;
    let measured = Round {
        cpu: used.as_secs_f64() * 1e3,
        dockerd_cpu: engine.as_secs_f64() * 1e3,
        rss: status_kib(pid, "VmRSS:") as f64,
        hwm: status_kib(pid, "VmHWM:") as f64,
    };
    whalewatcher_tests::run_command("kill", &["-INT", &pid.to_string()]);
    child.wait().await.expect("whalewatch ends");
    measured
}
