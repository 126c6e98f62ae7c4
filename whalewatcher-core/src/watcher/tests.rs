//! The synchronization state machine driven through its races by the
//! scripted engine. Each test asserts the final portfolio and the exact
//! events a subscriber saw; a "fence" container started last proves that
//! nothing else was on its way.
//!
//! Time is paused (tokio's test clock): delays inside the double advance
//! virtual time, so the races are deterministic and the tests fast.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::testing::{replay, ScriptedEngine, DEADLINE, SCRIPTED_API};
use crate::{Container, EngineEvent, Event, EventKind, EventSource, EventStream, Exit, Lagged};

fn container(id: &str) -> Container {
    Container::new(id, format!("name-{id}"), 100)
}

/// A watcher of the engine, running in a task, with a subscriber that
/// joined before the first sync.
struct Harness {
    engine: ScriptedEngine,
    watcher: Watcher,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), WatchError>>,
    log: EventLog,
}

impl Harness {
    fn start(engine: &ScriptedEngine) -> Self {
        Self::start_with(engine, |builder| builder.retry(fixed_retries(1000)))
    }

    fn start_with(
        engine: &ScriptedEngine,
        configure: impl FnOnce(WatcherBuilder) -> WatcherBuilder,
    ) -> Self {
        let watcher = configure(Watcher::builder(engine.clone())).build();
        let log = EventLog::subscribe(&watcher);
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let (watcher, cancel) = (watcher.clone(), cancel.clone());
            async move { watcher.watch(cancel).await }
        });
        Harness {
            engine: engine.clone(),
            watcher,
            cancel,
            task,
            log,
        }
    }

    /// Starts a fence container and waits until the subscriber saw it;
    /// everything before it has been delivered by then.
    async fn fence(&mut self) {
        self.engine.start(container("fence"));
        self.log.wait_for_started("fence").await;
    }

    /// Holds the engine's inspects from now on, starts container `id` and
    /// returns its inspect call, waiting for the test's answer.
    async fn start_held(&self, id: &str) -> crate::testing::InspectCall {
        self.engine.hold_inspects();
        self.engine.start(container(id));
        self.engine.next_inspect().await
    }

    async fn stop(self) -> Result<(), WatchError> {
        self.cancel.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("watch did not stop within the deadline")
            .expect("watch task panicked")
    }
}

/// A subscription and everything it delivered.
struct EventLog {
    snapshot: Arc<Portfolio>,
    stream: EventStream,
    items: Vec<Result<Event, Lagged>>,
}

impl EventLog {
    fn subscribe(watcher: &Watcher) -> Self {
        let (snapshot, stream) = watcher.subscribe();
        EventLog {
            snapshot,
            stream,
            items: Vec::new(),
        }
    }

