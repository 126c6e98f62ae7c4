//! The whalewatcher engine for CRI runtimes (containerd's CRI plugin,
//! cri-o) through the CRI API and its container events (k8s-cri, tonic).
//!
//! ```no_run
//! use whalewatcher_core::{RetryPolicy, Watcher};
//! use whalewatcher_cri::CriEngine;
//!
//! # fn demo() -> Result<(), whalewatcher_core::EngineError> {
//! // Or CriEngine::builder() for more settings.
//! let engine = CriEngine::new("/run/containerd/containerd.sock")?;
//! let watcher = Watcher::new(engine, RetryPolicy::default());
//! # Ok(()) }
//! ```
//!
//! - Running containers and ready pod sandboxes are alive. Sandboxes are
//!   containers too, marked with [`POD_SANDBOX_LABEL`] and named by their
//!   sandbox id. Every container carries its pod's name, namespace and uid
//!   and its own name within the pod (a sandbox: its id) as labels, and its
//!   annotations as labels prefixed with [`ANNOTATION_KEY_PREFIX`] — the
//!   label names and values of the Go whalewatcher, so tools keep working.
//! - CRI has no PIDs; the verbose status's `info` JSON has them. A sync
//!   costs one container list and one sandbox list plus exactly one status
//!   round trip per container and per sandbox. A started event costs one
//!   status round trip: the event carries its pod, which is remembered.
//! - The lists are taken at any size the runtime sends: a gRPC client's
//!   usual 4 MiB limit is about 11,000 containers (an entry of containerd
//!   1.7's list takes 373 bytes); containerd itself sends at most 16 MiB.
//! - Events come from `GetContainerEvents`, except on containerd 1.7: it
//!   serves all its CRI event streams from one queue, so two
//!   readers split the events (each misses some, and a kubelet with
//!   evented PLEG or `crictl events` beside a watcher would lose them
//!   too), and events emitted while nobody listens are replayed to the
//!   next stream. There the engine reads the task events of the CRI's
//!   namespace (`k8s.io`) from containerd's own event service on the same
//!   socket, which tells every subscriber everything, and takes the
//!   records through the CRI as everywhere else. containerd 2.0 and later
//!   give each CRI event stream every event; 1.6 has none (below). After every reconnect a full
//!   relist; a stale replayed event is harmless (a start of a container
//!   since gone finds it gone; an exit of one never seen changes nothing).
//! - An engine without container events is an
//!   [`EngineError::Unsupported`], reported once, not retried: containerd
//!   before 1.7 answers `Unimplemented`; cri-o without
//!   `enable_pod_events = true` ends the stream at once. The event call
//!   answers only with its first event, so a refusal is awaited for 50 ms
//!   after the call, alongside the list, before a sync counts as done.
//! - CRI has no engine id; the engine's host name stands in (see
//!   [`CriEngineBuilder::pid`]).

mod convert;
mod events;
mod hostname;

use events::{
    events_error, follow, shares_one_event_queue, with_exit_reasons, Call, Feed,
    BARRIER_ROUND_TRIPS, CRI_NAMESPACE, NOT_ALIVE_YET_WAIT, REFUSAL_WINDOW,
};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerEventResponse, ContainerFilter, ContainerState, ContainerStateValue, ContainerStatus,
    ContainerStatusRequest, GetEventsRequest, ListContainersRequest, ListPodSandboxRequest,
    PodSandboxFilter, PodSandboxState, PodSandboxStateValue, PodSandboxStatus,
    PodSandboxStatusRequest, VersionRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Response, Status, Streaming};
use whalewatcher_core::support::{status_error, Protocol};
use whalewatcher_core::{
    async_trait, Container, Engine, EngineError, EngineEvents, EngineInfo, EventKind, Exit,
};

use convert::{Pod, VerboseInfo};
pub use convert::{
    ANNOTATION_KEY_PREFIX, POD_CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL,
    POD_NETWORK, POD_SANDBOX_LABEL, POD_UID_LABEL,
};

