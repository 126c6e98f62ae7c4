//! A seeded, randomized explorer of the fleet.
//!
//! Each seed plays random steps against a fleet of scripted engines:
//! members join (a watch the fleet starts, one handed to it, or one it
//! follows), leave (removed, their followed watch stopped, their watch
//! panicking), lag behind their watcher (a watcher event capacity of a few
//! revisions), and their engines burst, churn, pause, go down and come
//! back; parents are set, also to what they were. After every step it
//! checks the fleet's promise on several subscribers, revision by
//! revision: revisions contiguous from each snapshot's `r + 1`; each
//! subscriber's model after each revision the same as every other
//! witness of that revision (other subscribers, snapshots); each model the
//! fleet's snapshot; and each engine's containers in the fleet exactly its
//! watcher's portfolio at the revision the fleet shows. At the end the
//! fleet is closed: every stream ends with nothing more, and it takes no
//! member.
//!
//! CI runs `DEFAULT_SEEDS` seeds (a few seconds). `WW_FLEET_EXPLORE_SEEDS=N`
//! runs N seeds, `WW_FLEET_EXPLORE_SEED=S` just seed S (to reproduce a
//! failure), `WW_FLEET_EXPLORE_STEPS` sets the steps per seed.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use futures::{FutureExt, StreamExt};
use whalewatcher_core::testing::{FleetReplayed, History, Replayed, ScriptedEngine};
use whalewatcher_core::{
    CancellationToken, Container, EventStream, Fleet, FleetEvents, FleetMember, MemberId,
    ParentContainer, RetryPolicy, WatchError, Watcher,
};

const DEFAULT_SEEDS: u64 = 150;
const DEFAULT_STEPS: usize = 200;
const ENGINES: usize = 4;
const IDS: [&str; 4] = ["a", "b", "c", "d"];

#[test]
fn random_members_keep_the_fleets_promise() {
    quiet_scripted_panics();
    let mut totals = Totals::default();
    let (seeds, steps, elapsed) = common::run_seeds(
        "WW_FLEET_EXPLORE",
        DEFAULT_SEEDS,
        DEFAULT_STEPS,
        explore,
        |run| totals.add(&run),
    );
    eprintln!("explored {seeds} fleet seeds × {steps} steps in {elapsed:.2?}: {totals:?}");
    // The steps did reach what they are meant to reach.
    if seeds >= DEFAULT_SEEDS {
        assert!(
            totals.joins > 0 && totals.removals > 0 && totals.followed_ends > 0,
            "{totals:?}"
        );
        assert!(
            totals.panics > 0 && totals.lagged_members > 0 && totals.unchanged_parents > 0,
            "{totals:?}"
        );
        assert!(totals.bursts > 0 && totals.outages > 0, "{totals:?}");
    }
}

/// The scripted engine's panics are meant: they are not reported (with a
/// backtrace each); every other panic is, as before.
fn quiet_scripted_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        let scripted = message.is_some_and(|message| message.contains("panics, as told"));
        if !scripted {
            report(info);
        }
    }));
}

/// What one or all seeds did, to show the explorer reached its cases.
#[derive(Debug, Default)]
struct Totals {
    steps: usize,
    events: usize,
    joins: usize,
    removals: usize,
    followed_ends: usize,
    panics: usize,
    /// Lags of the explorer's own subscription to a member's watcher, of
    /// the member's capacity: where the member's may lag too.
    lagged_members: usize,
    unchanged_parents: usize,
    bursts: usize,
    floods: usize,
    outages: usize,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.steps += other.steps;
        self.events += other.events;
        self.joins += other.joins;
        self.removals += other.removals;
        self.followed_ends += other.followed_ends;
        self.panics += other.panics;
        self.lagged_members += other.lagged_members;
        self.unchanged_parents += other.unchanged_parents;
        self.bursts += other.bursts;
        self.floods += other.floods;
        self.outages += other.outages;
    }
}

/// One engine of the explorer, its watcher, and what the explorer saw of
/// the watcher's revisions through a subscription of its own.
struct Slot {
    engine: ScriptedEngine,
    watcher: Watcher,
    /// The watcher's portfolio at each revision it saw.
    history: History,
    replayed: Replayed,
    stream: EventStream,
    member: Option<MemberId>,
    /// A watch run here, in the explorer's own task, that the member
    /// follows: while the explorer drives it, the member's task cannot
    /// run, so a small capacity makes the member lag.
    followed: Option<LocalWatch>,
    /// Its engine panics: it never joins again.
    broken: bool,
    down: bool,
    next_pid: u32,
}

