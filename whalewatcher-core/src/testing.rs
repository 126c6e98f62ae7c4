//! A scripted, in-process engine double and helpers for tests that drive
//! the watcher through races deterministically.
//!
//! The double keeps a *truth* — the containers that are alive — and lets a
//! test decide exactly when a list returns and with what, when each inspect
//! answers, which events arrive when, and when the engine fails. It counts
//! what the watcher does (calls, open streams, inspects in flight), so tests
//! can assert concurrency and clean shutdown.
//!
//! It stands in for an engine only to exercise the state machine; whether
//! an engine crate works is decided against the real engine.
//!
//! Enabled in this crate's tests and, for other crates, by the `testing`
//! feature.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::container::Container;
use crate::engine::{Engine, EngineEvents, EngineInfo, Listing, Omission};
use crate::error::EngineError;
use crate::event::{EngineEvent, Event, EventKind, Exit};
use crate::portfolio::Portfolio;

/// How long the helpers here wait for a condition before failing the test.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The API endpoint the double reports.
pub const SCRIPTED_API: &str = "scripted://engine";

/// What the watcher has done to a [`ScriptedEngine`] so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// `info` calls.
    pub info_calls: usize,
    /// `list` calls.
    pub list_calls: usize,
    /// `inspect` calls.
    pub inspect_calls: usize,
    /// `subscribe` calls.
    pub subscribe_calls: usize,
    /// `ping` calls (the watcher's liveness probe).
    pub ping_calls: usize,
    /// Event streams handed out and not yet dropped.
    pub open_streams: usize,
    /// Inspects begun and not yet finished or dropped.
    pub inspects_in_flight: usize,
    /// The most inspects ever in flight at once.
    pub max_inspects_in_flight: usize,
}

/// A scripted engine double; clones share one engine.
#[derive(Clone, Debug)]
pub struct ScriptedEngine {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bumped on every change, so waiters can re-check their condition.
    changed: watch::Sender<u64>,
    list_calls: mpsc::UnboundedSender<ListCall>,
    list_call_queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<ListCall>>,
    inspect_calls: mpsc::UnboundedSender<InspectCall>,
    inspect_call_queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<InspectCall>>,
}

#[derive(Debug, Default)]
struct State {
    truth: BTreeMap<String, Container>,
    /// How the containers exited unheard ended, as the engine keeps it.
    kept_exits: BTreeMap<String, Exit>,
    down: bool,
    subscribe_error: Option<EngineError>,
    info_error: Option<EngineError>,
    info_latency: Duration,
    panicking_lists: bool,
    frozen: bool,
    manual_lists: bool,
    manual_inspects: bool,
    inspect_latency: Duration,
    /// What each list says it left out.
    omitted: Vec<Omission>,
    streams: Vec<mpsc::UnboundedSender<Result<EngineEvent, EngineError>>>,
    stats: EngineStats,
}

