//! The whalewatcher engine for plain containerd, through its native gRPC
//! API (containerd-client, tonic).
//!
//! ```no_run
//! use whalewatcher_containerd::ContainerdEngine;
//! use whalewatcher_core::{RetryPolicy, Watcher};
//!
//! # fn demo() -> Result<(), whalewatcher_core::EngineError> {
//! // Or ContainerdEngine::new(socket), or builder() for the default socket.
//! let engine = ContainerdEngine::builder()
//!     .endpoint("/run/containerd/containerd.sock")
//!     .ignore_namespaces(["moby"])
//!     .build()?;
//! let watcher = Watcher::new(engine, RetryPolicy::default());
//! # Ok(()) }
//! ```
//!
//! - All namespaces but the ignored ones (default: `moby`, whose containers
//!   Docker reports, and `k8s.io`, the CRI engine's). A container is alive
//!   while its task is running, pausing or paused. Its id is
//!   `namespace/id`, just `id` in `default`; its name is nerdctl's name
//!   label (else the id), prefixed `namespace/` outside `default` as well;
//!   its project comes from the compose label. The version reads
//!   `<version> <revision>` (the version alone where containerd has no
//!   revision). These are the Go whalewatcher's values.
//! - A sync costs one namespace list plus one container list and one task
//!   list per namespace — never a round trip per container. The container
//!   records come as a stream, one message each, as containerd's own
//!   client asks for them, so no message size limit caps how many a
//!   namespace may hold (gRPC's usual 4 MiB held about 1,300 records of 3
//!   KB).
//! - containerd answers an event subscription only with its first event, so
//!   awaiting the call says nothing about when it went live. The engine
//!   publishes markers on a topic of its own until one comes through; only
//!   then does the watcher list, so nothing falls between.
//! - A `/tasks/exit` of an exec'd process is not the container dying.

mod convert;
mod events;
mod kept;

use events::task_events;
pub use events::{live_subscription, namespace_task_events};

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::introspection_client::IntrospectionClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::ListContainerMessage;
use containerd_client::services::v1::{
    GetContainerRequest, GetRequest, ListContainersRequest, ListNamespacesRequest,
    ListTasksRequest, PublishRequest, SubscribeRequest,
};
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status, Streaming};
use containerd_client::types::v1::Process;
use containerd_client::types::Envelope;
use convert::RecordFields;
use futures::{StreamExt, TryStreamExt};
use kept::{KeptRecord, KeptRecordMessage};
use whalewatcher_core::support::{readable, status_error, Protocol};
use whalewatcher_core::{
    async_trait, Container, Engine, EngineError, EngineEvents, EngineInfo, Exit, Listing, Omission,
};

pub use convert::NERDCTL_NAME_LABEL;

/// The engine type reported for containerd.
pub const CONTAINERD_TYPE: &str = "containerd.io";

/// The namespaces ignored unless told otherwise: Docker's (watch Docker
/// itself) and the CRI plugin's (watch it through CRI).
pub const DEFAULT_IGNORED_NAMESPACES: [&str; 2] = ["moby", "k8s.io"];

// Hidden from the docs: support for this workspace's tests and
// benchmarks, not API that users may rely on.
#[doc(hidden)]
/// The topic of the markers that prove a subscription live.
pub const BARRIER_TOPIC: &str = "/whalewatcher/barrier";

/// Stopped tasks asked at once for the exits of containers that ended
/// unheard.
const EXIT_LOOKUPS: usize = 16;

const TOPICS: [&str; 5] = [
    "/tasks/start",
    "/tasks/exit",
    "/tasks/paused",
    "/tasks/resumed",
    // To tell on the exit that follows.
    "/tasks/oom",
];

/// Where containerd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// What containerd told about an alive container, for a [`Packer`].
#[derive(Clone, Copy, Debug)]
pub struct Inspection<'a> {
    /// The container's namespace.
    pub namespace: &'a str,
    /// containerd's container record: labels, image, spec, runtime, …
    pub record: &'a containerd_client::services::v1::Container,
    /// Its task: PID, status, ….
    pub task: &'a containerd_client::types::v1::Process,
}

