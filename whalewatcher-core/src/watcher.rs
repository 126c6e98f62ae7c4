//! The watcher: keeps a portfolio synchronized with one engine.
//!
//! This module is the watcher's public face — its settings, its status and
//! the read side. The synchronization state machine itself is in
//! [`sync_loop`], the inspects of started containers in [`inspections`].
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
mod deadline;
mod inspections;
mod sync_loop;

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

/// How long the watcher waits for each kind of engine call before it
/// counts the engine as lost (and resynchronizes under the retry policy).
///
/// An engine that stops answering — a wedged containerd-shim hangs
/// `docker inspect`, a socket that accepts and never answers — must not
/// hang the watcher while it says it is synced. The defaults are far above
/// what a healthy engine needs (measured here: a list of 500 containers in
/// 0.1 s, an inspect in about 1 ms), so only a stuck engine trips them.
/// The event stream itself has no deadline: an idle engine sends nothing;
/// while it is quiet, the liveness probe pings the engine instead (see
/// [`WatcherBuilder::probe_when_quiet`]). Each deadline is at least 1 ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deadlines {
    /// The engine describing itself (id, version); default 10 s. It runs
    /// beside the subscription and the list, and the first sync counts as
    /// done once the answer is in, refused, or past this deadline: a failed
    /// or late answer leaves the [`EngineInfo`] partial but does not stop
    /// the sync.
    pub info: Duration,
    /// Subscribing to events, until the subscription is live; default 10 s.
    pub subscribe: Duration,
    /// Listing every alive container, fully inspected; default 60 s — a
    /// list grows with the containers (about 0.2 ms each on dockerd here),
    /// so this allows far more than 50,000.
    pub list: Duration,
    /// Inspecting one started container; default 10 s.
    pub inspect: Duration,
    /// The liveness probe's ping (see [`WatcherBuilder::probe_when_quiet`]);
    /// default 5 s.
    pub ping: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            info: Duration::from_secs(10),
            subscribe: Duration::from_secs(10),
            list: Duration::from_secs(60),
            inspect: Duration::from_secs(10),
            ping: Duration::from_secs(5),
        }
    }
}

impl Deadlines {
    fn at_least_minimal(self) -> Self {
        Deadlines {
            info: self.info.max(MIN_DEADLINE),
            subscribe: self.subscribe.max(MIN_DEADLINE),
            list: self.list.max(MIN_DEADLINE),
            inspect: self.inspect.max(MIN_DEADLINE),
            ping: self.ping.max(MIN_DEADLINE),
        }
    }
}

/// Configures a [`Watcher`] beyond the engine and retry policy.
#[derive(Debug)]
pub struct WatcherBuilder {
    engine: Arc<dyn Engine>,
    retry: RetryPolicy,
    deadlines: Deadlines,
    stable_after: Duration,
    max_concurrent_inspects: usize,
    event_capacity: usize,
    safety_relist: Option<Duration>,
    probe_when_quiet: Option<Duration>,
}

