//! The watcher: keeps a portfolio synchronized with one engine.
//!
//! This file is the synchronization state machine. One loop owns all
//! mutable state and drives everything — the engine's event stream, the
//! list, the inspects — as futures it polls itself, so it spawns no tasks
//! and cancelling or dropping it ends everything at once.
//!
//! A *session* is one connection: subscribe to events first, then list
//! (events that arrive meanwhile are held back and applied in engine order
//! to the list's result), publish the difference to what subscribers saw
//! before, then follow the event stream. A lost stream ends the session;
//! readers keep the last portfolio until the next session has listed
//! (make-before-break), and the retry policy decides when that happens.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, info, info_span, warn, Instrument};

use crate::container::Container;
use crate::engine::{Engine, EngineEvents, EngineInfo};
use crate::error::{EngineError, WatchError};
use crate::event::{EngineEvent, Event, EventKind, EventSource, EventStream};
use crate::portfolio::Portfolio;
use crate::retry::RetryPolicy;

/// Inspects in flight at once: measured against dockerd, 16 gives the full
/// gain over sequential inspects, more gains nothing.
const DEFAULT_MAX_CONCURRENT_INSPECTS: usize = 16;
/// Events buffered per subscriber before a slow one is told it lagged.
const DEFAULT_EVENT_CAPACITY: usize = 4096;

/// How far the watcher has got synchronizing with its engine.
#[derive(Clone, Debug, Default)]
pub struct SyncStatus {
    /// Finished synchronization attempts, successful or not.
    pub attempts: u64,
    /// Whether the portfolio currently follows a live engine connection.
    pub synced: bool,
    /// Why the last attempt or connection failed, if it did.
    pub last_error: Option<EngineError>,
}

/// Configures a [`Watcher`] beyond the engine and retry policy.
#[derive(Debug)]
pub struct WatcherBuilder {
    engine: Arc<dyn Engine>,
    retry: RetryPolicy,
    max_concurrent_inspects: usize,
    event_capacity: usize,
    safety_relist: Option<Duration>,
}

impl WatcherBuilder {
    /// Sets the retry policy (default: [`RetryPolicy::default`], forever).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how many containers may be inspected at once after start
    /// events (default 16; at least 1).
    pub fn max_concurrent_inspects(mut self, limit: usize) -> Self {
        self.max_concurrent_inspects = limit.max(1);
        self
    }

    /// Sets how many events each subscriber may fall behind before it is
    /// told it lagged (default 4096; at least 1).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Relists every `period` while connected, to heal anything the engine
    /// failed to report (default: never; events are trusted).
    pub fn safety_relist(mut self, period: Duration) -> Self {
        self.safety_relist = Some(period);
        self
    }

    /// Builds the watcher; it does nothing until [`Watcher::watch`] runs.
    pub fn build(self) -> Watcher {
        let api = self.engine.api().to_owned();
        let info = EngineInfo {
            engine_type: self.engine.engine_type().to_owned(),
            api,
            pid: self.engine.pid(),
            ..EngineInfo::default()
        };
        Watcher {
            shared: Arc::new(Shared {
                engine: self.engine,
                retry: self.retry,
                max_concurrent_inspects: self.max_concurrent_inspects,
                safety_relist: self.safety_relist,
                portfolio: ArcSwap::from_pointee(Portfolio::new()),
                publishing: Mutex::new(()),
                events: broadcast::channel(self.event_capacity).0,
                info: ArcSwap::from_pointee(info),
                status: watch::channel(SyncStatus::default()).0,
                watching: watch::channel(false).0,
                closed: CancellationToken::new(),
            }),
        }
    }
}

