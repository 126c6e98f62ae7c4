//! The watcher: keeps a portfolio synchronized with one engine.
//!
//! This module is the watcher's public face — its status and the read
//! side. Its settings are in [`builder`], who runs its watch (one at a
//! time, as a [`WatchHandle`] or a `watch` future) in [`ownership`], the
//! synchronization state machine in [`sync_loop`], the inspects of
//! started containers in [`inspections`].
//!
//! # Phases
//!
//! A watch goes through these phases, each a [`SyncState`]; every change
//! of the [`SyncStatus`] is a `Transition` applied in one place
//! (`Shared::report`).
//!
//! - **Syncing** — a *session* begins: subscribe to the engine's events
//!   (the engine describes itself alongside), then list every alive
//!   container; events that arrive meanwhile are held back and applied in
//!   engine order to the list's result. Ends *Synced* when the list is
//!   published (and the description is in, refused or late), *Lost* when a
//!   call fails or passes its [`Deadlines`].
//! - **Synced** — follow the event stream: apply each event, inspect
//!   started containers, relist on the safety period if one is set, ping
//!   the engine when the stream has been quiet for a while. A failed call
//!   (a ping too), an ended stream or an error in it ends the session:
//!   *Lost*.
//! - **Lost** — the portfolio stays the last synced one; the retry policy's
//!   next delay passes, then *Syncing* again. When the policy gives up, or
//!   the engine cannot be watched at all, the watch ends.
//! - **Stopped** — before the first watch and after the last: stopped by
//!   its token, [`Watcher::close`], dropping it, or given up.

mod backoff;
mod builder;
mod deadline;
mod inspections;
mod ownership;
mod sync_loop;

pub use builder::{Deadlines, WatcherBuilder};
pub use ownership::WatchHandle;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use futures::FutureExt;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::task::StopOnDrop;
use tracing::{info_span, Instrument};

use crate::engine::{Engine, EngineInfo, Omission};
use crate::error::{panic_message, EngineError, WatchError};
use crate::event::{EventStream, Revision};
use crate::portfolio::Portfolio;
use crate::retry::RetryPolicy;

use ownership::{Claim, WatchSlot};
use sync_loop::{Stop, SyncLoop};

/// Revisions buffered per subscriber before a slow one is told it lagged.
const DEFAULT_EVENT_CAPACITY: usize = 4096;
/// How long a session must stay up (without an event) to count as stable.
const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(10);
/// The shortest safety relist period: a relist costs the engine as much as
/// the initial sync, so a shorter period would only load it.
const MIN_SAFETY_RELIST: Duration = Duration::from_secs(1);
/// How long the event stream may be quiet before the engine is pinged.
const DEFAULT_PROBE_WHEN_QUIET: Duration = Duration::from_secs(10);
/// The shortest quiet period before a ping: more often only loads the
/// engine.
const MIN_PROBE_PERIOD: Duration = Duration::from_secs(1);
/// The shortest deadline: a zero deadline would fail every call.
const MIN_DEADLINE: Duration = Duration::from_millis(1);

/// Where the watcher stands with its engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncState {
    /// No watch is running — not yet, or not any more: the portfolio is
    /// what the last watch left and follows nothing.
    #[default]
    Stopped,
    /// Connecting, subscribing and listing: the first sync of a watch, or a
    /// resync after the engine was lost. During a resync the portfolio is
    /// the last synced one (stale) until the new list is complete.
    Syncing,
    /// Following the engine's events: the portfolio is current.
    Synced,
    /// The engine was lost; waiting for the retry policy's next attempt.
    /// The portfolio is the last synced one (stale).
    Lost,
}

/// How far the watcher has got synchronizing with its engine.
#[derive(Clone, Debug, Default)]
pub struct SyncStatus {
    /// Where the watcher stands now.
    pub state: SyncState,
    /// Finished synchronization attempts of the running watch (or of the
    /// last one, if none runs), successful or not.
    pub attempts: u64,
    /// Why the last attempt or connection failed, or why the last watch
    /// ended ([`EngineError::Cancelled`] when it was stopped).
    pub last_error: Option<EngineError>,
    /// How long the last successful (re)synchronization took, from the
    /// session's start (connect, subscribe, list, the engine's info) to
    /// the list's publication.
    pub sync_duration: Option<Duration>,
    /// What the last list had to leave out (a containerd namespace that
    /// could not be listed), tried again at the next list; empty when it
    /// was whole.
    pub omitted: Vec<Omission>,
}