/// The engine type reported for CRI runtimes.
pub const CRI_TYPE: &str = "k8s.io/cri-api";

/// What an engine lacks when it cannot stream container events.
const NO_EVENTS: &str = "CRI container events";

/// What an engine lacks when it ends the event stream before any event
/// (cri-o without its pod events option).
const EVENTS_DISABLED: &str = "CRI container events: it ended the event stream at once \
                               (cri-o needs enable_pod_events = true)";

/// How many status round trips a list runs at once, unless told.
pub use whalewatcher_core::support::DEFAULT_MAX_CONCURRENT_INSPECTS;

/// What the runtime told about an alive container or sandbox, for a
/// [`Packer`].
#[derive(Clone, Copy, Debug)]
pub enum Inspection<'a> {
    /// A running container: its status, and the verbose status's info.
    Container {
        /// The container's status: image, times, mounts, …
        status: &'a ContainerStatus,
        /// The verbose info (containerd: `info`, a JSON document).
        info: &'a HashMap<String, String>,
    },
    /// A ready pod sandbox: its status, and the verbose status's info.
    Sandbox {
        /// The sandbox's status: network, linux options, …
        status: &'a PodSandboxStatus,
        /// The verbose info (containerd: `info`, a JSON document).
        info: &'a HashMap<String, String>,
    },
}

/// Completes a container's (or sandbox's) record from what the runtime
/// told about it, as the Go module's `RucksackPacker` does: attaches an
/// application-specific [`Rucksack`](whalewatcher_core::Rucksack), adds
/// labels, … It must keep the id.
pub type Packer = Arc<dyn Fn(Container, &Inspection<'_>) -> Container + Send + Sync>;

/// A CRI runtime, through the CRI API.
pub struct CriEngine {
    socket: PathBuf,
    api: String,
    pid: Option<u32>,
    max_concurrent_inspects: usize,
    packer: Option<Packer>,
    /// Connected on first use; tonic reconnects it after a loss.
    channel: tokio::sync::OnceCell<Channel>,
    /// The pods of the sandboxes known to be alive, by sandbox id: filled
    /// by lists and by started events, which carry their pod, so that
    /// inspecting a started container costs one round trip.
    pods: Arc<Mutex<HashMap<String, Pod>>>,
    /// Until when the last subscription's event call may still be refused
    /// (see [`REFUSAL_WINDOW`]): the next list does not answer before.
    refusal_window_ends: Mutex<Option<tokio::time::Instant>>,
    /// The events come from containerd's task events (containerd 1.7):
    /// a start is told before the CRI has the container running.
    task_events: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for CriEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriEngine")
            .field("api", &self.api)
            .field("pid", &self.pid)
            .field("packer", &self.packer.is_some())
            .finish_non_exhaustive()
    }
}

/// Configures a [`CriEngine`].
#[derive(Default)]
pub struct CriEngineBuilder {
    endpoint: Option<PathBuf>,
    pid: Option<u32>,
    max_concurrent_inspects: Option<usize>,
    packer: Option<Packer>,
    channel: Option<Channel>,
}

impl std::fmt::Debug for CriEngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriEngineBuilder")
            .field("endpoint", &self.endpoint)
            .field("pid", &self.pid)
            .field("max_concurrent_inspects", &self.max_concurrent_inspects)
            .field("packer", &self.packer.is_some())
            .field("channel", &self.channel.is_some())
            .finish()
    }
}

impl CriEngineBuilder {
    /// The runtime's unix socket: a path, or a `unix://` URL as crictl
    /// takes it. Without one, crictl's rule finds it: [`default_socket`].
    pub fn endpoint(mut self, socket: impl Into<PathBuf>) -> Self {
        self.endpoint = Some(socket.into());
        self
    }

