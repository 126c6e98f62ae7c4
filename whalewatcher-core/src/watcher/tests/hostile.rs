//! Engines that misbehave: calls that never answer, streams that flap, an
//! engine that refuses to describe itself, changes larger than the event
//! buffer; and the watcher's own edges (status after a watch, close,
//! zero durations). Each test is a scenario on the scripted engine.

use super::*;
use crate::testing::{History, Replayed};

/// The watcher's promise, checked on a subscriber's log: the first
/// revision after the snapshot's `r` is `r + 1` and each next one is one
/// more, and the snapshot plus the events equals the portfolio at the last
/// event's revision.
fn assert_contract(log: &EventLog, portfolio: &Portfolio) {
    let mut replayed = Replayed::new(&log.snapshot);
    let mut history = History::default();
    history.witness(&log.snapshot, "the snapshot");
    replayed.apply(&log.events(), |after| history.witness(after, "a replay"));
    assert_eq!(
        portfolio.revision(),
        replayed.revision(),
        "the portfolio changed without an event: {:?}",
        log.summary()
    );
    history.witness(portfolio, "the portfolio");
    assert_eq!(replayed.portfolio(), portfolio);
}

// ---- 1: a safety relist while a start is being inspected ----

#[tokio::test(start_paused = true)]
async fn safety_relist_during_an_inspect_reports_the_pause_the_inspect_found() {
    let engine = ScriptedEngine::new();
    let mut h = Harness::start_with(&engine, |b| {
        b.retry(fixed_retries(1000))
            .safety_relist(Duration::from_secs(5))
    });
    h.watcher.ready().await.unwrap();
    let inspect = h.start_held("y").await;
    // The safety relist lists y running: a start from the difference.
    h.log.wait_for_started("y").await;
    engine.pause("y"); // held back behind the inspect
    inspect.reply_now(); // the inspect sees y paused

    engine.start(container("fence"));
    engine.next_inspect().await.reply_now();
    h.log.wait_for_started("fence").await;

    assert_eq!(
        h.log.summary(),
        [
            ev(EventKind::Started, "y", false),
            ev(EventKind::Paused, "y", true),
            ev(EventKind::Started, "fence", false)
        ]
    );
    assert_contract(&h.log, &h.watcher.portfolio());
    h.stop().await.unwrap();
}

// ---- 2: a stream that ends right after every list ----

