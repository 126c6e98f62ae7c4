//! The synchronization state machine. One loop owns all mutable state and
//! drives everything — the engine's event stream, the list, the inspects,
//! the engine's self-description — as futures it polls itself, so it
//! spawns no tasks and cancelling or dropping it ends everything at once.
//!
//! A *session* is one connection, in phases (see the watcher's module
//! doc): [`subscribe`](SyncLoop::subscribe) to events first, then
//! [`relist`](SyncLoop::relist) (events that arrive meanwhile are held back
//! and applied in engine order to the list's result), publish the
//! difference to what subscribers saw before, then
//! [`follow`](SyncLoop::follow) the event stream. A lost stream, a failed
//! call or a call past its deadline ends the session; readers keep the last
//! portfolio until the next session has listed (make-before-break), and
//! the retry policy decides when that happens.
//!
//! Every change of the portfolio's content goes through [`Difference`],
//! so it reaches subscribers as an event in a new revision: a snapshot plus
//! the events up to revision `r` is always the snapshot at `r`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, info, info_span, warn, Instrument};

use crate::container::{Container, StringPool};
use crate::engine::{EngineEvents, EngineInfo, Listing};
use crate::error::{describe as describe_error, EngineError, WatchError};
use crate::event::{EngineEvent, Event, EventKind, EventSource, Exit};
use crate::portfolio::{Difference, Portfolio};

use super::backoff::{Backoff, Call, Next, Outcome};
use super::deadline::within;
use super::inspections::{Inspected, Inspections};
use super::{Shared, Transition};
use crate::support::lock;

mod follow;
mod relist;

/// The two ways a watch is stopped: the caller's token and `close`.
pub(super) struct Stop {
    pub(super) cancel: CancellationToken,
    pub(super) closing: CancellationToken,
}

