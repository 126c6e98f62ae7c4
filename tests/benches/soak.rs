//! Soak: random churn on the rig's host dockerd for `WW_SOAK_SECS` (default
//! 300) seconds, in phases of about a second — start, kill, pause, unpause,
//! remove, several at once — each followed by a check that the portfolio
//! settles on the engine's truth (ids, PIDs, pause states) within 5 s.
//!
//! `cargo bench -p whalewatcher-tests --bench soak` (needs the rig:
//! `docker/setup`). Prints the seed; `WW_SOAK_SEED` repeats a run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bollard::query_parameters::ListContainersOptionsBuilder;
use futures::StreamExt;
use whalewatcher_core::{RetryPolicy, Watcher};
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::rig::Rig;
use whalewatcher_tests::TEST_LABEL;

/// A small, seedable generator (xorshift64*): no dependency for dice.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// The engine's truth about the soak's containers: id → (PID, paused), and
/// the ids of its dead ones.
async fn truth(t: &DockerTest) -> (BTreeMap<String, (u32, bool)>, Vec<String>) {
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&t.label_filter())
        .build();
    let listed = t.docker.list_containers(Some(options)).await.expect("list");
    let (mut alive, mut dead) = (BTreeMap::new(), Vec::new());
    for summary in listed {
        let id = summary.id.unwrap_or_default();
        let Ok(inspected) = t.docker.inspect_container(&id, None).await else {
            continue;
        };
        let state = inspected.state.unwrap_or_default();
        if state.running == Some(true) || state.paused == Some(true) {
            let pid = u32::try_from(state.pid.unwrap_or(0)).unwrap_or(0);
            alive.insert(id, (pid, state.paused == Some(true)));
        } else {
            dead.push(id);
        }
    }
    (alive, dead)
}

fn view(watcher: &Watcher, label: &str) -> BTreeMap<String, (u32, bool)> {
    watcher
        .portfolio()
        .containers()
        .filter(|c| c.label(TEST_LABEL) == Some(label))
        .map(|c| (c.id().to_owned(), (c.pid(), c.is_paused())))
        .collect()
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("WW_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("WW_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("soak: {seconds} s on the host dockerd, seed {seed}");
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "soak").await;
    let watcher = Watcher::new(
        MobyEngine::new(&rig.host_docker.endpoint).unwrap(),
        RetryPolicy::default(),
    );
    let watching = watcher.spawn();
    watcher.ready().await.expect("synced");
    let (_, mut events) = watcher.subscribe();
    let counting = tokio::spawn(async move {
        let (mut seen, mut lagged) = (0u64, 0u64);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => seen += 1,
                Err(lag) => lagged += lag.missed,
            }
        }
        (seen, lagged)
    });

    let mut dice = Dice(seed);
    let (mut phases, mut actions, mut mismatches, mut settle) = (0, 0, 0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut serial = 0;
    while Instant::now() < deadline {
        phases += 1;
        let (alive, dead) = truth(&t).await;
        let ids: Vec<&String> = alive.keys().collect();
        let mut work = Vec::new();
        for _ in 0..1 + dice.below(6) {
            let pick = |dice: &mut Dice| ids.get(dice.below(ids.len())).map(|id| id.to_string());
            let action = match dice.below(6) {
                _ if alive.len() < 5 => 0,
                0 | 1 if alive.len() < 30 => 0,
                2 => 1,
                3 => 2,
                4 => 3,
                _ => 4,
            };
            serial += 1;
            let name = format!("s{serial}");
            let target = pick(&mut dice);
            let victim = dead.get(dice.below(dead.len())).cloned();
            let t = &t;
            work.push(async move {
                match (action, target, victim) {
                    (0, _, _) => {
                        t.run(&name, &[]).await;
                    }
                    (1, Some(id), _) => {
                        let _ = t.docker.kill_container(&id, None).await;
                    }
                    (2, Some(id), _) => {
                        let _ = t.docker.pause_container(&id).await;
                    }
                    (3, Some(id), _) => {
                        let _ = t.docker.unpause_container(&id).await;
                    }
                    (_, _, Some(id)) => {
                        let _ = t.docker.remove_container(&id, None).await;
                    }
                    _ => {}
                }
            });
        }
        actions += work.len();
        futures::future::join_all(work).await;

        // Settle: the portfolio must reach the engine's truth.
        let started = Instant::now();
        let settled = loop {
            let truth = truth(&t).await.0;
            if view(&watcher, &t.label) == truth {
                break true;
            }
            if started.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "phase {phases}: mismatch after 5 s\n portfolio {:?}\n truth     {truth:?}",
                    view(&watcher, &t.label)
                );
                break false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        settle.push(started.elapsed().as_secs_f64() * 1e3);
        if !settled {
            mismatches += 1;
        }
    }
    watching.stop().await.expect("watch ended cleanly");
    drop(watcher);
    let (seen, lagged) = counting.await.unwrap();
    settle.sort_by(f64::total_cmp);
    println!(
        "soak: {phases} phases, {actions} actions, {seen} events seen ({lagged} missed by lag), \
         {mismatches} mismatches after settling; settled in {:.0} ms median, {:.0} ms max",
        settle[settle.len() / 2],
        settle.last().copied().unwrap_or_default()
    );
    drop(t);
    assert_eq!(mismatches, 0, "the portfolio failed to settle on the truth");
}