impl SyncStatus {
    /// Whether the portfolio currently follows a live engine connection.
    pub fn is_synced(&self) -> bool {
        self.state == SyncState::Synced
    }
}

/// A change of the watch's phase. Every change of the [`SyncStatus`] is
/// one of these, applied in one place, [`Shared::report`].
enum Transition {
    /// A watch begins: a fresh status, syncing.
    Began,
    /// A session begins its sync.
    Syncing,
    /// A session published its list, `took` after it began.
    Synced { took: Duration },
    /// A list left these parts out (none: it was whole).
    Listed { omitted: Vec<Omission> },
    /// A session ended with `error`; it finished an attempt unless it had
    /// synced (which counted its attempt already).
    Lost {
        error: EngineError,
        counts_attempt: bool,
    },
    /// The watch ended: stopped ([`EngineError::Cancelled`]), panicked
    /// ([`EngineError::Panicked`]), or given up (`None`: the last error
    /// stays).
    Ended { error: Option<EngineError> },
}

/// Keeps an always-current [`Portfolio`] of one engine's alive containers
/// and hands out its lifecycle events.
///
/// Cheap to clone; all clones share one portfolio. Run [`watch`](Self::watch)
/// (typically in a task of its own) and read [`portfolio`](Self::portfolio)
/// whenever needed: reads never wait for the engine; the first read after
/// a change may wait while the watcher applies one revision in memory.
///
/// Across a lost engine, a subscriber sees nothing while the engine is
/// away (the portfolio stays the last synced one), then one revision with
/// the difference (exited for what vanished, started for what is new,
/// nothing for the unchanged; [`EventSource::Sync`](crate::EventSource)).
/// [`subscribe_status`](Self::subscribe_status) tells when the data is
/// stale.
#[derive(Clone, Debug)]
pub struct Watcher {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Arc<dyn Engine>,
    retry: RetryPolicy,
    deadlines: Deadlines,
    stable_after: Duration,
    max_concurrent_inspects: usize,
    safety_relist: Option<Duration>,
    probe_when_quiet: Option<Duration>,
    /// The portfolio as published: changed by the sync loop in place, one
    /// revision at a time, and held while subscribing, so that a
    /// subscriber's snapshot and the events after it fit together exactly.
    /// Never held across an await, nor while a list is taken in.
    current: Mutex<Portfolio>,
    /// The snapshot of `current` last handed out, until `current` changes.
    /// A snapshot is made when somebody asks for one: a change after it
    /// copies the paths it touches (the snapshot keeps the old ones),
    /// while the changes of a burst that nobody reads in between are made
    /// in place.
    snapshot: ArcSwapOption<Portfolio>,
    events: broadcast::Sender<Revision>,
    info: ArcSwap<EngineInfo>,
    /// An engine that refuses to describe itself is told about once.
    info_failure_logged: AtomicBool,
    status: watch::Sender<SyncStatus>,
    /// Who runs the watch, if anyone.
    watching: watch::Sender<WatchSlot>,
    /// Cancelled by `close`: stops the watch.
    closing: CancellationToken,
    /// Cancelled once closed and nothing more will be published: ends the
    /// event streams.
    closed: CancellationToken,
}

impl Shared {
    /// A snapshot of `current`, the guarded portfolio: the one handed out
    /// last if it has not changed since, else a new one.
    fn snapshot_of(&self, current: &Portfolio) -> Arc<Portfolio> {
        if let Some(snapshot) = self.snapshot.load_full() {
            return snapshot;
        }
        let snapshot = Arc::new(current.clone());
        self.snapshot.store(Some(snapshot.clone()));
        snapshot
    }

