//! The whalewatcher engine for Docker (moby) and for podman through its
//! Docker-compatible API, with bollard's types.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use whalewatcher_core::{RetryPolicy, Watcher};
//! use whalewatcher_moby::MobyEngine;
//!
//! // Without an endpoint: DOCKER_HOST, else /var/run/docker.sock.
//! let engine = MobyEngine::builder().build()?;
//! let watcher = Watcher::new(engine, RetryPolicy::default());
//! # Ok(()) }
//! ```
//!
//! - **Gap-free events.** bollard's event stream subscribes only when first
//!   polled and never confirms it, so [`Engine::subscribe`] reads the
//!   engine's clock first and asks for events `since` then: whatever happens
//!   while the watcher lists is replayed, and the watcher applies replays
//!   idempotently. podman's `since` replays the same way.
//! - **Cheap per session.** A ping's `Server` and `Date` headers tell
//!   Docker from podman, the version and the engine's clock; dockerd's
//!   `/version` would ask containerd and runc for theirs. Requests go
//!   unversioned (the engine's own API version), as bollard 0.21's do.
//! - **One inspect per container**, 16 at once by default, over reused
//!   connections (bollard's own unix transport connects anew per request).
//! - **One transport** for `unix://`, `tcp://` and TLS (the `tls` feature:
//!   [`MobyEngineBuilder::tls_certs`], or the docker CLI's
//!   `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`): every request, the
//!   engine's own and bollard's, goes through one pooled hyper client.
//! - **podman** is recognized from the ping and reported as
//!   `podman.io`. Its Docker API tells nothing of pods, so pod name, id and
//!   the infra marker come from podman's own API on the same socket, as
//!   labels ([`POD_NAME_LABEL`], [`POD_ID_LABEL`], [`INFRA_LABEL`]).
//! - **Engine ids** stay the same across engine restarts: dockerd's is the
//!   `/info` `ID` it keeps in its data root. podman's `/info` `ID` is new
//!   on every call, so a podman's id is its host name and storage root
//!   (`host:/var/lib/containers/storage`; a rootless podman's root is in
//!   its user's home).

// docs.rs marks each item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod convert;
mod endpoint;
#[cfg(feature = "tls")]
mod tls;
mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, SystemInfo};
use bollard::query_parameters::{EventsOptionsBuilder, InspectContainerOptions};
use bollard::Docker;
use futures::StreamExt;
use whalewatcher_core::support::Protocol;
use whalewatcher_core::{
    async_trait, Container, Engine, EngineError, EngineEvents, EngineInfo, Exit,
};

use convert::PodMembership;
pub use endpoint::{
    configured_endpoint, docker_sockets, podman_socket, podman_sockets, DEFAULT_ENDPOINT,
    PODMAN_ROOT_SOCKET,
};
use transport::{Answer, Transport};

/// The label marking a container started with `--privileged`; its value is
/// always empty. The Go whalewatcher's name, so that tools keep working.
pub const PRIVILEGED_LABEL: &str = "github.com/thediveo/whalewatcher/moby/privileged";
/// The label carrying the name of a podman container's pod.
pub const POD_NAME_LABEL: &str = "io.github.thediveo/podman/podname";
/// The label carrying the id of a podman container's pod.
pub const POD_ID_LABEL: &str = "io.github.thediveo/podman/podid";
/// The label marking a podman pod's infra container; its value is empty.
pub const INFRA_LABEL: &str = "io.github.thediveo/podman/infra";

/// The engine type reported for Docker.
pub const DOCKER_TYPE: &str = "docker.com";
/// The engine type reported for podman.
pub const PODMAN_TYPE: &str = "podman.io";

/// Inspects in flight at once during a list, unless told.
pub use whalewatcher_core::support::DEFAULT_MAX_CONCURRENT_INSPECTS;