impl WatcherBuilder {
    /// Sets the retry policy (default: [`RetryPolicy::default`], forever).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the deadlines of engine calls (default: [`Deadlines::default`]).
    pub fn deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines.at_least_minimal();
        self
    }

    /// Sets how long a session must stay up to prove the engine works
    /// (default 10 s); a session that delivers an event proves it at once.
    /// Only after a proven session does the next failure start the retry
    /// policy's delays afresh: an engine whose event stream ends right
    /// after every list (a proxy with a short idle timeout) is backed off,
    /// not relisted in a tight loop.
    pub fn stable_after(mut self, period: Duration) -> Self {
        self.stable_after = period;
        self
    }

    /// Sets how many containers may be inspected at once after start
    /// events (default 16; at least 1).
    pub fn max_concurrent_inspects(mut self, limit: usize) -> Self {
        self.max_concurrent_inspects = limit.max(1);
        self
    }

    /// Sets how many revisions each subscriber may fall behind before it is
    /// told it lagged (default 4096; at least 1). A revision is one live
    /// event or inspected start (or those that were ready at once, up to
    /// 256 in a burst), or one whole (re)sync, so the size of a resync
    /// does not matter.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Relists every `period` while connected, to heal anything the engine
    /// failed to report (default: never; events are trusted). Periods
    /// shorter than 1 s are raised to 1 s: each relist costs the engine as
    /// much as the initial sync.
    pub fn safety_relist(mut self, period: Duration) -> Self {
        self.safety_relist = Some(period.max(MIN_SAFETY_RELIST));
        self
    }

    /// Pings the engine once its event stream has been quiet for `period`
    /// (default 10 s; `None`: never), and counts it as lost when the ping
    /// fails or passes [`Deadlines::ping`] (default 5 s): an engine whose
    /// stream stays open but which stopped answering — frozen, deadlocked
    /// on a lock, stuck on a slow disk — is seen as lost within `period` +
    /// the ping deadline (15 s by default), and resynchronized when it
    /// answers again. Never while events flow: any item of the stream
    /// restarts the quiet period, and cancels a ping under way. As
    /// client-go's HTTP/2 health check does (30 s read-idle, 15 s ping
    /// timeout), shorter: a follower most needs to see a hung engine. On an
    /// idle engine it costs one ping per period (Docker's `/_ping`, a gRPC
    /// `Version`). Periods shorter than 1 s are raised to 1 s.
    pub fn probe_when_quiet(mut self, period: Option<Duration>) -> Self {
        self.probe_when_quiet = period.map(|period| period.max(MIN_PROBE_PERIOD));
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
                deadlines: self.deadlines,
                stable_after: self.stable_after,
                max_concurrent_inspects: self.max_concurrent_inspects,
                safety_relist: self.safety_relist,
                probe_when_quiet: self.probe_when_quiet,
                current: Mutex::new(Portfolio::new()),
                snapshot: ArcSwapOption::empty(),
                events: broadcast::channel(self.event_capacity).0,
                info: ArcSwap::from_pointee(info),
                info_failure_logged: AtomicBool::new(false),
                status: watch::channel(SyncStatus::default()).0,
                watching: watch::channel(WatchSlot::default()).0,
                closing: CancellationToken::new(),
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
        WatcherBuilder {
            engine: Arc::new(engine),
            retry: RetryPolicy::default(),
            deadlines: Deadlines::default(),
            stable_after: DEFAULT_STABLE_AFTER,
            max_concurrent_inspects: crate::support::DEFAULT_MAX_CONCURRENT_INSPECTS,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            safety_relist: None,
            probe_when_quiet: Some(DEFAULT_PROBE_WHEN_QUIET),
        }
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

/// A watch running in a task of its own, from [`Watcher::spawn`]. Dropping
/// it stops the watch (without waiting for it to end).
#[derive(Debug)]
pub struct WatchHandle {
    task: StopOnDrop<Result<(), WatchError>>,
}

impl WatchHandle {
    /// Stops the watch and waits until it has ended: `Ok(())`, or the error
    /// it ended with before it was stopped.
    pub async fn stop(mut self) -> Result<(), WatchError> {
        self.task.stop_soon();
        self.join().await
    }

    /// Waits until the watch ends by itself: its retry policy gave up, the
    /// engine cannot be watched, or [`Watcher::close`] was called.
    pub async fn ended(mut self) -> Result<(), WatchError> {
        self.join().await
    }

    /// Whether the watch has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the watch ends, keeping the handle: cancel-safe, for a
    /// `select!` that may stop the watch instead. Pending forever once it
    /// has reported its end.
    pub(crate) async fn finished(&mut self) -> Result<(), WatchError> {
        if self.task.reported() {
            return std::future::pending().await;
        }
        self.join().await
    }

    /// Waits for the task in place, so that dropping this future midway
    /// keeps the handle whole.
    async fn join(&mut self) -> Result<(), WatchError> {
        match self.task.join().await {
            None => Ok(()),
            Some(Ok(ended)) => ended,
            // The watch catches its own panics; this is one outside it.
            Some(Err(error)) if error.is_panic() => Err(WatchError::Panicked {
                message: panic_message(&*error.into_panic()),
            }),
            // Its runtime shut down.
            Some(Err(_)) => Ok(()),
        }
    }
}

/// Who runs a watcher's watch: one at a time, and who waits for which.
#[derive(Debug, Default)]
struct WatchSlot {
    /// Watches asked for so far ([`Watcher::watch`] calls, spawns).
    asked: u64,
    /// Of those, how many have begun or been refused: [`Watcher::ready`]
    /// answers once every watch asked for before it has.
    settled: u64,
    /// Watches begun so far; the running one is the last.
    begun: u64,
    /// The stop token of the running watch: a watch asked for while it is
    /// cancelled waits for it to end instead of being refused.
    running: Option<CancellationToken>,
    /// How the last watch that ended ended, and which one it was.
    last_end: Option<(u64, Result<(), WatchError>)>,
}

impl WatchSlot {
    /// Begins a watch if none runs: `None` when one does.
    fn try_begin(&mut self, shared: &Arc<Shared>, cancel: &CancellationToken) -> Option<Running> {
        if self.running.is_some() {
            return None;
        }
        self.running = Some(cancel.clone());
        self.begun += 1;
        // Reported before the watch counts as settled: `ready` must not
        // see the last watch's status after it.
        shared.report(Transition::Began);
        self.settled += 1;
        Some(Running {
            shared: shared.clone(),
            watch: self.begun,
            ended: None,
            error: None,
        })
    }

    /// Whether the running watch is being stopped.
    fn running_stops(&self, closing: &CancellationToken) -> bool {
        closing.is_cancelled()
            || self
                .running
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
    }
}

/// A watch asked for, from the call until it has begun or been refused.
enum Claim {
    /// It runs.
    Begun(Running),
    /// It waits for the running watch, which is being stopped, to end.
    Waiting(Waiting),
    /// Another watch runs on.
    Refused,
}

/// A watch waiting for its turn; counted as settled when it is dropped
/// before it got one, so nobody's `ready` waits for it.
struct Waiting {
    shared: Arc<Shared>,
    settled: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.watching.send_modify(|slot| slot.settled += 1);
        }
    }
}