    async fn wait_until(&mut self, what: &str, done: impl Fn(&[Result<Event, Lagged>]) -> bool) {
        let waited = tokio::time::timeout(DEADLINE, async {
            while !done(&self.items) {
                let item = self.stream.next().await.expect("event stream ended");
                self.items.push(item);
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "timed out waiting for {what}; got {:?}",
            self.summary()
        );
    }

    async fn wait_for_started(&mut self, id: &str) {
        self.wait_until(&format!("start of {id}"), |items| {
            items.iter().any(|item| {
                matches!(item, Ok(e) if e.kind == EventKind::Started && e.container.id() == id)
            })
        })
        .await;
    }

    fn events(&self) -> Vec<Event> {
        self.items
            .iter()
            .filter_map(|i| i.as_ref().ok().cloned())
            .collect()
    }

    /// (kind, id, paused) of each event, to compare exactly.
    fn summary(&self) -> Vec<(EventKind, String, bool)> {
        self.events()
            .iter()
            .map(|e| (e.kind, e.container.id().to_owned(), e.container.is_paused()))
            .collect()
    }
}

fn ev(kind: EventKind, id: &str, paused: bool) -> (EventKind, String, bool) {
    (kind, id.to_owned(), paused)
}

fn fixed_retries(count: usize) -> RetryPolicy {
    RetryPolicy::from_delays(move || std::iter::repeat_n(Duration::from_secs(1), count))
}

/// Waits until `condition` holds, checking after every step of the
/// (paused) clock; fails the test with `what` after the deadline.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn ids(portfolio: &Portfolio) -> Vec<String> {
    let mut ids: Vec<String> = portfolio.containers().map(|c| c.id().to_owned()).collect();
    ids.sort();
    ids
}

// ---- subscribe, then list ----

/// A list that leaves a part out is published with what it has; the
/// status says the part and why until a list is whole again.
#[tokio::test(start_paused = true)]
async fn what_a_list_left_out_is_in_the_status_until_a_list_is_whole() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let omission = crate::Omission {
        part: "namespace \"bad\"".into(),
        reason: "permission denied".into(),
    };
    engine.omit(vec![omission.clone()]);
    let h = Harness::start(&engine);
    h.watcher.ready().await.expect("synced");
    assert_eq!(ids(&h.watcher.portfolio()), ["a"]);
    assert_eq!(h.watcher.status().omitted, [omission]);
    engine.omit(Vec::new());
    engine.end_streams();
    eventually("a whole list clears the omission", || {
        let status = h.watcher.status();
        status.is_synced() && status.attempts == 2 && status.omitted.is_empty()
    })
    .await;
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn container_that_dies_while_the_list_is_in_flight_never_appears() {
    let engine = ScriptedEngine::new();
    engine.add([container("a"), container("b")]);
    engine.hold_lists();
    let mut h = Harness::start(&engine);

    let list = engine.next_list().await; // taken now: a and b alive
    engine.die("b");
    list.reply_as_called();
    h.watcher.ready().await.expect("synced");
    h.fence().await;

    assert_eq!(ids(&h.watcher.portfolio()), ["a", "fence"]);
    assert_eq!(
        h.log.summary(),
        [
            ev(EventKind::Started, "a", false),
            ev(EventKind::Started, "fence", false)
        ]
    );
    assert_eq!(h.log.events()[0].source, EventSource::Sync);
    assert_eq!(h.log.events()[1].source, EventSource::Engine);
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pause_during_the_list_is_replayed_after_it() {
    let engine = ScriptedEngine::new();
    engine.add([container("a"), container("b")]);
    engine.hold_lists();
    let mut h = Harness::start(&engine);

    let list = engine.next_list().await; // a still running in this list
    engine.pause("a");
    list.reply_as_called();
    h.watcher.ready().await.unwrap();
    h.fence().await;

    let portfolio = h.watcher.portfolio();
    assert!(portfolio.container("a").unwrap().is_paused());
    assert!(!portfolio.container("b").unwrap().is_paused());
    assert_eq!(
        h.log.summary(),
        [
            ev(EventKind::Started, "a", true),
            ev(EventKind::Started, "b", false),
            ev(EventKind::Started, "fence", false)
        ]
    );
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pause_die_and_restart_during_the_list_leave_it_present_and_not_paused() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    engine.hold_lists();
    let mut h = Harness::start(&engine);

    let list = engine.next_list().await; // the old incarnation, running
    engine.pause("a");
    engine.die("a");
    engine.start(container("a").with_pid(200));
    list.reply_as_called();
    h.watcher.ready().await.unwrap();
    h.fence().await;

    let a = h
        .watcher
        .portfolio()
        .container("a")
        .cloned()
        .expect("a present");
    assert!(!a.is_paused());
    assert_eq!(a.pid(), 200, "the new incarnation");
    assert_eq!(
        h.log.summary(),
        [
            ev(EventKind::Started, "a", false),
            ev(EventKind::Started, "fence", false)
        ]
    );
    assert_eq!(h.log.events()[0].container.pid(), 200);
    h.stop().await.unwrap();
}

// ---- starts and their inspects ----

#[tokio::test(start_paused = true)]
async fn die_while_its_start_is_being_inspected_wins() {
    let engine = ScriptedEngine::new();
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let inspect = h.start_held("x").await;
    assert_eq!(inspect.id(), "x");
    engine.die("x");
    // The engine answers with what it saw before the die.
    inspect.reply(Ok(container("x")));

    engine.start(container("fence"));
    engine.next_inspect().await.reply_now();
    h.log.wait_for_started("fence").await;

    assert_eq!(ids(&h.watcher.portfolio()), ["fence"]);
    assert_eq!(h.log.summary(), [ev(EventKind::Started, "fence", false)]);
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn burst_of_50_starts_inspects_overlap_bounded_and_keep_per_container_order() {
    const LIMIT: usize = 8;
    let engine = ScriptedEngine::new();
    engine.set_inspect_latency(Duration::from_millis(10));
    let mut h = Harness::start_with(&engine, |b| {
        b.retry(fixed_retries(1000)).max_concurrent_inspects(LIMIT)
    });
    h.watcher.ready().await.unwrap();

    for i in 0..50 {
        let id = format!("c{i:02}");
        engine.start(container(&id));
        match i % 3 {
            0 => engine.pause(&id),
            1 => {
                engine.pause(&id);
                engine.unpause(&id);
            }
            _ => {}
        }
    }
    h.fence().await;

    let stats = engine.stats();
    assert!(
        stats.max_inspects_in_flight > 1,
        "inspects ran one at a time: {stats:?}"
    );
    assert!(
        stats.max_inspects_in_flight <= LIMIT,
        "more than {LIMIT} inspects at once: {stats:?}"
    );
    assert_eq!(stats.inspect_calls, 51, "one inspect per start");

    let portfolio = h.watcher.portfolio();
    let mut truth = engine.truth();
    assert_eq!(*portfolio, truth);
    // Per container: exactly one start, first; the events end in the
    // truth's pause state.
    for i in 0..50 {
        let id = format!("c{i:02}");
        let events: Vec<_> = h
            .log
            .summary()
            .into_iter()
            .filter(|(_, eid, _)| *eid == id)
            .collect();
        assert_eq!(events[0].0, EventKind::Started, "{id}: {events:?}");
        assert_eq!(
            events.iter().filter(|e| e.0 == EventKind::Started).count(),
            1,
            "{id}: {events:?}"
        );
        assert_eq!(
            events.last().unwrap().2,
            truth.container(&id).unwrap().is_paused(),
            "{id}: {events:?}"
        );
    }
    truth.remove("fence");
    assert_eq!(replay(&h.log.snapshot, &h.log.events()).len(), 51);
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pause_changes_during_an_inspect_are_applied_after_the_start_in_order() {
    let engine = ScriptedEngine::new();
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let inspect = h.start_held("x").await;
    engine.pause("x");
    // The inspect was answered before the pause: x still running in it.
    inspect.reply(Ok(container("x")));
    engine.start(container("fence"));
    engine.next_inspect().await.reply_now();
    h.log.wait_for_started("fence").await;

    assert!(h.watcher.portfolio().container("x").unwrap().is_paused());
    assert_eq!(
        h.log.summary(),
        [
            ev(EventKind::Started, "x", false),
            ev(EventKind::Paused, "x", true),
            ev(EventKind::Started, "fence", false)
        ]
    );
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn exit_without_project_or_labels_removes_by_id() {
    let engine = ScriptedEngine::new();
    engine.add([container("web")
        .with_project("shop")
        .with_labels([(crate::COMPOSE_PROJECT_LABEL, "shop")])]);
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();

    // Like podman's died event: no labels, no project.
    engine.die("web");
    h.fence().await;

    let portfolio = h.watcher.portfolio();
    assert!(portfolio.container("web").is_none());
    assert!(portfolio.project("shop").is_none());
    assert_eq!(
        h.log.summary(),
        [
            ev(EventKind::Started, "web", false),
            ev(EventKind::Exited, "web", false),
            ev(EventKind::Started, "fence", false)
        ]
    );
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn duplicate_or_replayed_starts_of_a_known_container_are_not_reported_again() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();

    engine.emit(EngineEvent::new(EventKind::Started, "a"));
    engine.emit(EngineEvent::new(EventKind::Exited, "never-seen"));
    h.fence().await;

    assert_eq!(
        h.log.summary(),
        [
            ev(EventKind::Started, "a", false),
            ev(EventKind::Started, "fence", false)
        ]
    );
    assert_eq!(
        engine.stats().inspect_calls,
        1,
        "only the fence was inspected"
    );
    h.stop().await.unwrap();
}

// ---- losing the engine ----

#[tokio::test(start_paused = true)]
async fn engine_lost_keeps_the_old_portfolio_until_the_relist_then_reports_the_difference() {
    let engine = ScriptedEngine::new();
    engine.add([
        container("a"),
        container("b"),
        container("c"),
        container("p"),
    ]);
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    h.log
        .wait_until("initial starts", |items| items.len() == 4)
        .await;
    let before = h.watcher.portfolio();

    engine.hold_lists();
    engine.go_down();
    // While down: b vanishes, c restarts (new PID), p gets paused, d is new.
    engine.die("b");
    engine.die("c");
    engine.add([container("c").with_pid(300), container("d")]);
    engine.pause("p");
    eventually("the watcher noticed", || !h.watcher.status().is_synced()).await;
    assert!(matches!(
        h.watcher.status().last_error,
        Some(EngineError::Unreachable { .. })
    ));
    engine.come_up();

    let list = engine.next_list().await;
    assert!(
        Arc::ptr_eq(&before, &h.watcher.portfolio()),
        "readers must keep the old portfolio while the relist is in flight"
    );
    list.reply_now();
    eventually("resynced", || h.watcher.status().is_synced()).await;
    let after = h.watcher.portfolio();
    assert_eq!(*after, engine.truth());
    h.fence().await;

    assert_eq!(
        h.log.summary()[4..],
        [
            ev(EventKind::Exited, "b", false),
            ev(EventKind::Exited, "c", false),
            ev(EventKind::Started, "c", false),
            ev(EventKind::Started, "d", false),
            ev(EventKind::Paused, "p", true),
            ev(EventKind::Started, "fence", false)
        ],
        "exited for the vanished, started for the new, nothing for unchanged a"
    );
    assert_eq!(
        h.log.events()[5].container.pid(),
        100,
        "c's exit is of the old one"
    );
    assert_eq!(
        replay(&h.log.snapshot, &h.log.events()),
        *h.watcher.portfolio()
    );
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_update_the_engine_reports_is_inspected_and_published_when_it_changed_something() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();

    // Renamed and now healthy, as `docker rename` and a health check tell.
    let renamed = Container::new("a", "renamed", 100).with_health(crate::Health::Healthy);
    engine.add([renamed.clone()]);
    engine.emit(EngineEvent::new(EventKind::Updated, "a"));
    // The same report again (replayed): nothing changed, nothing published.
    engine.emit(EngineEvent::new(EventKind::Updated, "a"));
    // Of a container not known: nothing to inspect.
    engine.emit(EngineEvent::new(EventKind::Updated, "unknown"));
    h.fence().await;
    let events = h.log.events();
    let updates: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::Updated)
        .collect();
    assert_eq!(updates.len(), 1, "{:?}", h.log.summary());
    assert_eq!(*updates[0].container, renamed);
    assert_eq!(
        *h.watcher.portfolio().container("a").unwrap().as_ref(),
        renamed
    );
    assert!(h.watcher.portfolio().container("unknown").is_none());
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn exits_unheard_during_an_outage_carry_what_the_engine_kept_of_them() {
    let engine = ScriptedEngine::new();
    engine.add([
        container("kept"),
        container("forgotten"),
        container("alive"),
    ]);
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();

    engine.go_down();
    eventually("the watcher noticed", || !h.watcher.status().is_synced()).await;
    let killed = Exit {
        code: Some(137),
        oom_killed: Some(false),
    };
    engine.exit_unheard("kept", killed);
    // Removed with its record: nothing kept.
    engine.remove("forgotten");
    engine.come_up();
    h.log
        .wait_until("both exits", |items| {
            items
                .iter()
                .filter(|item| matches!(item, Ok(e) if e.kind == EventKind::Exited))
                .count()
                == 2
        })
        .await;
    let exit_of = |id: &str| {
        let events = h.log.events();
        let exit = events
            .iter()
            .find(|e| e.kind == EventKind::Exited && e.container.id() == id)
            .unwrap_or_else(|| panic!("no exit of {id}"));
        (exit.source, exit.exit)
    };
    assert_eq!(exit_of("kept"), (EventSource::Sync, Some(killed)));
    assert_eq!(exit_of("forgotten"), (EventSource::Sync, None));
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_ended_event_stream_leads_to_a_relist() {
    let engine = ScriptedEngine::new();
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();

    engine.end_streams();
    // Missed while no stream was open: only a relist can find it.
    engine.add([container("missed")]);
    h.log.wait_for_started("missed").await;

    let stats = engine.stats();
    assert_eq!((stats.subscribe_calls, stats.list_calls), (2, 2));
    assert_eq!(stats.open_streams, 1);
    assert_eq!(h.log.events()[0].source, EventSource::Sync);
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn safety_relist_heals_what_the_engine_failed_to_report() {
    let engine = ScriptedEngine::new();
    let mut h = Harness::start_with(&engine, |b| {
        b.retry(fixed_retries(1000))
            .safety_relist(Duration::from_secs(5))
    });
    h.watcher.ready().await.unwrap();
    engine.add([container("unreported")]);

    let started = Instant::now();
    h.log.wait_for_started("unreported").await;
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(engine.stats().subscribe_calls, 1, "the stream was kept");
    h.stop().await.unwrap();
}

// ---- subscribers ----

#[tokio::test(start_paused = true)]
async fn a_snapshot_is_handed_out_again_until_a_change_and_stays_as_it_was() {
    let engine = ScriptedEngine::new();
    engine.add([container("a"), container("b")]);
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let first = h.watcher.portfolio();
    assert!(Arc::ptr_eq(&first, &h.watcher.portfolio()));
    assert!(Arc::ptr_eq(&first, &h.watcher.subscribe().0));

    engine.pause("a");
    eventually("the pause", || {
        h.watcher
            .portfolio()
            .container("a")
            .is_some_and(|a| a.is_paused())
    })
    .await;
    let after = h.watcher.portfolio();
    assert!(!Arc::ptr_eq(&first, &after));
    assert_eq!(after.revision(), first.revision() + 1);
    assert!(
        !first.container("a").unwrap().is_paused(),
        "the old one is as it was"
    );
    assert!(Arc::ptr_eq(&after, &h.watcher.subscribe().0));
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn what_is_ready_at_once_is_one_revision_in_engine_order_and_a_lone_event_its_own() {
    let engine = ScriptedEngine::new();
    engine.add((0..10).map(|i| container(&format!("c{i}"))));
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let mut log = EventLog::subscribe(&h.watcher);
    let synced = log.snapshot.revision();

    // Ten changes ready before the watcher runs again: pause, unpause and
    // pause again, exits, and starts whose inspects answer at once.
    for i in 0..3 {
        engine.pause(&format!("c{i}"));
    }
    engine.unpause("c0");
    engine.pause("c0");
    engine.die("c8");
    engine.die("c9");
    engine.start(container("n1"));
    engine.start(container("n2"));
    log.wait_until("all nine changes", |items| items.len() == 9)
        .await;
    assert_eq!(
        log.summary(),
        [
            ev(EventKind::Paused, "c0", true),
            ev(EventKind::Paused, "c1", true),
            ev(EventKind::Paused, "c2", true),
            ev(EventKind::Unpaused, "c0", false),
            ev(EventKind::Paused, "c0", true),
            ev(EventKind::Exited, "c8", false),
            ev(EventKind::Exited, "c9", false),
            ev(EventKind::Started, "n1", false),
            ev(EventKind::Started, "n2", false),
        ]
    );
    let revisions: Vec<u64> = log.events().iter().map(|e| e.revision).collect();
    assert_eq!(
        revisions,
        [synced + 1; 9],
        "one revision for what was ready"
    );
    assert_eq!(h.watcher.portfolio().revision(), synced + 1);

    // One event on its own is a revision of its own.
    engine.unpause("c1");
    log.wait_until("the unpause", |items| items.len() == 10)
        .await;
    assert_eq!(log.events()[9].revision, synced + 2);
    let replayed = replay(&log.snapshot, &log.events());
    assert_eq!(replayed, *h.watcher.portfolio());
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn slow_subscriber_is_told_it_lagged_while_the_portfolio_stays_current() {
    let engine = ScriptedEngine::new();
    let h = Harness::start_with(&engine, |b| b.retry(fixed_retries(1000)).event_capacity(16));
    h.watcher.ready().await.unwrap();
    let (snapshot, mut slow) = h.watcher.subscribe();

    // One at a time, so each start is a revision of its own (what is
    // ready at once would be one).
    for i in 0..100 {
        engine.start(container(&format!("c{i:03}")));
        eventually("the start in the portfolio", || {
            h.watcher.portfolio().len() == i + 1
        })
        .await;
    }
    assert_eq!(h.watcher.portfolio().revision(), snapshot.revision() + 100);

    let first = slow.next().await.expect("stream open");
    assert!(
        matches!(first, Err(Lagged { missed: 84 })),
        "expected a lag signal for the 84 revisions beyond the 16 buffered, got {first:?}"
    );
    // It goes on with the newest buffered events and can start over.
    assert!(matches!(slow.next().await, Some(Ok(_))));
    let (snapshot, _) = h.watcher.subscribe();
    assert_eq!(snapshot.len(), 100);
    h.stop().await.unwrap();
}

/// Random container operations on the engine, `rounds` of them; returns
/// the generator's final seed so callers can go on.
fn churn(engine: &ScriptedEngine, seed: &mut u64, rounds: usize) {
    for _ in 0..rounds {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        let id = format!("c{}", next() % 64);
        match (engine.truth().container(&id).is_some(), next() % 4) {
            (false, _) => engine.start(container(&id)),
            (true, 0) => engine.pause(&id),
            (true, 1) => engine.unpause(&id),
            (true, _) => engine.die(&id),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_subscribe_while_events_flow_neither_miss_nor_double_count() {
    let engine = ScriptedEngine::new();
    let watcher = Watcher::new(engine.clone(), fixed_retries(10));
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (watcher, cancel) = (watcher.clone(), cancel.clone());
        async move { watcher.watch(cancel).await }
    });
    watcher.ready().await.unwrap();

    // The engine churns on one worker...
    let churning = CancellationToken::new();
    let churner = tokio::spawn({
        let (engine, churning) = (engine.clone(), churning.clone());
        async move {
            let mut seed = 0x5eed;
            while !churning.is_cancelled() {
                churn(&engine, &mut seed, 10);
                tokio::task::yield_now().await;
            }
        }
    });
    // ...while subscribers join on the other: the first event after each
    // snapshot must be exactly the next revision.
    let mut long_lived = Vec::new();
    for round in 0..500 {
        let (snapshot, mut stream) = watcher.subscribe();
        if round % 50 == 0 {
            let mut log = EventLog {
                snapshot,
                stream,
                items: Vec::new(),
            };
            long_lived.push(tokio::spawn(async move {
                log.wait_for_started("fence").await;
                log
            }));
            continue;
        }
        let first = tokio::time::timeout(DEADLINE, stream.next()).await;
        let first = first
            .expect("events flow")
            .expect("stream open")
            .expect("no lag");
        assert_eq!(
            first.revision,
            snapshot.revision() + 1,
            "subscription {round}: snapshot and stream do not fit together"
        );
    }
    churning.cancel();
    churner.await.unwrap();
    engine.start(container("fence"));

    let truth = engine.truth();
    for subscriber in long_lived {
        let log = subscriber.await.unwrap();
        assert!(log.items.iter().all(Result::is_ok), "no subscriber lagged");
        let events = log.events();
        assert_eq!(events[0].revision, log.snapshot.revision() + 1);
        assert!(events
            .windows(2)
            .all(|w| w[1].revision - w[0].revision <= 1));
        let replayed = replay(&log.snapshot, &events);
        assert_eq!(replayed, truth, "snapshot + events must give the truth");
    }
    assert_eq!(*watcher.portfolio(), truth);
    cancel.cancel();
    task.await.unwrap().unwrap();
}

// ---- failures and the retry policy ----

#[tokio::test(start_paused = true)]
async fn failed_list_still_resolves_ready_reports_the_error_and_retries_per_policy() {
    let engine = ScriptedEngine::new();
    engine.hold_lists();
    let policy = RetryPolicy::from_delays(|| [Duration::from_secs(1), Duration::from_secs(2)]);
    let h = Harness::start_with(&engine, |b| b.retry(policy));

    let protocol = || EngineError::Protocol {
        endpoint: "scripted".into(),
        message: "garbage".into(),
    };
    engine.next_list().await.fail(protocol());
    let ready = h.watcher.ready().await;
    assert!(
        matches!(ready, Err(EngineError::Protocol { .. })),
        "{ready:?}"
    );
    assert_eq!(h.watcher.status().attempts, 1);

    let failed_at = Instant::now();
    engine.next_list().await.fail(protocol());
    assert_eq!(failed_at.elapsed(), Duration::from_secs(1));
    let failed_at = Instant::now();
    engine.next_list().await.fail(protocol());
    assert_eq!(failed_at.elapsed(), Duration::from_secs(2));

    let ended = tokio::time::timeout(DEADLINE, h.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            ended,
            Err(WatchError::GaveUp {
                attempts: 3,
                last: EngineError::Protocol { .. }
            })
        ),
        "{ended:?}"
    );
    assert_eq!(engine.stats().list_calls, 3);
    assert_eq!(engine.stats().open_streams, 0);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_makes_the_watcher_ready() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    engine.go_down();
    let h = Harness::start(&engine);
    assert!(matches!(
        h.watcher.ready().await,
        Err(EngineError::Unreachable { .. })
    ));
    engine.come_up();
    eventually("synced after retrying", || h.watcher.status().is_synced()).await;
    h.watcher.ready().await.unwrap();
    assert_eq!(ids(&h.watcher.portfolio()), ["a"]);
    assert_eq!(h.watcher.id(), "scripted-engine");
    assert_eq!(h.watcher.version(), "1.0");
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn no_retry_policy_gives_up_after_the_first_failure() {
    let engine = ScriptedEngine::new();
    engine.go_down();
    let watcher = Watcher::new(engine.clone(), RetryPolicy::none());
    let ended = watcher.watch(CancellationToken::new()).await;
    assert!(
        matches!(ended, Err(WatchError::GaveUp { attempts: 1, .. })),
        "{ended:?}"
    );
    assert!(watcher.ready().await.is_err());
    assert_eq!(engine.stats().subscribe_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn an_unsupported_engine_is_reported_once_not_retried() {
    let engine = ScriptedEngine::new();
    engine.fail_subscriptions(Some(EngineError::Unsupported {
        endpoint: "scripted".into(),
        what: "container events".into(),
    }));
    let watcher = Watcher::new(engine.clone(), RetryPolicy::default());
    let ended = watcher.watch(CancellationToken::new()).await;
    assert!(
        matches!(ended, Err(WatchError::Unsupported(_))),
        "{ended:?}"
    );
    assert!(matches!(
        watcher.ready().await,
        Err(EngineError::Unsupported { .. })
    ));
    assert_eq!(engine.stats().subscribe_calls, 1);
}

/// An inspect answering `error` (not "gone") ends the session; the relist
/// finds the container after all, and the watch goes on.
async fn inspect_failure_leads_to_a_relist(error: EngineError) {
    let engine = ScriptedEngine::new();
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    h.start_held("x").await.reply(Err(error));
    h.log.wait_for_started("x").await;
    assert_eq!(engine.stats().list_calls, 2);
    assert_eq!(h.log.events()[0].source, EventSource::Sync);
    assert!(!h.task.is_finished(), "the watch goes on");
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_inspect_failing_for_the_engine_leads_to_a_relist() {
    inspect_failure_leads_to_a_relist(EngineError::Protocol {
        endpoint: "scripted".into(),
        message: "truncated".into(),
    })
    .await;
}

// ---- stopping ----

#[tokio::test(start_paused = true)]
async fn cancel_ends_every_task_and_stream_the_watcher_started() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let engine = ScriptedEngine::new();
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let _held = h.start_held("x").await; // an inspect in flight

    assert_eq!(
        metrics.num_alive_tasks(),
        baseline + 1,
        "only the test's own task"
    );
    let (engine, watcher) = (h.engine.clone(), h.watcher.clone());
    h.stop().await.unwrap();

    let stats = engine.stats();
    assert_eq!(stats.open_streams, 0, "{stats:?}");
    assert_eq!(stats.inspects_in_flight, 0, "{stats:?}");
    assert_eq!(metrics.num_alive_tasks(), baseline);
    // Watching again after a cancel works; it is not a close.
    let again = Harness::start(&engine);
    again.watcher.ready().await.unwrap();
    again.stop().await.unwrap();
    drop(watcher);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_watch_future_ends_everything() {
    let engine = ScriptedEngine::new();
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let _held = h.start_held("x").await;

    h.task.abort();
    assert!(h.task.await.unwrap_err().is_cancelled());
    let stats = engine.stats();
    assert_eq!(
        (stats.open_streams, stats.inspects_in_flight),
        (0, 0),
        "{stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn close_stops_the_watch_and_later_watches_end_at_once() {
    let engine = ScriptedEngine::new();
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();

    tokio::time::timeout(DEADLINE, h.watcher.close())
        .await
        .unwrap();
    assert!(h.task.is_finished(), "close waits for the watch to end");
    assert_eq!(engine.stats().open_streams, 0);
    let again = h.watcher.watch(CancellationToken::new()).await;
    assert!(again.is_ok());
    assert_eq!(engine.stats().subscribe_calls, 1);
}

#[tokio::test(start_paused = true)]
async fn cancel_before_the_first_sync_releases_ready() {
    let engine = ScriptedEngine::new();
    engine.hold_lists();
    let h = Harness::start(&engine);
    let _list = engine.next_list().await;
    let watcher = h.watcher.clone();
    h.stop().await.unwrap();
    assert!(matches!(watcher.ready().await, Err(EngineError::Cancelled)));
}

#[tokio::test(start_paused = true)]
async fn watching_twice_at_once_is_refused() {
    let engine = ScriptedEngine::new();
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let second = h.watcher.watch(CancellationToken::new()).await;
    assert!(matches!(second, Err(WatchError::AlreadyWatching)));
    h.stop().await.unwrap();
}

mod hostile;

// ---- the engine behind a watcher ----

#[tokio::test(start_paused = true)]
async fn the_engine_describes_itself_without_a_watch_and_hands_back_its_type() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let watcher = Watcher::new(engine.clone(), RetryPolicy::none());
    assert_eq!(watcher.version(), "", "nothing asked yet");
    let info = watcher.refresh_engine_info().await.unwrap();
    assert_eq!(
        (info.id.as_str(), info.version.as_str()),
        ("scripted-engine", "1.0")
    );
    assert_eq!(watcher.version(), "1.0");
    assert_eq!(engine.stats().list_calls, 0, "no watch, no list");

    let scripted = watcher
        .engine_as::<ScriptedEngine>()
        .expect("the scripted engine");
    assert_eq!(scripted.truth().len(), 1);
    assert_eq!(watcher.engine().api(), crate::testing::SCRIPTED_API);

    engine.go_down();
    assert!(matches!(
        watcher.refresh_engine_info().await,
        Err(EngineError::Unreachable { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_spawned_watch_stops_with_its_handle_when_dropped_and_reports_how_it_ended() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let watcher = Watcher::new(engine.clone(), fixed_retries(1000));
    let stopped = |watcher: &Watcher| watcher.status().state == SyncState::Stopped;

    let watching = watcher.spawn();
    watcher.ready().await.expect("synced");
    assert!(!watching.is_finished());
    watching.stop().await.expect("stopped cleanly");
    assert!(stopped(&watcher));

    let watching = watcher.spawn();
    eventually("the second watch to sync", || {
        watcher.status().state == SyncState::Synced
    })
    .await;
    drop(watching);
    eventually("the dropped handle to stop the watch", || stopped(&watcher)).await;

    // A watch that gives up tells so to whoever waits for its end.
    let giving_up = Watcher::new(engine.clone(), RetryPolicy::none());
    engine.fail_subscriptions(Some(EngineError::StreamEnded {
        endpoint: "scripted".into(),
    }));
    let ended = tokio::time::timeout(DEADLINE, giving_up.spawn().ended())
        .await
        .expect("the watch ends by itself");
    assert!(
        matches!(ended, Err(WatchError::GaveUp { attempts: 1, .. })),
        "{ended:?}"
    );
}

// ---- who runs the watch, and for which watch `ready` answers ----

#[tokio::test(start_paused = true)]
async fn ready_after_spawn_answers_for_the_new_watch_not_the_last_one() {
    let engine = ScriptedEngine::new();
    let watcher = Watcher::new(engine.clone(), fixed_retries(1000));
    watcher.spawn().stop().await.expect("stopped");
    assert!(
        matches!(watcher.ready().await, Err(EngineError::Cancelled)),
        "with no watch running, ready tells how the last one ended"
    );

    engine.hold_lists();
    let watching = watcher.spawn();
    let ready = watcher.ready();
    tokio::pin!(ready);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut ready)
            .await
            .is_err(),
        "ready answered before the new watch listed"
    );
    engine.next_list().await.reply_now();
    tokio::time::timeout(DEADLINE, ready)
        .await
        .expect("ready once the new watch synced")
        .expect("synced");
    watching.stop().await.expect("stopped");
}

/// Dropping a handle stops its watch; a `spawn` right after waits for that
/// watch to end instead of being refused. On a multi-threaded runtime the
/// old watch is often still running when the new one begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_after_a_dropped_handle_is_never_refused() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let watcher = Watcher::new(engine.clone(), fixed_retries(1000));
    for round in 0..200 {
        let first = watcher.spawn();
        watcher.ready().await.expect("synced");
        drop(first);
        let second = watcher.spawn();
        let ended = tokio::time::timeout(DEADLINE, second.stop())
            .await
            .expect("stopped within the deadline");
        assert!(ended.is_ok(), "round {round}: {ended:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unsupported_error_in_the_stream_after_a_sync_is_asked_again() {
    let engine = ScriptedEngine::new();
    let h = Harness::start(&engine);
    h.watcher.ready().await.expect("synced");
    let unsupported = || EngineError::Unsupported {
        endpoint: SCRIPTED_API.into(),
        what: "events (a stream that ended before its first event)".into(),
    };
    // Once after a sync: one stream failing; a fresh subscribe asks again.
    engine.fail_streams(unsupported());
    engine
        .wait_until("a second subscription", |stats| stats.subscribe_calls == 2)
        .await;
    eventually("synced again", || h.watcher.status().is_synced()).await;
    assert!(!h.task.is_finished(), "the watch goes on");
    // The fresh stream says the same before it proved anything: the
    // engine's answer.
    engine.fail_streams(unsupported());
    let ended = tokio::time::timeout(DEADLINE, h.task)
        .await
        .expect("the watch ends")
        .expect("the watch task");
    assert!(
        matches!(ended, Err(WatchError::Unsupported(_))),
        "{ended:?}"
    );
    assert_eq!(
        engine.stats().subscribe_calls,
        2,
        "asked once more, no loop"
    );
}
#[tokio::test(start_paused = true)]
async fn a_watch_that_panics_ends_with_an_error_and_says_so_in_its_status() {
    let engine = ScriptedEngine::new();
    engine.panic_lists(true);
    let watcher = Watcher::new(engine.clone(), fixed_retries(1000));
    let ended = tokio::time::timeout(DEADLINE, watcher.spawn().ended())
        .await
        .expect("the watch ends");
    assert!(
        matches!(&ended, Err(WatchError::Panicked { message }) if message.contains("panics, as told")),
        "{ended:?}"
    );
    let status = watcher.status();
    assert_eq!(status.state, SyncState::Stopped);
    assert!(
        matches!(status.last_error, Some(EngineError::Panicked { .. })),
        "{status:?}"
    );
    assert!(matches!(
        watcher.ready().await,
        Err(EngineError::Panicked { .. })
    ));
    // Nothing is left running: a new watch may begin.
    engine.panic_lists(false);
    let watching = watcher.spawn();
    watcher.ready().await.expect("synced");
    watching.stop().await.expect("stopped");
}
