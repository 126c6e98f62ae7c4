//! `whalewatch` as a process against the rig's host dockerd with N running
//! containers of its own (`WW_CLI_N`, default 500; `WW_CLI_ROUNDS`,
//! default 5): each round runs `whalewatch --docker … --follow` until it
//! has printed every container of this bench as alive, then reads the
//! process's CPU (every thread's `schedstat`), `VmRSS` and `VmHWM`, and
//! dockerd's CPU over the same time, the baseline of the same round.
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
    let (mut cpu, mut dockerd_cpu, mut ratio, mut rss, mut hwm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let engine_before = cpu_time(dockerd);
        let mut child = tokio::process::Command::new(WHALEWATCH)
            .args([
                "--docker",
                &rig.host_docker.endpoint,
                "--follow",
                "--filter",
                &filter,
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("whalewatch runs");
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
        rss.push(status_kib(pid, "VmRSS:") as f64);
        hwm.push(status_kib(pid, "VmHWM:") as f64);
        whalewatcher_tests::run_command("kill", &["-INT", &pid.to_string()]);
        child.wait().await.expect("whalewatch ends");
        cpu.push(used.as_secs_f64() * 1e3);
        dockerd_cpu.push(engine.as_secs_f64() * 1e3);
        ratio.push(used.as_secs_f64() / engine.as_secs_f64().max(1e-3));
    }
    let per = |ms: f64| ms * 1e3 / n as f64;
    println!("# whalewatch --follow, {n} containers on the host dockerd, {rounds} rounds\n");
    println!("| whalewatch CPU | per container | dockerd CPU | per container | whalewatch / dockerd | VmRSS | VmHWM |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.1} ms | {:.0} µs | {:.1} ms | {:.0} µs | {:.2}× | {:.1} MiB | {:.1} MiB |",
        median(&cpu),
        per(median(&cpu)),
        median(&dockerd_cpu),
        per(median(&dockerd_cpu)),
        median(&ratio),
        median(&rss) / 1024.0,
        median(&hwm) / 1024.0,
    );
}