/// Completes a container's record from what containerd told about it, as
/// the Go module's `RucksackPacker` does: attaches an application-specific
/// [`Rucksack`](whalewatcher_core::Rucksack), adds labels, … It must keep
/// the id.
pub type Packer = Arc<dyn Fn(Container, &Inspection<'_>) -> Container + Send + Sync>;

/// containerd, through its native API.
pub struct ContainerdEngine {
    socket: PathBuf,
    api: String,
    pid: Option<u32>,
    ignored: BTreeSet<String>,
    packer: Option<Packer>,
    /// Connected on first use; tonic reconnects it after a loss.
    channel: tokio::sync::OnceCell<Channel>,
    /// Whether containerd runs in our PID namespace; asked on first use.
    pids_local: tokio::sync::OnceCell<bool>,
}

impl std::fmt::Debug for ContainerdEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerdEngine")
            .field("api", &self.api)
            .field("pid", &self.pid)
            .field("ignored", &self.ignored)
            .field("packer", &self.packer.is_some())
            .finish_non_exhaustive()
    }
}

/// Configures a [`ContainerdEngine`].
#[derive(Default)]
pub struct ContainerdEngineBuilder {
    endpoint: Option<PathBuf>,
    pid: Option<u32>,
    ignored: Option<BTreeSet<String>>,
    packer: Option<Packer>,
    channel: Option<Channel>,
}

impl std::fmt::Debug for ContainerdEngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerdEngineBuilder")
            .field("endpoint", &self.endpoint)
            .field("pid", &self.pid)
            .field("ignored", &self.ignored)
            .field("packer", &self.packer.is_some())
            .field("channel", &self.channel.is_some())
            .finish()
    }
}

impl ContainerdEngineBuilder {
    /// containerd's unix socket: a path, or a `unix://` URL. Without one,
    /// [`DEFAULT_SOCKET`].
    pub fn endpoint(mut self, socket: impl Into<PathBuf>) -> Self {
        self.endpoint = Some(socket.into());
        self
    }

    /// The engine's PID in the reader's PID namespace, when the caller
    /// knows it (discovery does). Without it the PID is unknown: the one
    /// containerd reports is in its own PID namespace, which need not be
    /// the reader's.
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// Ignores exactly these namespaces instead of the
    /// [default ones](DEFAULT_IGNORED_NAMESPACES).
    pub fn ignore_namespaces<S: Into<String>>(
        mut self,
        namespaces: impl IntoIterator<Item = S>,
    ) -> Self {
        self.ignored = Some(namespaces.into_iter().map(Into::into).collect());
        self
    }

    /// Completes each container's record from what containerd told about
    /// it: attach a rucksack (`container.with_rucksack(..)`), add labels, …
    /// The packer must keep the id.
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
    pub fn build(self) -> Result<ContainerdEngine, EngineError> {
        let (socket, api) = whalewatcher_core::support::unix_endpoint(
            self.endpoint.unwrap_or_else(|| DEFAULT_SOCKET.into()),
        )?;
        Ok(ContainerdEngine {
            socket,
            api,
            pid: self.pid,
            ignored: self.ignored.unwrap_or_else(|| {
                DEFAULT_IGNORED_NAMESPACES
                    .iter()
                    .map(|ns| (*ns).to_owned())
                    .collect()
            }),
            packer: self.packer,
            channel: tokio::sync::OnceCell::new_with(self.channel),
            pids_local: tokio::sync::OnceCell::new(),
        })
    }
}

impl ContainerdEngine {
    /// An engine at the unix socket `socket` (a path, or a `unix://` URL),
    /// ignoring the [default namespaces](DEFAULT_IGNORED_NAMESPACES). Does
    /// no I/O.
    pub fn new(socket: impl Into<PathBuf>) -> Result<Self, EngineError> {
        Self::builder().endpoint(socket).build()
    }

    /// A builder for more settings.
    pub fn builder() -> ContainerdEngineBuilder {
        ContainerdEngineBuilder::default()
    }

    /// The gRPC channel to containerd, connected on first use: for calls of
    /// your own with containerd-client's service clients.
    pub async fn channel(&self) -> Result<Channel, EngineError> {
        self.channel
            .get_or_try_init(|| async {
                whalewatcher_core::support::connect_unix(self.socket.clone())
                    .await
                    .map_err(|e| EngineError::unreachable(self.api.clone(), e))
            })
            .await
            .cloned()
    }

    fn error(&self, status: Status, id: Option<&str>) -> EngineError {
        status_error(&self.api, &status, id, "the containerd API")
    }

