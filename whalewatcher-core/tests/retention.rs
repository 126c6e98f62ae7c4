//! Nothing is kept per event: a fleet of three watchers, each on a
//! scripted engine that churns (start, pause, unpause, exit — the set of
//! alive containers stays bounded), and a follower that reads every fleet
//! event, as `whalewatch --follow` does. After a warm-up, 20,000 more
//! events leave the heap (live bytes and blocks, by a counting allocator)
//! where it was: an exited container remembered somewhere, an index never
//! pruned, or a per-event allocation kept would grow it by its size times
//! the events. The long soak against real engines is the `memory` bench
//! of the tests crate.

use std::time::Duration;

use futures::StreamExt;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use whalewatcher_core::testing::ScriptedEngine;
use whalewatcher_core::{
    Container, EventKind, Fleet, FleetChange, FleetEvent, FleetMember, RetryPolicy, Watcher,
};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Live (blocks, bytes) now, since `region` began.
fn live(region: &Region<'_, std::alloc::System>) -> (i64, i64) {
    let change = region.change();
    (
        change.allocations as i64 - change.deallocations as i64,
        change.bytes_allocated as i64 - change.bytes_deallocated as i64,
    )
}

/// One round on each engine: 8 containers start, half pause and unpause,
/// all exit: 24 events an engine, none left alive.
fn round(engines: &[ScriptedEngine], round: usize) {
    for (e, engine) in engines.iter().enumerate() {
        let ids: Vec<String> = (0..8).map(|n| format!("e{e}-r{round}-c{n}")).collect();
        for (n, id) in ids.iter().enumerate() {
            let container = Container::new(id.clone(), format!("name-{id}"), 1000 + n as u32)
                .with_labels([("com.docker.compose.project", "shop"), ("tier", "web")])
                .with_project("shop");
            engine.start(container);
        }
        for id in ids.iter().step_by(2) {
            engine.pause(id);
            engine.unpause(id);
        }
        for id in &ids {
            engine.die(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_keep_nothing_once_warm() {
    let engines: Vec<ScriptedEngine> = (0..3).map(|_| ScriptedEngine::new()).collect();
    // Room for a chunk's events: the follower is not to lag.
    let fleet = Fleet::with_event_capacity(4096);
    for engine in &engines {
        let watcher = Watcher::builder(engine.clone())
            .retry(RetryPolicy::default())
            .build();
        fleet
            .add(FleetMember::new(watcher.clone()).close_on_leave())
            .expect("a new fleet takes members");
        tokio::time::timeout(Duration::from_secs(10), watcher.ready())
            .await
            .expect("synced in time")
            .expect("synced");
    }
    let (_, mut changes) = fleet.subscribe();
    // The follower counts the fences it saw start: one an engine a batch,
    // started after the batch, so its start comes after all of it.
    let (fences_tx, mut fences) = tokio::sync::watch::channel(0usize);
    let follower = tokio::spawn(async move {
        let mut n = 0;
        while let Some(change) = changes.next().await {
            if let Ok(FleetEvent {
                change: FleetChange::Container { event, .. },
                ..
            }) = &change
            {
                if event.kind == EventKind::Started && event.container.name().starts_with("fence") {
                    n += 1;
                    let _ = fences_tx.send(n);
                }
            }
        }
    });
    // Runs `rounds` in chunks of 10, each followed by a fence an engine
    // (the last chunk's fence exits then), until the follower saw them.
    let mut fenced = 0;
    let mut run = async |rounds: std::ops::Range<usize>| {
        for chunk in rounds.collect::<Vec<_>>().chunks(10) {
            for r in chunk {
                round(&engines, *r);
            }
            for (e, engine) in engines.iter().enumerate() {
                if fenced > 0 {
                    engine.die(&format!("fence-{e}-{}", fenced - 1));
                }
                engine.start(Container::new(format!("fence-{e}-{fenced}"), "fence", 1));
            }
            fenced += 1;
            let target = fenced * engines.len();
            tokio::time::timeout(Duration::from_secs(30), fences.wait_for(|n| *n >= target))
                .await
                .expect("the follower kept up")
                .expect("following");
        }
    };
    let region = Region::new(ALLOCATOR);
    // Warm-up: pools, maps and channels reach their working size.
    run(0..200).await;
    let warm = live(&region);
    run(200..480).await;
    let after = live(&region);
    let events = (480 - 200) * 24 * engines.len();
    let (blocks, bytes) = (after.0 - warm.0, after.1 - warm.1);
    println!("{events} events after the warm-up: {blocks:+} blocks, {bytes:+} bytes live");
    // A byte an event would be 20 KB; what is allowed is the noise of
    // pools and channels that hold a few entries more or less.
    assert!(
        bytes < 16 * 1024 && blocks < 64,
        "{events} events left {blocks} blocks, {bytes} bytes alive ({:.2} bytes an event)",
        bytes as f64 / events as f64
    );
    fleet.close().await;
    follower.await.expect("the follower ended");
}