/// Answers each list, waits until the watcher published it, then ends
/// the stream, as a proxy with a short idle timeout does; returns the gaps
/// between one list call and the next.
async fn flap(engine: &ScriptedEngine, watcher: &Watcher, sessions: usize) -> Vec<Duration> {
    let mut gaps = Vec::new();
    let mut previous: Option<Instant> = None;
    for _ in 0..sessions {
        let list = engine.next_list().await;
        if let Some(previous) = previous {
            gaps.push(previous.elapsed());
        }
        list.reply_now();
        eventually("synced", || watcher.status().is_synced()).await;
        previous = Some(Instant::now());
        engine.end_streams();
    }
    gaps
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_after_every_list_backs_off() {
    let engine = ScriptedEngine::new();
    engine.hold_lists();
    let h = Harness::start_with(&engine, |b| b.retry(RetryPolicy::default()));

    let gaps = flap(&engine, &h.watcher, 8).await;
    // The default policy's delays double from [50, 100) ms on.
    assert!(
        gaps[6] >= Duration::from_millis(50 << 6),
        "the backoff must grow while sessions do not prove themselves: {gaps:?}"
    );
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_bounded_policy_gives_up_on_a_stream_that_ends_after_every_list() {
    let engine = ScriptedEngine::new();
    engine.hold_lists();
    let policy = RetryPolicy::default().max_retries(3);
    let h = Harness::start_with(&engine, |b| b.retry(policy));

    flap(&engine, &h.watcher, 4).await;
    let ended = tokio::time::timeout(DEADLINE, h.task)
        .await
        .expect("the watch must give up after 3 retries")
        .unwrap();
    assert!(
        matches!(
            ended,
            Err(WatchError::GaveUp {
                attempts: 4,
                last: EngineError::StreamEnded { .. }
            })
        ),
        "{ended:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_that_proved_itself_starts_the_backoff_afresh() {
    let engine = ScriptedEngine::new();
    engine.hold_lists();
    let delays = || (1..).map(Duration::from_secs);
    let h = Harness::start_with(&engine, |b| {
        b.retry(RetryPolicy::from_delays(delays))
            .stable_after(Duration::from_secs(30))
    });
    // Two flaps: the delays grow to 1 s, then 2 s.
    let gaps = flap(&engine, &h.watcher, 3).await;
    assert_eq!(gaps, [Duration::from_secs(1), Duration::from_secs(2)]);
    // Up long enough: the next loss starts again at 1 s.
    engine.next_list().await.reply_now();
    eventually("synced", || h.watcher.status().is_synced()).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    engine.end_streams();
    let lost = Instant::now();
    engine.next_list().await.reply_now();
    assert_eq!(lost.elapsed(), Duration::from_secs(1));
    // An event proves a session at once.
    eventually("synced", || h.watcher.status().is_synced()).await;
    engine.start(container("a"));
    eventually("a arrived", || h.watcher.portfolio().len() == 1).await;
    engine.end_streams();
    let lost = Instant::now();
    engine.next_list().await.reply_now();
    assert_eq!(lost.elapsed(), Duration::from_secs(1));
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_connection_state_can_be_awaited_without_polling() {
    let engine = ScriptedEngine::new();
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let mut status = h.watcher.subscribe_status();
    assert_eq!(status.borrow_and_update().state, SyncState::Synced);
    // A watch channel keeps the latest state; waiting for one is enough.
    let mut wait_for = async |state: SyncState| {
        tokio::time::timeout(DEADLINE, status.wait_for(|s| s.state == state))
            .await
            .unwrap_or_else(|_| panic!("no {state:?} within the deadline"))
            .map(|s| s.clone())
            .unwrap()
    };

    engine.hold_lists();
    engine.go_down();
    let lost = wait_for(SyncState::Lost).await;
    assert!(matches!(
        lost.last_error,
        Some(EngineError::Unreachable { .. })
    ));
    engine.come_up();
    let list = engine.next_list().await;
    wait_for(SyncState::Syncing).await;
    list.reply_now();
    let synced = wait_for(SyncState::Synced).await;
    assert!(synced.last_error.is_none());

    let watcher = h.watcher.clone();
    h.stop().await.unwrap();
    assert_eq!(watcher.status().state, SyncState::Stopped);
}

// ---- 3: engine calls that never answer ----

#[tokio::test(start_paused = true)]
async fn a_list_that_never_answers_resolves_ready_with_a_timeout_then_relists() {
    let engine = ScriptedEngine::new();
    engine.hold_lists();
    let h = Harness::start(&engine);

    let _hung = engine.next_list().await;
    let asked = Instant::now();
    let ready = tokio::time::timeout(Duration::from_secs(120), h.watcher.ready()).await;
    assert!(
        matches!(ready, Ok(Err(EngineError::Timeout { call: "list", .. }))),
        "{ready:?}"
    );
    assert_eq!(asked.elapsed(), Deadlines::default().list);
    engine.next_list().await.reply_now();
    eventually("synced", || h.watcher.status().is_synced()).await;
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn hung_inspects_time_out_and_later_starts_still_arrive() {
    let engine = ScriptedEngine::new();
    let mut h = Harness::start_with(&engine, |b| {
        let deadlines = Deadlines {
            inspect: Duration::from_secs(2),
            ..Deadlines::default()
        };
        b.retry(fixed_retries(1000))
            .max_concurrent_inspects(2)
            .deadlines(deadlines)
    });
    h.watcher.ready().await.unwrap();
    engine.hold_inspects();

    engine.start(container("a"));
    engine.start(container("b"));
    let _hung = (engine.next_inspect().await, engine.next_inspect().await);
    engine.start(container("c"));
    let mut status = h.watcher.subscribe_status();
    tokio::time::timeout(
        DEADLINE,
        status.wait_for(|s| {
            matches!(
                s.last_error,
                Some(EngineError::Timeout {
                    call: "inspect",
                    ..
                })
            )
        }),
    )
    .await
    .expect("the hung inspect times out")
    .unwrap();
    h.log.wait_for_started("c").await;
    assert_eq!(engine.stats().list_calls, 2, "the timeout led to a relist");
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_inspect_forgotten_by_a_die_frees_its_slot_at_once() {
    let engine = ScriptedEngine::new();
    let mut h = Harness::start_with(&engine, |b| {
        b.retry(fixed_retries(1000)).max_concurrent_inspects(1)
    });
    h.watcher.ready().await.unwrap();
    let _hung = h.start_held("a").await;
    engine.die("a");
    engine
        .wait_until("a's inspect is aborted", |s| s.inspects_in_flight == 0)
        .await;
    engine.start(container("b"));
    let inspect = engine.next_inspect().await;
    assert_eq!(inspect.id(), "b");
    inspect.reply_now();
    h.log.wait_for_started("b").await;
    h.stop().await.unwrap();
}

// ---- 4: an engine that refuses to describe itself ----

#[tokio::test(start_paused = true)]
async fn a_refused_info_leaves_the_info_partial_and_the_watch_follows_events() {
    let engine = ScriptedEngine::new();
    engine.fail_info(Some(EngineError::Protocol {
        endpoint: "scripted".into(),
        message: "403 Forbidden".into(),
    }));
    engine.add([container("a")]);
    let mut h = Harness::start(&engine);

    h.watcher.ready().await.expect("synced without the info");
    h.fence().await;
    assert_eq!(ids(&h.watcher.portfolio()), ["a", "fence"]);
    assert_eq!(h.watcher.id(), "", "unknown, not made up");
    assert_eq!(h.watcher.engine_type(), "scripted");
    let stats = engine.stats();
    assert_eq!((stats.list_calls, stats.subscribe_calls), (1, 1));
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn ready_waits_for_the_engines_info_but_no_longer_than_its_deadline() {
    let engine = ScriptedEngine::new();
    engine.set_info_latency(Duration::from_secs(3));
    let h = Harness::start(&engine);
    let began = Instant::now();
    h.watcher.ready().await.unwrap();
    assert_eq!(began.elapsed(), Duration::from_secs(3));
    assert_eq!(
        h.watcher.status().sync_duration,
        Some(Duration::from_secs(3)),
        "the sync took as long as the info"
    );
    assert_eq!(h.watcher.version(), "1.0", "who is synced knows with what");
    h.stop().await.unwrap();

    let engine = ScriptedEngine::new();
    engine.set_info_latency(Duration::from_secs(3600));
    let h = Harness::start(&engine);
    let began = Instant::now();
    h.watcher.ready().await.unwrap();
    assert_eq!(began.elapsed(), Deadlines::default().info);
    assert_eq!(h.watcher.version(), "", "unknown, not made up");
    h.stop().await.unwrap();
}

// ---- 5: a difference larger than the event buffer ----

#[tokio::test(start_paused = true)]
async fn a_restart_of_20000_changes_reaches_a_reading_subscriber_without_lag() {
    const N: usize = 10_000;
    let engine = ScriptedEngine::new();
    engine.add((0..N).map(|i| container(&format!("c{i:05}"))));
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    h.log
        .wait_until("the initial sync", |items| items.len() >= N)
        .await;

    engine.go_down();
    engine.add((0..N).map(|i| container(&format!("c{i:05}")).with_pid(200)));
    eventually("lost", || !h.watcher.status().is_synced()).await;
    engine.come_up();
    h.log
        .wait_until("the restart's difference", |items| items.len() >= 3 * N)
        .await;

    assert!(
        h.log.items.iter().all(Result::is_ok),
        "a reading subscriber lagged"
    );
    assert_eq!(h.log.items.len(), 3 * N);
    assert_contract(&h.log, &h.watcher.portfolio());
    assert_eq!(*h.watcher.portfolio(), engine.truth());
    h.stop().await.unwrap();
}

// ---- 6: status when no watch runs ----

#[tokio::test(start_paused = true)]
async fn after_a_watch_ends_the_status_is_not_synced_and_ready_is_per_watch() {
    let engine = ScriptedEngine::new();
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let watcher = h.watcher.clone();
    h.stop().await.unwrap();
    assert!(!watcher.status().is_synced(), "nothing follows the engine");
    assert!(matches!(watcher.ready().await, Err(EngineError::Cancelled)));

    engine.hold_lists();
    let again = Harness::start(&engine);
    let list = engine.next_list().await;
    assert!(
        !again.watcher.status().is_synced(),
        "the second watch has not listed yet"
    );
    list.reply_now();
    again.watcher.ready().await.unwrap();
    again.stop().await.unwrap();
}

// ---- 7: a permanent error mid-session ----

#[tokio::test(start_paused = true)]
async fn an_unsupported_answer_after_the_sync_is_retried_not_fatal() {
    inspect_failure_leads_to_a_relist(EngineError::Unsupported {
        endpoint: "scripted".into(),
        what: "something, once".into(),
    })
    .await;
}

// ---- 8: subscribers when the watcher is closed ----

#[tokio::test(start_paused = true)]
async fn event_streams_end_when_the_watcher_is_closed() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let h = Harness::start(&engine);
    let (_, mut stream) = h.watcher.subscribe();
    h.watcher.ready().await.unwrap();

    h.watcher.close().await;
    let first = tokio::time::timeout(DEADLINE, stream.next()).await;
    assert!(
        matches!(&first, Ok(Some(Ok(event))) if event.container.id() == "a"),
        "what was published before the close is still delivered: {first:?}"
    );
    let end = tokio::time::timeout(DEADLINE, stream.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    let (_, mut late) = h.watcher.subscribe();
    let end = tokio::time::timeout(DEADLINE, late.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

// ---- 9: zero durations ----

#[tokio::test(start_paused = true)]
async fn a_zero_safety_relist_period_is_raised_not_a_panic() {
    let engine = ScriptedEngine::new();
    let mut h = Harness::start_with(&engine, |b| {
        b.retry(fixed_retries(1000)).safety_relist(Duration::ZERO)
    });
    h.watcher.ready().await.unwrap();
    engine.add([container("unreported")]);
    h.log.wait_for_started("unreported").await;
    let lists = engine.stats().list_calls;
    assert!(lists <= 3, "relisting in a loop: {lists} lists");
    h.stop().await.unwrap();
}

// ---- 10: a resync that changes only a name ----

#[tokio::test(start_paused = true)]
async fn a_rename_while_disconnected_is_reported_as_updated() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let mut h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();

    engine.go_down();
    engine.add([Container::new("a", "renamed", 100)]);
    eventually("lost", || !h.watcher.status().is_synced()).await;
    engine.come_up();
    eventually("resynced", || h.watcher.status().is_synced()).await;
    h.fence().await;

    assert_eq!(
        h.watcher.portfolio().container("a").unwrap().name(),
        "renamed"
    );
    let kinds: Vec<_> = h.log.events().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::Started, EventKind::Updated, EventKind::Started]
    );
    assert_eq!(h.log.events()[1].container.name(), "renamed");
    assert_contract(&h.log, &h.watcher.portfolio());
    h.stop().await.unwrap();
}

// ---- 11: a lost session's inspects ----

#[tokio::test(start_paused = true)]
async fn a_lost_sessions_inspects_end_with_it() {
    let engine = ScriptedEngine::new();
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    let _hung = h.start_held("x").await;

    engine.go_down();
    eventually("lost", || !h.watcher.status().is_synced()).await;
    assert_eq!(
        engine.stats().inspects_in_flight,
        0,
        "an inspect of the lost session is still running during the backoff"
    );
    h.stop().await.unwrap();
}

// ---- 12: held-back events keep their source; no ghosts ----

#[tokio::test(start_paused = true)]
async fn a_pause_held_back_during_the_list_keeps_its_source_and_time() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    engine.hold_lists();
    let mut h = Harness::start(&engine);

    let list = engine.next_list().await;
    list.reply_now();
    h.watcher.ready().await.unwrap();
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // A safety relist would do the same; a new session is simpler.
    engine.end_streams();
    let list = engine.next_list().await;
    engine.set_paused("a", true);
    engine.emit(EngineEvent::new(EventKind::Paused, "a").at(when));
    list.reply_as_called();
    h.fence().await;

    let paused = &h.log.events()[1];
    assert_eq!(paused.kind, EventKind::Paused);
    assert_eq!(paused.source, EventSource::Engine);
    assert_eq!(paused.timestamp, Some(when));
    h.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_inspect_answering_another_id_leaves_no_ghost() {
    let engine = ScriptedEngine::new();
    let h = Harness::start(&engine);
    h.watcher.ready().await.unwrap();
    engine.hold_inspects();

    engine.start(container("x"));
    engine
        .next_inspect()
        .await
        .reply(Ok(container("x-long-id")));
    eventually("the answer was taken in", || {
        h.watcher.portfolio().container("x-long-id").is_some() || engine.stats().list_calls > 1
    })
    .await;
    engine.die("x");
    engine.start(container("fence"));
    // Whether by a relist or by the inspect: the fence arrives.
    eventually("the fence arrived", || {
        if let Some(inspect) = engine.try_next_inspect() {
            inspect.reply_now();
        }
        h.watcher.portfolio().container("fence").is_some()
    })
    .await;
    assert_eq!(*h.watcher.portfolio(), engine.truth(), "no ghost");
    h.stop().await.unwrap();
}

// ---- an engine that takes its time to say what went wrong ----

/// The scripted engine, with a diagnosis that never ends.
#[derive(Debug)]
struct DiagnosingForever(ScriptedEngine);

#[async_trait::async_trait]
impl Engine for DiagnosingForever {
    fn api(&self) -> &str {
        self.0.api()
    }
    fn engine_type(&self) -> &str {
        self.0.engine_type()
    }
    fn pid(&self) -> Option<u32> {
        self.0.pid()
    }
    async fn info(&self) -> Result<EngineInfo, EngineError> {
        self.0.info().await
    }
    async fn list(&self) -> Result<Vec<Container>, EngineError> {
        self.0.list().await
    }
    async fn inspect(&self, id: &str) -> Result<Container, EngineError> {
        self.0.inspect(id).await
    }
    async fn subscribe(&self) -> Result<crate::EngineEvents, EngineError> {
        self.0.subscribe().await
    }
    async fn diagnose(&self, error: EngineError) -> EngineError {
        futures::future::pending::<()>().await;
        error
    }
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_the_diagnosis_of_a_failed_first_sync_ends_the_watch_at_once() {
    let engine = ScriptedEngine::new();
    engine.fail_subscriptions(Some(EngineError::unreachable(
        "scripted",
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    )));
    let watcher = Watcher::new(DiagnosingForever(engine), fixed_retries(1000));
    let cancel = CancellationToken::new();
    let watching = tokio::spawn({
        let (watcher, cancel) = (watcher.clone(), cancel.clone());
        async move { watcher.watch(cancel).await }
    });
    // Past the subscribe's failure, well inside the 2 s diagnosis deadline.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = Instant::now();
    cancel.cancel();
    watching.await.unwrap().expect("stopped, not failed");
    assert_eq!(stopped.elapsed(), Duration::ZERO, "the stop waited");
}

// ---- a replayed event proves nothing ----

/// Docker replays the events of the second its subscription began
/// (`since` has whole seconds): an event the list already holds arrives
/// again after every list. It changes nothing, so it must not count as the
/// connection proving itself, or a stream that ends after every list is
/// relisted without backoff forever.
#[tokio::test(start_paused = true)]
async fn a_replayed_event_that_changes_nothing_does_not_prove_a_session() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    engine.hold_lists();
    let policy = RetryPolicy::default().max_retries(3);
    let h = Harness::start_with(&engine, |b| b.retry(policy));
    for _ in 0..4 {
        engine.next_list().await.reply_now();
        eventually("synced", || h.watcher.status().is_synced()).await;
        engine.emit(EngineEvent::new(EventKind::Started, "a"));
        engine.end_streams();
    }
    let ended = tokio::time::timeout(DEADLINE, h.task)
        .await
        .expect("the watch must give up after 3 retries")
        .unwrap();
    assert!(
        matches!(ended, Err(WatchError::GaveUp { attempts: 4, .. })),
        "{ended:?}"
    );
}

// ---- an engine that stops answering while its stream stays open ----

#[tokio::test(start_paused = true)]
async fn a_frozen_engine_is_lost_within_the_probe_bound_and_back_once_it_answers() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let h = Harness::start(&engine);
    h.watcher.ready().await.expect("synced");
    let mut status = h.watcher.subscribe_status();
    status.borrow_and_update();
    engine.freeze();
    let frozen = Instant::now();
    let lost = tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| s.state == SyncState::Lost),
    )
    .await
    .expect("lost within a minute")
    .expect("status")
    .clone();
    // The default quiet period (10 s), then the ping's deadline (5 s).
    assert_eq!(frozen.elapsed(), Duration::from_secs(15));
    assert!(
        matches!(
            lost.last_error,
            Some(EngineError::Timeout { call: "ping", .. })
        ),
        "{lost:?}"
    );
    assert_eq!(engine.stats().ping_calls, 1);
    // It answers again: resynchronized, and the truth is what it was.
    engine.thaw();
    tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| s.state == SyncState::Synced),
    )
    .await
    .expect("synced again")
    .expect("status");
    assert_eq!(*h.watcher.portfolio(), engine.truth());
    h.stop().await.expect("stopped");
}

#[tokio::test(start_paused = true)]
async fn the_probe_never_pings_while_events_flow_and_pings_once_a_period_when_quiet() {
    let engine = ScriptedEngine::new();
    engine.add([container("a")]);
    let h = Harness::start(&engine);
    h.watcher.ready().await.expect("synced");
    // An event every 5 s for a minute: never 10 s quiet.
    for n in 0..12 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        engine.set_paused("a", n % 2 == 0);
        engine.emit(EngineEvent::new(
            if n % 2 == 0 {
                EventKind::Paused
            } else {
                EventKind::Unpaused
            },
            "a",
        ));
    }
    assert_eq!(engine.stats().ping_calls, 0, "no ping while events flow");
    // Quiet for a minute: one ping each 10 s.
    tokio::time::sleep(Duration::from_secs(60) + Duration::from_millis(1)).await;
    assert_eq!(engine.stats().ping_calls, 6);
    assert!(h.watcher.status().is_synced());
    assert_eq!(engine.stats().subscribe_calls, 1, "the session stayed up");
    h.stop().await.expect("stopped");
}

#[tokio::test(start_paused = true)]
async fn without_a_probe_a_frozen_engine_stays_synced() {
    let engine = ScriptedEngine::new();
    let h = Harness::start_with(&engine, |b| {
        b.retry(fixed_retries(1000)).probe_when_quiet(None)
    });
    h.watcher.ready().await.expect("synced");
    engine.freeze();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(h.watcher.status().is_synced());
    assert_eq!(engine.stats().ping_calls, 0);
    engine.thaw();
    h.stop().await.expect("stopped");
}