impl Default for ScriptedEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedEngine {
    /// An engine that is up, has no containers, and answers every call at
    /// once from its truth.
    pub fn new() -> Self {
        let (list_calls, list_call_queue) = mpsc::unbounded_channel();
        let (inspect_calls, inspect_call_queue) = mpsc::unbounded_channel();
        ScriptedEngine {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: watch::channel(0).0,
                list_calls,
                list_call_queue: tokio::sync::Mutex::new(list_call_queue),
                inspect_calls,
                inspect_call_queue: tokio::sync::Mutex::new(inspect_call_queue),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the state and wakes up waiters, if any: a waiter
    /// subscribes before it checks the state, so none misses a change.
    fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let result = change(&mut self.state());
        if self.shared.changed.receiver_count() > 0 {
            self.shared.changed.send_modify(|n| *n += 1);
        }
        result
    }

    // ---- the truth ----

    /// Adds alive containers without any event: they were there before.
    pub fn add(&self, containers: impl IntoIterator<Item = Container>) {
        self.update(|state| {
            for container in containers {
                state.truth.insert(container.id().to_owned(), container);
            }
        });
    }

    /// Removes a container from the truth without any event, as when its
    /// exit is reported by [`emit`](Self::emit) with details of the test's
    /// choosing.
    pub fn remove(&self, id: &str) {
        self.update(|state| state.truth.remove(id));
    }

    /// The alive containers as the engine knows them.
    pub fn truth(&self) -> Portfolio {
        self.state().truth.values().cloned().collect()
    }

    /// Starts a container: adds it to the truth and emits `Started`.
    pub fn start(&self, container: Container) {
        let id = container.id().to_owned();
        self.add([container]);
        self.emit(EngineEvent::new(EventKind::Started, id));
    }

    /// Kills a container: removes it from the truth and emits `Exited`.
    pub fn die(&self, id: &str) {
        self.remove(id);
        self.emit(EngineEvent::new(EventKind::Exited, id));
    }

    /// A container ends with no event, as while nobody listens, and the
    /// engine keeps how (as containerd keeps a stopped task):
    /// [`Engine::exits`] tells it.
    pub fn exit_unheard(&self, id: &str, exit: Exit) {
        self.update(|state| {
            state.truth.remove(id);
            state.kept_exits.insert(id.to_owned(), exit);
        });
    }

    /// Pauses a container in the truth and emits `Paused`.
    pub fn pause(&self, id: &str) {
        self.set_paused(id, true);
        self.emit(EngineEvent::new(EventKind::Paused, id));
    }

    /// Unpauses a container in the truth and emits `Unpaused`.
    pub fn unpause(&self, id: &str) {
        self.set_paused(id, false);
        self.emit(EngineEvent::new(EventKind::Unpaused, id));
    }

    /// Pauses or unpauses a container in the truth without an event.
    pub fn set_paused(&self, id: &str, paused: bool) {
        self.update(|state| {
            if let Some(container) = state.truth.remove(id) {
                state
                    .truth
                    .insert(id.to_owned(), container.with_paused(paused));
            }
        });
    }

    /// Sends an event to every open event stream, truth unchanged.
    pub fn emit(&self, event: EngineEvent) {
        self.update(|state| {
            state
                .streams
                .retain(|stream| stream.send(Ok(event.clone())).is_ok())
        });
    }

    // ---- failures ----

    /// The engine goes away: every stream gets an error and ends, and every
    /// call fails as unreachable until [`come_up`](Self::come_up).
    pub fn go_down(&self) {
        self.update(|state| {
            state.down = true;
            for stream in state.streams.drain(..) {
                let _ = stream.send(Err(unreachable()));
            }
        });
    }

    /// The engine is back.
    pub fn come_up(&self) {
        self.update(|state| state.down = false);
    }

    /// Makes every list say it left out `omitted` (none: whole again).
    pub fn omit(&self, omitted: Vec<Omission>) {
        self.update(|state| state.omitted = omitted);
    }

    /// Ends every open event stream without an error, engine still up.
    pub fn end_streams(&self) {
        self.update(|state| state.streams.clear());
    }

    /// Sends `error` to every open event stream, which then ends; the
    /// engine stays up.
    pub fn fail_streams(&self, error: EngineError) {
        self.update(|state| {
            for stream in state.streams.drain(..) {
                let _ = stream.send(Err(error.clone()));
            }
        });
    }

    /// The engine freezes, as a stopped (SIGSTOP) or deadlocked daemon
    /// does: its event streams stay open and say nothing, and every call
    /// waits until [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        self.update(|state| state.frozen = true);
    }

    /// The frozen engine goes on: waiting calls proceed.
    pub fn thaw(&self) {
        self.update(|state| state.frozen = false);
    }