    /// Applies a change of the watch's phase to the status; the one place
    /// where the status changes.
    fn report(&self, transition: Transition) {
        self.status.send_if_modified(|status| match transition {
            Transition::Began => {
                *status = SyncStatus {
                    state: SyncState::Syncing,
                    ..SyncStatus::default()
                };
                true
            }
            Transition::Syncing => {
                std::mem::replace(&mut status.state, SyncState::Syncing) != SyncState::Syncing
            }
            Transition::Synced { took } => {
                status.attempts += 1;
                status.state = SyncState::Synced;
                status.last_error = None;
                status.sync_duration = Some(took);
                true
            }
            Transition::Listed { omitted } => {
                let changed = status.omitted != omitted;
                status.omitted = omitted;
                changed
            }
            Transition::Lost {
                error,
                counts_attempt,
            } => {
                if counts_attempt {
                    status.attempts += 1;
                }
                status.state = SyncState::Lost;
                status.last_error = Some(error);
                true
            }
            Transition::Ended { error } => {
                status.state = SyncState::Stopped;
                // Release whoever waits for readiness.
                status.attempts = status.attempts.max(1);
                if error.is_some() {
                    status.last_error = error;
                }
                true
            }
        });
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("engine", &self.engine)
            .field("retry", &self.retry)
            .field("containers", &crate::support::lock(&self.current).len())
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
        WatcherBuilder::new(Arc::new(engine))
    }

    /// The current portfolio: an immutable snapshot, cheap to take. The
    /// first one after a change is made then (it may wait while the
    /// watcher applies one revision, at most 256 changes in memory); the
    /// ones after it until the next change are the same.
    pub fn portfolio(&self) -> Arc<Portfolio> {
        if let Some(snapshot) = self.shared.snapshot.load_full() {
            return snapshot;
        }
        let current = crate::support::lock(&self.shared.current);
        self.shared.snapshot_of(&current)
    }

    /// The current portfolio and the stream of every event after it,
    /// taken atomically: applying the events in order to the snapshot
    /// gives each later portfolio, with no change missed or counted twice.
    ///
    /// A subscriber that falls behind by more than the event capacity gets
    /// a [`Lagged`](crate::Lagged) item instead of slowing the watcher down.
    /// The stream ends once the watcher is [closed](Self::close).
    pub fn subscribe(&self) -> (Arc<Portfolio>, EventStream) {
        let current = crate::support::lock(&self.shared.current);
        (
            self.shared.snapshot_of(&current),
            EventStream::new(self.shared.events.subscribe(), self.shared.closed.clone()),
        )
    }

    /// Resolves once the current watch has finished its first
    /// synchronization attempt — also when it failed, so nobody waits
    /// forever — with whether the portfolio now follows the engine, or why
    /// not. The current watch is the one last asked for
    /// ([`spawn`](Self::spawn), [`watch`](Self::watch)) before this call,
    /// once it has begun (a watch asked for while an earlier one is still
    /// stopping begins when that one has ended), or the one running if
    /// that one was refused. When none runs, it tells how the last one
    /// ended (or waits for the first watch to begin).
    pub async fn ready(&self) -> Result<(), EngineError> {
        let mut slot = self.shared.watching.subscribe();
        let asked = slot.borrow_and_update().asked;
        let _ = slot.wait_for(|slot| slot.settled >= asked).await;
        let mut status = self.shared.status.subscribe();
        let status = status
            .wait_for(|s| s.attempts > 0)
            .await
            .map(|s| s.clone())
            .unwrap_or_default();
        if status.is_synced() {
            Ok(())
        } else {
            Err(status.last_error.unwrap_or(EngineError::Cancelled))
        }
    }

    /// How far synchronization has got, right now.
    pub fn status(&self) -> SyncStatus {
        self.shared.status.borrow().clone()
    }

    /// The status as it changes, without polling: await
    /// [`changed`](watch::Receiver::changed), then read
    /// [`borrow`](watch::Receiver::borrow) — to show "engine lost, data
    /// stale" the moment it happens.
    pub fn subscribe_status(&self) -> watch::Receiver<SyncStatus> {
        self.shared.status.subscribe()
    }