impl Stop {
    async fn stopped(&self) {
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = self.closing.cancelled() => {}
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

/// How long the engine may take to say more of an unreachable endpoint.
const DIAGNOSIS_DEADLINE: Duration = Duration::from_secs(2);

/// The engine's diagnosis of an endpoint it could not reach or not
/// understand, within [`DIAGNOSIS_DEADLINE`]; the error as it is otherwise.
async fn diagnosed(engine: Arc<dyn crate::Engine>, error: EngineError) -> EngineError {
    if !matches!(
        error,
        EngineError::Unreachable { .. } | EngineError::Protocol { .. }
    ) {
        return error;
    }
    tokio::time::timeout(DIAGNOSIS_DEADLINE, engine.diagnose(error.clone()))
        .await
        .unwrap_or(error)
}

/// Why a session or relist was interrupted.
enum Interrupt {
    Stopped,
    Lost(EngineError, Call),
}

/// What woke the follow phase: an item of the event stream, or a
/// finished inspect.
enum Ready {
    Event(Option<Result<EngineEvent, EngineError>>),
    Inspected(Inspected),
}

/// What applying one engine event did.
struct Applied {
    /// The changes it made to the portfolio.
    changes: Vec<Event>,
    /// Whether it told anything new: it changed the portfolio, or began or
    /// ended an inspect, or was held back behind one. A start of a known
    /// container, an exit of an unknown one, a pause of a paused one (as
    /// a replay after a resubscribe brings) are none.
    news: bool,
}

impl Applied {
    fn nothing() -> Self {
        Applied {
            changes: Vec::new(),
            news: false,
        }
    }

    fn news(changes: Vec<Event>) -> Self {
        Applied {
            changes,
            news: true,
        }
    }

    /// News if it changed anything.
    fn of(changes: Vec<Event>) -> Self {
        Applied {
            news: !changes.is_empty(),
            changes,
        }
    }
}

/// How many engine events and finished inspects that are ready at once
/// the follow phase applies before it publishes them, as one revision.
const MAX_BATCH: usize = 256;

/// The write side: the one writer of the portfolio (`Shared::current`),
/// which it changes under its lock, one revision at a time.
pub(super) struct SyncLoop {
    shared: Arc<Shared>,
    inspections: Inspections,
    /// The engine describing itself, alongside the session's other work.
    describing: Option<BoxFuture<'static, ()>>,
    /// Image names and ids, shared between the containers that repeat them.
    strings: StringPool,
}

impl SyncLoop {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        SyncLoop {
            inspections: Inspections::new(
                shared.engine.clone(),
                shared.max_concurrent_inspects,
                shared.deadlines.inspect,
            ),
            describing: None,
            strings: StringPool::default(),
            shared,
        }
    }

    /// Sessions, with retries between them, until stopped or given up.
    pub(super) async fn run(mut self, stop: &Stop) -> Result<(), WatchError> {
        let mut backoff = Backoff::new(self.shared.retry.clone());
        let mut session_number: u64 = 0;
        loop {
            session_number += 1;
            let span = if backoff.ever_synced() {
                info_span!("resync", session = session_number)
            } else {
                info_span!("sync", session = session_number)
            };
            let (interrupt, outcome) = self.session(stop).instrument(span).await;
            // Whatever was still being inspected belongs to the ended
            // connection; the next list covers it.
            self.inspections.clear();
            let describing = self.describing.take();
            let (error, call) = match interrupt {
                Interrupt::Stopped => {
                    info!("watch stopped");
                    return Ok(());
                }
                Interrupt::Lost(error, call) => (error, call),
            };
            // A session that never synced may have met no engine at all:
            // the engine may tell what is there instead.
            let error = if outcome.synced {
                error
            } else {
                let diagnosing = diagnosed(self.shared.engine.clone(), error);
                match stop.unless_stopped(diagnosing).await {
                    Some(error) => error,
                    None => return Ok(()),
                }
            };
            let next = backoff.after(&error, call, outcome);
            self.shared.report(Transition::Lost {
                error: error.clone(),
                counts_attempt: !outcome.synced,
            });
            let failures = backoff.failures();
            let delay = match next {
                Next::Retry(delay) => delay,
                Next::Unsupported => {
                    warn!(error = %describe_error(&error), "engine cannot be watched; giving up");
                    // Which engine refused is worth knowing.
                    finish(describing, stop).await;
                    return Err(WatchError::Unsupported(error));
                }
                Next::GaveUp { attempts } => {
                    warn!(error = %describe_error(&error), failures, "retry policy exhausted; giving up");
                    finish(describing, stop).await;
                    return Err(WatchError::GaveUp {
                        attempts,
                        last: error,
                    });
                }
            };
            warn!(
                error = %describe_error(&error),
                failures,
                ?delay,
                "engine lost; resynchronizing after a delay"
            );
            if stop
                .unless_stopped(tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return Ok(());
            }
        }
    }

    /// One connection, through the phases of a sync: subscribe (the
    /// engine describes itself alongside), list, publish; then follow.
    /// Returns why it ended and what it achieved.
    async fn session(&mut self, stop: &Stop) -> (Interrupt, Outcome) {
        let began = tokio::time::Instant::now();
        self.shared.report(Transition::Syncing);
        let unsynced = |interrupt| (interrupt, Outcome::default());
        let mut events = match self.subscribe(stop).await {
            Ok(events) => events,
            Err(interrupt) => return unsynced(interrupt),
        };
        if let Err(interrupt) = self.relist(&mut events, stop).await {
            return unsynced(interrupt);
        }
        // Who says it is synced can say with which engine, too: its info
        // is in (or refused, or late) before the sync counts as done.
        if finish(self.describing.take(), stop).await.is_none() {
            return unsynced(Interrupt::Stopped);
        }
        self.shared.report(Transition::Synced {
            took: began.elapsed(),
        });
        info!(
            containers = lock(&self.shared.current).len(),
            "synchronized"
        );
        let (interrupt, proven) = self.follow(events, stop).await;
        (
            interrupt,
            Outcome {
                synced: true,
                proven,
            },
        )
    }

    /// The subscribe phase: the event subscription, live, while the engine
    /// describes itself. The description may go on past it; the list runs
    /// beside it too.
    async fn subscribe(&mut self, stop: &Stop) -> Result<EngineEvents, Interrupt> {
        // An engine's info can cost as much as the list (dockerd's /info
        // counts every container), and the sync needs nothing of it.
        self.describing = Some(describe(self.shared.clone()).boxed());
        let engine = self.shared.engine.clone();
        let subscribing = within(
            self.shared.deadlines.subscribe,
            engine.api(),
            "subscribe",
            engine.subscribe(),
        );
        tokio::pin!(subscribing);
        loop {
            tokio::select! {
                biased;
                _ = stop.stopped() => return Err(Interrupt::Stopped),
                subscribed = &mut subscribing => {
                    return subscribed.map_err(|error| Interrupt::Lost(error, Call::Subscribe));
                }
                () = describing(&mut self.describing) => {}
            }
        }
    }

    fn stream_ended(&self) -> EngineError {
        EngineError::StreamEnded {
            endpoint: self.shared.engine.api().to_owned(),
        }
    }

    /// Applies one engine event to the working portfolio; returns the
    /// changes it made, and whether it was news.
    fn apply_event(&mut self, working: &mut Portfolio, event: EngineEvent) -> Applied {
        let _span = debug_span!("apply_event", kind = ?event.kind, id = %event.id).entered();
        match event.kind {
            EventKind::Started => {
                if working.container(&event.id).is_some() || self.inspections.is_tracking(&event.id)
                {
                    debug!("already known; a replayed or duplicate start");
                    return Applied::nothing();
                }
                self.inspections.start(event.id, event.timestamp);
                Applied::news(Vec::new())
            }
            EventKind::Exited => {
                // A die wins over an inspect of its start still in flight.
                let was_inspected = self.inspections.forget(&event.id);
                // By id only: exit events may lack labels and project.
                match working.remove(&event.id) {
                    Some(gone) => {
                        let mut exited = event_of(
                            EventKind::Exited,
                            gone,
                            EventSource::Engine,
                            event.timestamp,
                        );
                        exited.exit = event.exit;
                        Applied::news(vec![exited])
                    }
                    None if was_inspected => Applied::news(Vec::new()),
                    None => Applied::nothing(),
                }
            }
            EventKind::Paused | EventKind::Unpaused => {
                if self.inspections.is_tracking(&event.id) {
                    // Applied once the start's inspect is in, keeping order.
                    self.inspections.hold_back(event);
                    return Applied::news(Vec::new());
                }
                let paused = event.kind == EventKind::Paused;
                match working.container(&event.id) {
                    Some(container) => {
                        let changed = Arc::new((**container).clone().with_paused(paused));
                        Applied::of(self.put(working, changed, event.timestamp))
                    }
                    None => Applied::nothing(),
                }
            }
            // The engine says the record changed: inspected again, the
            // difference published when it is in. Not news of itself: a
            // replayed rename changes nothing.
            EventKind::Updated => {
                if working.container(&event.id).is_some()
                    && !self.inspections.is_tracking(&event.id)
                {
                    self.inspections.start(event.id, event.timestamp);
                }
                Applied::nothing()
            }
        }
    }

    /// Applies a finished inspect; an error other than "container gone"
    /// means the engine is in trouble and ends the session.
    fn apply_inspection(
        &mut self,
        working: &mut Portfolio,
        done: Inspected,
    ) -> Result<Vec<Event>, Interrupt> {
        let _span = debug_span!("apply_inspection", id = %done.id).entered();
        let Some(tracked) = self.inspections.finish(&done) else {
            debug!("inspect result dropped: the container died meanwhile");
            return Ok(Vec::new());
        };
        let container = match done.result {
            Ok(container) => Arc::new(container.with_shared_strings(&mut self.strings)),
            Err(error) if error.is_container_gone() => {
                debug!(error = %describe_error(&error), "started container gone before its inspect");
                return Ok(Vec::new());
            }
            Err(error) => return Err(Interrupt::Lost(error, Call::Inspect)),
        };
        if container.id() != done.id {
            // Keyed by another id, its exit would never find it.
            let error = EngineError::Protocol {
                endpoint: self.shared.engine.api().to_owned(),
                message: format!(
                    "asked to inspect container {:?}, answered with container {:?}",
                    done.id,
                    container.id()
                ),
            };
            return Err(Interrupt::Lost(error, Call::Inspect));
        }
        // Present already when a (safety) relist listed it meanwhile: then
        // the inspect tells what changed since. The start event's time is
        // that of the start only.
        let mut changes = self.put(working, container, tracked.timestamp);
        for change in &mut changes {
            if change.kind != EventKind::Started {
                change.timestamp = None;
            }
        }
        for event in tracked.behind_inspect {
            changes.extend(self.apply_event(working, event).changes);
        }
        Ok(changes)
    }

    /// Puts a container's new record into the working portfolio, unless
    /// it equals the one there; returns what changed, as live engine events.
    fn put(
        &self,
        working: &mut Portfolio,
        container: Arc<Container>,
        timestamp: Option<SystemTime>,
    ) -> Vec<Event> {
        let mut difference = Difference::default();
        difference.add(working.container(container.id()), Some(&container));
        if difference.is_empty() {
            return Vec::new();
        }
        working.insert(container);
        difference
            .into_events()
            .into_iter()
            .map(|(kind, container)| event_of(kind, container, EventSource::Engine, timestamp))
            .collect()
    }

    /// Publishes the changes made to `current` (the guarded portfolio,
    /// under its lock) as its next revision: readers see it from now on,
    /// subscribers get the changes as one revision.
    fn publish(&self, current: &mut Portfolio, mut changes: Vec<Event>) {
        if changes.is_empty() {
            return;
        }
        let revision = current.revision() + 1;
        current.set_revision(revision);
        for change in &mut changes {
            change.revision = revision;
        }
        if self.shared.snapshot.load().is_some() {
            // Made before the change: the next reader makes a new one.
            self.shared.snapshot.store(None);
        }
        // No subscribers is fine; a lagging one is its own problem.
        let _ = self.shared.events.send(changes.into());
    }
}

fn event_of(
    kind: EventKind,
    container: Arc<Container>,
    source: EventSource,
    timestamp: Option<SystemTime>,
) -> Event {
    Event {
        kind,
        container,
        timestamp,
        source,
        exit: None,
        revision: 0, // set when published
    }
}

/// Asks the engine to describe itself, within the info deadline, and keeps
/// the answer as the watcher's engine info.
pub(super) async fn ask_info(shared: &Shared) -> Result<Arc<EngineInfo>, EngineError> {
    let engine = &shared.engine;
    let api = engine.api().to_owned();
    let info = within(shared.deadlines.info, &api, "info", engine.info()).await?;
    let info = Arc::new(EngineInfo {
        api,
        pid: engine.pid().or(info.pid),
        ..info
    });
    shared.info.store(info.clone());
    Ok(info)
}

/// The engine describing itself during a session: a refusal (a socket
/// proxy that forbids `/info`) leaves the info partial and is logged once,
/// as the sync does not need it.
async fn describe(shared: Arc<Shared>) {
    match ask_info(&shared).await {
        Ok(_) => {}
        Err(error) if !shared.info_failure_logged.swap(true, Ordering::Relaxed) => {
            warn!(
                error = %describe_error(&error),
                "the engine does not describe itself; its id and version stay unknown"
            );
        }
        Err(error) => debug!(
            error = %describe_error(&error),
            "the engine does not describe itself"
        ),
    }
}

/// Lets the engine's self-description, if still under way, finish (within
/// its deadline); `None` when stopped first.
async fn finish(describing: Option<BoxFuture<'static, ()>>, stop: &Stop) -> Option<()> {
    match describing {
        Some(describe) => stop.unless_stopped(describe).await,
        None => Some(()),
    }
}

/// Drives the engine's self-description, if it is still under way.
async fn describing(slot: &mut Option<BoxFuture<'static, ()>>) {
    match slot {
        Some(describe) => {
            describe.await;
            *slot = None;
        }
        None => std::future::pending().await,
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
