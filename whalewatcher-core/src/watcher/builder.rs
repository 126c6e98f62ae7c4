//! A watcher's settings: the deadlines of its calls and the builder.

use super::*;

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
    /// The default settings for a watcher of `engine`.
    pub(super) fn new(engine: Arc<dyn Engine>) -> Self {
        WatcherBuilder {
            engine,
            retry: RetryPolicy::default(),
            deadlines: Deadlines::default(),
            stable_after: DEFAULT_STABLE_AFTER,
            max_concurrent_inspects: crate::support::DEFAULT_MAX_CONCURRENT_INSPECTS,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            safety_relist: None,
            probe_when_quiet: Some(DEFAULT_PROBE_WHEN_QUIET),
        }
    }

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
