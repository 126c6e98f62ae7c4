//! A fleet: the watchers of several engines, which come and go, seen as
//! one — one snapshot, one subscription, with the contract of a single
//! [`Watcher`].
//!
//! Each member is followed by a task of its own that holds the member's
//! subscription (snapshot and events) and applies each revision of its
//! watcher to the member's place in the fleet's snapshot, under one lock,
//! as one fleet revision. So a fleet snapshot holds, for every engine,
//! exactly the watcher's portfolio of some revision; the fleet's events
//! up to revision `r` applied to a snapshot give the snapshot at `r`.
//!
//! - An engine that **joins** shows its containers as started
//!   ([`EventSource::Sync`]) in the revision that says it joined; one that
//!   **leaves** (removed, or its watch ended) shows them exited in the
//!   revision that says it left.
//! - A member whose own subscription **lags** is resubscribed, and the
//!   difference is published (source sync): the fleet never loses a change.
//! - Every container's PID is also given in the reader's PID namespace
//!   where the member has a [`PidTranslation`] (discovery gives one to
//!   every engine it finds).

mod member;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::container::Container;
use crate::engine::EngineInfo;
use crate::error::{EngineError, WatchError};
use crate::event::{Event, Lagged, RevisionStream};
use crate::portfolio::Portfolio;
use crate::support::lock;
use crate::watcher::{SyncState, SyncStatus, WatchHandle, Watcher};

/// Revisions buffered per fleet subscriber before a slow one is told it
/// lagged.
const DEFAULT_EVENT_CAPACITY: usize = 4096;

/// Names one member of a [`Fleet`]: unique within it, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MemberId(u64);

impl MemberId {
    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "engine #{}", self.0)
    }
}

/// Turns the PIDs an engine reports — in the engine's own PID namespace —
/// into PIDs of the PID namespace of the process that reads the fleet.
///
/// Called by the fleet once for each container that starts (and for each
/// of a joining engine's containers), so it should be cheap; it may read
/// `/proc`.
pub trait PidTranslation: Send + Sync + std::fmt::Debug {
    /// The PID here of the process the engine reports as `pid`; `None`
    /// when it cannot tell (the process is gone, `/proc` is not readable).
    fn local_pid(&self, pid: u32) -> Option<u32>;
}

/// The same PID namespace: every PID means the same here as to the engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct SamePidNamespace;

impl PidTranslation for SamePidNamespace {
    fn local_pid(&self, pid: u32) -> Option<u32> {
        Some(pid)
    }
}

/// The container — of another member of the fleet — that an engine runs
/// in: a KinD node, a CI runner with its own dockerd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParentContainer {
    /// The member whose engine runs the container.
    pub engine: MemberId,
    /// The container's id.
    pub id: Arc<str>,
    /// The container's name.
    pub name: Arc<str>,
}

/// How a member's engine came to be watched: so that whoever shows it can
/// say where it was found (an engine named by hand, one found by its
/// process, one reached at a well-known socket).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "lowercase")]
#[non_exhaustive]
pub enum FoundBy {
    /// Its owner named it (an option, a setting).
    #[default]
    Name,
    /// Its process, among the host's, by command name; `pid` here.
    Process {
        /// The process's command name (`dockerd`, `containerd`, ...).
        command: Arc<str>,
        /// Its PID here.
        pid: u32,
    },
    /// A well-known socket of its kind that answered.
    Socket {
        /// The socket's path here.
        path: Arc<str>,
        /// The PID here of the process listening on it, where the socket
        /// tells (`SO_PEERCRED`) and the process is an engine's.
        pid: Option<u32>,
    },
}

/// A watcher about to join a fleet, and what the fleet should know of it.
///
/// A member either *owns* its watcher's watch — the fleet starts it
/// ([`new`](Self::new)) or is handed it ([`watching`](Self::watching)),
/// and stops it when the member leaves — or *follows* a watch that runs
/// elsewhere ([`following`](Self::following)) and leaves when that watch
/// ends.
#[derive(Debug)]
pub struct FleetMember {
    watcher: Watcher,
    parent: Option<ParentContainer>,
    pids: Option<Arc<dyn PidTranslation>>,
    local_pid: Option<u32>,
    found_by: FoundBy,
    watch: MemberWatch,
    close_on_leave: bool,
}