impl Slot {
    fn new(rng: &mut Rng) -> Self {
        let engine = ScriptedEngine::new();
        // A few revisions of room: the member's own subscription lags.
        let capacity = if rng.chance(30) { 1 } else { 1 << 12 };
        let watcher = Watcher::builder(engine.clone())
            .retry(RetryPolicy::from_delays(|| {
                std::iter::repeat(Duration::from_millis(100))
            }))
            .event_capacity(capacity)
            .build();
        let (snapshot, stream) = watcher.subscribe();
        let mut history = History::default();
        history.witness(&snapshot, "the watcher's first snapshot");
        Slot {
            engine,
            watcher,
            history,
            replayed: Replayed::new(&snapshot),
            stream,
            member: None,
            followed: None,
            broken: false,
            down: false,
            next_pid: 100,
        }
    }

    /// Takes in the watcher's revisions; after a lag, a fresh snapshot.
    /// Returns whether it lagged (with the same capacity, the member's
    /// own subscription does too).
    fn take_in(&mut self, what: &str) -> bool {
        let mut lagged = false;
        let mut fresh = Vec::new();
        loop {
            match self.stream.next().now_or_never() {
                Some(Some(Ok(event))) => fresh.push(event),
                Some(Some(Err(_lagged))) => {
                    lagged = true;
                    self.replayed
                        .apply(&fresh, |after| self.history.witness(after, what));
                    fresh.clear();
                    let (snapshot, stream) = self.watcher.subscribe();
                    self.history.witness(&snapshot, what);
                    self.replayed = Replayed::new(&snapshot);
                    self.stream = stream;
                }
                _ => break,
            }
        }
        let history = &mut self.history;
        self.replayed
            .apply(&fresh, |after| history.witness(after, what));
        lagged
    }

    fn container(&mut self, id: &str) -> Container {
        self.next_pid += 1;
        Container::new(id, format!("name-{id}"), self.next_pid)
    }
}

/// A watch polled by the explorer itself.
struct LocalWatch {
    cancel: CancellationToken,
    watch: Pin<Box<dyn Future<Output = Result<(), WatchError>>>>,
    ended: Option<Result<(), WatchError>>,
}

impl LocalWatch {
    fn start(watcher: &Watcher) -> Self {
        let cancel = CancellationToken::new();
        LocalWatch {
            // Unconstrained: tokio's budget would have it yield after a
            // revision or two, and the member's task would catch up.
            watch: Box::pin(tokio::task::unconstrained(watcher.watch(cancel.clone()))),
            cancel,
            ended: None,
        }
    }

    /// Polls the watch until it waits (or ends), at most `polls` times,
    /// without giving any other task a turn.
    fn drive(&mut self, polls: usize) {
        for _ in 0..polls {
            if self.ended.is_some() {
                return;
            }
            match self.watch.as_mut().now_or_never() {
                Some(ended) => self.ended = Some(ended),
                None => continue,
            }
        }
    }

    /// Waits until the watch ends by itself.
    async fn ended(mut self) -> Result<(), WatchError> {
        match self.ended.take() {
            Some(ended) => ended,
            None => self.watch.await,
        }
    }

    async fn stop(self) -> Result<(), WatchError> {
        self.cancel.cancel();
        self.ended().await
    }
}

/// A fleet subscriber and its model.
struct Subscriber {
    model: FleetReplayed,
    events: FleetEvents,
    seen: usize,
}

impl Subscriber {
    fn new(fleet: &Fleet, witnessed: &mut FleetHistory, what: &str) -> Self {
        let (snapshot, events) = fleet.subscribe();
        let model = FleetReplayed::new(&snapshot);
        witnessed.witness(&model, what);
        Subscriber {
            model,
            events,
            seen: 0,
        }
    }

    fn take_in(&mut self, witnessed: &mut FleetHistory, what: &str) {
        let mut fresh = Vec::new();
        while let Some(item) = self.events.next().now_or_never() {
            let event = item
                .expect("open until closed")
                .unwrap_or_else(|lagged| panic!("{what}: {lagged}"));
            fresh.push(event);
        }
        self.seen += fresh.len();
        self.model
            .apply(&fresh, |after| witnessed.witness(after, what));
    }
}

/// The fleet model at each revision, as first witnessed.
#[derive(Default)]
struct FleetHistory(BTreeMap<u64, FleetReplayed>);