    /// Whether containerd's PIDs are this host's (it runs in our PID
    /// namespace), so a container's `/proc/PID/cgroup` can be read: asked
    /// of the process listening on the socket, until it answers.
    async fn pids_are_local(&self) -> bool {
        let asked = self.pids_local.get_or_try_init(|| async {
            whalewatcher_core::support::serves_our_pid_namespace(&self.socket)
                .await
                .ok_or(())
        });
        asked.await.copied().unwrap_or(false)
    }

    /// The container of a record and its task, if alive, packed.
    fn container(
        &self,
        namespace: &str,
        record: &containerd_client::services::v1::Container,
        task: &containerd_client::types::v1::Process,
    ) -> Option<Container> {
        let container = convert::container(namespace, record, task)?;
        Some(match &self.packer {
            Some(pack) => pack(
                container,
                &Inspection {
                    namespace,
                    record,
                    task,
                },
            ),
            None => container,
        })
    }

    /// A request in `namespace`; a name containerd could not have is
    /// refused here rather than in a panic.
    fn namespaced<T>(&self, message: T, namespace: &str) -> Result<Request<T>, EngineError> {
        let valid = namespace
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let value = MetadataValue::try_from(namespace)
            .ok()
            .filter(|_| valid)
            .ok_or_else(|| EngineError::Protocol {
                endpoint: self.api.clone(),
                message: format!("invalid containerd namespace name {namespace:?}"),
            })?;
        let mut request = Request::new(message);
        request.metadata_mut().insert("containerd-namespace", value);
        Ok(request)
    }

    /// The alive containers of one namespace: the task list and the
    /// container records, asked for at once.
    ///
    /// The records come one message each, as containerd's own client asks
    /// for them: in one message they stop at containerd's send limit (16
    /// MiB), about 5,000 records of 3.3 KB. Each is made a container as it
    /// comes, so the records are never all held at once, and without a
    /// packer only the fields the container keeps are decoded (a packer is
    /// handed the full record). An engine without the stream is asked for
    /// the one message.
    async fn list_namespace(
        &self,
        channel: &Channel,
        namespace: &str,
    ) -> Result<Vec<Container>, EngineError> {
        if self.packer.is_some() {
            self.list_namespace_as(channel, namespace, |m: ListContainerMessage| m.container)
                .await
        } else {
            self.list_namespace_as(channel, namespace, |m: KeptRecordMessage| m.container)
                .await
        }
    }

    /// [`list_namespace`](Self::list_namespace), with each streamed
    /// message decoded as `M` and its record taken by `record_of`.
    async fn list_namespace_as<M, R>(
        &self,
        channel: &Channel,
        namespace: &str,
        record_of: impl Fn(M) -> Option<R>,
    ) -> Result<Vec<Container>, EngineError>
    where
        M: prost::Message + Default + Send + 'static,
        R: Record,
    {
        let mut tasks = TasksClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
        let (tasks, streamed) = futures::join!(
            tasks.list(self.namespaced(ListTasksRequest::default(), namespace)?),
            record_stream::<M>(
                channel,
                self.namespaced(ListContainersRequest::default(), namespace)?
            ),
        );
        let tasks: HashMap<String, _> = tasks
            .map_err(|s| self.error(s, None))?
            .into_inner()
            .tasks
            .into_iter()
            .map(|task| (convert::task_container_id(&task).to_owned(), task))
            .collect();
        let streamed = match streamed {
            Ok(stream) => {
                stream
                    .try_filter_map(|message| {
                        let alive = record_of(message).and_then(|record| {
                            record.container(self, namespace, tasks.get(record.id())?)
                        });
                        futures::future::ready(Ok(alive))
                    })
                    .try_collect()
                    .await
            }
            Err(status) => Err(status),
        };
        // Refused in the headers or as the stream's only item.
        let listed = match streamed {
            Err(status) if status.code() == Code::Unimplemented => {
                ContainersClient::new(channel.clone())
                    .max_decoding_message_size(usize::MAX)
                    .list(self.namespaced(ListContainersRequest::default(), namespace)?)
                    .await
                    .map(|response| {
                        let records = response.into_inner().containers;
                        records
                            .iter()
                            .filter_map(|record| {
                                self.container(namespace, record, tasks.get(&record.id)?)
                            })
                            .collect()
                    })
            }
            other => other,
        };
        listed.map_err(|s| self.error(s, None))
    }
}

