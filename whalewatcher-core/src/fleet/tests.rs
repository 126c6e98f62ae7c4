//! The fleet driven by scripted engines: joins, leaves, events of several
//! engines at once, lagging members, and the snapshot-plus-events
//! contract, on tokio's paused clock.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::*;
use crate::testing::{FleetReplayed, ScriptedEngine, DEADLINE};
use crate::{EngineError, EventKind, RetryPolicy};

fn container(id: &str, pid: u32) -> Container {
    Container::new(id, format!("name-{id}"), pid)
}

/// PIDs here are the engine's plus 1000, as for an engine in a PID
/// namespace of its own.
#[derive(Debug)]
struct Offset;

impl PidTranslation for Offset {
    fn local_pid(&self, pid: u32) -> Option<u32> {
        Some(pid + 1000)
    }
}

fn watcher(engine: &ScriptedEngine) -> Watcher {
    Watcher::new(
        engine.clone(),
        RetryPolicy::from_delays(|| std::iter::repeat(Duration::from_secs(1))),
    )
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

/// A fleet subscription and everything it delivered.
struct Log {
    snapshot: Arc<FleetSnapshot>,
    events: FleetEvents,
    seen: Vec<FleetEvent>,
}

impl Log {
    fn subscribe(fleet: &Fleet) -> Self {
        let (snapshot, events) = fleet.subscribe();
        Log {
            snapshot,
            events,
            seen: Vec::new(),
        }
    }

    async fn until(&mut self, what: &str, done: impl Fn(&[FleetEvent]) -> bool) {
        let waited = tokio::time::timeout(DEADLINE, async {
            while !done(&self.seen) {
                let event = self
                    .events
                    .next()
                    .await
                    .expect("stream open")
                    .expect("no lag");
                self.seen.push(event);
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "timed out waiting for {what}: {:?}",
            self.kinds()
        );
    }

    async fn until_started(&mut self, id: &str) {
        self.until(&format!("the start of {id}"), |seen| {
            seen.iter().any(|e| is_container(e, EventKind::Started, id))
        })
        .await;
    }

    fn kinds(&self) -> Vec<String> {
        self.seen.iter().map(describe).collect()
    }

    /// The snapshot plus everything seen, revision by revision, must be
    /// the fleet's snapshot now.
    fn check_against(&self, fleet: &Fleet) {
        let mut replayed = FleetReplayed::new(&self.snapshot);
        replayed.apply(&self.seen, |_| {});
        replayed.assert_is(&fleet.snapshot(), "snapshot + events");
    }
}

fn is_container(event: &FleetEvent, kind: EventKind, id: &str) -> bool {
    matches!(&event.change, FleetChange::Container { event, .. } if event.kind == kind && event.container.id() == id)
}

fn describe(event: &FleetEvent) -> String {
    let member = event.engine.member().get();
    match &event.change {
        FleetChange::Joined => format!("{member} joined"),
        FleetChange::Left { error } => format!("{member} left ({})", error.is_some()),
        FleetChange::Container { event, local_pid } => format!(
            "{member} {} {} {local_pid:?} {:?}",
            event.kind,
            event.container.id(),
            event.source
        ),
        FleetChange::Status => format!("{member} status {:?}", event.engine.state()),
        FleetChange::Parent => format!("{member} parent"),
        #[allow(unreachable_patterns)]
        _ => format!("{member} other"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_engine_that_joins_shows_its_containers_as_started_and_its_events_follow() {
    let engine = ScriptedEngine::new();
    engine.add([container("a", 1), container("b", 2)]);
    let w = watcher(&engine);
    let watching = w.spawn();
    w.ready().await.expect("synced");
    let fleet = Fleet::new();
    let mut log = Log::subscribe(&fleet);
    let member = fleet
        .add(
            FleetMember::new(w.clone())
                .watching(watching)
                .pid_translation(Arc::new(Offset)),
        )
        .unwrap();
    engine.start(container("c", 3));
    log.until_started("c").await;
    assert_eq!(
        log.kinds(),
        [
            format!("{} joined", member.get()),
            format!("{} started a Some(1001) Sync", member.get()),
            format!("{} started b Some(1002) Sync", member.get()),
            format!("{} started c Some(1003) Engine", member.get()),
        ]
    );
    let snapshot = fleet.snapshot();
    let engine_view = snapshot.engine(member).expect("a member");
    assert_eq!(engine_view.portfolio().len(), 3);
    assert_eq!(
        engine_view.container("c").and_then(|c| c.local_pid()),
        Some(1003)
    );
    assert_eq!(
        engine_view.info().id,
        "scripted-engine",
        "the info of the synced engine"
    );
    engine.die("c");
    log.until("the exit of c", |seen| {
        seen.iter().any(|e| is_container(e, EventKind::Exited, "c"))
    })
    .await;
    assert_eq!(
        log.kinds().last().map(String::as_str),
        Some(format!("{} exited c Some(1003) Engine", member.get()).as_str()),
        "an exit carries the PID the container had here"
    );
    log.check_against(&fleet);
    fleet.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_engine_added_before_its_first_sync_runs_its_watch_and_its_sync_arrives_as_events() {
    let engine = ScriptedEngine::new();
    engine.add([container("a", 1)]);
    let fleet = Fleet::new();
    let mut log = Log::subscribe(&fleet);
    let member = fleet.add(FleetMember::new(watcher(&engine))).unwrap();
    log.until_started("a").await;
    eventually("synced", || {
        fleet
            .snapshot()
            .engine(member)
            .is_some_and(|e| e.state() == SyncState::Synced)
    })
    .await;
    log.until("the synced state told", |seen| {
        seen.iter().any(|e| {
            matches!(e.change, FleetChange::Status) && e.engine.state() == SyncState::Synced
        })
    })
    .await;
    assert_eq!(
        fleet
            .snapshot()
            .containers()
            .next()
            .and_then(|c| c.local_pid()),
        None,
        "no translation given"
    );
    fleet.close().await;
    engine
        .wait_until("no stream open", |stats| stats.open_streams == 0)
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_removed_engine_shows_its_containers_exited_then_leaves_and_its_watch_stops() {
    let engine = ScriptedEngine::new();
    engine.add([container("a", 1), container("b", 2)]);
    let fleet = Fleet::new();
    let member = fleet.add(FleetMember::new(watcher(&engine))).unwrap();
    eventually("synced", || fleet.snapshot().len() == 2).await;
    let mut log = Log::subscribe(&fleet);
    assert!(fleet.remove(member).await);
    log.until("the leave", |seen| {
        seen.iter()
            .any(|e| matches!(e.change, FleetChange::Left { .. }))
    })
    .await;
    let m = member.get();
    assert_eq!(
        log.kinds(),
        [
            format!("{m} exited a None Sync"),
            format!("{m} exited b None Sync"),
            format!("{m} left (false)")
        ]
    );
    assert!(fleet.snapshot().engine(member).is_none());
    assert!(!fleet.remove(member).await, "no member any more");
    log.check_against(&fleet);
    engine
        .wait_until("the watch stopped", |stats| stats.open_streams == 0)
        .await;
}

#[tokio::test(start_paused = true)]
async fn an_engine_whose_watch_ends_leaves_saying_why() {
    let engine = ScriptedEngine::new();
    engine.fail_subscriptions(Some(EngineError::Unsupported {
        endpoint: "scripted://engine".into(),
        what: "events".into(),
    }));
    let fleet = Fleet::new();
    let mut log = Log::subscribe(&fleet);
    let member = fleet.add(FleetMember::new(watcher(&engine))).unwrap();
    log.until("the leave", |seen| {
        seen.iter()
            .any(|e| matches!(e.change, FleetChange::Left { .. }))
    })
    .await;
    let left = log.seen.iter().find_map(|e| match &e.change {
        FleetChange::Left { error } => Some(error.clone()),
        _ => None,
    });
    assert!(
        matches!(left, Some(Some(WatchError::Unsupported(_)))),
        "{left:?}"
    );
    assert!(fleet.snapshot().engine(member).is_none());
    log.check_against(&fleet);
}

#[tokio::test(start_paused = true)]
async fn a_watch_run_elsewhere_is_followed_and_left_running() {
    let engine = ScriptedEngine::new();
    let w = watcher(&engine);
    let watching = w.spawn();
    w.ready().await.expect("synced");
    let fleet = Fleet::new();
    let mut log = Log::subscribe(&fleet);
    let member = fleet.add(FleetMember::following(w.clone())).unwrap();
    engine.start(container("a", 1));
    log.until_started("a").await;
    assert!(fleet.remove(member).await);
    assert!(!watching.is_finished(), "the owner's watch goes on");
    assert!(w.status().is_synced());
    watching.stop().await.expect("stopped");
}

#[tokio::test(start_paused = true)]
async fn a_lost_engine_is_told_and_its_containers_stay_until_it_is_back() {
    let engine = ScriptedEngine::new();
    engine.add([container("a", 1)]);
    let fleet = Fleet::new();
    let member = fleet.add(FleetMember::new(watcher(&engine))).unwrap();
    eventually("synced", || fleet.snapshot().len() == 1).await;
    let mut log = Log::subscribe(&fleet);
    engine.go_down();
    log.until("lost", |seen| {
        seen.iter().any(|e| e.engine.state() == SyncState::Lost)
    })
    .await;
    let snapshot = fleet.snapshot();
    let lost = snapshot.engine(member).expect("still a member");
    assert!(lost.last_error().is_some());
    assert_eq!(lost.portfolio().len(), 1, "make-before-break");
    engine.die("a");
    engine.come_up();
    log.until("back", |seen| {
        seen.iter().any(|e| is_container(e, EventKind::Exited, "a"))
    })
    .await;
    eventually("synced again", || {
        fleet
            .snapshot()
            .engine(member)
            .is_some_and(|e| e.state() == SyncState::Synced)
    })
    .await;
    log.until("the state", |seen| {
        seen.last()
            .is_some_and(|e| e.engine.state() == SyncState::Synced)
    })
    .await;
    log.check_against(&fleet);
    fleet.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_parent_set_later_is_published_once() {
    let fleet = Fleet::new();
    let host = fleet
        .add(FleetMember::new(watcher(&ScriptedEngine::new())))
        .unwrap();
    let nested = fleet
        .add(FleetMember::new(watcher(&ScriptedEngine::new())))
        .unwrap();
    let mut log = Log::subscribe(&fleet);
    let parent = ParentContainer {
        engine: host,
        id: Arc::from("c1"),
        name: Arc::from("kind-node"),
    };
    assert!(fleet.set_parent(nested, Some(parent.clone())));
    assert!(
        fleet.set_parent(nested, Some(parent.clone())),
        "unchanged: nothing published"
    );
    assert!(!fleet.set_parent(MemberId(99), None));
    let snapshot = fleet.snapshot();
    assert_eq!(
        snapshot.engine(nested).and_then(|e| e.parent()),
        Some(&parent)
    );
    // Everything published until now, not just up to the first parent.
    let upto = snapshot.revision();
    log.until("every revision up to now", |seen| {
        seen.last().is_some_and(|e| e.revision >= upto)
    })
    .await;
    log.check_against(&fleet);
    let parents = log
        .seen
        .iter()
        .filter(|e| matches!(e.change, FleetChange::Parent))
        .count();
    assert_eq!(parents, 1);
    fleet.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_on_two_engines_arrives_once_each_in_each_engines_order() {
    let (one, two) = (ScriptedEngine::new(), ScriptedEngine::new());
    let fleet = Fleet::new();
    let m1 = fleet.add(FleetMember::new(watcher(&one))).unwrap();
    let m2 = fleet.add(FleetMember::new(watcher(&two))).unwrap();
    eventually("both synced", || {
        fleet
            .snapshot()
            .engines()
            .all(|e| e.state() == SyncState::Synced)
    })
    .await;
    let mut log = Log::subscribe(&fleet);
    for n in 0..50 {
        one.start(container(&format!("one-{n:02}"), n + 1));
        two.start(container(&format!("two-{n:02}"), n + 1));
        if n % 2 == 0 {
            one.die(&format!("one-{n:02}"));
        }
    }
    log.until_started("one-49").await;
    log.until_started("two-49").await;
    log.check_against(&fleet);
    let of = |member: MemberId| -> Vec<String> {
        log.seen
            .iter()
            .filter(|e| e.engine.member() == member)
            .filter_map(|e| match &e.change {
                FleetChange::Container { event, .. } => {
                    Some(format!("{} {}", event.kind, event.container.id()))
                }
                _ => None,
            })
            .collect()
    };
    let expected_two: Vec<String> = (0..50).map(|n| format!("started two-{n:02}")).collect();
    assert_eq!(of(m2), expected_two);
    let one_events = of(m1);
    // A die that overtakes its start's inspect leaves no start at all.
    for n in (1..50).step_by(2) {
        assert!(
            one_events.contains(&format!("started one-{n:02}")),
            "{one_events:?}"
        );
    }
    assert_eq!(fleet.snapshot().len(), 75);
    fleet.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_subscription_lags_catches_up_with_the_difference() {
    let engine = ScriptedEngine::new();
    // Room for one revision only.
    let w = Watcher::builder(engine.clone()).event_capacity(1).build();
    // The watch runs in this task, so that the member's task cannot run
    // between the revisions it publishes.
    let cancel = CancellationToken::new();
    let mut watch = Box::pin({
        let (w, cancel) = (w.clone(), cancel.clone());
        async move { w.watch(cancel).await }
    });
    while !w.status().is_synced() {
        assert!(futures::poll!(watch.as_mut()).is_pending());
    }
    let fleet = Fleet::new();
    let mut log = Log::subscribe(&fleet);
    // It follows the watch that runs here.
    fleet.add(FleetMember::following(w.clone())).unwrap();
    // Twenty revisions while the member's task has not run yet.
    for n in 0..20 {
        engine.start(container(&format!("c{n:02}"), n + 1));
        while w.portfolio().len() < n as usize + 1 {
            assert!(futures::poll!(watch.as_mut()).is_pending());
        }
    }
    let watching = tokio::spawn(watch);
    eventually("all in the fleet", || fleet.snapshot().len() == 20).await;
    log.until("all seen", |seen| {
        seen.iter().filter(|e| matches!(&e.change, FleetChange::Container { event, .. } if event.kind == EventKind::Started)).count() == 20
    })
    .await;
    log.check_against(&fleet);
    assert!(
        log.seen.iter().any(|e| matches!(&e.change, FleetChange::Container { event, .. } if event.source == crate::EventSource::Sync)),
        "the lag was caught up by a difference: {:?}",
        log.kinds()
    );
    fleet.close().await;
    cancel.cancel();
    watching.await.expect("the watch task").expect("stopped");
}

#[tokio::test(start_paused = true)]
async fn closing_ends_every_member_and_stream_and_dropping_stops_the_watches() {
    let (one, two) = (ScriptedEngine::new(), ScriptedEngine::new());
    let fleet = Fleet::new();
    fleet
        .add(FleetMember::new(watcher(&one)).close_on_leave())
        .unwrap();
    fleet.add(FleetMember::new(watcher(&two))).unwrap();
    one.wait_until("one watched", |stats| stats.open_streams == 1)
        .await;
    let mut log = Log::subscribe(&fleet);
    fleet.close().await;
    assert_eq!(fleet.snapshot().engines().len(), 0);
    tokio::time::timeout(DEADLINE, async {
        while log.events.next().await.is_some() {}
    })
    .await
    .expect("the stream ended");
    one.wait_until("no stream", |stats| stats.open_streams == 0)
        .await;
    two.wait_until("no stream", |stats| stats.open_streams == 0)
        .await;

    let three = ScriptedEngine::new();
    let dropped = Fleet::new();
    dropped.add(FleetMember::new(watcher(&three))).unwrap();
    three
        .wait_until("three watched", |stats| stats.open_streams == 1)
        .await;
    drop(dropped);
    three
        .wait_until("no stream after the drop", |stats| stats.open_streams == 0)
        .await;
}

// ---- ownership, panics, close ----

#[tokio::test(start_paused = true)]
async fn a_member_whose_watch_panics_leaves_saying_so_and_the_fleet_still_closes() {
    let (sound, buggy) = (ScriptedEngine::new(), ScriptedEngine::new());
    sound.add([container("a", 1)]);
    buggy.add([container("b", 2)]);
    let buggy_watcher = watcher(&buggy);
    let watching = buggy_watcher.spawn();
    buggy_watcher.ready().await.expect("synced");
    let fleet = Fleet::new();
    let mut log = Log::subscribe(&fleet);
    let healthy = fleet.add(FleetMember::new(watcher(&sound))).unwrap();
    let member = fleet
        .add(FleetMember::new(buggy_watcher).watching(watching))
        .unwrap();
    log.until_started("a").await;
    // The engine's next list panics: the watch ends, the member leaves
    // with its container exited.
    buggy.panic_lists(true);
    buggy.end_streams();
    log.until("the buggy member's leave", |seen| {
        seen.iter()
            .any(|e| matches!(e.change, FleetChange::Left { .. }))
    })
    .await;
    let left = log.seen.iter().find_map(|e| match &e.change {
        FleetChange::Left { error } => Some((e.engine.member(), error.clone())),
        _ => None,
    });
    assert!(
        matches!(&left, Some((m, Some(error))) if *m == member && error.to_string().contains("panicked")),
        "{left:?}"
    );
    assert!(fleet.snapshot().engine(member).is_none());
    assert!(
        fleet.snapshot().engine(healthy).is_some(),
        "the others stay"
    );
    log.check_against(&fleet);
    assert!(!fleet.remove(member).await, "it has left");
    tokio::time::timeout(DEADLINE, fleet.close())
        .await
        .expect("the fleet closes");
}

#[tokio::test(start_paused = true)]
async fn a_member_that_follows_a_watch_run_elsewhere_leaves_when_that_watch_ends() {
    let engine = ScriptedEngine::new();
    engine.add([container("a", 1)]);
    let w = watcher(&engine);
    let watching = w.spawn();
    w.ready().await.expect("synced");
    let fleet = Fleet::new();
    let mut log = Log::subscribe(&fleet);
    let member = fleet.add(FleetMember::following(w.clone())).unwrap();
    log.until_started("a").await;
    watching.stop().await.expect("stopped");
    log.until("the follower's leave", |seen| {
        seen.iter()
            .any(|e| matches!(e.change, FleetChange::Left { .. }))
    })
    .await;
    assert!(fleet.snapshot().engine(member).is_none(), "no stale member");
    log.check_against(&fleet);
    fleet.close().await;
}

#[tokio::test(start_paused = true)]
async fn adding_to_a_closed_fleet_is_refused_and_asks_the_engine_nothing() {
    let engine = ScriptedEngine::new();
    let fleet = Fleet::new();
    fleet.close().await;
    let added = fleet.add(FleetMember::new(watcher(&engine)));
    assert!(
        matches!(&added, Err(FleetClosed(_))),
        "a closed fleet takes no member"
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = engine.stats();
    assert_eq!(
        (stats.subscribe_calls, stats.list_calls, stats.info_calls),
        (0, 0, 0),
        "{added:?}"
    );
    assert!(fleet.snapshot().engines().len() == 0);
}