/// Completes a container's record from its raw inspect response, as the Go
/// module's `RucksackPacker` does: attaches an application-specific
/// [`Rucksack`](whalewatcher_core::Rucksack), adds labels, … It must keep
/// the id.
pub type Packer = Arc<dyn Fn(Container, &ContainerInspectResponse) -> Container + Send + Sync>;

const UNKNOWN: u8 = 0;
const DOCKER: u8 = 1;
const PODMAN: u8 = 2;

/// Docker or podman, through the Docker API.
pub struct MobyEngine {
    docker: Docker,
    transport: Transport,
    api: String,
    pid: Option<u32>,
    packer: Option<Packer>,
    max_concurrent_inspects: usize,
    flavor: AtomicU8,
    /// The type the caller named, whatever the engine says.
    engine_type: Option<String>,
}

impl std::fmt::Debug for MobyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MobyEngine")
            .field("api", &self.api)
            .field("type", &self.engine_type())
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// Configures a [`MobyEngine`].
#[derive(Default)]
pub struct MobyEngineBuilder {
    endpoint: Option<String>,
    tls_certs: Option<std::path::PathBuf>,
    pid: Option<u32>,
    packer: Option<Packer>,
    max_concurrent_inspects: Option<usize>,
    fresh_connections: bool,
    engine_type: Option<String>,
}

impl std::fmt::Debug for MobyEngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MobyEngineBuilder")
            .field("endpoint", &self.endpoint)
            .field("pid", &self.pid)
            .field("packer", &self.packer.is_some())
            .finish_non_exhaustive()
    }
}

impl MobyEngineBuilder {
    /// The API endpoint: `unix:///path`, `/path` or `tcp://host:port`.
    /// Without one, the docker CLI's rules find it: `DOCKER_HOST`, else
    /// the current docker context (`DOCKER_CONTEXT`, else the
    /// `currentContext` of `$DOCKER_CONFIG/config.json`) with its TLS
    /// files, else [`DEFAULT_ENDPOINT`]; for `tcp://`, `DOCKER_TLS_VERIFY`
    /// and `DOCKER_CERT_PATH` count too (TLS needs the `tls` feature). For
    /// the [`PODMAN_TYPE`], podman's rules: `CONTAINER_HOST`, else
    /// [`podman_socket`].
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// TLS with the certificates in `dir`, whatever `DOCKER_TLS_VERIFY`
    /// and `DOCKER_CERT_PATH` say: `ca.pem` (the CA that signed the
    /// engine's certificate) and, for an engine that verifies its clients,
    /// `cert.pem` and `key.pem`. Needs a `tcp://` endpoint and the `tls`
    /// feature.
    pub fn tls_certs(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.tls_certs = Some(dir.into());
        self
    }

    /// The engine's PID, when the caller knows it.
    pub fn pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// Completes each container's record from its raw inspect response:
    /// attach a rucksack (`container.with_rucksack(..)`), add labels, … The
    /// packer must keep the id.
    pub fn packer(
        mut self,
        packer: impl Fn(Container, &ContainerInspectResponse) -> Container + Send + Sync + 'static,
    ) -> Self {
        self.packer = Some(Arc::new(packer));
        self
    }

    /// The engine type to report, whatever the engine says: for other
    /// Docker-API engines, or to say `podman.io` before the first connect
    /// (the Go module's `WithDemonType`). Without it the type is
    /// [`DOCKER_TYPE`] or, once the engine said so, [`PODMAN_TYPE`]. The
    /// [`PODMAN_TYPE`] also finds an endpoint not named by podman's rules
    /// (see [`endpoint`](Self::endpoint)).
    pub fn engine_type(mut self, engine_type: impl Into<String>) -> Self {
        self.engine_type = Some(engine_type.into());
        self
    }

    /// How many containers a list inspects at once (default 16, at least 1).
    pub fn max_concurrent_inspects(mut self, limit: usize) -> Self {
        self.max_concurrent_inspects = Some(limit.max(1));
        self
    }

