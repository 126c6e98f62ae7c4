//! What a fleet shows: its snapshot of engines and their containers, and
//! the events of its subscription.

use super::*;

/// Container ids to PIDs in the reader's PID namespace.
pub(super) type LocalPids = imbl::GenericHashMap<
    Arc<str>,
    u32,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// One engine of a fleet, as a [`FleetSnapshot`] shows it.
#[derive(Clone, Debug)]
pub struct FleetEngine {
    pub(super) member: MemberId,
    pub(super) watcher: Watcher,
    pub(super) info: Arc<EngineInfo>,
    pub(super) status: SyncStatus,
    pub(super) parent: Option<ParentContainer>,
    pub(super) local_pid: Option<u32>,
    pub(super) found_by: FoundBy,
    pub(super) portfolio: Arc<Portfolio>,
    pub(super) local_pids: LocalPids,
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
    pub(super) engine: &'a FleetEngine,
    pub(super) container: &'a Arc<Container>,
    pub(super) local_pid: Option<u32>,
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
    pub(super) engines: imbl::OrdMap<MemberId, Arc<FleetEngine>>,
    pub(super) revision: u64,
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
pub struct FleetEvents(pub(super) RevisionStream<FleetEvent>);

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