/// Keeps an always-current [`Portfolio`] of one engine's alive containers
/// and hands out its lifecycle events.
///
/// Cheap to clone; all clones share one portfolio. Run [`watch`](Self::watch)
/// (typically in a task of its own) and read [`portfolio`](Self::portfolio)
/// whenever needed: reads never wait for the engine or for an update.
#[derive(Clone, Debug)]
pub struct Watcher {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Arc<dyn Engine>,
    retry: RetryPolicy,
    max_concurrent_inspects: usize,
    safety_relist: Option<Duration>,
    /// The latest published portfolio.
    portfolio: ArcSwap<Portfolio>,
    /// Held while publishing and while subscribing, so that a subscriber's
    /// snapshot and the events after it fit together exactly.
    publishing: Mutex<()>,
    events: broadcast::Sender<Event>,
    info: ArcSwap<EngineInfo>,
    status: watch::Sender<SyncStatus>,
    /// Whether a `watch` loop is running.
    watching: watch::Sender<bool>,
    closed: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("engine", &self.engine)
            .field("retry", &self.retry)
            .field("containers", &self.portfolio.load().len())
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher of `engine` that retries after failures as `retry` says.
    pub fn new(engine: impl Engine, retry: RetryPolicy) -> Self {
        Self::builder(engine).retry(retry).build()
    }

    /// A builder for a watcher of `engine`, for more settings.
    pub fn builder(engine: impl Engine) -> WatcherBuilder {
        WatcherBuilder {
            engine: Arc::new(engine),
            retry: RetryPolicy::default(),
            max_concurrent_inspects: DEFAULT_MAX_CONCURRENT_INSPECTS,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            safety_relist: None,
        }
    }

    /// The current portfolio: an immutable snapshot, cheap to take.
    pub fn portfolio(&self) -> Arc<Portfolio> {
        self.shared.portfolio.load_full()
    }

    /// The current portfolio and the stream of every event after it,
    /// taken atomically: applying the events in order to the snapshot
    /// gives each later portfolio, with no change missed or counted twice.
    ///
    /// A subscriber that falls behind by more than the event capacity gets
    /// a [`Lagged`](crate::Lagged) item instead of slowing the watcher down.
    pub fn subscribe(&self) -> (Arc<Portfolio>, EventStream) {
        let _pairing = lock(&self.shared.publishing);
        (
            self.shared.portfolio.load_full(),
            EventStream::new(self.shared.events.subscribe()),
        )
    }

    /// Resolves once the first synchronization attempt has finished — also
    /// when it failed, so nobody waits forever — with whether the portfolio
    /// now follows the engine, or why not.
    pub async fn ready(&self) -> Result<(), EngineError> {
        let mut status = self.shared.status.subscribe();
        let status = status
            .wait_for(|s| s.attempts > 0)
            .await
            .map(|s| s.clone())
            .unwrap_or_default();
        if status.synced {
            Ok(())
        } else {
            Err(status.last_error.unwrap_or(EngineError::Cancelled))
        }
    }

    /// How far synchronization has got, right now.
    pub fn status(&self) -> SyncStatus {
        self.shared.status.borrow().clone()
    }

    /// What the engine said about itself at the last (re)connect; before
    /// the first, only the API endpoint, type guess and PID are known.
    pub fn engine_info(&self) -> Arc<EngineInfo> {
        self.shared.info.load_full()
    }

    /// The engine's id (empty before the first connect).
    pub fn id(&self) -> String {
        self.engine_info().id.clone()
    }

    /// The engine's type, such as `docker.com` or `podman.io`.
    pub fn engine_type(&self) -> String {
        self.engine_info().engine_type.clone()
    }

    /// The engine's version (empty before the first connect).
    pub fn version(&self) -> String {
        self.engine_info().version.clone()
    }

    /// The engine's API endpoint.
    pub fn api(&self) -> String {
        self.engine_info().api.clone()
    }

    /// The engine's PID, when known: as the caller told the engine, else as
    /// the engine said at the last (re)connect.
    pub fn pid(&self) -> Option<u32> {
        self.engine_info().pid
    }