/// The engine's version as the Go module reports it, `<version>
/// <revision>`; the version alone where containerd has no revision (as
/// some distributions build it), not with a trailing space.
fn version_of(version: &str, revision: &str) -> String {
    if revision.is_empty() {
        version.to_owned()
    } else {
        format!("{version} {revision}")
    }
}

/// The container with its cgroup, read from `/proc/PID/cgroup` where its
/// PID is this host's (`local`). containerd's spec, which names it too, is
/// not read: it is most of a record's size.
fn with_cgroup(container: Container, local: bool) -> Container {
    match local.then(|| whalewatcher_core::support::cgroup_of(container.pid())) {
        Some(Some(cgroup)) => container.with_cgroup(cgroup),
        _ => container,
    }
}

/// [`with_cgroup`] for a whole list, on a blocking thread: at 10,000
/// containers the reads take some 30 ms, which would stall every other
/// task of a current-thread runtime.
async fn with_cgroups(containers: Vec<Container>) -> Result<Vec<Container>, EngineError> {
    let reading = tokio::task::spawn_blocking(move || {
        containers
            .into_iter()
            .map(|container| with_cgroup(container, true))
            .collect()
    });
    match reading.await {
        Ok(read) => Ok(read),
        Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        // The runtime is shutting down: no list, rather than an empty one.
        Err(_) => Err(EngineError::Cancelled),
    }
}

/// A streamed record: the full one, or only the kept fields.
trait Record: RecordFields {
    /// Its container, if `task` is alive.
    fn container(
        &self,
        engine: &ContainerdEngine,
        namespace: &str,
        task: &Process,
    ) -> Option<Container>;
}

impl Record for containerd_client::services::v1::Container {
    fn container(
        &self,
        engine: &ContainerdEngine,
        namespace: &str,
        task: &Process,
    ) -> Option<Container> {
        engine.container(namespace, self, task)
    }
}

impl Record for KeptRecord {
    fn container(
        &self,
        _: &ContainerdEngine,
        namespace: &str,
        task: &Process,
    ) -> Option<Container> {
        convert::container(namespace, self, task)
    }
}

/// containerd's record stream of the namespace `request` names, each
/// message decoded as `M`.
async fn record_stream<M>(
    channel: &Channel,
    request: Request<ListContainersRequest>,
) -> Result<Streaming<M>, Status>
where
    M: prost::Message + Default + Send + 'static,
{
    let mut grpc = containerd_client::tonic::client::Grpc::new(channel.clone())
        .max_decoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("the channel was not ready: {e}")))?;
    let path = containerd_client::tonic::codegen::http::uri::PathAndQuery::from_static(
        "/containerd.services.containers.v1.Containers/ListStream",
    );
    let codec = tonic_prost::ProstCodec::<ListContainersRequest, M>::default();
    Ok(grpc
        .server_streaming(request, path, codec)
        .await?
        .into_inner())
}

#[async_trait]
impl Engine for ContainerdEngine {
    fn api(&self) -> &str {
        &self.api
    }

