//! A seeded, randomized explorer of the watcher's races.
//!
//! Each seed plays a few hundred random steps against the scripted engine:
//! starts, restarts with new PIDs, pauses, unpauses and exits of a handful
//! of containers; outages (with renames and relabels the engine never
//! reports), cut event streams; lists and inspects held and answered late,
//! stale (as of the call), as of now, or per container (as moby's list
//! does: each container inspected at its own time), or failed; the clock
//! moved so that deadlines, retries and safety relists fire. After every
//! step it checks the watcher's promise on several subscribers: the first
//! revision after a snapshot at `r` is `r + 1` and each next is one more;
//! each subscriber's snapshot plus its events equals the published
//! portfolio; and every revision has one content, whoever saw it — each
//! subscriber's replay after each revision, each snapshot handed out,
//! each read. At the end, with the engine answering again, the portfolio
//! must equal the engine's truth.
//!
//! CI runs `DEFAULT_SEEDS` seeds (a few seconds). `WW_EXPLORE_SEEDS=N`
//! runs N seeds, `WW_EXPLORE_SEED=S` just seed S (to reproduce a failure),
//! `WW_EXPLORE_STEPS` sets the steps per seed.

mod common;

use std::time::Duration;

use common::Rng;
use futures::{FutureExt, StreamExt};
use whalewatcher_core::testing::{History, Replayed, ScriptedEngine};
use whalewatcher_core::{
    CancellationToken, Container, Deadlines, EngineError, EventStream, Portfolio, RetryPolicy,
    Watcher,
};

const DEFAULT_SEEDS: u64 = 300;
const DEFAULT_STEPS: usize = 250;
const IDS: [&str; 5] = ["a", "b", "c", "d", "e"];

#[test]
fn random_races_keep_the_watchers_promise() {
    let mut totals = Totals::default();
    let (seeds, steps, elapsed) =
        common::run_seeds("WW_EXPLORE", DEFAULT_SEEDS, DEFAULT_STEPS, explore, |run| {
            totals.add(&run)
        });
    eprintln!(
        "explored {seeds} seeds × {steps} steps in {elapsed:.2?} ({:.0} seeds/s): {totals:?}",
        seeds as f64 / elapsed.as_secs_f64()
    );
    // The steps did reach the races they are meant to reach.
    if seeds >= DEFAULT_SEEDS {
        assert!(
            totals.late_lists > 0 && totals.late_inspects > 0,
            "{totals:?}"
        );
        assert!(
            totals.outages > 0 && totals.cuts > 0 && totals.timed_out_steps > 0,
            "{totals:?}"
        );
        assert!(totals.updates > 0 && totals.pauses > 0, "{totals:?}");
    }
}

/// What one or all seeds did, to show the explorer reached the races.
#[derive(Debug, Default)]
struct Totals {
    steps: usize,
    events: usize,
    late_lists: usize,
    late_inspects: usize,
    outages: usize,
    cuts: usize,
    timed_out_steps: usize,
    updates: usize,
    pauses: usize,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.steps += other.steps;
        self.events += other.events;
        self.late_lists += other.late_lists;
        self.late_inspects += other.late_inspects;
        self.outages += other.outages;
        self.cuts += other.cuts;
        self.timed_out_steps += other.timed_out_steps;
        self.updates += other.updates;
        self.pauses += other.pauses;
    }
}

/// A subscriber, and its portfolio replayed from everything it was sent.
struct Subscriber {
    replayed: Replayed,
    stream: EventStream,
    events: usize,
}

impl Subscriber {
    fn new(watcher: &Watcher, history: &mut History) -> Self {
        let (snapshot, stream) = watcher.subscribe();
        history.witness(&snapshot, "a new subscriber's snapshot");
        Subscriber {
            replayed: Replayed::new(&snapshot),
            stream,
            events: 0,
        }
    }

    /// Takes in what was sent, revision by revision, then checks the
    /// promise against the published portfolio. On one thread the watcher
    /// never publishes halfway while this runs.
    fn check(&mut self, published: &Portfolio, history: &mut History, seed: u64, step: usize) {
        let mut fresh = Vec::new();
        while let Some(item) = self.stream.next().now_or_never() {
            let event = item
                .expect("the stream ends only when closed")
                .unwrap_or_else(|lagged| panic!("seed {seed} step {step}: {lagged}"));
            fresh.push(event);
        }
        self.events += fresh.len();
        let what = format!("seed {seed} step {step}");
        self.replayed
            .apply(&fresh, |after| history.witness(after, &what));
        assert_eq!(
            published.revision(),
            self.replayed.revision(),
            "{what}: the portfolio changed without an event"
        );
        assert_eq!(
            self.replayed.portfolio(),
            published,
            "{what}: snapshot + events differ from the portfolio"
        );
        history.witness(published, &what);
    }
}