    /// The engine's PID, when the caller knows it: CRI cannot tell. The
    /// engine id is then the host name in that process's UTS namespace
    /// (when this process may look; otherwise, and without a PID, this
    /// host's name).
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// How many status round trips a list runs at once (default
    /// [`DEFAULT_MAX_CONCURRENT_INSPECTS`], at least 1).
    pub fn max_concurrent_inspects(mut self, limit: usize) -> Self {
        self.max_concurrent_inspects = Some(limit.max(1));
        self
    }

    /// Completes each container's (and sandbox's) record from what the
    /// runtime told about it: attach a rucksack
    /// (`container.with_rucksack(..)`), add labels, … The packer must keep
    /// the id.
    pub fn packer(
        mut self,
        packer: impl Fn(Container, &Inspection<'_>) -> Container + Send + Sync + 'static,
    ) -> Self {
        self.packer = Some(Arc::new(packer));
        self
    }

    /// Talks over this channel instead of connecting on first use: a
    /// channel of your own, shared (as the Go module takes a client). The
    /// endpoint still names the engine in messages and is where a failure
    /// is diagnosed: name it too unless it is the default.
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = Some(channel);
        self
    }

    /// Builds the engine. Does no I/O: an engine that is not there shows
    /// when the watcher first talks to it. Fails for an endpoint that is
    /// no unix socket path.
    pub fn build(self) -> Result<CriEngine, EngineError> {
        let (socket, api) = whalewatcher_core::support::unix_endpoint(
            self.endpoint.unwrap_or_else(default_socket),
        )?;
        Ok(CriEngine {
            socket,
            api,
            pid: self.pid,
            max_concurrent_inspects: self
                .max_concurrent_inspects
                .unwrap_or(DEFAULT_MAX_CONCURRENT_INSPECTS),
            packer: self.packer,
            channel: tokio::sync::OnceCell::new_with(self.channel),
            pods: Arc::default(),
            refusal_window_ends: Mutex::new(None),
            task_events: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// cri-o's socket.
pub const CRIO_SOCKET: &str = "/run/crio/crio.sock";

/// The CRI socket when none is named, by crictl's rule:
/// `CONTAINER_RUNTIME_ENDPOINT` (a path or a `unix://` URL), else
/// containerd's socket ([`whalewatcher_containerd::DEFAULT_SOCKET`]).
pub fn default_socket() -> PathBuf {
    match std::env::var_os("CONTAINER_RUNTIME_ENDPOINT") {
        Some(endpoint) if !endpoint.is_empty() => PathBuf::from(endpoint),
        _ => PathBuf::from(whalewatcher_containerd::DEFAULT_SOCKET),
    }
}

/// The sockets where CRI runtimes listen by default: containerd's, then
/// cri-o's ([`CRIO_SOCKET`]).
pub fn sockets() -> Vec<PathBuf> {
    vec![
        PathBuf::from(whalewatcher_containerd::DEFAULT_SOCKET),
        PathBuf::from(CRIO_SOCKET),
    ]
}

impl CriEngine {
    /// An engine at the unix socket `socket`: a path, or a `unix://` URL
    /// as crictl takes it. Does no I/O.
    pub fn new(socket: impl Into<PathBuf>) -> Result<Self, EngineError> {
        Self::builder().endpoint(socket).build()
    }

    /// A builder for more settings.
    pub fn builder() -> CriEngineBuilder {
        CriEngineBuilder::default()
    }

    /// The ready sandboxes and running containers, each with its status.
    async fn list_alive(&self) -> Result<Vec<Container>, EngineError> {
        let client = self.client().await?;
        let (mut sandboxes, mut containers) = (client.clone(), client.clone());
        let (sandboxes, containers) = futures::join!(
            sandboxes.list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    state: Some(PodSandboxStateValue {
                        state: PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }),
            }),
            containers.list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    state: Some(ContainerStateValue {
                        state: ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            }),
        );
        let sandboxes = sandboxes
            .map_err(|s| self.error(s, None))?
            .into_inner()
            .items;
        let containers = containers
            .map_err(|s| self.error(s, None))?
            .into_inner()
            .containers;
        // The pods as they are now, from their sandboxes' statuses, before
        // their containers, which share them: what events added meanwhile
        // is at worst fetched again.
        self.pods().clear();
        let sandboxes = sandboxes.into_iter().map(|s| (s.id, true)).collect();
        let mut alive = self.inspect_all(&client, sandboxes).await?;
        let containers = containers.into_iter().map(|c| (c.id, false)).collect();
        alive.extend(self.inspect_all(&client, containers).await?);
        Ok(alive)
    }

    fn pack(&self, container: Container, inspection: Inspection<'_>) -> Container {
        match &self.packer {
            Some(pack) => pack(container, &inspection),
            None => container,
        }
    }

    /// A client of the runtime service, over the channel connected on
    /// first use: for calls of your own.
    pub async fn client(&self) -> Result<RuntimeServiceClient<Channel>, EngineError> {
        // Lists as large as the engine sends them (tonic's default stops
        // at 4 MiB, about 11,000 containers).
        let channel = self.channel().await?;
        Ok(RuntimeServiceClient::new(channel).max_decoding_message_size(usize::MAX))
    }

    /// The channel to the runtime, connected on first use: for the image
    /// service, or containerd's own services on the same socket.
    pub async fn channel(&self) -> Result<Channel, EngineError> {
        self.channel
            .get_or_try_init(|| whalewatcher_core::support::connect_unix(self.socket.clone()))
            .await
            .cloned()
            .map_err(|e| EngineError::unreachable(self.api.clone(), e))
    }

    fn error(&self, status: Status, id: Option<&str>) -> EngineError {
        status_error(&self.api, &status, id, "the CRI v1 runtime API")
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pod>> {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The container or sandbox `id`, as the runtime has it now.
    async fn inspect_now(&self, id: &str) -> Result<Container, EngineError> {
        let mut client = self.client().await?;
        let known_sandbox = self.pods().contains_key(id);
        if !known_sandbox {
            match self.inspect_container(&mut client, id).await {
                // Perhaps a sandbox this engine has not seen yet.
                Err(EngineError::NotFound { .. }) => {}
                other => return other,
            }
        }
        self.inspect_sandbox(&mut client, id).await
    }

    /// A running container: one verbose status round trip, plus one for its
    /// pod in the rare case it is not known yet.
    async fn inspect_container(
        &self,
        client: &mut RuntimeServiceClient<Channel>,
        id: &str,
    ) -> Result<Container, EngineError> {
        let response = client
            .container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: true,
            })
            .await
            .map_err(|s| self.error(s, Some(id)))?
            .into_inner();
        let running = |s: &ContainerStatus| s.state == ContainerState::ContainerRunning as i32;
        let (status, info) = self.alive(id, response.status, running, &response.info)?;
        let sandbox_id = info.sandbox_id.clone().unwrap_or_default();
        let known = self.pods().get(&sandbox_id).cloned();
        let pod = match known {
            Some(pod) => pod,
            None => self.fetch_pod(client, &sandbox_id).await?,
        };
        let container = convert::container(&status, &info, &pod);
        Ok(self.pack(
            container,
            Inspection::Container {
                status: &status,
                info: &response.info,
            },
        ))
    }

    /// The pod of a sandbox not known yet; remembered.
    async fn fetch_pod(
        &self,
        client: &mut RuntimeServiceClient<Channel>,
        sandbox_id: &str,
    ) -> Result<Pod, EngineError> {
        let status = client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(|s| self.error(s, Some(sandbox_id)))?
            .into_inner()
            .status;
        let pod = convert::pod_of(&status.unwrap_or_default());
        self.pods().insert(sandbox_id.to_owned(), pod.clone());
        Ok(pod)
    }

    /// A ready pod sandbox: one verbose status round trip.
    async fn inspect_sandbox(
        &self,
        client: &mut RuntimeServiceClient<Channel>,
        id: &str,
    ) -> Result<Container, EngineError> {
        let response = client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose: true,
            })
            .await
            .map_err(|s| self.error(s, Some(id)))?
            .into_inner();
        let ready = |s: &PodSandboxStatus| s.state == PodSandboxState::SandboxReady as i32;
        let (status, info) = self.alive(id, response.status, ready, &response.info)?;
        // One pod record, shared by the pod's containers.
        // One pod record, shared by the pod's containers: a pod's
        // metadata and addresses do not change while its sandbox lives.
        let pod = self
            .pods()
            .entry(status.id.clone())
            .or_insert_with(|| convert::pod_of(&status))
            .clone();
        let sandbox = convert::sandbox(&status, &pod, info.pid);
        Ok(self.pack(
            sandbox,
            Inspection::Sandbox {
                status: &status,
                info: &response.info,
            },
        ))
    }

