//! Finds the container engines of a Linux host by their processes —
//! engines inside containers of other engines too — and keeps a
//! [`Fleet`] of their watchers current as engines start and stop.
//!
//! ```no_run
//! # async fn demo() -> Result<(), whalewatcher_discovery::DiscoveryError> {
//! use whalewatcher_discovery::Discovery;
//!
//! let discovery = Discovery::new();
//! let scan = discovery.scan().await?;
//! for found in &scan.engines {
//!     println!("{} at {}, found by {:?}", found.api, found.endpoint, found.found_by);
//! }
//! for container in discovery.fleet().snapshot().containers() {
//!     println!("{} PID {:?} here", container.container().name(), container.local_pid());
//! }
//! // Rescans every few seconds while the handle lives.
//! let rescanning = discovery.spawn();
//! # drop(rescanning);
//! # Ok(()) }
//! ```
//!
//! How an engine is found, and what it costs:
//!
//! - **Processes** by name, from one read of each `/proc/PID/stat`:
//!   `dockerd`; `containerd` (not its shims, not the one a dockerd starts
//!   for itself); `podman system service`; `crio`.
//! - **Sockets**: the socket inodes among its `/proc/PID/fd`, matched in
//!   its `/proc/PID/net/unix` (its own network namespace); a socket of
//!   another mount namespace is reached through `/proc/PID/root`, its
//!   symbolic links resolved inside that root. ttrpc, debug, metrics and
//!   network plugin sockets are not asked.
//! - **Probe**: each socket is asked to describe itself with the matching
//!   engine (a containerd socket also as CRI); an engine that cannot be
//!   watched (containerd 1.6's CRI has no container events) is reported,
//!   once, and not watched. Every engine found gets a watcher in the
//!   fleet, with its PID and a [`PidTranslator`].
//! - **Nesting**: an engine whose process descends from the initial
//!   process of a container of another engine of the fleet is said to run
//!   in that container ([`whalewatcher_core::FleetEngine::parent`]).
//! - **Rescans** look only at processes not seen before; an engine whose
//!   process is gone leaves the fleet (its containers exited).
//!
//! - **Activators**: a socket named `docker.sock` or `podman.sock` that
//!   systemd (or `systemd-socket-activate`) holds for an engine not
//!   started yet is connected to, once; the engine starts and is found by
//!   its process.
//! - **Well-known sockets** ([`DiscoveryBuilder::well_known_sockets`]):
//!   the engines at the sockets where each kind listens by default, when
//!   this process may connect to them, each engine once; the process
//!   listening there (`SO_PEERCRED`) gives its PIDs.
//!
//! Without root, other users' engines cannot be looked into: they are
//! reported in [`Scan::unreached`] with the reason — unless reached at a
//! well-known socket — and the scan goes on.

mod builder;
mod found;
mod parents;
mod pids;
mod plan;
mod probe;
mod procfs;
mod reach;
mod sockets;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use whalewatcher_core::{
    describe, EngineError, EngineInfo, Fleet, FleetMember, FoundBy, MemberId, ParentContainer,
    StopOnDrop, SyncState, Watcher,
};

pub use builder::DiscoveryBuilder;
pub use found::{DiscoveryError, FoundEngine, Scan, Unreached, WatchedAlready};
pub use pids::{PidLevels, PidTranslator};
pub use probe::{Api, EngineProcess};
pub use reach::UnreachedSocket;

use found::{Joining, Translation};
use plan::Plan;

use parents::ContainerPids;
use probe::WatchSettings;
use procfs::{ProcessTable, Procfs};
use reach::Sockets;

/// How often a running discovery looks for engines that came or went.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(5);

/// How long a socket may take to answer whether it is an engine.
pub const DEFAULT_PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// How long a scan waits for a new engine's first sync before it goes on.
pub const DEFAULT_FIRST_SYNC_WAIT: Duration = Duration::from_secs(5);