    /// Synchronizes with the engine and keeps following it until `cancel`
    /// is cancelled, [`close`](Self::close) is called, or the retry policy
    /// gives up. Dropping the future stops it as well.
    ///
    /// Returns `Ok(())` when stopped; an error when the policy gave up or
    /// the engine cannot be watched at all.
    pub async fn watch(&self, cancel: CancellationToken) -> Result<(), WatchError> {
        let _watching = WatchingGuard::acquire(&self.shared.watching)?;
        let stop = Stop {
            cancel,
            closed: self.shared.closed.clone(),
        };
        let api = self.shared.engine.api().to_owned();
        SyncLoop::new(&self.shared)
            .run(&stop)
            .instrument(info_span!("watch", engine = %api))
            .await
    }

    /// Stops a running [`watch`](Self::watch), waits until it has ended,
    /// then closes the engine's connections. Later watches end at once.
    pub async fn close(&self) {
        self.shared.closed.cancel();
        let mut watching = self.shared.watching.subscribe();
        let _ = watching.wait_for(|running| !running).await;
        self.shared.engine.close().await;
    }
}

fn lock(mutex: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    // Nothing guarded can be left half-done: the mutex only orders.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Marks a watch loop as running; one at a time per watcher.
struct WatchingGuard<'a>(&'a watch::Sender<bool>);

impl<'a> WatchingGuard<'a> {
    fn acquire(watching: &'a watch::Sender<bool>) -> Result<Self, WatchError> {
        if watching.send_if_modified(|running| !std::mem::replace(running, true)) {
            Ok(WatchingGuard(watching))
        } else {
            Err(WatchError::AlreadyWatching)
        }
    }
}

impl Drop for WatchingGuard<'_> {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// The two ways a watch is stopped: the caller's token and `close`.
struct Stop {
    cancel: CancellationToken,
    closed: CancellationToken,
}

impl Stop {
    async fn stopped(&self) {
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = self.closed.cancelled() => {}
        }
    }

    /// Runs `work` unless stopped first.
    async fn unless_stopped<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = self.stopped() => None,
            output = work => Some(output),
        }
    }
}

/// Why a session or relist was interrupted.
enum Interrupt {
    Stopped,
    Lost(EngineError),
}

impl From<EngineError> for Interrupt {
    fn from(error: EngineError) -> Self {
        Interrupt::Lost(error)
    }
}

/// The write side: the one owner of the working portfolio.
struct SyncLoop<'a> {
    shared: &'a Shared,
    /// Equals the published portfolio, except while a list's result is
    /// being brought up to date before it is published.
    working: Portfolio,
    inspections: Inspections,
}

impl<'a> SyncLoop<'a> {
    fn new(shared: &'a Shared) -> Self {
        SyncLoop {
            shared,
            working: (*shared.portfolio.load_full()).clone(),
            inspections: Inspections::new(shared.engine.clone(), shared.max_concurrent_inspects),
        }
    }

    /// Sessions, with retries between them, until stopped or given up.
    async fn run(mut self, stop: &Stop) -> Result<(), WatchError> {
        let mut delays = self.shared.retry.delays();
        let mut failures: u32 = 0;
        let mut session_number: u64 = 0;
        loop {
            session_number += 1;
            let span = if self.shared.status.borrow().attempts == 0 {
                info_span!("sync", session = session_number)
            } else {
                info_span!("resync", session = session_number)
            };
            let mut synced = false;
            let interrupt = self.session(stop, &mut synced).instrument(span).await;
            let error = match interrupt {
                Interrupt::Stopped => {
                    self.shared.status.send_if_modified(|status| {
                        // Release whoever waits for readiness.
                        let first = status.attempts == 0;
                        if first {
                            status.attempts = 1;
                            status.last_error = Some(EngineError::Cancelled);
                        }
                        first
                    });
                    info!("watch stopped");
                    return Ok(());
                }
                Interrupt::Lost(error) => error,
            };
            if synced {
                // The engine worked until now: a new failure sequence.
                delays = self.shared.retry.delays();
                failures = 0;
            }
            failures += 1;
            self.shared.status.send_modify(|status| {
                if !synced {
                    status.attempts += 1;
                }
                status.synced = false;
                status.last_error = Some(error.clone());
            });
            if error.is_permanent() {
                warn!(%error, "engine cannot be watched; giving up");
                return Err(WatchError::Unsupported(error));
            }
            let Some(delay) = delays.next() else {
                warn!(%error, failures, "retry policy exhausted; giving up");
                return Err(WatchError::GaveUp {
                    attempts: failures,
                    last: error,
                });
            };
            warn!(%error, failures, ?delay, "engine lost; resynchronizing after a delay");
            if stop
                .unless_stopped(tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return Ok(());
            }
        }
    }