    /// The status of `id` and its verbose info, if it is alive: a status
    /// in an alive state, and a PID in the info.
    fn alive<S>(
        &self,
        id: &str,
        status: Option<S>,
        is_alive: impl Fn(&S) -> bool,
        info: &HashMap<String, String>,
    ) -> Result<(S, VerboseInfo), EngineError> {
        let status = status
            .filter(is_alive)
            .ok_or_else(|| EngineError::Processless { id: id.to_owned() })?;
        let info = VerboseInfo::parse(info)
            .filter(|info| info.pid != 0)
            .ok_or_else(|| EngineError::Protocol {
                endpoint: self.api.clone(),
                message: format!("the verbose status of {id:?} has no PID in its info"),
            })?;
        Ok((status, info))
    }

    /// Inspects each id (sandboxes or containers) with at most
    /// `max_concurrent_inspects` round trips in flight; what is no longer
    /// alive by then is left out.
    async fn inspect_all(
        &self,
        client: &RuntimeServiceClient<Channel>,
        ids: Vec<(String, bool)>,
    ) -> Result<Vec<Container>, EngineError> {
        let inspected: Vec<Option<Container>> = futures::stream::iter(ids)
            .map(|(id, is_sandbox)| {
                let mut client = client.clone();
                async move {
                    let result = if is_sandbox {
                        self.inspect_sandbox(&mut client, &id).await
                    } else {
                        self.inspect_container(&mut client, &id).await
                    };
                    match result {
                        Err(error) if error.is_container_gone() => Ok(None),
                        other => other.map(Some),
                    }
                }
            })
            .buffer_unordered(self.max_concurrent_inspects)
            .try_collect()
            .await?;
        Ok(inspected.into_iter().flatten().collect())
    }
}

