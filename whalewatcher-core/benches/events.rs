//! Events applied per second by the watcher at 50,000 containers, and how
//! long an event takes from the engine to two subscribers.
//!
//! Run with `cargo bench -p whalewatcher-core --bench events`
//! (`WW_EVENTS_N` containers, default 50,000; `WW_EVENTS_M` events per
//! phase, default 80,000, at most twice the containers;
//! `WW_EVENTS_RATES`, events per second of the paced phases, default
//! `20000,100000,200000`; `WW_EVENTS_ROUNDS`, default 5). Each round has a
//! burst (the events as fast as the emitter makes them: events applied
//! per second) and a paced phase per rate (half a second's worth: each
//! event's latency to the subscribers).
//!
//! The scripted engine emits a mix of pauses, unpauses, exits and starts
//! (a start is inspected, from the engine's memory) from a thread of its
//! own; the watcher and two subscribers share one runtime worker. The
//! floor, measured in the same rounds, is the same events from the same
//! engine through a task that inspects each start and broadcasts the
//! events to two subscribers: every channel hop and inspect, no portfolio.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::stream::{self, BoxStream, StreamExt};
use tokio::runtime::Runtime;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use whalewatcher_core::testing::ScriptedEngine;
use whalewatcher_core::{
    CancellationToken, Container, Engine, EngineEvent, EventKind, RetryPolicy, Watcher,
};

/// How long a phase may take before the bench gives up on it.
const PHASE_DEADLINE: Duration = Duration::from_secs(60);
/// What the watcher and the floor buffer per subscriber, in revisions:
/// enough that a subscriber of a phase never lags, as a lag drops
/// revisions of unknown size and the subscribers count events.
const CAPACITY: usize = 1 << 17;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn id(i: usize) -> String {
    format!("{i:064x}") // Docker-style 64 hex digits
}

fn container(i: usize) -> Container {
    Container::new(id(i), format!("container-{i}"), 1000 + i as u32)
        .with_project("project-a")
        .with_labels([
            ("com.docker.compose.project", "project-a".to_owned()),
            ("com.docker.compose.service", format!("service-{}", i % 7)),
            ("com.example.instance", format!("{i}")),
        ])
}

/// The engine's side. Half the containers are only ever paused and
/// unpaused; the other half exit, oldest first, and new ones start. A
/// container exits only in a later phase than the one it started in, and
/// a paused one never exits, so each event changes the portfolio exactly
/// once: both subscribers see one event per event emitted, whatever the
/// watcher still has to inspect when the next event comes.
struct Emitter {
    engine: ScriptedEngine,
    /// Paused and unpaused, never exiting.
    steady: Vec<usize>,
    /// Alive, in the order they exit.
    churning: VecDeque<usize>,
    next: usize,
    k: usize,
}

impl Emitter {
    fn new(n: usize) -> Self {
        let engine = ScriptedEngine::new();
        engine.add((0..n).map(container));
        Emitter {
            engine,
            steady: (0..n / 2).collect(),
            churning: (n / 2..n).collect(),
            next: n,
            k: 0,
        }
    }

    /// Plans a phase of `count` events, so that emitting them makes no
    /// ids or records: pause, then unpause of the same steady container,
    /// exit of the oldest churning one (one alive before the phase), start
    /// of a new one; the count of containers stays as it was.
    fn plan(&mut self, count: usize) -> Vec<Planned> {
        assert!(
            count.div_ceil(4) <= self.churning.len(),
            "{count} events exit more containers than the {} alive before the phase",
            self.churning.len()
        );
        (0..count)
            .map(|_| {
                let k = self.k;
                self.k += 1;
                match k % 4 {
                    0 | 1 => {
                        let target = id(self.steady[(k / 4 * 7919) % self.steady.len()]);
                        Planned::Pause(target, k.is_multiple_of(4))
                    }
                    2 => Planned::Exit(id(self.churning.pop_front().expect("churning containers"))),
                    _ => {
                        let new = self.next;
                        self.next += 1;
                        self.churning.push_back(new);
                        Planned::Start(container(new))
                    }
                }
            })
            .collect()
    }