    /// One connection: describe, subscribe, list, follow. Sets `synced`
    /// once the list is published.
    async fn session(&mut self, stop: &Stop, synced: &mut bool) -> Interrupt {
        // Whatever was being inspected belongs to the lost connection; the
        // list below covers it.
        self.inspections.clear();
        let engine = self.shared.engine.clone();

        // The engine describes itself while the events are subscribed and
        // the containers listed: an engine's info can cost as much as the
        // list (dockerd's /info counts every container), and the sync
        // needs nothing of it.
        let describe = {
            let (engine, shared) = (engine.clone(), self.shared);
            async move {
                let info = engine.info().await?;
                shared.info.store(Arc::new(EngineInfo {
                    api: engine.api().to_owned(),
                    pid: engine.pid().or(info.pid),
                    ..info
                }));
                Ok::<(), EngineError>(())
            }
        };
        let follow = async {
            let mut events = match stop.unless_stopped(engine.subscribe()).await {
                None => return Err(Interrupt::Stopped),
                Some(Err(error)) => return Err(Interrupt::Lost(error)),
                Some(Ok(events)) => events,
            };
            self.relist(&mut events, stop).await?;
            Ok(events)
        };
        let (described, followed) = tokio::join!(stop.unless_stopped(describe), follow);
        let mut events = match (described, followed) {
            (None, _) | (_, Err(Interrupt::Stopped)) => return Interrupt::Stopped,
            (_, Err(interrupt)) => return interrupt,
            (Some(Err(error)), _) => return Interrupt::Lost(error),
            (Some(Ok(())), Ok(events)) => events,
        };
        *synced = true;
        self.shared.status.send_modify(|status| {
            status.attempts += 1;
            status.synced = true;
            status.last_error = None;
        });
        info!(containers = self.working.len(), "synchronized");

        let mut safety_relist = self.shared.safety_relist.map(|period| {
            let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        });
        loop {
            tokio::select! {
                biased;
                _ = stop.stopped() => return Interrupt::Stopped,
                item = events.next() => match item {
                    Some(Ok(event)) => {
                        let changes = self.apply_event(event);
                        self.publish(changes);
                    }
                    Some(Err(error)) => return Interrupt::Lost(error),
                    None => {
                        return Interrupt::Lost(EngineError::StreamEnded {
                            endpoint: engine.api().to_owned(),
                        })
                    }
                },
                Some(done) = self.inspections.next_done() => match self.apply_inspection(done) {
                    Ok(changes) => self.publish(changes),
                    Err(error) => return Interrupt::Lost(error),
                },
                _ = tick(&mut safety_relist) => {
                    if let Err(interrupt) = self.relist(&mut events, stop).await {
                        return interrupt;
                    }
                }
            }
        }
    }