/// Who runs a member's watch.
#[derive(Debug)]
enum MemberWatch {
    /// The fleet starts it when the member joins.
    Start,
    /// The fleet was handed it.
    Owned(WatchHandle),
    /// It runs elsewhere; the member follows it.
    Follow,
}

impl FleetMember {
    /// `watcher` as a member that owns its watch: the fleet starts it when
    /// the member joins and stops it when the member leaves. If another
    /// watch of the watcher runs on, the member leaves at once with
    /// [`WatchError::AlreadyWatching`] (follow that watch with
    /// [`following`](Self::following) instead).
    pub fn new(watcher: Watcher) -> Self {
        Self::with_watch(watcher, MemberWatch::Start)
    }

    /// `watcher` as a member that follows the watch running now, started
    /// elsewhere (by [`Watcher::watch`] or [`Watcher::spawn`]): the fleet
    /// neither starts nor stops it, and the member leaves when it ends
    /// (at once, if none runs when the member joins).
    pub fn following(watcher: Watcher) -> Self {
        Self::with_watch(watcher, MemberWatch::Follow)
    }

    fn with_watch(watcher: Watcher, watch: MemberWatch) -> Self {
        FleetMember {
            watcher,
            parent: None,
            pids: None,
            local_pid: None,
            found_by: FoundBy::Name,
            watch,
            close_on_leave: false,
        }
    }

    /// The container the engine runs in (see [`Fleet::set_parent`] for
    /// when it is known only later).
    pub fn parent(mut self, parent: ParentContainer) -> Self {
        self.parent = Some(parent);
        self
    }

    /// How the engine's PIDs become PIDs of the reader's namespace; without
    /// one, [`FleetContainer::local_pid`] is `None`.
    pub fn pid_translation(mut self, pids: Arc<dyn PidTranslation>) -> Self {
        self.pids = Some(pids);
        self
    }

    /// The engine's own PID in the reader's PID namespace.
    pub fn local_pid(mut self, pid: u32) -> Self {
        self.local_pid = Some(pid);
        self
    }

    /// How the engine was found (default [`FoundBy::Name`]).
    pub fn found_by(mut self, found_by: FoundBy) -> Self {
        self.found_by = found_by;
        self
    }

    /// A watch of the watcher that runs already, from
    /// [`Watcher::spawn`]: the fleet owns it from now on, and stops it
    /// when the member leaves.
    pub fn watching(mut self, handle: WatchHandle) -> Self {
        self.watch = MemberWatch::Owned(handle);
        self
    }

    /// Closes the watcher (its engine connections, its subscribers'
    /// streams) when the member leaves, as for a watcher made for the
    /// fleet alone.
    pub fn close_on_leave(mut self) -> Self {
        self.close_on_leave = true;
        self
    }
}

/// Container ids to PIDs in the reader's PID namespace.
type LocalPids = imbl::GenericHashMap<
    Arc<str>,
    u32,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// One engine of a fleet, as a [`FleetSnapshot`] shows it.
#[derive(Clone, Debug)]
pub struct FleetEngine {
    member: MemberId,
    watcher: Watcher,
    info: Arc<EngineInfo>,
    status: SyncStatus,
    parent: Option<ParentContainer>,
    local_pid: Option<u32>,
    found_by: FoundBy,
    portfolio: Arc<Portfolio>,
    local_pids: LocalPids,
}

impl FleetEngine {
    /// The engine's member id in its fleet.
    pub fn member(&self) -> MemberId {
        self.member
    }

    /// The engine's watcher, for what only it offers (its engine's client).
    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    /// What the engine said about itself (id, type, version, API, PID).
    pub fn info(&self) -> &Arc<EngineInfo> {
        &self.info
    }

    /// Where the watcher stands with the engine.
    pub fn state(&self) -> SyncState {
        self.status.state
    }

    /// Why the last attempt or connection failed, or why the watch ended.
    pub fn last_error(&self) -> Option<&EngineError> {
        self.status.last_error.as_ref()
    }