/// Finds the engines of the host and keeps a fleet of their watchers.
/// Cheap to clone; clones share the fleet and what was found.
#[derive(Clone, Debug)]
pub struct Discovery {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    procfs: Procfs,
    rescan: Duration,
    first_sync_wait: Duration,
    settings: WatchSettings,
    fleet: Fleet,
    well_known_sockets: bool,
    /// The engine processes seen, by PID and start time; one scan at a
    /// time.
    tracked: tokio::sync::Mutex<HashMap<(u32, u64), Tracked>>,
    /// The engines at well-known and activators' sockets (locked after
    /// `tracked`).
    sockets: tokio::sync::Mutex<Sockets>,
    last: Mutex<Option<Arc<Scan>>>,
}

/// An engine process, and what was found on it so far.
#[derive(Debug)]
struct Tracked {
    kind: EngineProcess,
    pid: u32,
    found: Vec<FoundEngine>,
    /// APIs that will not be watched on this process, and why (it cannot
    /// be watched, as containerd 1.6's CRI without events).
    refused: HashMap<Api, Unreached>,
    /// APIs found watched by another member of the fleet.
    elsewhere: HashMap<Api, WatchedAlready>,
    /// Sockets that answered as something else than the API asked.
    not_this_api: HashSet<(Api, PathBuf)>,
    /// Why the last probe found less than it looked for.
    failures: Vec<Unreached>,
    translation: Option<Translation>,
}

impl Tracked {
    fn new(kind: EngineProcess, pid: u32) -> Self {
        Tracked {
            kind,
            pid,
            found: Vec::new(),
            refused: HashMap::new(),
            elsewhere: HashMap::new(),
            not_this_api: HashSet::new(),
            failures: Vec::new(),
            translation: None,
        }
    }

    /// The APIs of the process still to be looked for.
    fn missing(&self) -> Vec<Api> {
        self.kind
            .apis()
            .iter()
            .copied()
            .filter(|api| api.is_built())
            .filter(|api| !self.refused.contains_key(api))
            .filter(|api| !self.elsewhere.contains_key(api))
            .filter(|api| !self.found.iter().any(|found| found.api == *api))
            .collect()
    }

    fn unreached(&self, api: Option<Api>, socket: Option<PathBuf>, reason: String) -> Unreached {
        Unreached {
            process: self.kind,
            pid: self.pid,
            api,
            socket,
            reason,
        }
    }
}

impl Default for Discovery {
    fn default() -> Self {
        Self::new()
    }
}

impl Discovery {
    /// A discovery with the default settings and a fleet of its own.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, for other settings.
    pub fn builder() -> DiscoveryBuilder {
        DiscoveryBuilder::default()
    }

    /// The fleet of the engines found.
    pub fn fleet(&self) -> &Fleet {
        &self.inner.fleet
    }