impl FleetHistory {
    fn witness(&mut self, model: &FleetReplayed, what: &str) {
        match self.0.get(&model.revision()) {
            Some(known) => assert!(
                known == model,
                "{what}: fleet revision {} seen with two contents:\n{known:?}\n{model:?}",
                model.revision()
            ),
            None => {
                self.0.insert(model.revision(), model.clone());
            }
        }
    }
}

async fn explore(seed: u64, steps: usize) -> Totals {
    let mut rng = Rng::new(seed);
    let mut totals = Totals::default();
    let mut slots: Vec<Slot> = (0..ENGINES).map(|_| Slot::new(&mut rng)).collect();
    for slot in &mut slots {
        for id in IDS {
            if rng.chance(50) {
                let container = slot.container(id);
                slot.engine.add([container]);
            }
        }
    }
    let fleet = Fleet::with_event_capacity(1 << 16);
    let mut witnessed = FleetHistory::default();
    let mut subscribers = vec![Subscriber::new(
        &fleet,
        &mut witnessed,
        "the first subscriber",
    )];

    for step in 0..steps {
        let what = format!("seed {seed} step {step}");
        let at = rng.below(ENGINES as u64) as usize;
        let action = rng.below(100);
        if std::env::var_os("WW_FLEET_EXPLORE_TRACE").is_some() {
            eprintln!("{what}: action {action} on engine {at}");
        }
        match action {
            // Members join, each way a member can.
            0..=9 => {
                let slot = &mut slots[at];
                if slot.member.is_none() && !slot.broken {
                    totals.joins += 1;
                    let member = match rng.below(3) {
                        0 => FleetMember::new(slot.watcher.clone()),
                        1 => FleetMember::new(slot.watcher.clone()).watching(slot.watcher.spawn()),
                        _ => {
                            let mut watch = LocalWatch::start(&slot.watcher);
                            watch.drive(1);
                            slot.followed = Some(watch);
                            FleetMember::following(slot.watcher.clone())
                        }
                    };
                    slot.member = Some(fleet.add(member).expect("an open fleet"));
                }
            }
            // ... and leave: removed, their followed watch stopped, their
            // engine's client panicking.
            10..=13 => {
                if let Some(member) = slots[at].member.take() {
                    totals.removals += 1;
                    assert!(fleet.remove(member).await, "{what}: a member to remove");
                    if let Some(followed) = slots[at].followed.take() {
                        followed.stop().await.expect("the followed watch stops");
                    }
                }
            }
            14..=15 => {
                if let Some(followed) = slots[at].followed.take() {
                    totals.followed_ends += 1;
                    followed.stop().await.expect("the followed watch stops");
                    slots[at].member = None;
                }
            }
            16 if slots[at].member.is_some() => {
                totals.panics += 1;
                let slot = &mut slots[at];
                slot.broken = true;
                slot.member = None;
                // Up, so that its watch gets to list, and panics.
                slot.engine.come_up();
                slot.down = false;
                slot.engine.panic_lists(true);
                slot.engine.end_streams();
                if let Some(followed) = slot.followed.take() {
                    let ended = followed.ended().await;
                    assert!(
                        matches!(ended, Err(WatchError::Panicked { .. })),
                        "{what}: {ended:?}"
                    );
                }
            }
            // The engines' containers.
            17..=49 => {
                let slot = &mut slots[at];
                let id = IDS[rng.below(IDS.len() as u64) as usize];
                match slot.engine.truth().container(id).cloned() {
                    None => {
                        let container = slot.container(id);
                        slot.engine.start(container);
                    }
                    Some(c) if rng.chance(30) => {
                        if c.is_paused() {
                            slot.engine.unpause(id)
                        } else {
                            slot.engine.pause(id)
                        }
                    }
                    Some(_) => slot.engine.die(id),
                }
            }
            50..=54 => {
                totals.bursts += 1;
                let slot = &mut slots[at];
                // Started one by one, each inspected and published before
                // the next: more revisions than a small capacity holds.
                let one_by_one = rng.chance(50);
                for n in 0..(5 + rng.below(20)) {
                    let id = format!("burst-{step}-{n}");
                    let container = slot.container(&id);
                    slot.engine.start(container);
                    if one_by_one {
                        tokio::task::yield_now().await;
                    }
                }
            }
            55..=56 => {
                // A flood: more events than one revision takes (256), so
                // the watcher publishes several revisions at once, more
                // than a member with a small capacity holds.
                let slot = &mut slots[at];
                if let Some(c) = slot.engine.truth().containers().next().cloned() {
                    totals.floods += 1;
                    let mut paused = c.is_paused();
                    for _ in 0..(260 + rng.below(300)) {
                        if paused {
                            slot.engine.unpause(c.id());
                        } else {
                            slot.engine.pause(c.id());
                        }
                        paused = !paused;
                    }
                }
            }
            57..=59 => {
                let slot = &mut slots[at];
                for id in slot
                    .engine
                    .truth()
                    .containers()
                    .map(|c| c.id().to_owned())
                    .collect::<Vec<_>>()
                {
                    if id.starts_with("burst-") && rng.chance(70) {
                        slot.engine.die(&id);
                    }
                }
            }
            // The engines' availability.
            60..=64 => {
                let slot = &mut slots[at];
                if slot.down {
                    slot.engine.come_up();
                } else {
                    totals.outages += 1;
                    slot.engine.go_down();
                }
                slot.down = !slot.down;
            }
            65..=66 => slots[at].engine.end_streams(),
            // Parents: set, cleared, and set to what they are.
            67..=74 => {
                let members: Vec<MemberId> = slots.iter().filter_map(|s| s.member).collect();
                if let (Some(&child), Some(&host)) = (slots[at].member.as_ref(), members.first()) {
                    let current = fleet
                        .snapshot()
                        .engine(child)
                        .and_then(|e| e.parent().cloned());
                    let parent = match rng.below(3) {
                        0 => None,
                        1 if current.is_some() => {
                            totals.unchanged_parents += 1;
                            current
                        }
                        _ => Some(ParentContainer {
                            engine: host,
                            id: Arc::from(format!("node-{}", rng.below(2))),
                            name: Arc::from("node"),
                        }),
                    };
                    fleet.set_parent(child, parent);
                }
            }
            75..=77 if subscribers.len() < 4 => {
                subscribers.push(Subscriber::new(&fleet, &mut witnessed, &what));
            }
            _ => tokio::time::sleep(Duration::from_millis(rng.below(500))).await,
        }
        settle(&mut slots).await;
        check(
            &fleet,
            &mut slots,
            &mut subscribers,
            &mut witnessed,
            &mut totals,
            &what,
        );
        totals.steps += 1;
    }

    // Closed: every member leaves, every stream ends, nothing follows.
    for slot in &mut slots {
        if let Some(followed) = slot.followed.take() {
            let _ = followed.stop().await;
        }
    }
    tokio::time::timeout(Duration::from_secs(60), fleet.close())
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: the fleet did not close"));
    let last = fleet.snapshot();
    assert_eq!(last.engines().len(), 0, "seed {seed}: closed with members");
    for subscriber in &mut subscribers {
        let mut rest = Vec::new();
        while let Some(item) = subscriber.events.next().await {
            rest.push(item.expect("no lag"));
        }
        subscriber.model.apply(&rest, |_| {});
        subscriber
            .model
            .assert_is(&last, &format!("seed {seed}: closed"));
        totals.events += subscriber.seen + rest.len();
    }
    assert!(
        fleet
            .add(FleetMember::new(slots[0].watcher.clone()))
            .is_err(),
        "seed {seed}: a closed fleet takes no member"
    );
    totals
}