impl Claim {
    /// Asks for a watch, now: it begins, waits, or is refused.
    fn ask(shared: Arc<Shared>, cancel: &CancellationToken) -> Claim {
        let mut claim = Claim::Refused;
        shared.watching.send_modify(|slot| {
            slot.asked += 1;
            claim = match slot.try_begin(&shared, cancel) {
                Some(running) => Claim::Begun(running),
                None if slot.running_stops(&shared.closing) => Claim::Waiting(Waiting {
                    shared: shared.clone(),
                    settled: false,
                }),
                None => {
                    slot.settled += 1;
                    Claim::Refused
                }
            };
        });
        claim
    }

    /// The watch, once it has begun; `None` when stopped while it waited.
    async fn begin(self, cancel: &CancellationToken) -> Result<Option<Running>, WatchError> {
        let mut waiting = match self {
            Claim::Begun(running) => return Ok(Some(running)),
            Claim::Refused => return Err(WatchError::AlreadyWatching),
            Claim::Waiting(waiting) => waiting,
        };
        let shared = waiting.shared.clone();
        let mut slot = shared.watching.subscribe();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = slot.wait_for(|slot| slot.running.is_none()) => {}
            }
            let mut turn = None;
            shared.watching.send_modify(|slot| {
                turn = match slot.try_begin(&shared, cancel) {
                    Some(running) => Some(Ok(running)),
                    None if slot.running_stops(&shared.closing) => None,
                    None => {
                        slot.settled += 1;
                        Some(Err(WatchError::AlreadyWatching))
                    }
                };
            });
            if let Some(turn) = turn {
                waiting.settled = true;
                return turn.map(Some);
            }
        }
    }
}

/// A running watch loop, one at a time per watcher; when it ends — also
/// by being dropped — the status says so and the next watch may begin.
struct Running {
    shared: Arc<Shared>,
    /// Which watch of the watcher this is.
    watch: u64,
    /// How it ended, once it has.
    ended: Option<Result<(), WatchError>>,
    /// The status's error for an end the engine did not cause (a panic).
    error: Option<EngineError>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let ended = self.ended.take().unwrap_or(Ok(()));
        let error = match (&self.error, &ended) {
            (Some(error), _) => Some(error.clone()),
            // Given up: the last error stays.
            (None, Err(_)) => None,
            (None, Ok(())) => Some(EngineError::Cancelled),
        };
        self.shared.report(Transition::Ended { error });
        if self.shared.closing.is_cancelled() {
            // Nothing will be published any more.
            self.shared.closed.cancel();
        }
        self.shared.watching.send_modify(|slot| {
            slot.running = None;
            slot.last_end = Some((self.watch, ended));
        });
    }
}

impl Watcher {
    /// The running watch (which one of the watcher's watches it is), if
    /// one runs and is not being stopped: a fleet member follows it.
    pub(crate) fn running_watch(&self) -> Option<u64> {
        let slot = self.shared.watching.borrow();
        match slot.running_stops(&self.shared.closing) {
            true => None,
            false => slot.running.as_ref().map(|_| slot.begun),
        }
    }

    /// Waits until watch number `watch` has ended (at once if it has),
    /// and tells how, where still known.
    pub(crate) async fn watch_ended(&self, watch: u64) -> Result<(), WatchError> {
        let mut slot = self.shared.watching.subscribe();
        let ended = slot
            .wait_for(|slot| slot.begun != watch || slot.running.is_none())
            .await;
        match ended.as_deref().map(|slot| &slot.last_end) {
            Ok(Some((last, ended))) if *last == watch => ended.clone(),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