async fn explore(seed: u64, steps: usize) -> Totals {
    let mut rng = Rng::new(seed);
    let engine = ScriptedEngine::new();
    let mut next_pid = 1000;
    for id in IDS {
        if rng.chance(50) {
            next_pid += 1;
            engine.add([Container::new(id, format!("name-{id}"), next_pid)]);
        }
    }
    engine.hold_lists();
    engine.hold_inspects();

    let retry_delay = Duration::from_millis(50 + rng.below(500));
    let mut deadlines = Deadlines::default();
    deadlines.list = Duration::from_millis(1000 + rng.below(5000));
    deadlines.inspect = Duration::from_millis(1000 + rng.below(5000));
    let mut builder = Watcher::builder(engine.clone())
        .retry(RetryPolicy::from_delays(move || {
            std::iter::repeat(retry_delay)
        }))
        .deadlines(deadlines)
        .stable_after(Duration::from_millis(rng.below(5000)))
        .max_concurrent_inspects(1 + rng.below(3) as usize)
        .event_capacity(1 << 16);
    if rng.chance(50) {
        builder = builder.safety_relist(Duration::from_millis(1000 + rng.below(500)));
    }
    let watcher = builder.build();
    let mut history = History::default();
    let mut subscribers = vec![Subscriber::new(&watcher, &mut history)];
    let cancel = CancellationToken::new();
    let watching = tokio::spawn({
        let (watcher, cancel) = (watcher.clone(), cancel.clone());
        async move { watcher.watch(cancel).await }
    });

    let mut totals = Totals::default();
    let mut held_lists = Vec::new();
    let mut held_inspects = Vec::new();
    let mut down = false;
    for step in 0..steps {
        let id = rng.pick(&IDS);
        let alive = engine.truth().container(id).cloned();
        match rng.below(100) {
            // The containers' lives.
            0..=19 => match alive {
                None => {
                    next_pid += 1;
                    engine.start(Container::new(id, format!("name-{id}"), next_pid));
                }
                Some(_) if rng.chance(50) => {
                    engine.die(id);
                    next_pid += 1;
                    engine.start(Container::new(id, format!("name-{id}"), next_pid));
                }
                Some(_) => engine.die(id),
            },
            20..=29 => {
                if let Some(container) = alive {
                    totals.pauses += 1;
                    if container.is_paused() {
                        engine.unpause(id);
                    } else {
                        engine.pause(id);
                    }
                }
            }
            // The engine's availability.
            30..=33 if !down => {
                totals.outages += 1;
                down = true;
                engine.go_down();
            }
            30..=33 => {
                down = false;
                engine.come_up();
            }
            34..=36 if down => {
                // What nobody reports: only a relist can find it.
                if let Some(container) = alive {
                    totals.updates += 1;
                    let renamed = Container::new(id, format!("renamed-{step}"), container.pid())
                        .with_paused(container.is_paused())
                        .with_labels([("step", step.to_string())]);
                    engine.add([renamed]);
                }
            }
            34..=36 => {
                totals.cuts += 1;
                engine.end_streams();
            }
            // Calls answered late, and how.
            37..=51 => {
                held_lists.extend(engine.try_next_list());
                if !held_lists.is_empty() {
                    totals.late_lists += 1;
                    let list = held_lists.swap_remove(rng.below(held_lists.len() as u64) as usize);
                    match rng.below(10) {
                        0..=2 => list.reply_as_called(),
                        3..=5 => list.reply_now(),
                        6..=8 => {
                            let mut coin = Rng::new(rng.next());
                            list.reply_per_container(|_| coin.chance(50));
                        }
                        _ => list.fail(EngineError::Protocol {
                            endpoint: "explorer".into(),
                            message: "a failed list".into(),
                        }),
                    }
                }
            }
            52..=69 => {
                held_inspects.extend(std::iter::from_fn(|| engine.try_next_inspect()));
                if !held_inspects.is_empty() {
                    totals.late_inspects += 1;
                    let at = rng.below(held_inspects.len() as u64) as usize;
                    let inspect = held_inspects.swap_remove(at);
                    match rng.below(10) {
                        0..=3 => inspect.reply_as_called(),
                        4..=8 => inspect.reply_now(),
                        _ => inspect.reply(Err(EngineError::Protocol {
                            endpoint: "explorer".into(),
                            message: "a failed inspect".into(),
                        })),
                    }
                }
            }
            // A new subscriber joins while all this goes on.
            70..=72 if subscribers.len() < 4 => {
                subscribers.push(Subscriber::new(&watcher, &mut history))
            }
            // Time passes: deadlines, retries, safety relists.
            _ => tokio::time::sleep(Duration::from_millis(rng.below(1000))).await,
        }
        // Let the watcher take in what happened.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let published = watcher.portfolio();
        for subscriber in &mut subscribers {
            subscriber.check(&published, &mut history, seed, step);
        }
        if matches!(
            watcher.status().last_error,
            Some(EngineError::Timeout { .. })
        ) {
            totals.timed_out_steps += 1;
        }
        totals.steps += 1;
    }

    // The engine answers again; the watcher must end in the truth.
    engine.come_up();
    engine.release_holds();
    for list in held_lists
        .drain(..)
        .chain(std::iter::from_fn(|| engine.try_next_list()))
    {
        list.reply_now();
    }
    for inspect in held_inspects
        .drain(..)
        .chain(std::iter::from_fn(|| engine.try_next_inspect()))
    {
        inspect.reply_now();
    }
    let settle_by = tokio::time::Instant::now() + Duration::from_secs(600);
    while !(watcher.status().is_synced() && *watcher.portfolio() == engine.truth()) {
        assert!(
            tokio::time::Instant::now() < settle_by,
            "seed {seed}: never settled on the truth: {:?} vs {:?}",
            watcher.portfolio(),
            engine.truth()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let published = watcher.portfolio();
    for subscriber in &mut subscribers {
        subscriber.check(&published, &mut history, seed, steps);
        totals.events += subscriber.events;
    }
    cancel.cancel();
    watching
        .await
        .expect("the watch task")
        .expect("the watch never gives up");
    totals
}