/// Lets every task take in what happened, and drives the watches run
/// here.
async fn settle(slots: &mut [Slot]) {
    for _ in 0..8 {
        for slot in slots.iter_mut() {
            if let Some(watch) = &mut slot.followed {
                watch.drive(64);
            }
        }
        tokio::task::yield_now().await;
    }
}

fn check(
    fleet: &Fleet,
    slots: &mut [Slot],
    subscribers: &mut [Subscriber],
    witnessed: &mut FleetHistory,
    totals: &mut Totals,
    what: &str,
) {
    for slot in slots.iter_mut() {
        if slot.take_in(what) && slot.member.is_some() {
            totals.lagged_members += 1;
        }
    }
    let snapshot = fleet.snapshot();
    for subscriber in subscribers.iter_mut() {
        subscriber.take_in(witnessed, what);
        subscriber.model.assert_is(&snapshot, what);
    }
    witnessed.witness(&FleetReplayed::new(&snapshot), what);
    // Each engine in the fleet is exactly its watcher at some revision.
    for engine in snapshot.engines() {
        let slot = slots
            .iter()
            .find(|s| std::ptr::addr_eq(s.watcher.engine(), engine.watcher().engine()))
            .expect("a slot of the member");
        let revision = engine.portfolio().revision();
        if let Some(known) = slot.history.at(revision) {
            assert!(
                known == &**engine.portfolio(),
                "{what}: {} shows watcher revision {revision} other than the watcher had it",
                engine.member()
            );
        }
    }
}