    fn engine_type(&self) -> &str {
        CONTAINERD_TYPE
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    async fn info(&self) -> Result<EngineInfo, EngineError> {
        let channel = self.channel().await?;
        let version = VersionClient::new(channel.clone())
            .version(())
            .await
            .map_err(|s| self.error(s, None))?
            .into_inner();
        let server = IntrospectionClient::new(channel)
            .server(())
            .await
            .map_err(|s| self.error(s, None))?
            .into_inner();
        Ok(EngineInfo {
            id: server.uuid,
            engine_type: CONTAINERD_TYPE.to_owned(),
            version: version_of(&version.version, &version.revision),
            api: self.api.clone(),
            // The PID containerd reports is in its own PID namespace,
            // which may not be the reader's: unknown unless given, as the
            // Go module leaves it (0).
            pid: self.pid,
        })
    }

    async fn ping(&self) -> Result<(), EngineError> {
        let channel = self.channel().await?;
        VersionClient::new(channel)
            .version(())
            .await
            .map(|_| ())
            .map_err(|s| self.error(s, None))
    }

    async fn list(&self) -> Result<Vec<Container>, EngineError> {
        self.list_with_omissions()
            .await
            .map(|listing| listing.containers)
    }

    /// Each watched namespace apart: one whose list fails is left out and
    /// said (the Go module skips it too), unless all fail.
    async fn list_with_omissions(&self) -> Result<Listing, EngineError> {
        let channel = self.channel().await?;
        let namespaces = NamespacesClient::new(channel.clone())
            .list(ListNamespacesRequest::default())
            .await
            .map_err(|s| self.error(s, None))?
            .into_inner()
            .namespaces;
        let watched: Vec<&str> = namespaces
            .iter()
            .map(|ns| ns.name.as_str())
            .filter(|name| !self.ignored.contains(*name))
            .collect();
        let lists =
            futures::future::join_all(watched.iter().map(|ns| self.list_namespace(&channel, ns)))
                .await;
        let mut listing = Listing::default();
        let mut first_error = None;
        for (namespace, listed) in watched.iter().zip(lists) {
            match listed {
                Ok(containers) => listing.containers.extend(containers),
                Err(error) => {
                    listing.omitted.push(Omission {
                        part: format!("namespace {namespace:?}"),
                        reason: whalewatcher_core::describe(&error),
                    });
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error.filter(|_| listing.omitted.len() == watched.len()) {
            return Err(error);
        }
        if self.pids_are_local().await {
            listing.containers = with_cgroups(listing.containers).await?;
        }
        Ok(listing)
    }

    async fn inspect(&self, id: &str) -> Result<Container, EngineError> {
        let (namespace, container_id) = convert::split_display_id(id);
        if self.ignored.contains(namespace) {
            return Err(EngineError::NotFound { id: id.to_owned() });
        }
        let channel = self.channel().await?;
        let record = ContainersClient::new(channel.clone())
            .max_decoding_message_size(usize::MAX)
            .get(self.namespaced(
                GetContainerRequest {
                    id: container_id.to_owned(),
                },
                namespace,
            )?)
            .await
            .map_err(|s| self.error(s, Some(id)))?
            .into_inner()
            .container
            .ok_or_else(|| EngineError::NotFound { id: id.to_owned() })?;
        let task = TasksClient::new(channel)
            .get(self.namespaced(
                GetRequest {
                    container_id: container_id.to_owned(),
                    exec_id: String::new(),
                },
                namespace,
            )?)
            .await
            .map_err(|s| match self.error(s, Some(id)) {
                EngineError::NotFound { id } => EngineError::Processless { id },
                other => other,
            })?
            .into_inner()
            .process
            .ok_or_else(|| EngineError::Processless { id: id.to_owned() })?;
        let container = self
            .container(namespace, &record, &task)
            .ok_or_else(|| EngineError::Processless { id: id.to_owned() })?;
        Ok(with_cgroup(container, self.pids_are_local().await))
    }

    /// From the tasks containerd keeps stopped until they are deleted.
    async fn exits(&self, ids: &[Arc<str>]) -> HashMap<Arc<str>, Exit> {
        let Ok(channel) = self.channel().await else {
            return HashMap::new();
        };
        let mut asked = Vec::with_capacity(ids.len());
        for id in ids {
            let (namespace, container_id) = convert::split_display_id(id);
            let request = self.namespaced(
                GetRequest {
                    container_id: container_id.to_owned(),
                    exec_id: String::new(),
                },
                namespace,
            );
            let (mut tasks, id) = (TasksClient::new(channel.clone()), id.clone());
            asked.push(async move {
                let process = tasks.get(request.ok()?).await.ok()?.into_inner().process?;
                Some((id, convert::stopped_exit(&process)?))
            });
        }
        futures::stream::iter(asked)
            .buffer_unordered(EXIT_LOOKUPS)
            .filter_map(futures::future::ready)
            .collect()
            .await
    }

    async fn diagnose(&self, error: EngineError) -> EngineError {
        let api = "containerd's API";
        whalewatcher_core::support::diagnose_unix_socket(&self.socket, Protocol::Grpc, api, error)
            .await
    }

    async fn subscribe(&self) -> Result<EngineEvents, EngineError> {
        let channel = self.channel().await?;
        let topics = TOPICS.map(|t| format!("topic==\"{t}\""));
        let filters: Vec<&str> = topics.iter().map(String::as_str).collect();
        let events = live_subscription(&channel, &filters)
            .await
            .map_err(|s| self.error(s, None))?;
        let ignored = self.ignored.clone();
        Ok(task_events(events, self.api.clone(), move |namespace| {
            !ignored.contains(namespace)
        }))
    }
}