    /// Makes a planned event happen, stamped with the time it is emitted.
    fn emit(&self, planned: Planned) {
        let now = SystemTime::now();
        let engine = &self.engine;
        let event = match planned {
            Planned::Pause(target, paused) => {
                engine.set_paused(&target, paused);
                let kind = if paused {
                    EventKind::Paused
                } else {
                    EventKind::Unpaused
                };
                EngineEvent::new(kind, target)
            }
            Planned::Exit(gone) => {
                engine.remove(&gone);
                EngineEvent::new(EventKind::Exited, gone)
            }
            Planned::Start(new) => {
                let id = new.id().to_owned();
                engine.add([new]);
                EngineEvent::new(EventKind::Started, id)
            }
        };
        engine.emit(event.at(now));
    }
}

/// An event of the mix, made before it is emitted.
enum Planned {
    /// Pause (`true`) or unpause a steady container.
    Pause(String, bool),
    Exit(String),
    Start(Container),
}

/// What a subscriber saw of a phase: each event's latency from its
/// emission (µs), and when the last came in.
struct Seen {
    latencies_us: Vec<f64>,
    last: Instant,
}

/// One subscriber's view: per event its engine timestamp, or how many
/// revisions it missed (which ends the bench).
type Timestamps = BoxStream<'static, Result<Option<SystemTime>, u64>>;

async fn take(mut stream: Timestamps, count: usize, progress: Arc<AtomicUsize>) -> Seen {
    let mut latencies_us = Vec::with_capacity(count);
    while latencies_us.len() < count {
        progress.store(latencies_us.len(), Ordering::Relaxed);
        match stream.next().await {
            Some(Ok(timestamp)) => {
                let at = timestamp.expect("every emitted event is stamped");
                let latency = SystemTime::now().duration_since(at).unwrap_or_default();
                latencies_us.push(latency.as_secs_f64() * 1e6);
            }
            Some(Err(revisions)) => panic!(
                "a subscriber lagged by {revisions} revisions after {} events: the events \
                 it missed cannot be counted",
                latencies_us.len()
            ),
            None => panic!("the stream ended after {} events", latencies_us.len()),
        }
    }
    Seen {
        latencies_us,
        last: Instant::now(),
    }
}

/// The consumer under test: something that turns the engine's events into
/// subscriber streams.
trait Consumer {
    fn subscribe(&self) -> Timestamps;
    /// What to say when a phase does not finish.
    fn status(&self) -> String {
        String::new()
    }
}

struct WatcherConsumer(Watcher);

impl Consumer for WatcherConsumer {
    fn subscribe(&self) -> Timestamps {
        let (_, events) = self.0.subscribe();
        events
            .map(|item| item.map(|e| e.timestamp).map_err(|lagged| lagged.missed))
            .boxed()
    }

    fn status(&self) -> String {
        let portfolio = self.0.portfolio();
        format!(
            "the watcher: {:?}, {} containers at revision {}",
            self.0.status(),
            portfolio.len(),
            portfolio.revision()
        )
    }
}

/// The floor: the engine's events, each start inspected, broadcast as
/// one-event revisions.
struct Floor(broadcast::Sender<Arc<[EngineEvent]>>);

impl Floor {
    fn start(runtime: &Runtime, engine: ScriptedEngine, cancel: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        let forward = sender.clone();
        runtime.block_on(async {
            let mut events = engine
                .subscribe()
                .await
                .expect("the scripted engine subscribes");
            tokio::spawn(async move {
                loop {
                    let event = tokio::select! {
                        _ = cancel.cancelled() => return,
                        event = events.next() => event,
                    };
                    let Some(Ok(event)) = event else { return };
                    if event.kind == EventKind::Started {
                        let started = engine.inspect(&event.id).await;
                        std::hint::black_box(started.expect("a started container is there"));
                    }
                    let _ = forward.send(Arc::from([event]));
                }
            });
        });
        Floor(sender)
    }
}