    /// What the last scan found, if one ran.
    pub fn last_scan(&self) -> Option<Arc<Scan>> {
        self.inner
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Looks for engines once: engines whose process is gone leave the
    /// fleet, new engine processes are probed and their engines join it
    /// (this waits for their first syncs, within the first-sync wait),
    /// and every engine's parent container is updated. Scans run one at
    /// a time. Must run within a tokio runtime.
    pub async fn scan(&self) -> Result<Arc<Scan>, DiscoveryError> {
        let began = tokio::time::Instant::now();
        let inner = &self.inner;
        let mut tracked = inner.tracked.lock().await;
        let mut sockets = inner.sockets.lock().await;
        let mut table = self.processes().await?;
        // Engines that start on their socket's first connection are found
        // by their processes once started.
        if self.wake_activated(&mut sockets, &table).await {
            table = self.processes().await?;
        }
        let plan = Plan::of(tracked.keys().copied(), &table, |process| {
            EngineProcess::of(&inner.procfs, process, &table)
        });
        self.prune(&mut tracked, &plan.gone).await;
        // New engine processes, and the ones still missing an API.
        for ((pid, started), kind) in plan.new {
            tracked.insert((pid, started), Tracked::new(kind, pid));
        }
        let keys: Vec<(u32, u64)> = tracked
            .iter()
            .filter(|(_, t)| !t.missing().is_empty())
            .map(|(key, _)| *key)
            .collect();
        let probing: Vec<(u32, u64, Tracked)> = keys
            .into_iter()
            .filter_map(|key| Some((key.0, key.1, tracked.remove(&key)?)))
            .collect();
        // The container each engine runs in, as far as the members known
        // now tell: an engine that joins says where it runs from its first
        // revision on (one whose parent joins in this scan learns it below).
        let containers = ContainerPids::of(&self.inner.fleet.snapshot(), &table);
        let probed = futures::future::join_all(probing.into_iter().map(|(pid, started, t)| {
            let own: Vec<MemberId> = t.found.iter().map(|f| f.member).collect();
            let parent = containers.parent_of(t.pid, &own, &table);
            async move { ((pid, started), self.probe(t, parent).await) }
        }))
        .await;
        let mut joined = Vec::new();
        for (key, (t, new_members)) in probed {
            joined.extend(new_members);
            tracked.insert(key, t);
        }
        // After the processes: a socket whose engine was found by its
        // process is not asked again.
        if inner.well_known_sockets {
            joined.extend(self.reach_well_known(&mut sockets, &table).await);
        }
        self.wait_for_first_syncs(&joined).await;
        self.link_parents(&tracked, &sockets, &table);
        let scan = Arc::new(self.report(&tracked, &sockets, table.len(), began.elapsed()));
        *inner.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(scan.clone());
        debug!(
            engines = scan.engines.len(),
            unreached = scan.unreached.len(),
            took = ?scan.took,
            "scanned"
        );
        Ok(scan)
    }

    /// Every process, or why `/proc` cannot be read.
    async fn processes(&self) -> Result<ProcessTable, DiscoveryError> {
        let procfs = &self.inner.procfs;
        read_processes(procfs.clone())
            .await
            .map_err(|source| DiscoveryError::Processes {
                path: procfs.root().to_owned(),
                source,
            })
    }

    /// Scans now and then every rescan period, until `cancel` is
    /// cancelled; the fleet stays as it is then (see [`close`](Self::close)).
    /// Ends early only when `/proc` cannot be read.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), DiscoveryError> {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                scanned = self.scan() => { scanned?; }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.inner.rescan) => {}
            }
        }
    }

    /// Runs [`run`](Self::run) in a task of its own; the handle stops it
    /// (and so does dropping it). Panics outside a tokio runtime.
    pub fn spawn(&self) -> DiscoveryHandle {
        let discovery = self.clone();
        DiscoveryHandle {
            task: StopOnDrop::spawn(|cancel| async move { discovery.run(cancel).await }),
        }
    }

    /// Makes every engine leave the fleet (closing its watcher) and ends
    /// the fleet's streams.
    pub async fn close(&self) {
        self.inner.fleet.close().await;
    }

    /// Engines whose process is gone (or got its PID reused) leave; those
    /// whose watch ended by itself are remembered as refused.
    async fn prune(&self, tracked: &mut HashMap<(u32, u64), Tracked>, gone: &[(u32, u64)]) {
        let fleet = &self.inner.fleet;
        for key in gone {
            let Some(t) = tracked.remove(key) else {
                continue;
            };
            for found in &t.found {
                info!(api = %found.api, endpoint = %found.endpoint, "engine process gone");
                fleet.remove(found.member).await;
            }
        }
        let snapshot = fleet.snapshot();
        for t in tracked.values_mut() {
            let (stayed, ended): (Vec<FoundEngine>, Vec<FoundEngine>) =
                std::mem::take(&mut t.found)
                    .into_iter()
                    .partition(|found| snapshot.engine(found.member).is_some());
            t.found = stayed;
            for found in ended {
                let reason = "its watch ended".to_owned();
                let unreached = t.unreached(Some(found.api), Some(found.socket), reason);
                t.refused.insert(found.api, unreached);
            }
        }
    }

    /// Looks for the missing APIs of one engine process; returns it with
    /// the members that joined.
    async fn probe(
        &self,
        mut t: Tracked,
        parent: Option<ParentContainer>,
    ) -> (Tracked, Vec<MemberId>) {
        let inner = &self.inner;
        t.failures.clear();
        let mut joined = Vec::new();
        let sockets = match sockets::listening_sockets(&inner.procfs, t.pid) {
            Ok(sockets) => sockets,
            Err(error) => {
                let reason = format!("cannot see its sockets: {error}");
                t.failures.push(t.unreached(None, None, reason));
                return (t, joined);
            }
        };
        let candidates = t.kind.candidates(&sockets);
        if candidates.is_empty() {
            let reason = "it listens on no unix socket that could be an engine API".to_owned();
            t.failures.push(t.unreached(None, None, reason));
            return (t, joined);
        }
        if t.translation.is_none() {
            match self.translation(t.pid) {
                Ok(translation) => t.translation = Some(translation),
                Err(error) => {
                    let reason = format!("cannot read its PID namespaces: {error}");
                    t.failures.push(t.unreached(None, None, reason));
                    return (t, joined);
                }
            }
        }
        for api in t.missing() {
            // CRI is asked where containerd's native API answered.
            let native = t.found.iter().find(|f| f.api == Api::Containerd);
            let asked: Vec<&sockets::ListeningSocket> = match (api, native) {
                (Api::Cri, Some(native)) => candidates
                    .iter()
                    .filter(|s| s.bound == native.socket)
                    .collect(),
                _ => candidates.iter().collect(),
            };
            for socket in asked {
                if t.not_this_api.contains(&(api, socket.bound.clone())) {
                    continue;
                }
                match self.watch(&t, api, socket, parent.clone()).await {
                    Ok(Watched::Joined(found)) => {
                        joined.push(found.member);
                        t.found.push(found);
                        break;
                    }
                    Ok(Watched::Already(already)) => {
                        t.elsewhere.insert(api, already);
                        break;
                    }
                    Err(error) => {
                        let unreached =
                            t.unreached(Some(api), Some(socket.bound.clone()), describe(&error));
                        if error.is_permanent() {
                            t.refused.insert(api, unreached);
                            break;
                        }
                        if matches!(error, EngineError::Protocol { .. }) {
                            t.not_this_api.insert((api, socket.bound.clone()));
                        }
                        t.failures.push(unreached);
                    }
                }
            }
        }
        (t, joined)
    }

    /// The PID translation of the engine process `pid`: its PIDs come
    /// from `/proc/PID/status`, which anybody may read; its PID namespace
    /// only when we may look into the process.
    fn translation(&self, pid: u32) -> std::io::Result<Translation> {
        let procfs = &self.inner.procfs;
        let (translator, levels) = PidTranslator::for_engine(procfs, pid)?;
        let namespace = procfs.namespace(pid, "pid").ok();
        Ok((Arc::new(translator), levels, namespace))
    }

    /// Probes `socket` for `api` and, when an engine answers, watches it:
    /// it joins the fleet unless another member watches it already, or
    /// its first sync says it cannot be watched.
    async fn watch(
        &self,
        t: &Tracked,
        api: Api,
        socket: &sockets::ListeningSocket,
        parent: Option<ParentContainer>,
    ) -> Result<Watched, EngineError> {
        let inner = &self.inner;
        let (watcher, info) =
            probe::probe(api, &socket.reachable, Some(t.pid), &inner.settings).await?;
        if let Some(member) = self.watched_elsewhere(api, &socket.reachable, &info) {
            watcher.close().await;
            debug!(%api, %member, pid = t.pid, "engine watched already");
            return Ok(Watched::Already(WatchedAlready {
                process: t.kind,
                pid: t.pid,
                api,
                socket: socket.bound.clone(),
                member,
            }));
        }
        let joining = Joining {
            api,
            process: Some(t.kind),
            socket: socket.bound.clone(),
            found_by: FoundBy::Process {
                command: t.kind.as_str().into(),
                pid: t.pid,
            },
            translation: t.translation.clone(),
            parent,
        };
        self.join(watcher, joining).await.map(Watched::Joined)
    }

    /// Starts the watch of a probed engine and adds it to the fleet,
    /// unless its first sync (within the first-sync wait) says it cannot
    /// be watched.
    async fn join(&self, watcher: Watcher, joining: Joining) -> Result<FoundEngine, EngineError> {
        let inner = &self.inner;
        let watching = watcher.spawn();
        let first = tokio::time::timeout(inner.first_sync_wait, watcher.ready()).await;
        if let Ok(Err(error)) = &first {
            if error.is_permanent() {
                let _ = watching.stop().await;
                watcher.close().await;
                return Err(error.clone());
            }
        }
        let endpoint = watcher.api();
        let mut member = FleetMember::new(watcher.clone())
            .watching(watching)
            .found_by(joining.found_by.clone())
            .close_on_leave();
        let (mut pid, mut pid_namespace) = (None, None);
        if let Some((translator, levels, namespace)) = joining.translation {
            member = member.pid_translation(translator).local_pid(levels.local);
            (pid, pid_namespace) = (Some(levels), namespace);
        }
        if let Some(parent) = joining.parent {
            member = member.parent(parent);
        }
        let Ok(member) = inner.fleet.add(member) else {
            // The fleet closed meanwhile: the refused member's watch stops
            // as it is dropped; nothing of this engine stays open.
            watcher.close().await;
            return Err(EngineError::Cancelled);
        };
        let api = joining.api;
        info!(%api, %endpoint, found_by = ?joining.found_by, "engine found");
        Ok(FoundEngine {
            member,
            api,
            found_by: joining.found_by,
            process: joining.process,
            pid,
            pid_namespace,
            socket: joining.socket,
            endpoint,
        })
    }

    /// The member of the fleet that watches the engine at `socket` (as
    /// reachable from here) already: one whose endpoint is the same file,
    /// or (but for CRI, whose ids are not the engine's own) one of the
    /// same engine type and id.
    fn watched_elsewhere(
        &self,
        api: Api,
        socket: &std::path::Path,
        info: &EngineInfo,
    ) -> Option<MemberId> {
        let file = |path: &std::path::Path| reach::socket_file(path).ok().flatten();
        let probed = file(socket);
        let snapshot = self.inner.fleet.snapshot();
        let found = snapshot.engines().find(|engine| {
            let theirs = engine.info();
            if theirs.engine_type != info.engine_type {
                return false;
            }
            let same_id = !info.id.is_empty() && theirs.id == info.id && api != Api::Cri;
            let same_socket = probed.is_some() && socket_path(&theirs.api).and_then(file) == probed;
            same_id || same_socket
        });
        found.map(|engine| engine.member())
    }

    /// Waits (within the first-sync wait) until the fleet shows each of
    /// `members` synced, or gone: so that the parent of an engine is found
    /// among the containers of an engine found in the same scan.
    async fn wait_for_first_syncs(&self, members: &[MemberId]) {
        if members.is_empty() {
            return;
        }
        let fleet = &self.inner.fleet;
        let (_, mut changes) = fleet.subscribe();
        let settled = || {
            let snapshot = fleet.snapshot();
            members.iter().all(|member| {
                snapshot
                    .engine(*member)
                    .is_none_or(|engine| engine.state() == SyncState::Synced)
            })
        };
        let _ = tokio::time::timeout(self.inner.first_sync_wait, async {
            while !settled() {
                if changes.next().await.is_none() {
                    return;
                }
            }
        })
        .await;
    }

    /// Sets every found engine's parent container from the process tree.
    fn link_parents(
        &self,
        tracked: &HashMap<(u32, u64), Tracked>,
        sockets: &Sockets,
        table: &ProcessTable,
    ) {
        let fleet = &self.inner.fleet;
        let containers = ContainerPids::of(&fleet.snapshot(), table);
        let mut by_pid: HashMap<u32, Vec<MemberId>> = HashMap::new();
        let found = tracked.values().flat_map(|t| t.found.iter());
        for found in found.chain(sockets.found()) {
            if let Some(pid) = &found.pid {
                by_pid.entry(pid.local).or_default().push(found.member);
            }
        }
        for (pid, own) in by_pid {
            let parent = containers.parent_of(pid, &own, table);
            for member in &own {
                fleet.set_parent(*member, parent.clone());
            }
        }
    }

    fn report(
        &self,
        tracked: &HashMap<(u32, u64), Tracked>,
        sockets: &Sockets,
        processes: usize,
        took: Duration,
    ) -> Scan {
        let mut engines: Vec<FoundEngine> = tracked
            .values()
            .flat_map(|t| t.found.iter())
            .chain(sockets.found())
            .cloned()
            .collect();
        engines.sort_by_key(|found| found.member);
        // An engine process reached at a well-known socket is watched,
        // whatever kept us from looking into it.
        let reached: HashSet<u32> = sockets.listeners().collect();
        let mut unreached: Vec<Unreached> = tracked
            .values()
            .filter(|t| !reached.contains(&t.pid))
            .flat_map(|t| {
                let failures = t.failures.iter().filter(|_| !t.missing().is_empty());
                t.refused.values().chain(failures).cloned()
            })
            .collect();
        unreached.sort_by(|a, b| (a.pid, a.api, &a.socket).cmp(&(b.pid, b.api, &b.socket)));
        let mut watched_already: Vec<WatchedAlready> = tracked
            .values()
            .flat_map(|t| t.elsewhere.values().cloned())
            .collect();
        watched_already.sort_by_key(|already| (already.pid, already.api));
        Scan {
            engines,
            unreached,
            watched_already,
            unreached_sockets: sockets.unreached(),
            processes,
            took,
        }
    }
}

