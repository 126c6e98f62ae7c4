//! The CPU of `whalewatch --live` (in a tmux terminal of 200 × 50) next to
//! `whalewatch --follow` (its output read and dropped), both on one
//! loopback Docker endpoint of `WW_LIVE_N` containers (default 5,000):
//! idle, then under `WW_LIVE_RATE` events a second (default 100: pause
//! and unpause of random containers), `WW_LIVE_SECS` seconds each
//! (default 10), `WW_LIVE_ROUNDS` rounds (default 3). The follower is the
//! baseline of the same round: its CPU is what the watch itself costs.
//!
//! Medians; nothing asserted. `cargo bench -p whalewatch --bench live`
//! (needs tmux; no rig).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use whalewatcher_tests::loopback_docker::{pause_event, LoopbackDocker, DOCKERD_26_INSPECT};
use whalewatcher_tests::measure::{cpu_time, env_or, median};

const WHALEWATCH: &str = env!("CARGO_BIN_EXE_whalewatch");

/// CPU per second of wall time (ms/s) over `window`, while `rate` events
/// a second go out.
async fn cpu_over(
    pid: u32,
    loopback: &LoopbackDocker,
    n: usize,
    rate: u32,
    window: Duration,
) -> f64 {
    let before = cpu_time(pid);
    let began = Instant::now();
    if rate == 0 {
        tokio::time::sleep(window).await;
    } else {
        let every = Duration::from_secs(1) / rate;
        let mut tick = tokio::time::interval(every);
        let mut paused = vec![false; n];
        let mut i: usize = 7;
        while began.elapsed() < window {
            tick.tick().await;
            i = (i * 7919 + 13) % n;
            paused[i] = !paused[i];
            loopback.emit(pause_event(i, paused[i]));
        }
    }
    cpu_time(pid).saturating_sub(before).as_secs_f64() * 1e3 / began.elapsed().as_secs_f64()
}

async fn follow_round(
    loopback: &LoopbackDocker,
    n: usize,
    rate: u32,
    window: Duration,
) -> (f64, f64) {
    let mut child = tokio::process::Command::new(WHALEWATCH)
        .args(["--docker", &loopback_url(loopback), "--follow"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("whalewatch runs");
    let pid = child.id().expect("running");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    for _ in 0..n {
        lines.next_line().await.expect("output").expect("a line");
    }
    // The rest is read and dropped, as > /dev/null would.
    let draining = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let idle = cpu_over(pid, loopback, n, 0, window).await;
    let busy = cpu_over(pid, loopback, n, rate, window).await;
    whalewatcher_tests::run_command("kill", &["-INT", &pid.to_string()]);
    child.wait().await.expect("whalewatch ends");
    draining.abort();
    (idle, busy)
}

fn loopback_url(loopback: &LoopbackDocker) -> String {
    whalewatcher_tests::loopback::Loopback::endpoint(loopback)
}

async fn live_round(
    loopback: &LoopbackDocker,
    n: usize,
    rate: u32,
    window: Duration,
) -> (f64, f64) {
    let server = format!("ww-bench-live-{}", std::process::id());
    let command = format!(
        "exec {WHALEWATCH} --live --docker {}",
        loopback_url(loopback)
    );
    whalewatcher_tests::run_command(
        "tmux",
        &[
            "-L",
            &server,
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "200",
            "-y",
            "50",
            &command,
        ],
    );
    let pane = whalewatcher_tests::run_command(
        "tmux",
        &["-L", &server, "list-panes", "-t", "t", "-F", "#{pane_pid}"],
    );
    let pid: u32 = pane.trim().parse().expect("a PID");
    let synced = format!(": {n} alive");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let screen = whalewatcher_tests::run_command(
            "tmux",
            &["-L", &server, "capture-pane", "-p", "-t", "t"],
        );
        if screen.contains(&synced) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "--live never showed {synced}:\n{screen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle = cpu_over(pid, loopback, n, 0, window).await;
    let busy = cpu_over(pid, loopback, n, rate, window).await;
    whalewatcher_tests::run_command("tmux", &["-L", &server, "kill-server"]);
    (idle, busy)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = env_or("WW_LIVE_N", 5_000);
    let rate: u32 = env_or("WW_LIVE_RATE", 100);
    let window = Duration::from_secs(env_or("WW_LIVE_SECS", 10));
    let rounds: usize = env_or("WW_LIVE_ROUNDS", 3);
    let dir = std::env::temp_dir().join(format!("ww-bench-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let loopback = LoopbackDocker::start(&dir, DOCKERD_26_INSPECT, n);
    let (mut follow, mut live) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        follow.push(follow_round(&loopback, n, rate, window).await);
        live.push(live_round(&loopback, n, rate, window).await);
    }
    let of = |taken: &[(f64, f64)], busy: bool| {
        median(
            &taken
                .iter()
                .map(|(idle, b)| if busy { *b } else { *idle })
                .collect::<Vec<_>>(),
        )
    };
    println!(
        "# whalewatch CPU, {n} containers on a loopback Docker endpoint, {rounds} rounds of {} s\n",
        window.as_secs()
    );
    println!("| mode | idle | {rate} events/s |");
    println!("|---|---|---|");
    println!(
        "| --follow (baseline) | {:.2} ms/s | {:.2} ms/s |",
        of(&follow, false),
        of(&follow, true)
    );
    println!(
        "| --live, 200 × 50 | {:.2} ms/s | {:.2} ms/s |",
        of(&live, false),
        of(&live, true)
    );
    println!(
        "| --live / --follow | {:.2}× | {:.2}× |",
        of(&live, false) / of(&follow, false).max(0.01),
        of(&live, true) / of(&follow, true).max(0.01)
    );
    drop(loopback);
    let _ = std::fs::remove_dir_all(&dir);
}