impl Consumer for Floor {
    fn subscribe(&self) -> Timestamps {
        BroadcastStream::new(self.0.subscribe())
            .flat_map(|item| {
                let items: Vec<_> = match item {
                    Ok(revision) => revision.iter().map(|e| Ok(e.timestamp)).collect(),
                    Err(BroadcastStreamRecvError::Lagged(missed)) => vec![Err(missed)],
                };
                stream::iter(items)
            })
            .boxed()
    }
}

struct Phase {
    /// From the first emission to the last event in both subscribers.
    wall: Duration,
    /// How long emitting took.
    emitting: Duration,
    latencies_us: Vec<f64>,
}

/// Emits `count` events, at `rate` per second or as fast as the emitter
/// goes, and waits for both subscribers to have them all.
fn phase(
    runtime: &Runtime,
    consumer: &dyn Consumer,
    emitter: &mut Emitter,
    count: usize,
    rate: Option<u64>,
) -> Phase {
    let progress: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
    let subscribers: Vec<_> = progress
        .iter()
        .map(|progress| runtime.spawn(take(consumer.subscribe(), count, progress.clone())))
        .collect();
    let mut planned = emitter.plan(count).into_iter();
    let started = Instant::now();
    match rate {
        None => planned.for_each(|event| emitter.emit(event)),
        Some(rate) => {
            // Batches each millisecond; the pacing sleeps are the load's
            // shape, not synchronization.
            let per_ms = (rate / 1000).max(1) as usize;
            let mut emitted = 0;
            let mut tick = started;
            while emitted < count {
                for event in planned.by_ref().take(per_ms) {
                    emitter.emit(event);
                    emitted += 1;
                }
                tick += Duration::from_millis(1);
                if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    let emitting = started.elapsed();
    let seen: Vec<Seen> = runtime.block_on(async {
        let mut seen = Vec::new();
        for subscriber in subscribers {
            let result = tokio::time::timeout(PHASE_DEADLINE, subscriber)
                .await
                .unwrap_or_else(|_| {
                    let seen: Vec<usize> =
                        progress.iter().map(|p| p.load(Ordering::Relaxed)).collect();
                    panic!(
                        "the subscribers have {seen:?} of {count} events after {PHASE_DEADLINE:?}; {}",
                        consumer.status()
                    )
                });
            seen.push(result.expect("a subscriber task"));
        }
        seen
    });
    let last = seen.iter().map(|s| s.last).max().expect("two subscribers");
    Phase {
        wall: last - started,
        emitting,
        latencies_us: seen.iter().flat_map(|s| s.latencies_us.clone()).collect(),
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// One consumer's figures, a value per round.
#[derive(Default)]
struct Figures {
    /// Events applied per second in the bursts.
    per_second: Vec<f64>,
    /// Events the emitter made per second in the bursts.
    emitter_per_second: Vec<f64>,
    /// Per paced rate: the latencies' p50, p99 and maximum (µs), and the
    /// rate reached.
    paced: Vec<Latencies>,
}

#[derive(Default, Clone)]
struct Latencies {
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    max_us: Vec<f64>,
    rate: Vec<f64>,
}

fn main() {
    let n: usize = env_or("WW_EVENTS_N", 50_000);
    let m: usize = env_or("WW_EVENTS_M", 80_000);
    let rates: Vec<u64> = env_or("WW_EVENTS_RATES", "20000,100000,200000".to_owned())
        .split(',')
        .map(|rate| rate.trim().parse().expect("WW_EVENTS_RATES: numbers"))
        .collect();
    let rounds: usize = env_or("WW_EVENTS_ROUNDS", 5);
    // Half a second's worth per paced phase, within a phase's limit.
    let paced = |rate: u64| ((rate / 2) as usize).clamp(1000, m);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cancel = CancellationToken::new();

    let mut watched = Emitter::new(n);
    let watcher = Watcher::builder(watched.engine.clone())
        .retry(RetryPolicy::none())
        .event_capacity(CAPACITY)
        .build();
    let watching = runtime.spawn({
        let (watcher, cancel) = (watcher.clone(), cancel.clone());
        async move { watcher.watch(cancel).await }
    });
    let synced = Instant::now();
    runtime
        .block_on(watcher.ready())
        .expect("the watcher syncs");
    println!(
        "{n} containers synced from the scripted engine in {:.1} ms",
        synced.elapsed().as_secs_f64() * 1e3
    );
    let watcher_consumer = WatcherConsumer(watcher.clone());

    let mut floored = Emitter::new(n);
    let floor = Floor::start(&runtime, floored.engine.clone(), cancel.clone());

    let mut figures: [Figures; 2] = Default::default();
    for f in &mut figures {
        f.paced = vec![Latencies::default(); rates.len()];
    }
    for round in 0..rounds {
        // Who goes first alternates, so slow phases of the machine hit both.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let (consumer, emitter): (&dyn Consumer, &mut Emitter) = match which {
                0 => (&watcher_consumer, &mut watched),
                _ => (&floor, &mut floored),
            };
            let burst = phase(&runtime, consumer, emitter, m, None);
            let f = &mut figures[which];
            f.per_second.push(m as f64 / burst.wall.as_secs_f64());
            f.emitter_per_second
                .push(m as f64 / burst.emitting.as_secs_f64());
            for (at, &rate) in rates.iter().enumerate() {
                let count = paced(rate);
                let steady = phase(&runtime, consumer, emitter, count, Some(rate));
                let l = &mut f.paced[at];
                l.p50_us.push(percentile(&steady.latencies_us, 50.0));
                l.p99_us.push(percentile(&steady.latencies_us, 99.0));
                l.max_us.push(percentile(&steady.latencies_us, 100.0));
                l.rate.push(count as f64 / steady.emitting.as_secs_f64());
            }
        }
    }
    assert_eq!(
        watcher.portfolio().len(),
        n,
        "the mix keeps the count of containers"
    );
    cancel.cancel();
    let _ = runtime.block_on(watching);

    let ratio = |w: &[f64], f: &[f64]| -> f64 {
        let per_round: Vec<f64> = w.iter().zip(f).map(|(w, f)| w / f).collect();
        median(&per_round)
    };
    let [w, f] = &figures;
    println!(
        "events, {n} containers, two subscribers, one runtime worker; medians of {rounds} rounds\n"
    );
    println!("| burst of {m} | applied/s | emitter max/s |");
    println!("|---|---|---|");
    for (name, x) in [("watcher", w), ("floor", f)] {
        println!(
            "| {name} | {:.0} | {:.0} |",
            median(&x.per_second),
            median(&x.emitter_per_second)
        );
    }
    println!(
        "| watcher / floor | {:.2}x | |\n",
        ratio(&w.per_second, &f.per_second)
    );
    println!("| paced at | reached/s | watcher p50 µs | p99 µs | max µs | floor p50 µs | p99 µs | max µs | p99 watcher / floor |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (at, rate) in rates.iter().enumerate() {
        let (lw, lf) = (&w.paced[at], &f.paced[at]);
        println!(
            "| {rate}/s | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x |",
            median(&lw.rate),
            median(&lw.p50_us),
            median(&lw.p99_us),
            median(&lw.max_us),
            median(&lf.p50_us),
            median(&lf.p99_us),
            median(&lf.max_us),
            ratio(&lw.p99_us, &lf.p99_us),
        );
    }
}
