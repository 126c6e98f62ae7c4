//! What joins a fleet: a member (a watcher, and whether it owns its
//! watch), how its engine was found, the container it runs in, and how
//! its PIDs become the reader's.

use super::*;

/// Names one member of a [`Fleet`]: unique within it, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MemberId(pub(super) u64);

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
    pub(super) watcher: Watcher,
    pub(super) parent: Option<ParentContainer>,
    pub(super) pids: Option<Arc<dyn PidTranslation>>,
    pub(super) local_pid: Option<u32>,
    pub(super) found_by: FoundBy,
    pub(super) watch: MemberWatch,
    pub(super) close_on_leave: bool,
}

/// Who runs a member's watch.
#[derive(Debug)]
pub(super) enum MemberWatch {
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