    /// The watcher's whole connection status (state, attempts, last error,
    /// sync duration), as of this revision.
    pub fn status(&self) -> &SyncStatus {
        &self.status
    }

    /// The container of another member that the engine runs in, if known.
    pub fn parent(&self) -> Option<&ParentContainer> {
        self.parent.as_ref()
    }

    /// The engine's PID in the reader's PID namespace, where known.
    pub fn local_pid(&self) -> Option<u32> {
        self.local_pid
    }

    /// How the engine was found.
    pub fn found_by(&self) -> &FoundBy {
        &self.found_by
    }

    /// The engine's containers: its watcher's portfolio at one revision.
    pub fn portfolio(&self) -> &Arc<Portfolio> {
        &self.portfolio
    }

    /// The engine's containers with their PIDs here.
    pub fn containers(&self) -> impl ExactSizeIterator<Item = FleetContainer<'_>> {
        self.portfolio
            .containers()
            .map(move |container| self.entry(container))
    }

    /// The PID here of the container with this id, where known.
    pub fn local_pid_of(&self, id: &str) -> Option<u32> {
        self.local_pids.get(id).copied()
    }

    /// The container with this id, with its PID here.
    pub fn container(&self, id: &str) -> Option<FleetContainer<'_>> {
        self.portfolio
            .container(id)
            .map(|container| self.entry(container))
    }

    fn entry<'a>(&'a self, container: &'a Arc<Container>) -> FleetContainer<'a> {
        FleetContainer {
            engine: self,
            container,
            local_pid: self.local_pids.get(container.id()).copied(),
        }
    }
}

/// A container of a fleet: which engine it belongs to, and its PID in the
/// reader's PID namespace.
#[derive(Clone, Copy, Debug)]
pub struct FleetContainer<'a> {
    engine: &'a FleetEngine,
    container: &'a Arc<Container>,
    local_pid: Option<u32>,
}

impl<'a> FleetContainer<'a> {
    /// The engine it belongs to (id, type, API endpoint, parent container).
    pub fn engine(&self) -> &'a FleetEngine {
        self.engine
    }

    /// The container as its engine reports it; its
    /// [`pid`](Container::pid) is in the engine's PID namespace.
    pub fn container(&self) -> &'a Arc<Container> {
        self.container
    }

    /// The PID of its initial process in the reader's PID namespace, where
    /// the member translates PIDs and the process was found.
    pub fn local_pid(&self) -> Option<u32> {
        self.local_pid
    }
}

/// All engines of a fleet and their containers, at one revision: an
/// immutable value, cheap to take.
#[derive(Clone, Debug, Default)]
pub struct FleetSnapshot {
    engines: imbl::OrdMap<MemberId, Arc<FleetEngine>>,
    revision: u64,
}

impl FleetSnapshot {
    /// How many revisions the fleet published; each [`FleetEvent`] carries
    /// the revision it produced.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The engines, in the order they joined.
    pub fn engines(&self) -> impl ExactSizeIterator<Item = &Arc<FleetEngine>> {
        self.engines.values()
    }

    /// The engine of this member, while it is one.
    pub fn engine(&self, member: MemberId) -> Option<&Arc<FleetEngine>> {
        self.engines.get(&member)
    }

    /// Every container of every engine.
    pub fn containers(&self) -> impl Iterator<Item = FleetContainer<'_>> {
        self.engines().flat_map(|engine| engine.containers())
    }

    /// The number of containers of all engines.
    pub fn len(&self) -> usize {
        self.engines().map(|engine| engine.portfolio.len()).sum()
    }

    /// Whether no engine has a container.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What changed in a fleet.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum FleetChange {
    /// The engine joined the fleet; its containers follow as started.
    Joined,
    /// The engine left the fleet, after its containers as exited: removed
    /// (`None`), or its watch ended for good (why).
    Left {
        /// Why the watch ended, when it ended by itself.
        error: Option<WatchError>,
    },
    /// A container's lifecycle event, as the engine's watcher reported it
    /// (its [`revision`](Event::revision) is the watcher's), with the
    /// container's PID here.
    Container {
        /// The watcher's event.
        event: Event,
        /// The container's PID in the reader's PID namespace, where known.
        local_pid: Option<u32>,
    },
    /// The engine's connection status (or its info) changed: lost,
    /// resynchronizing, synced again, another attempt.
    Status,
    /// The container the engine runs in became known, or changed.
    Parent,
}