    // Hidden from the docs: for this workspace's connection-reuse
    // benchmark, not a setting users need.
    #[doc(hidden)]
    /// Opens a new connection for every request, as bollard's own unix
    /// transport does, instead of reusing them (the default). Only to
    /// measure what reuse gains.
    pub fn fresh_connection_per_request(mut self) -> Self {
        self.fresh_connections = true;
        self
    }

    /// Builds the engine. Does no I/O but reading the TLS certificates: an
    /// engine that is not there shows when the watcher first talks to it.
    /// Fails for an endpoint that cannot be used at all, and for missing or
    /// unreadable certificates.
    pub fn build(self) -> Result<MobyEngine, EngineError> {
        let rules = if self.engine_type.as_deref() == Some(PODMAN_TYPE) {
            endpoint::Rules::Podman
        } else {
            endpoint::Rules::Docker
        };
        let (api, endpoint) =
            endpoint::resolve(self.endpoint.as_deref(), self.tls_certs, rules, |name| {
                std::env::var(name).ok()
            })?;
        let transport = Transport::new(&api, &endpoint, !self.fresh_connections)?;
        Ok(MobyEngine {
            docker: transport.bollard(&api)?,
            transport,
            api,
            pid: self.pid,
            packer: self.packer,
            max_concurrent_inspects: self
                .max_concurrent_inspects
                .unwrap_or(DEFAULT_MAX_CONCURRENT_INSPECTS),
            flavor: AtomicU8::new(UNKNOWN),
            engine_type: self.engine_type,
        })
    }
}

impl MobyEngine {
    /// An engine at `endpoint` (see [`MobyEngineBuilder::endpoint`]); the
    /// [`builder`](Self::builder) without an endpoint finds it as the
    /// docker CLI does.
    pub fn new(endpoint: impl Into<String>) -> Result<Self, EngineError> {
        Self::builder().endpoint(endpoint).build()
    }

    /// A builder for more settings.
    pub fn builder() -> MobyEngineBuilder {
        MobyEngineBuilder::default()
    }

    /// The bollard client, for calls of the application's own; it shares
    /// the engine's connections.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Whether the engine is podman, asking it once.
    async fn is_podman(&self) -> Result<bool, EngineError> {
        match self.flavor.load(Ordering::Relaxed) {
            UNKNOWN => Ok(self.detect().await?.0),
            flavor => Ok(flavor == PODMAN),
        }
    }

    fn remember_podman(&self, podman: bool) {
        self.flavor
            .store(if podman { PODMAN } else { DOCKER }, Ordering::Relaxed);
    }

    /// Detects Docker or podman from a ping; returns whether it is podman,
    /// and the version.
    async fn detect(&self) -> Result<(bool, String), EngineError> {
        let ping = self.ping_headers().await?;
        self.remember_podman(ping.podman);
        Ok((ping.podman, ping.version))
    }