    /// Waits while the engine is frozen.
    async fn unless_frozen(&self) {
        let mut changed = self.shared.changed.subscribe();
        while self.state().frozen {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// Makes every `list` panic (or answer again with `false`), as an
    /// engine client with a bug does.
    pub fn panic_lists(&self, panicking: bool) {
        self.update(|state| state.panicking_lists = panicking);
    }

    /// Makes `subscribe` fail with `error` (or succeed again with `None`).
    pub fn fail_subscriptions(&self, error: Option<EngineError>) {
        self.update(|state| state.subscribe_error = error);
    }

    /// Makes `info` fail with `error` (or succeed again with `None`), as
    /// a socket proxy that forbids `/info` does.
    pub fn fail_info(&self, error: Option<EngineError>) {
        self.update(|state| state.info_error = error);
    }

    // ---- timing ----

    /// From now on, each list call waits for the test to answer it; take
    /// the calls with [`next_list`](Self::next_list).
    pub fn hold_lists(&self) {
        self.update(|state| state.manual_lists = true);
    }

    /// From now on, each inspect call waits for the test to answer it; take
    /// the calls with [`next_inspect`](Self::next_inspect).
    pub fn hold_inspects(&self) {
        self.update(|state| state.manual_inspects = true);
    }

    /// From now on, list and inspect calls answer at once from the truth
    /// again; calls already held still wait for their answer.
    pub fn release_holds(&self) {
        self.update(|state| {
            state.manual_lists = false;
            state.manual_inspects = false;
        });
    }

    /// `info` answers after `latency`.
    pub fn set_info_latency(&self, latency: Duration) {
        self.update(|state| state.info_latency = latency);
    }

    /// Automatic inspects answer after `latency`, from the truth as it is
    /// then.
    pub fn set_inspect_latency(&self, latency: Duration) {
        self.update(|state| state.inspect_latency = latency);
    }

    /// The next held list call; fails the test after [`DEADLINE`].
    pub async fn next_list(&self) -> ListCall {
        let mut queue = self.shared.list_call_queue.lock().await;
        tokio::time::timeout(DEADLINE, queue.recv())
            .await
            .expect("no list call within the deadline")
            .expect("list call queue closed")
    }

    /// The next held inspect call; fails the test after [`DEADLINE`].
    pub async fn next_inspect(&self) -> InspectCall {
        let mut queue = self.shared.inspect_call_queue.lock().await;
        tokio::time::timeout(DEADLINE, queue.recv())
            .await
            .expect("no inspect call within the deadline")
            .expect("inspect call queue closed")
    }

    /// A held list call, if one is waiting; never waits.
    pub fn try_next_list(&self) -> Option<ListCall> {
        self.shared.list_call_queue.try_lock().ok()?.try_recv().ok()
    }

    /// A held inspect call, if one is waiting; never waits.
    pub fn try_next_inspect(&self) -> Option<InspectCall> {
        self.shared
            .inspect_call_queue
            .try_lock()
            .ok()?
            .try_recv()
            .ok()
    }

    // ---- observation ----

    /// What the watcher has done so far.
    pub fn stats(&self) -> EngineStats {
        self.state().stats
    }

    /// Waits until `condition` holds for the stats; fails the test with
    /// `what` after [`DEADLINE`].
    pub async fn wait_until(&self, what: &str, condition: impl Fn(&EngineStats) -> bool) {
        let mut changed = self.shared.changed.subscribe();
        let waited = tokio::time::timeout(DEADLINE, async {
            loop {
                if condition(&self.stats()) {
                    return;
                }
                changed.changed().await.expect("engine dropped");
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "timed out waiting until {what}: {:?}",
            self.stats()
        );
    }

    fn truth_of(&self, id: &str) -> Result<Container, EngineError> {
        match self.state().truth.get(id) {
            Some(container) if container.pid() != 0 => Ok(container.clone()),
            Some(_) => Err(EngineError::Processless { id: id.to_owned() }),
            None => Err(EngineError::NotFound { id: id.to_owned() }),
        }
    }
}

fn unreachable() -> EngineError {
    EngineError::unreachable(
        SCRIPTED_API,
        std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "scripted engine is down",
        ),
    )
}

#[async_trait]
impl Engine for ScriptedEngine {
    fn api(&self) -> &str {
        SCRIPTED_API
    }

    fn engine_type(&self) -> &str {
        "scripted"
    }

    async fn info(&self) -> Result<EngineInfo, EngineError> {
        self.unless_frozen().await;
        let (down, refused, latency) = self.update(|state| {
            state.stats.info_calls += 1;
            (state.down, state.info_error.clone(), state.info_latency)
        });
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if down {
            return Err(unreachable());
        }
        if let Some(error) = refused {
            return Err(error);
        }
        Ok(EngineInfo {
            id: "scripted-engine".into(),
            engine_type: "scripted".into(),
            version: "1.0".into(),
            api: SCRIPTED_API.into(),
            pid: None,
        })
    }

    async fn list(&self) -> Result<Vec<Container>, EngineError> {
        self.unless_frozen().await;
        let (down, manual, truth, panicking) = self.update(|state| {
            state.stats.list_calls += 1;
            let truth: Vec<Container> = state.truth.values().cloned().collect();
            (state.down, state.manual_lists, truth, state.panicking_lists)
        });
        assert!(!panicking, "the scripted engine's list panics, as told");
        if down {
            return Err(unreachable());
        }
        if !manual {
            return Ok(truth);
        }
        let (reply, answer) = oneshot::channel();
        let _ = self.shared.list_calls.send(ListCall {
            as_called: truth,
            reply,
            engine: self.clone(),
        });
        answer.await.unwrap_or_else(|_| Err(unreachable()))
    }

    async fn list_with_omissions(&self) -> Result<Listing, EngineError> {
        let containers = self.list().await?;
        let omitted = self.state().omitted.clone();
        Ok(Listing {
            containers,
            omitted,
        })
    }

    async fn inspect(&self, id: &str) -> Result<Container, EngineError> {
        let _in_flight = InFlight::begin(self);
        self.unless_frozen().await;
        let (down, manual, latency) = {
            let state = self.state();
            (state.down, state.manual_inspects, state.inspect_latency)
        };
        if down {
            return Err(unreachable());
        }
        if manual {
            let (reply, answer) = oneshot::channel();
            let _ = self.shared.inspect_calls.send(InspectCall {
                id: id.to_owned(),
                as_called: self.truth_of(id),
                reply,
                engine: self.clone(),
            });
            return answer.await.unwrap_or_else(|_| Err(unreachable()));
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.truth_of(id)
    }

    async fn exits(&self, ids: &[Arc<str>]) -> HashMap<Arc<str>, Exit> {
        let state = self.state();
        ids.iter()
            .filter_map(|id| Some((id.clone(), *state.kept_exits.get(&**id)?)))
            .collect()
    }

    async fn ping(&self) -> Result<(), EngineError> {
        self.update(|state| state.stats.ping_calls += 1);
        self.unless_frozen().await;
        if self.state().down {
            return Err(unreachable());
        }
        Ok(())
    }

    async fn subscribe(&self) -> Result<EngineEvents, EngineError> {
        self.unless_frozen().await;
        let (tx, rx) = mpsc::unbounded_channel();
        let refused = self.update(|state| {
            state.stats.subscribe_calls += 1;
            if state.down {
                return Some(unreachable());
            }
            if let Some(error) = &state.subscribe_error {
                return Some(error.clone());
            }
            state.streams.push(tx);
            state.stats.open_streams += 1;
            None
        });
        match refused {
            Some(error) => Err(error),
            None => Ok(Box::pin(ScriptedEvents {
                events: rx,
                engine: self.clone(),
            })),
        }
    }
}

/// Counts an inspect as in flight until it finishes or is dropped.
struct InFlight(ScriptedEngine);

impl InFlight {
    fn begin(engine: &ScriptedEngine) -> Self {
        engine.update(|state| {
            state.stats.inspect_calls += 1;
            state.stats.inspects_in_flight += 1;
            state.stats.max_inspects_in_flight = state
                .stats
                .max_inspects_in_flight
                .max(state.stats.inspects_in_flight);
        });
        InFlight(engine.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|state| state.stats.inspects_in_flight -= 1);
    }
}

/// An event stream of the double; counted as open until dropped.
struct ScriptedEvents {
    events: mpsc::UnboundedReceiver<Result<EngineEvent, EngineError>>,
    engine: ScriptedEngine,
}

impl Stream for ScriptedEvents {
    type Item = Result<EngineEvent, EngineError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for ScriptedEvents {
    fn drop(&mut self) {
        self.engine.update(|state| state.stats.open_streams -= 1);
    }
}

/// A list call waiting for the test's answer.
#[derive(Debug)]
pub struct ListCall {
    as_called: Vec<Container>,
    reply: oneshot::Sender<Result<Vec<Container>, EngineError>>,
    engine: ScriptedEngine,
}

impl ListCall {
    /// Answers with the truth as it was when the call arrived — the list
    /// was taken then, and anything later is news to it.
    pub fn reply_as_called(self) {
        let _ = self.reply.send(Ok(self.as_called));
    }

    /// Answers with the truth as it is now.
    pub fn reply_now(self) {
        let truth = self.engine.state().truth.values().cloned().collect();
        let _ = self.reply.send(Ok(truth));
    }

    /// Answers as an engine that lists ids first and inspects each later
    /// does (moby): of the containers alive when the call arrived, those
    /// for which `now` says so are answered as they are now (left out if
    /// they died meanwhile), the others as they were then.
    pub fn reply_per_container(self, mut now: impl FnMut(&str) -> bool) {
        let containers = self
            .as_called
            .into_iter()
            .filter_map(|then| {
                if now(then.id()) {
                    self.engine.truth_of(then.id()).ok()
                } else {
                    Some(then)
                }
            })
            .collect();
        let _ = self.reply.send(Ok(containers));
    }

    /// Answers with these containers.
    pub fn reply(self, containers: Vec<Container>) {
        let _ = self.reply.send(Ok(containers));
    }

    /// Fails the call.
    pub fn fail(self, error: EngineError) {
        let _ = self.reply.send(Err(error));
    }
}

/// An inspect call waiting for the test's answer.
#[derive(Debug)]
pub struct InspectCall {
    id: String,
    as_called: Result<Container, EngineError>,
    reply: oneshot::Sender<Result<Container, EngineError>>,
    engine: ScriptedEngine,
}

impl InspectCall {
    /// The id asked for.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Answers from the truth as it is now.
    pub fn reply_now(self) {
        let answer = self.engine.truth_of(&self.id);
        let _ = self.reply.send(answer);
    }

    /// Answers from the truth as it was when the call arrived.
    pub fn reply_as_called(self) {
        let _ = self.reply.send(self.as_called);
    }

    /// Answers with this result.
    pub fn reply(self, result: Result<Container, EngineError>) {
        let _ = self.reply.send(result);
    }
}

/// Applies events to a snapshot the way a consumer would, failing the test
/// on any event that does not fit — a start of a container already present
/// (counted twice), an exit, pause or update of one absent, a pause of a
/// paused one (something missed), an update that changes nothing.
pub fn replay(snapshot: &Portfolio, events: &[Event]) -> Portfolio {
    let mut portfolio = snapshot.clone();
    for event in events {
        let id = event.container.id();
        let present = portfolio.container(id).is_some();
        match event.kind {
            EventKind::Started => {
                assert!(!present, "started twice: {id} ({event:?})");
                portfolio.insert(event.container.clone());
            }
            EventKind::Exited => {
                assert!(portfolio.remove(id).is_some(), "exit of unknown {id}");
            }
            EventKind::Paused | EventKind::Unpaused | EventKind::Updated => {
                let before = portfolio.container(id).cloned();
                let before = before.unwrap_or_else(|| panic!("{:?} of unknown {id}", event.kind));
                match event.kind {
                    EventKind::Paused => assert!(!before.is_paused(), "paused twice: {id}"),
                    EventKind::Unpaused => assert!(before.is_paused(), "unpaused twice: {id}"),
                    _ => assert!(
                        *before != *event.container,
                        "an update without change: {id}"
                    ),
                }
                portfolio.insert(event.container.clone());
            }
        }
    }
    portfolio
}

// ---- the contract, checked revision by revision ----

/// A subscriber's portfolio, brought forward one revision at a time from
/// the snapshot it subscribed with, checking the watcher's promise on the
/// way: the first revision after a snapshot at `r` is `r + 1`, each next
/// one is one more, and every event fits the portfolio it applies to (see
/// [`replay`]).
#[derive(Clone, Debug)]
pub struct Replayed {
    portfolio: Portfolio,
}

impl Replayed {
    /// Starts from a subscription's snapshot.
    pub fn new(snapshot: &Portfolio) -> Self {
        Replayed {
            portfolio: snapshot.clone(),
        }
    }

    /// The portfolio after the last revision applied.
    pub fn portfolio(&self) -> &Portfolio {
        &self.portfolio
    }

    /// The last revision applied (the snapshot's, before any).
    pub fn revision(&self) -> u64 {
        self.portfolio.revision()
    }

    /// Applies `events`, whole revisions in the order delivered, calling
    /// `each` with the portfolio after each revision.
    pub fn apply(&mut self, events: &[Event], mut each: impl FnMut(&Portfolio)) {
        for revision in events.chunk_by(|a, b| a.revision == b.revision) {
            let expected = self.portfolio.revision() + 1;
            assert_eq!(
                revision[0].revision,
                expected,
                "a revision after {}: {:?}",
                self.portfolio.revision(),
                revision
                    .iter()
                    .map(|e| (e.kind, e.container.id()))
                    .collect::<Vec<_>>()
            );
            self.portfolio = replay(&self.portfolio, revision);
            self.portfolio.set_revision(expected);
            each(&self.portfolio);
        }
    }
}

/// The portfolio at each revision, as first witnessed — by a subscriber's
/// replay, a snapshot, a read — so that every later witness of the same
/// revision can be held against it: one revision, one content.
#[derive(Debug, Default)]
pub struct History(BTreeMap<u64, Portfolio>);

impl History {
    /// Records `portfolio` as its revision's content, or fails (naming
    /// `what`) when that revision was seen with another content before.
    pub fn witness(&mut self, portfolio: &Portfolio, what: &str) {
        let revision = portfolio.revision();
        match self.0.get(&revision) {
            Some(known) => assert!(
                known == portfolio,
                "{what}: revision {revision} seen with two contents:\n{known:?}\n{portfolio:?}"
            ),
            None => {
                self.0.insert(revision, portfolio.clone());
            }
        }
    }

    /// The content of `revision`, if witnessed.
    pub fn at(&self, revision: u64) -> Option<&Portfolio> {
        self.0.get(&revision)
    }
}

/// A fleet subscriber's model of the fleet, brought forward one revision
/// at a time from its snapshot, checking the fleet's promise on the way:
/// revisions contiguous from the snapshot's `r + 1`; each revision about
/// one engine; an engine joins before anything else of it and leaves after
/// its containers exited; a parent or status change changes something;
/// containers start, change and exit as in [`replay`], each with its PID
/// here; a member's watcher revisions never go back.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetReplayed {
    revision: u64,
    engines: BTreeMap<crate::MemberId, EngineModel>,
    containers: BTreeMap<(crate::MemberId, String), (Arc<Container>, Option<u32>)>,
}

/// What a fleet subscriber knows of one engine.
#[derive(Clone, Debug, PartialEq)]
struct EngineModel {
    parent: Option<crate::ParentContainer>,
    status: StatusKey,
    info: Arc<EngineInfo>,
    /// The watcher revision its containers are at.
    revision: u64,
}

impl EngineModel {
    fn of(engine: &crate::FleetEngine) -> Self {
        EngineModel {
            parent: engine.parent().cloned(),
            status: status_key(engine.status()),
            info: engine.info().clone(),
            revision: engine.portfolio().revision(),
        }
    }
}

/// What a fleet tells of a member's status.
type StatusKey = (crate::SyncState, u64, Option<String>, Option<Duration>);

fn status_key(status: &crate::SyncStatus) -> StatusKey {
    (
        status.state,
        status.attempts,
        status.last_error.as_ref().map(ToString::to_string),
        status.sync_duration,
    )
}

impl FleetReplayed {
    /// Starts from a fleet subscription's snapshot.
    pub fn new(snapshot: &crate::FleetSnapshot) -> Self {
        FleetReplayed {
            revision: snapshot.revision(),
            engines: snapshot
                .engines()
                .map(|e| (e.member(), EngineModel::of(e)))
                .collect(),
            containers: snapshot
                .containers()
                .map(|c| {
                    let key = (c.engine().member(), c.container().id().to_owned());
                    (key, (c.container().clone(), c.local_pid()))
                })
                .collect(),
        }
    }

    /// The last fleet revision applied.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Applies `events`, whole revisions in the order delivered, calling
    /// `each` with the model after each revision.
    pub fn apply(&mut self, events: &[crate::FleetEvent], mut each: impl FnMut(&FleetReplayed)) {
        use crate::FleetChange;
        for revision in events.chunk_by(|a, b| a.revision == b.revision) {
            assert_eq!(
                revision[0].revision,
                self.revision + 1,
                "a fleet revision after {}",
                self.revision
            );
            self.revision += 1;
            let member = revision[0].engine.member();
            for event in revision {
                assert_eq!(
                    event.engine.member(),
                    member,
                    "one revision, one engine: {}",
                    self.revision
                );
                let known = self.engines.get(&member).cloned();
                match &event.change {
                    FleetChange::Joined => {
                        assert!(known.is_none(), "{member} joined twice");
                        self.engines.insert(member, EngineModel::of(&event.engine));
                        continue;
                    }
                    FleetChange::Left { .. } => {
                        assert!(known.is_some(), "{member} left, never joined");
                        assert!(
                            !self.containers.keys().any(|(m, _)| *m == member),
                            "{member} left with containers"
                        );
                        self.engines.remove(&member);
                        continue;
                    }
                    _ => {}
                }
                let mut model = known.unwrap_or_else(|| panic!("an event of unknown {member}"));
                match &event.change {
                    FleetChange::Parent => {
                        let parent = event.engine.parent().cloned();
                        assert!(model.parent != parent, "{member}: an unchanged parent");
                        model.parent = parent;
                    }
                    FleetChange::Status => {
                        let status = (status_key(event.engine.status()), event.engine.info());
                        assert!(
                            (&model.status, &model.info) != (&status.0, status.1),
                            "{member}: an unchanged status"
                        );
                        (model.status, model.info) = (status.0, status.1.clone());
                    }
                    FleetChange::Container {
                        event: e,
                        local_pid,
                    } => {
                        assert!(
                            e.revision >= model.revision,
                            "{member}: watcher revision {} after {}",
                            e.revision,
                            model.revision
                        );
                        model.revision = e.revision;
                        let key = (member, e.container.id().to_owned());
                        let present = self.containers.get(&key).cloned();
                        match e.kind {
                            EventKind::Started => {
                                assert!(present.is_none(), "started twice: {key:?}");
                                self.containers
                                    .insert(key, (e.container.clone(), *local_pid));
                            }
                            EventKind::Exited => {
                                let (_, had) =
                                    present.unwrap_or_else(|| panic!("exit of unknown {key:?}"));
                                assert_eq!(*local_pid, had, "the exit of {key:?}: its PID here");
                                self.containers.remove(&key);
                            }
                            _ => {
                                let (before, _) = present
                                    .unwrap_or_else(|| panic!("{:?} of unknown {key:?}", e.kind));
                                assert!(
                                    *before != *e.container,
                                    "a change without change: {key:?}"
                                );
                                self.containers
                                    .insert(key, (e.container.clone(), *local_pid));
                            }
                        }
                    }
                    _ => {}
                }
                self.engines.insert(member, model);
            }
            each(self);
        }
    }

    /// Fails unless the model is `snapshot`: the same engines, each with
    /// its parent, status and containers (with their PIDs here).
    pub fn assert_is(&self, snapshot: &crate::FleetSnapshot, what: &str) {
        let now = FleetReplayed::new(snapshot);
        assert_eq!(self.revision, now.revision, "{what}: the revision");
        assert_eq!(self.containers, now.containers, "{what}: the containers");
        let without_revisions = |m: &BTreeMap<crate::MemberId, EngineModel>| -> Vec<_> {
            m.iter()
                .map(|(id, e)| (*id, e.parent.clone(), e.status.clone(), e.info.clone()))
                .collect()
        };
        assert_eq!(
            without_revisions(&self.engines),
            without_revisions(&now.engines),
            "{what}: the engines"
        );
    }
}