#[async_trait]
impl Engine for CriEngine {
    fn api(&self) -> &str {
        &self.api
    }

    fn engine_type(&self) -> &str {
        CRI_TYPE
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    async fn info(&self) -> Result<EngineInfo, EngineError> {
        let version = self
            .client()
            .await?
            .version(VersionRequest {
                version: "v1".to_owned(),
            })
            .await
            .map_err(|s| self.error(s, None))?
            .into_inner();
        let pid = self.pid;
        let id = tokio::task::spawn_blocking(move || hostname::engine_hostname(pid))
            .await
            .unwrap_or_default();
        Ok(EngineInfo {
            id,
            engine_type: CRI_TYPE.to_owned(),
            version: convert::version(&version),
            api: self.api.clone(),
            pid: self.pid,
        })
    }

    async fn list(&self) -> Result<Vec<Container>, EngineError> {
        // The watcher reads the event stream while it lists: a refusal of
        // the event call that comes in this window ends the session before
        // it counts as synced. Waited out alongside the list, it costs
        // nothing once the list takes longer.
        let window_ends = self
            .refusal_window_ends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let (listed, ()) = futures::join!(self.list_alive(), async {
            if let Some(at) = window_ends {
                tokio::time::sleep_until(at).await;
            }
        });
        listed
    }

    /// From the statuses the CRI keeps of exited containers (sandboxes
    /// have no exit code, and are left out).
    async fn exits(&self, ids: &[Arc<str>]) -> HashMap<Arc<str>, Exit> {
        let Ok(client) = self.client().await else {
            return HashMap::new();
        };
        let asked: Vec<_> = ids
            .iter()
            .map(|id| {
                let (mut client, id) = (client.clone(), id.clone());
                async move {
                    let request = ContainerStatusRequest {
                        container_id: id.to_string(),
                        verbose: false,
                    };
                    let status = client.container_status(request).await.ok()?;
                    let status = status.into_inner().status?;
                    let exited = status.state == ContainerState::ContainerExited as i32;
                    let exit = Exit {
                        code: Some(status.exit_code),
                        oom_killed: Some(status.reason == "OOMKilled"),
                    };
                    exited.then_some((id, exit))
                }
            })
            .collect();
        futures::stream::iter(asked)
            .buffer_unordered(self.max_concurrent_inspects)
            .filter_map(futures::future::ready)
            .collect()
            .await
    }

    async fn inspect(&self, id: &str) -> Result<Container, EngineError> {
        if !self.task_events.load(Ordering::Relaxed) {
            return self.inspect_now(id).await;
        }
        // containerd tells a task's start before its CRI plugin has the
        // container running, or the sandbox ready — or known at all: a
        // sandbox joins the CRI's store after its task started. An inspect
        // right after the start may find it not alive, or not there, yet.
        // Asked again, for a while, before it counts as gone; an exit
        // meanwhile ends the wait in the watcher.
        let deadline = tokio::time::Instant::now() + NOT_ALIVE_YET_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            match self.inspect_now(id).await {
                Err(EngineError::Processless { .. } | EngineError::NotFound { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                inspected => return inspected,
            }
        }
    }

    async fn ping(&self) -> Result<(), EngineError> {
        let mut client = self.client().await?;
        client
            .version(VersionRequest {
                version: "v1".to_owned(),
            })
            .await
            .map(|_| ())
            .map_err(|s| self.error(s, None))
    }

    async fn diagnose(&self, error: EngineError) -> EngineError {
        let api = "a CRI runtime's API";
        whalewatcher_core::support::diagnose_unix_socket(&self.socket, Protocol::Grpc, api, error)
            .await
    }

    async fn subscribe(&self) -> Result<EngineEvents, EngineError> {
        let mut client = self.client().await?;
        let version = client
            .version(VersionRequest {
                version: "v1".to_owned(),
            })
            .await
            .map_err(|s| self.error(s, None))?
            .into_inner();
        let task_events = shares_one_event_queue(&version);
        self.task_events.store(task_events, Ordering::Relaxed);
        if task_events {
            let channel = self.channel().await?;
            let events =
                whalewatcher_containerd::namespace_task_events(&channel, CRI_NAMESPACE, &self.api)
                    .await?;
            return Ok(with_exit_reasons(events, client));
        }
        let called = tokio::time::Instant::now();
        let mut barrier = client.clone();
        let mut call: Call = Box::pin(async move {
            client
                .get_container_events(GetEventsRequest::default())
                .await
        });
        // The engine answers the call only with its first event. Version
        // round trips sent after it prove the server has taken the call,
        // and give an engine that refuses it (Unimplemented) the time to
        // say so first; the server handles the calls concurrently, so on a
        // loaded machine a refusal can come later still: the next list
        // waits out the rest of the refusal window.
        let answered = tokio::select! {
            biased;
            answer = &mut call => Some(answer),
            version = async {
                for _ in 0..BARRIER_ROUND_TRIPS {
                    barrier.version(VersionRequest { version: "v1".to_owned() }).await?;
                }
                Ok::<(), Status>(())
            } => {
                version.map_err(|s| self.error(s, None))?;
                None
            }
        };
        let feed = match answered {
            None => {
                *self
                    .refusal_window_ends
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(called + REFUSAL_WINDOW);
                Feed::Calling(call)
            }
            Some(Ok(response)) => Feed::Open(Box::new(response.into_inner()), false),
            Some(Err(status)) => return Err(events_error(&self.api, status)),
        };
        Ok(follow(feed, self.api.clone(), self.pods.clone()))
    }
}