/// A change of a fleet, as a fleet subscriber is told it.
#[derive(Clone, Debug)]
pub struct FleetEvent {
    /// The engine as it is after the revision of this change (with no
    /// containers once it left).
    pub engine: Arc<FleetEngine>,
    /// What changed.
    pub change: FleetChange,
    /// The fleet revision that includes this change; the changes of one
    /// revision come together and concern one engine.
    pub revision: u64,
}

/// The changes after a fleet snapshot, as [`Fleet::subscribe`] hands them
/// out. Yields `Err(Lagged)` when the subscriber fell behind; ends once
/// the fleet is closed or dropped.
pub struct FleetEvents(RevisionStream<FleetEvent>);

impl std::fmt::Debug for FleetEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetEvents")
            .field("ended", &self.0.is_ended())
            .finish_non_exhaustive()
    }
}

impl futures::Stream for FleetEvents {
    type Item = Result<FleetEvent, Lagged>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.0).poll_next(cx)
    }
}

/// [`Fleet::add`] on a closed fleet: the member it was given, back.
#[derive(Debug, thiserror::Error)]
#[error("the fleet is closed: it takes no new member")]
pub struct FleetClosed(pub Box<FleetMember>);

/// The watchers of several engines as one: one snapshot of all their
/// containers, one subscription to all their changes, engines added and
/// removed at run time.
///
/// Cheap to clone; all clones share one fleet. Dropping the last clone
/// stops every member (as [`close`](Self::close) does, without waiting).
///
/// ```
/// # async fn demo(a: whalewatcher_core::Watcher, b: whalewatcher_core::Watcher) {
/// use whalewatcher_core::{Fleet, FleetMember};
///
/// let fleet = Fleet::new();
/// fleet.add(FleetMember::new(a)).expect("an open fleet");
/// fleet.add(FleetMember::new(b)).expect("an open fleet");
/// let (snapshot, changes) = fleet.subscribe();
/// for container in snapshot.containers() {
///     println!("{} on {}", container.container().name(), container.engine().info().api);
/// }
/// fleet.close().await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Fleet {
    handle: Arc<Handle>,
}

/// Stops the fleet when the last [`Fleet`] goes.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stopping.cancel();
        self.shared.closed.cancel();
    }
}

struct Shared {
    /// The latest published snapshot.
    snapshot: ArcSwap<FleetSnapshot>,
    /// Held while a revision is made and published, and while subscribing.
    publishing: Mutex<()>,
    events: broadcast::Sender<Arc<[FleetEvent]>>,
    /// The running members: how to stop each, and when it has left.
    members: Mutex<HashMap<MemberId, Departure>>,
    next_member: AtomicU64,
    /// Cancelled by `close` or the last drop: every member leaves.
    stopping: CancellationToken,
    /// Cancelled once nothing more will be published: ends the streams.
    closed: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("engines", &self.snapshot.load().engines.len())
            .finish_non_exhaustive()
    }
}

/// How a member is told to leave, and how it says it has.
#[derive(Clone, Debug)]
struct Departure {
    leave: CancellationToken,
    left: CancellationToken,
}

impl Shared {
    /// Makes one revision from `change` (applied to the current snapshot)
    /// and publishes it with the changes it returns; nothing when it
    /// returns none.
    fn publish(
        &self,
        change: impl FnOnce(&mut imbl::OrdMap<MemberId, Arc<FleetEngine>>) -> Vec<FleetEvent>,
    ) {
        let _pairing = lock(&self.publishing);
        let current = self.snapshot.load_full();
        let mut engines = current.engines.clone();
        let mut events = change(&mut engines);
        if events.is_empty() {
            return;
        }
        let revision = current.revision + 1;
        for event in &mut events {
            event.revision = revision;
        }
        self.snapshot
            .store(Arc::new(FleetSnapshot { engines, revision }));
        // No subscribers is fine; a lagging one is its own problem.
        let _ = self.events.send(events.into());
    }
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    /// An empty fleet.
    pub fn new() -> Self {
        Self::with_event_capacity(DEFAULT_EVENT_CAPACITY)
    }