/// What probing one socket of an engine process came to.
enum Watched {
    /// The engine joined the fleet.
    Joined(FoundEngine),
    /// Another member of the fleet watches it already.
    Already(WatchedAlready),
}

/// The unix socket a watcher's endpoint names (`unix://PATH`, or a path).
fn socket_path(endpoint: &str) -> Option<&std::path::Path> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    path.starts_with('/').then(|| std::path::Path::new(path))
}

/// Every process, read on a blocking thread: at 2,000 processes the reads
/// take some 30 ms, which would stall every other task of a
/// current-thread runtime (the watchers' events among them).
async fn read_processes(procfs: Procfs) -> std::io::Result<ProcessTable> {
    match tokio::task::spawn_blocking(move || procfs.processes()).await {
        Ok(read) => read,
        Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        Err(_) => Err(std::io::Error::other("the runtime is shutting down")),
    }
}

/// A discovery running in a task of its own, from [`Discovery::spawn`].
/// Dropping it stops the rescans (without waiting).
#[derive(Debug)]
pub struct DiscoveryHandle {
    task: StopOnDrop<Result<(), DiscoveryError>>,
}

impl DiscoveryHandle {
    /// Stops the rescans and waits until they have ended; the error, if
    /// they ended before because `/proc` could not be read.
    pub async fn stop(mut self) -> Result<(), DiscoveryError> {
        self.task.stop_soon();
        match self.task.join().await {
            Some(Ok(ended)) => ended,
            Some(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            _ => Ok(()),
        }
    }
}