    /// Lists while holding back the events that arrive meanwhile, applies
    /// them in engine order to the list's result, then publishes that with
    /// the difference to what subscribers have seen.
    async fn relist(&mut self, events: &mut EngineEvents, stop: &Stop) -> Result<(), Interrupt> {
        let span = debug_span!("relist");
        let engine = self.shared.engine.clone();
        let mut list = engine.list();
        let mut held_back = Vec::new();
        let listed = loop {
            tokio::select! {
                biased;
                _ = stop.stopped() => return Err(Interrupt::Stopped),
                // Events before the list: an event already delivered when
                // the list answers must be held back, not applied after
                // the list is published (the container would flash up).
                item = events.next() => match item {
                    Some(Ok(event)) => held_back.push(event),
                    Some(Err(error)) => return Err(error.into()),
                    None => {
                        return Err(EngineError::StreamEnded {
                            endpoint: engine.api().to_owned(),
                        }
                        .into())
                    }
                },
                listed = &mut list => break listed?,
                // Only a safety relist has inspections in flight; their
                // results go out as usual while the list is pending.
                Some(done) = self.inspections.next_done() => {
                    let changes = self.apply_inspection(done)?;
                    self.publish(changes);
                }
            }
        };
        let _entered = span.entered();
        let mut listed: Portfolio = listed.into_iter().collect();
        listed.set_revision(self.working.revision());
        let seen = std::mem::replace(&mut self.working, listed);
        debug!(
            listed = self.working.len(),
            held_back = held_back.len(),
            "list complete"
        );
        // The held-back events happened after the subscription, so after or
        // during the list: a container that died is removed (the list must
        // not resurrect it), pause changes are replayed, and a start the
        // list missed is inspected. Their own changes are subsumed in the
        // difference below.
        for event in held_back {
            self.apply_event(event);
        }
        let changes = self
            .working
            .changes_since(&seen)
            .into_iter()
            .map(|(kind, container)| Event {
                kind,
                container,
                timestamp: None,
                source: EventSource::Sync,
                revision: 0, // set when published
            })
            .collect();
        self.publish(changes);
        Ok(())
    }

    /// Applies one engine event to the working portfolio; returns the
    /// changes it made.
    fn apply_event(&mut self, event: EngineEvent) -> Vec<Event> {
        let _span = debug_span!("apply_event", kind = ?event.kind, id = %event.id).entered();
        let change = |kind, container| Event {
            kind,
            container,
            timestamp: event.timestamp,
            source: EventSource::Engine,
            revision: 0, // set when published
        };
        match event.kind {
            EventKind::Started => {
                if self.working.container(&event.id).is_some()
                    || self.inspections.is_tracking(&event.id)
                {
                    debug!("already known; a replayed or duplicate start");
                } else {
                    self.inspections.start(event.id, event.timestamp);
                }
                Vec::new()
            }
            EventKind::Exited => {
                // A die wins over an inspect of its start still in flight.
                self.inspections.forget(&event.id);
                // By id only: exit events may lack labels and project.
                self.working
                    .remove(&event.id)
                    .map(|gone| change(EventKind::Exited, gone))
                    .into_iter()
                    .collect()
            }
            EventKind::Paused | EventKind::Unpaused => {
                let paused = event.kind == EventKind::Paused;
                if self.inspections.is_tracking(&event.id) {
                    // Applied once the start's inspect is in, keeping order.
                    self.inspections.hold_back(event);
                    return Vec::new();
                }
                match self.working.container(&event.id) {
                    Some(container) if container.is_paused() != paused => {
                        let container = Arc::new((**container).clone().with_paused(paused));
                        self.working.insert(container.clone());
                        vec![change(event.kind, container)]
                    }
                    _ => Vec::new(),
                }
            }
        }
    }