    /// What the engine said about itself at the last (re)connect; before
    /// the first, or when the engine refuses to tell, only the API
    /// endpoint, type guess and PID are known.
    pub fn engine_info(&self) -> Arc<EngineInfo> {
        self.shared.info.load_full()
    }

    /// Asks the engine for its info now — before, without or while
    /// watching — within the info deadline; the answer also becomes
    /// [`engine_info`](Self::engine_info).
    pub async fn refresh_engine_info(&self) -> Result<Arc<EngineInfo>, EngineError> {
        sync_loop::ask_info(&self.shared).await
    }

    /// The engine this watcher watches.
    pub fn engine(&self) -> &dyn Engine {
        &*self.shared.engine
    }

    /// The engine as its concrete type, for what only it offers (its
    /// client, say): `watcher.engine_as::<MobyEngine>()?.docker()`. `None`
    /// when the engine is of another type.
    pub fn engine_as<E: Engine>(&self) -> Option<&E> {
        let engine: &dyn std::any::Any = &*self.shared.engine;
        engine.downcast_ref()
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
    /// One watch runs at a time. The watch is asked for when this is
    /// called (not when the future is first polled): it begins at once if
    /// none runs, after the running one has ended if that one is being
    /// stopped (its token cancelled, its handle dropped), and is refused
    /// with [`WatchError::AlreadyWatching`] if another runs on.
    ///
    /// Returns `Ok(())` when stopped; an error when the policy gave up, the
    /// engine cannot be watched at all (it lacks what the watcher needs,
    /// found while subscribing or before the first sync), or the watch
    /// panicked (a bug in the engine's client: it ends this watch only).
    pub fn watch(
        &self,
        cancel: CancellationToken,
    ) -> impl std::future::Future<Output = Result<(), WatchError>> + Send + 'static {
        let asked = Claim::ask(self.shared.clone(), &cancel);
        async move {
            let Some(mut running) = asked.begin(&cancel).await? else {
                return Ok(());
            };
            let shared = running.shared.clone();
            let stop = Stop {
                cancel,
                closing: shared.closing.clone(),
            };
            let api = shared.engine.api().to_owned();
            let syncing = SyncLoop::new(shared.clone())
                .run(&stop)
                .instrument(info_span!("watch", engine = %api));
            let ended = match std::panic::AssertUnwindSafe(syncing).catch_unwind().await {
                Ok(ended) => ended,
                Err(payload) => {
                    let message = panic_message(&*payload);
                    tracing::error!(%message, "the watch panicked; it ends");
                    running.error = Some(EngineError::Panicked {
                        endpoint: api,
                        message: message.clone(),
                    });
                    Err(WatchError::Panicked { message })
                }
            };
            running.ended = Some(ended.clone());
            ended
        }
    }

    /// Runs [`watch`](Self::watch) in a task of its own on the current
    /// tokio runtime; the handle stops it (and so does dropping it). Panics
    /// outside a tokio runtime, as `tokio::spawn` does.
    ///
    /// ```no_run
    /// # async fn demo(watcher: whalewatcher_core::Watcher) -> Result<(), Box<dyn std::error::Error>> {
    /// let watching = watcher.spawn();
    /// watcher.ready().await?;
    /// println!("{} containers", watcher.portfolio().containers().count());
    /// watching.stop().await?;
    /// # Ok(()) }
    /// ```
    pub fn spawn(&self) -> WatchHandle {
        // Asked for here, so that `ready` right after answers for it.
        let cancel = CancellationToken::new();
        let task = tokio::spawn(self.watch(cancel.clone()));
        WatchHandle {
            task: StopOnDrop::of(task, cancel),
        }
    }

    /// Stops a running [`watch`](Self::watch), waits until it has ended,
    /// then closes the engine's connections and ends every subscriber's
    /// event stream. Later watches end at once.
    pub async fn close(&self) {
        self.shared.closing.cancel();
        let mut watching = self.shared.watching.subscribe();
        let _ = watching.wait_for(|slot| slot.running.is_none()).await;
        self.shared.closed.cancel();
        self.shared.engine.close().await;
    }
}

#[cfg(test)]
mod tests;