    /// The JSON of a 200 answer; `what` names it in errors.
    fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        answer: Answer,
    ) -> Result<T, EngineError> {
        let Answer { status, body, .. } = answer;
        if status != 200 {
            return Err(self.unexpected(what, status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| self.unexpected(&format!("{what} ({e})"), status, &body))
    }

    /// Pod membership from podman's own API: of container `id`, or of all.
    async fn pods(&self, id: Option<&str>) -> Result<HashMap<String, PodMembership>, EngineError> {
        let mut path = "/v4.0.0/libpod/containers/json?all=true".to_owned();
        if let Some(id) = id {
            path.push_str(&format!("&filters=%7B%22id%22%3A%5B%22{id}%22%5D%7D"));
        }
        let Answer { status, body, .. } = self.get(&path).await?;
        let protocol = |message: String| EngineError::Protocol {
            endpoint: self.api.clone(),
            message,
        };
        if status != 200 {
            return Err(protocol(format!(
                "podman's container list answered HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let members: Vec<PodMembership> = serde_json::from_slice(&body)
            .map_err(|e| protocol(format!("podman's container list: {e}")))?;
        Ok(members.into_iter().map(|m| (m.id.clone(), m)).collect())
    }

    /// GETs the unversioned `path`.
    async fn get(&self, path: &str) -> Result<Answer, EngineError> {
        self.transport
            .get(path)
            .await
            .map_err(|cause| EngineError::unreachable(self.api.clone(), cause))
    }

    /// Pings the engine: its flavor, version and clock from the answer's
    /// headers, at a fraction of the cost of dockerd's `/version` (which
    /// asks containerd and runc for theirs).
    async fn ping_headers(&self) -> Result<convert::Ping, EngineError> {
        let answer = self.get("/_ping").await?;
        if answer.status != 200 {
            return Err(self.unexpected("the ping", answer.status, &answer.body));
        }
        let header = |name: hyper::header::HeaderName| {
            answer.headers.get(name).and_then(|v| v.to_str().ok())
        };
        convert::ping(header(hyper::header::SERVER), header(hyper::header::DATE)).ok_or_else(
            || EngineError::Protocol {
                endpoint: self.api.clone(),
                message: format!(
                    "the ping's answer names no Docker or podman server and time (Server {:?}, Date {:?})",
                    header(hyper::header::SERVER),
                    header(hyper::header::DATE)
                ),
            },
        )
    }

    /// The engine's clock, as `since` for the event stream: from a ping
    /// (whole seconds, so never later than the engine's now).
    async fn clock(&self) -> Result<String, EngineError> {
        let ping = self.ping_headers().await?;
        self.remember_podman(ping.podman);
        Ok(ping.since)
    }

    fn unexpected(&self, what: &str, status: u16, body: &[u8]) -> EngineError {
        EngineError::Protocol {
            endpoint: self.api.clone(),
            message: format!(
                "{what} answered HTTP {status}: {}",
                String::from_utf8_lossy(body).trim()
            ),
        }
    }

    /// The ids of the running and paused containers.
    async fn alive_ids(&self) -> Result<Vec<String>, EngineError> {
        // Asked explicitly: without `all`, dockerd lists running and paused
        // containers, but podman only running ones.
        let filters = "%7B%22status%22%3A%5B%22running%22%2C%22paused%22%5D%7D";
        let Answer { status, body, .. } = self
            .get(&format!("/containers/json?all=1&filters={filters}"))
            .await?;
        if status != 200 {
            return Err(self.unexpected("the container list", status, &body));
        }
        convert::listed_ids(&body)
            .map_err(|e| self.unexpected(&format!("the container list ({e})"), status, &body))
    }

    /// The inspect body of one container.
    async fn inspect_body(&self, id: &str) -> Result<bytes::Bytes, EngineError> {
        if !convert::could_name_a_container(id) {
            return Err(EngineError::NotFound { id: id.to_owned() });
        }
        let Answer { status, body, .. } = self.get(&format!("/containers/{id}/json")).await?;
        match status {
            200 => Ok(body),
            _ if convert::says_no_such_container(status, &body) => {
                Err(EngineError::NotFound { id: id.to_owned() })
            }
            _ => Err(self.unexpected(&format!("the inspect of {id}"), status, &body)),
        }
    }

    /// Inspects one container; `pods` is the pod membership when known.
    async fn inspect_with(
        &self,
        id: &str,
        pods: Option<&HashMap<String, PodMembership>>,
    ) -> Result<Container, EngineError> {
        let body = self.inspect_body(id).await?;
        let inspected = convert::parse_inspect(&body)
            .map_err(|e| self.unexpected(&format!("the inspect of {id} ({e})"), 200, &body))?;
        let full_id = inspected.id.as_deref().unwrap_or(id).to_owned();
        let pod = match pods {
            Some(pods) => pods.get(&full_id).cloned(),
            None if self.is_podman().await? => self.pods(Some(&full_id)).await?.remove(&full_id),
            None => None,
        };
        convert::container(
            &inspected,
            &body,
            pod.as_ref(),
            self.packer.as_ref(),
            &self.api,
        )
    }
}

#[async_trait]
impl Engine for MobyEngine {
    fn api(&self) -> &str {
        &self.api
    }

    fn engine_type(&self) -> &str {
        if let Some(named) = &self.engine_type {
            return named;
        }
        match self.flavor.load(Ordering::Relaxed) {
            PODMAN => PODMAN_TYPE,
            _ => DOCKER_TYPE,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    async fn info(&self) -> Result<EngineInfo, EngineError> {
        // Both at once; dockerd's /info counts every container.
        let (detected, info) = futures::join!(self.detect(), self.get("/info"));
        let (podman, version) = detected?;
        let info = info?;
        // Refused, as a docker-socket-proxy answers what it was not told
        // to allow: the id stays unknown, the ping told the rest.
        let id = if matches!(info.status, 401 | 403) {
            String::new()
        } else {
            let info: SystemInfo = self.json("the engine info", info)?;
            convert::engine_id(&info, podman).unwrap_or_else(|| self.api.clone())
        };
        Ok(EngineInfo {
            id,
            engine_type: self
                .engine_type
                .clone()
                .unwrap_or_else(|| if podman { PODMAN_TYPE } else { DOCKER_TYPE }.to_owned()),
            version,
            api: self.api.clone(),
            pid: self.pid,
        })
    }

    async fn ping(&self) -> Result<(), EngineError> {
        self.ping_headers().await.map(|_| ())
    }

    async fn list(&self) -> Result<Vec<Container>, EngineError> {
        // The flavor is known after the first info; until then it is
        // asked for alongside the list.
        let (ids, podman) = futures::join!(self.alive_ids(), self.is_podman());
        let ids = ids?;
        // One pod look-up for all; nobody is in a pod on Docker.
        let pods = if podman? {
            self.pods(None).await?
        } else {
            HashMap::new()
        };
        let mut listed = Vec::with_capacity(ids.len());
        let mut inspected = futures::stream::iter(ids)
            .map(|id| {
                let pods = &pods;
                async move { self.inspect_with(&id, Some(pods)).await }
            })
            .buffer_unordered(self.max_concurrent_inspects);
        while let Some(container) = inspected.next().await {
            match container {
                Ok(container) => listed.push(container),
                // Gone since the list: not alive, so not ours.
                Err(error) if error.is_container_gone() => {}
                Err(error) => return Err(error),
            }
        }
        Ok(listed)
    }

    async fn inspect(&self, id_or_name: &str) -> Result<Container, EngineError> {
        self.inspect_with(id_or_name, None).await
    }

    async fn diagnose(&self, error: EngineError) -> EngineError {
        match self.transport.unix_socket() {
            Some(socket) => {
                let api = "the Docker API";
                whalewatcher_core::support::diagnose_unix_socket(
                    socket,
                    Protocol::Http1,
                    api,
                    error,
                )
                .await
            }
            None => error,
        }
    }

    /// From the inspects of the containers still there (not removed).
    async fn exits(&self, ids: &[Arc<str>]) -> HashMap<Arc<str>, Exit> {
        let asked = ids.iter().map(|id| {
            let (docker, id) = (self.docker.clone(), id.clone());
            async move {
                let options = None::<InspectContainerOptions>;
                let state = docker.inspect_container(&id, options).await.ok()?.state?;
                let exited = matches!(
                    state.status,
                    Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD)
                );
                let exit = Exit {
                    code: state.exit_code.and_then(|code| i32::try_from(code).ok()),
                    oom_killed: state.oom_killed,
                };
                exited.then_some((id, exit))
            }
        });
        futures::stream::iter(asked.collect::<Vec<_>>())
            .buffer_unordered(self.max_concurrent_inspects)
            .filter_map(futures::future::ready)
            .collect()
            .await
    }

    async fn subscribe(&self) -> Result<EngineEvents, EngineError> {
        // The engine's clock before anything is listed: events from then on
        // are replayed however late the stream really starts.
        let since = self.clock().await?;
        let filters = HashMap::from([
            ("type", vec!["container"]),
            // oom: to tell on the die that follows; rename and
            // health_status: the record changed, to be inspected again.
            (
                "event",
                vec![
                    "start",
                    "die",
                    "pause",
                    "unpause",
                    "oom",
                    "rename",
                    "health_status",
                ],
            ),
        ]);
        let options = EventsOptionsBuilder::new()
            .since(&since)
            .filters(&filters)
            .build();
        let api = self.api.clone();
        let mut oom_kills = whalewatcher_core::OomKills::default();
        let events = self.docker.events(Some(options)).filter_map(move |item| {
            let mapped = match item {
                Ok(message) => convert::lifecycle_event(&message, &mut oom_kills).map(Ok),
                // A stream the engine garbles is its fault, not the
                // connection's: typed like every other answer.
                Err(error) => Some(Err(classify(&api, error, None))),
            };
            async move { mapped }
        });
        if self.is_podman().await? {
            return Ok(with_podman_oom_kills(events.boxed(), self.docker.clone()));
        }
        Ok(Box::pin(events))
    }
}

/// How long an exit waits for podman to say whether it was an OOM kill.
const OOM_LOOKUP_WAIT: Duration = Duration::from_millis(500);

/// OOM lookups at once.
const OOM_LOOKUPS: usize = 16;

/// podman's exits with whether they were OOM kills: podman sends no `oom`
/// event (a container killed for memory has create, init, start, die,
/// cleanup on the compat and the libpod stream alike), while its inspect
/// says `OOMKilled`. An exit by SIGKILL (137), the only one an OOM kill
/// makes, is asked about while the container is still there, within
/// [`OOM_LOOKUP_WAIT`]; events keep their order.
fn with_podman_oom_kills(events: EngineEvents, docker: Docker) -> EngineEvents {
    events
        .map(move |item| {
            let docker = docker.clone();
            async move {
                let mut event = match item {
                    Ok(event) if event.exit.is_some_and(|exit| exit.code == Some(137)) => event,
                    other => return other,
                };
                let asked = tokio::time::timeout(
                    OOM_LOOKUP_WAIT,
                    docker.inspect_container(&event.id, None::<InspectContainerOptions>),
                );
                let told = asked.await.ok().and_then(Result::ok);
                let oom_killed = told.and_then(|inspected| inspected.state?.oom_killed);
                if let (Some(exit), Some(oom_killed)) = (event.exit.as_mut(), oom_killed) {
                    exit.oom_killed = Some(exit.oom_killed == Some(true) || oom_killed);
                }
                Ok(event)
            }
        })
        .buffered(OOM_LOOKUPS)
        .boxed()
}

/// Turns a bollard error into the core's typed error; `id` names the
/// container the call was about, if any.
fn classify(api: &str, error: bollard::errors::Error, id: Option<&str>) -> EngineError {
    use bollard::errors::Error as B;
    match error {
        B::DockerResponseServerError {
            status_code: 404, ..
        } if id.is_some() => EngineError::NotFound {
            id: id.unwrap_or_default().to_owned(),
        },
        B::DockerResponseServerError {
            status_code,
            message,
        } => EngineError::Protocol {
            endpoint: api.to_owned(),
            message: format!("HTTP {status_code}: {message}"),
        },
        B::JsonDataError { .. }
        | B::JsonSerdeError { .. }
        | B::APIVersionParseError { .. }
        | B::StrParseError { .. } => EngineError::Protocol {
            endpoint: api.to_owned(),
            message: error.to_string(),
        },
        other => EngineError::unreachable(api, other),
    }
}