    /// Applies a finished inspect; an error other than "container gone"
    /// means the engine is in trouble and ends the session.
    fn apply_inspection(&mut self, done: Inspected) -> Result<Vec<Event>, EngineError> {
        let _span = debug_span!("apply_inspection", id = %done.id).entered();
        let Some(tracked) = self.inspections.finish(&done) else {
            debug!("inspect result dropped: the container died meanwhile");
            return Ok(Vec::new());
        };
        let container = match done.result {
            Ok(container) => Arc::new(container),
            Err(error) if error.is_container_gone() => {
                debug!(%error, "started container gone before its inspect");
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        if container.id() != done.id {
            warn!(
                inspected = container.id(),
                "engine inspected a different id than its event named"
            );
        }
        let mut changes = Vec::new();
        if self.working.insert(container.clone()).is_none() {
            changes.push(Event {
                kind: EventKind::Started,
                container,
                timestamp: tracked.timestamp,
                source: EventSource::Engine,
                revision: 0, // set when published
            });
        }
        for event in tracked.held_back {
            changes.extend(self.apply_event(event));
        }
        Ok(changes)
    }

    /// Makes the working portfolio the one readers see and sends the
    /// changes that led to it, as one step for subscribers.
    fn publish(&mut self, mut changes: Vec<Event>) {
        if !changes.is_empty() {
            let revision = self.working.revision() + 1;
            self.working.set_revision(revision);
            for change in &mut changes {
                change.revision = revision;
            }
        }
        let _pairing = lock(&self.shared.publishing);
        self.shared.portfolio.store(Arc::new(self.working.clone()));
        for change in changes {
            // No subscribers is fine; a lagging one is its own problem.
            let _ = self.shared.events.send(change);
        }
    }
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A finished inspect of a started container.
struct Inspected {
    id: String,
    generation: u64,
    result: Result<Container, EngineError>,
}

/// A start being inspected, and the pause changes that arrived meanwhile.
struct Tracked {
    generation: u64,
    timestamp: Option<SystemTime>,
    held_back: Vec<EngineEvent>,
}

/// The inspects of started containers: at most `limit` in flight, at most
/// one per container; later events of a container wait for its inspect.
struct Inspections {
    engine: Arc<dyn Engine>,
    limit: usize,
    tracked: HashMap<String, Tracked>,
    queue: VecDeque<(String, u64)>,
    running: FuturesUnordered<BoxFuture<'static, Inspected>>,
    next_generation: u64,
}

impl Inspections {
    fn new(engine: Arc<dyn Engine>, limit: usize) -> Self {
        Inspections {
            engine,
            limit,
            tracked: HashMap::new(),
            queue: VecDeque::new(),
            running: FuturesUnordered::new(),
            next_generation: 0,
        }
    }

    fn is_tracking(&self, id: &str) -> bool {
        self.tracked.contains_key(id)
    }

    fn start(&mut self, id: String, timestamp: Option<SystemTime>) {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.tracked.insert(
            id.clone(),
            Tracked {
                generation,
                timestamp,
                held_back: Vec::new(),
            },
        );
        self.queue.push_back((id, generation));
        self.fill();
    }

    fn hold_back(&mut self, event: EngineEvent) {
        if let Some(tracked) = self.tracked.get_mut(&event.id) {
            tracked.held_back.push(event);
        }
    }

    /// Stops caring about a container's inspect: its result, when it
    /// comes, is dropped; if it has not started yet, it never does.
    fn forget(&mut self, id: &str) {
        self.tracked.remove(id);
    }

    /// Takes the tracking of a finished inspect, unless it was forgotten.
    fn finish(&mut self, done: &Inspected) -> Option<Tracked> {
        match self.tracked.get(&done.id) {
            Some(tracked) if tracked.generation == done.generation => self.tracked.remove(&done.id),
            _ => None,
        }
    }

    fn clear(&mut self) {
        self.tracked.clear();
        self.queue.clear();
        self.running = FuturesUnordered::new();
    }

    fn fill(&mut self) {
        while self.running.len() < self.limit {
            let Some((id, generation)) = self.queue.pop_front() else {
                break;
            };
            if self.tracked.get(&id).map(|t| t.generation) != Some(generation) {
                continue; // forgotten while queued
            }
            let engine = self.engine.clone();
            self.running.push(Box::pin(async move {
                let result = engine.inspect(&id).await;
                Inspected {
                    id,
                    generation,
                    result,
                }
            }));
        }
    }

    /// The next finished inspect; `None` at once when none is in flight.
    async fn next_done(&mut self) -> Option<Inspected> {
        let done = self.running.next().await?;
        self.fill();
        Some(done)
    }
}

#[cfg(test)]
mod tests;