    /// An empty fleet whose subscribers may fall behind by `capacity`
    /// revisions (at least 1) before they are told they lagged.
    pub fn with_event_capacity(capacity: usize) -> Self {
        Fleet {
            handle: Arc::new(Handle {
                shared: Arc::new(Shared {
                    snapshot: ArcSwap::from_pointee(FleetSnapshot::default()),
                    publishing: Mutex::new(()),
                    events: broadcast::channel(capacity.max(1)).0,
                    members: Mutex::new(HashMap::new()),
                    next_member: AtomicU64::new(1),
                    stopping: CancellationToken::new(),
                    closed: CancellationToken::new(),
                }),
            }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Adds a member: it has joined (with the containers its watcher has
    /// now) when this returns, and is followed by a task of its own until
    /// it leaves. Must be called within a tokio runtime, as the task is
    /// spawned on it. Refused once the fleet is [closed](Self::close) (or
    /// its last clone dropped): the member comes back untouched, its
    /// engine not asked anything.
    pub fn add(&self, member: FleetMember) -> Result<MemberId, FleetClosed> {
        let shared = self.shared();
        let id = MemberId(shared.next_member.fetch_add(1, Ordering::Relaxed));
        let departure = Departure {
            leave: shared.stopping.child_token(),
            left: CancellationToken::new(),
        };
        {
            // `close` takes the members under this lock after it stops
            // the fleet: a member is either refused here or seen there.
            let mut members = lock(&shared.members);
            if shared.stopping.is_cancelled() {
                return Err(FleetClosed(Box::new(member)));
            }
            members.insert(id, departure.clone());
        }
        let following = member::Following::join(shared.clone(), id, member);
        tokio::spawn(following.run(departure));
        Ok(id)
    }

    /// Removes a member and waits until it has left (its containers
    /// exited, its watch stopped); `false` when it is no member (any more).
    pub async fn remove(&self, member: MemberId) -> bool {
        let departure = lock(&self.shared().members).get(&member).cloned();
        let Some(departure) = departure else {
            return false;
        };
        departure.leave.cancel();
        departure.left.cancelled().await;
        true
    }

    /// Sets (or clears) the container a member's engine runs in; `false`
    /// when it is no member. Published as [`FleetChange::Parent`] when it
    /// changed.
    pub fn set_parent(&self, member: MemberId, parent: Option<ParentContainer>) -> bool {
        let mut found = false;
        self.shared().publish(|engines| {
            let Some(engine) = engines.get(&member) else {
                return Vec::new();
            };
            found = true;
            if engine.parent == parent {
                return Vec::new();
            }
            let mut changed = (**engine).clone();
            changed.parent = parent;
            let changed = Arc::new(changed);
            engines.insert(member, changed.clone());
            vec![FleetEvent {
                engine: changed,
                change: FleetChange::Parent,
                revision: 0,
            }]
        });
        found
    }

    /// The current snapshot of all engines and containers.
    pub fn snapshot(&self) -> Arc<FleetSnapshot> {
        self.shared().snapshot.load_full()
    }

    /// The current snapshot and the stream of every change after it, taken
    /// atomically: applying the changes in order to the snapshot gives each
    /// later snapshot, with nothing missed or counted twice.
    pub fn subscribe(&self) -> (Arc<FleetSnapshot>, FleetEvents) {
        let shared = self.shared();
        let _pairing = lock(&shared.publishing);
        (
            shared.snapshot.load_full(),
            FleetEvents(RevisionStream::new(
                shared.events.subscribe(),
                shared.closed.clone(),
            )),
        )
    }

    /// Makes every member leave, waits until all have, then ends every
    /// subscriber's stream. Later [`add`](Self::add)s are refused.
    pub async fn close(&self) {
        let shared = self.shared();
        shared.stopping.cancel();
        loop {
            let departures: Vec<Departure> = lock(&shared.members).values().cloned().collect();
            if departures.is_empty() {
                break;
            }
            for departure in departures {
                departure.left.cancelled().await;
            }
        }
        shared.closed.cancel();
    }
}

#[cfg(test)]
mod tests;
