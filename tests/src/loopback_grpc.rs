//! A gRPC endpoint on a unix socket that serves N running containers from
//! memory, as containerd's native API or as the CRI, to measure the
//! library's own cost with the engine taken out of the picture. It answers
//! what a sync asks, with records captured from the rig's containerd 1.7
//! (`cargo run -p whalewatcher-tests --example capture_fixtures`), each
//! with its own id, name and PID:
//!
//! - containerd: version and server info, one namespace, the container
//!   records and the task list (unary, and the records also as a stream),
//!   each record and task by id, and events: a subscription receives what
//!   is published (the engine's subscription barrier);
//! - CRI: version, the ready sandboxes and running containers, the verbose
//!   status of each by id, and an event stream that stays quiet. Records
//!   come in pairs: an even number is a pod's sandbox, the next odd number
//!   its one container.
//!
//! A restart ([`LoopbackGrpc::restart`]) serves other containers from then
//! on and ends every open event stream with `Unavailable`. It runs in a
//! thread of its own (see [`crate::loopback`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use containerd_client::services::v1 as ctrd;
use containerd_client::types::v1::Process;
use containerd_client::types::Envelope;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_cri::v1 as cri;
use prost::Message;

use crate::loopback::{container_id, Kind, Loopback, ServerThread};

/// The verbose status of a running container on the rig's containerd 1.7
/// CRI plugin, as JSON.
pub const CRI_CONTAINER_STATUS: &str =
    include_str!("../fixtures/cri-container-status-containerd-1.7.json");

/// The verbose status of that container's ready pod sandbox, as JSON.
pub const CRI_SANDBOX_STATUS: &str =
    include_str!("../fixtures/cri-sandbox-status-containerd-1.7.json");

/// A running container's record on the rig's containerd 1.7, protobuf.
pub const CONTAINERD_CONTAINER: &[u8] = include_bytes!("../fixtures/containerd-1.7-container.pb");

/// That container's task, protobuf.
pub const CONTAINERD_TASK: &[u8] = include_bytes!("../fixtures/containerd-1.7-task.pb");

/// The namespace the containerd endpoint serves its containers in.
pub const NAMESPACE: &str = "loopback";

const NOT_FOUND: u32 = 5;
const UNIMPLEMENTED: u32 = 12;
const UNAVAILABLE: u32 = 14;

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// What the endpoint answers now.
#[derive(Default)]
struct Served {
    /// Method → the encoded answer to any request.
    fixed: HashMap<&'static str, Bytes>,
    /// (method, id) → the encoded answer about that id.
    by_id: HashMap<(&'static str, String), Bytes>,
    /// The records of `Containers/ListStream`, each encoded.
    record_stream: Vec<Bytes>,
}

/// The templates, what is served now, the restarts so far (an event
/// stream ends at the next), and what is published.
struct Engine {
    kind: Kind,
    served: Mutex<Arc<Served>>,
    restarts: tokio::sync::watch::Sender<u64>,
    published: tokio::sync::broadcast::Sender<Bytes>,
}

/// A running endpoint; stops when dropped.
pub struct LoopbackGrpc {
    engine: Arc<Engine>,
    server: ServerThread,
}

impl std::fmt::Debug for LoopbackGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackGrpc")
            .field("kind", &self.engine.kind)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl LoopbackGrpc {
    /// Serves `n` running containers of `kind` (containerd or CRI) at a
    /// fresh socket in `dir`.
    pub fn start(dir: &Path, kind: Kind, n: usize) -> Self {
        assert!(kind != Kind::Docker, "the Docker API is LoopbackDocker's");
        let engine = Arc::new(Engine {
            kind,
            served: Mutex::new(Arc::new(serve(kind, 0..n))),
            restarts: tokio::sync::watch::channel(0).0,
            published: tokio::sync::broadcast::channel(64).0,
        });
        let server = ServerThread::start(dir, &format!("loopback-{}", kind.name()), {
            let engine = engine.clone();
            move |stream| {
                let engine = engine.clone();
                async move {
                    let service = hyper::service::service_fn(move |request| {
                        let engine = engine.clone();
                        async move { Ok::<_, Infallible>(answer(&engine, request).await) }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
        LoopbackGrpc { engine, server }
    }
}

impl Loopback for LoopbackGrpc {
    /// The socket path, as the containerd and CRI engines take it.
    fn endpoint(&self) -> String {
        self.server.socket().display().to_string()
    }

    fn cpu(&self) -> Duration {
        self.server.cpu()
    }

    fn thread_id(&self) -> u32 {
        self.server.thread_id()
    }

    fn restart(&self, containers: Range<usize>) {
        let served = Arc::new(serve(self.engine.kind, containers));
        *self.engine.served.lock().expect("served") = served;
        self.engine.restarts.send_modify(|n| *n += 1);
    }
}

/// The messages a sync of `n` containers receives from the endpoint of
/// `kind`, each with what it is: `record` and `tasks` from containerd;
/// the lists of `sandboxes` and `containers`, and each `container`'s and
/// `sandbox`'s status from the CRI.
pub fn sync_messages(kind: Kind, n: usize) -> Vec<(&'static str, Bytes)> {
    let served = serve(kind, 0..n);
    let mut messages: Vec<(&'static str, Bytes)> = Vec::new();
    match kind {
        Kind::Containerd => {
            messages.extend(served.record_stream.iter().map(|m| ("record", m.clone())));
            messages.push((
                "tasks",
                served.fixed["/containerd.services.tasks.v1.Tasks/List"].clone(),
            ));
        }
        Kind::Cri => {
            for (what, list) in [
                ("sandboxes", "ListPodSandbox"),
                ("containers", "ListContainers"),
            ] {
                let method = format!("/runtime.v1.RuntimeService/{list}");
                messages.push((what, served.fixed[method.as_str()].clone()));
            }
            for ((method, _), status) in &served.by_id {
                let what = if *method == CONTAINER_STATUS {
                    "container"
                } else {
                    "sandbox"
                };
                messages.push((what, status.clone()));
            }
        }
        Kind::Docker => unreachable!("the Docker API is LoopbackDocker's"),
    }
    messages
}

/// What the endpoint of `kind` serves while `containers` run.
fn serve(kind: Kind, containers: Range<usize>) -> Served {
    match kind {
        Kind::Containerd => serve_containerd(containers),
        Kind::Cri => serve_cri(containers),
        Kind::Docker => unreachable!("the Docker API is LoopbackDocker's"),
    }
}

fn pid(i: usize) -> u32 {
    10_000 + u32::try_from(i).expect("a small container number")
}

fn serve_containerd(containers: Range<usize>) -> Served {
    let record = ctrd::Container::decode(CONTAINERD_CONTAINER).expect("a container record");
    let task = Process::decode(CONTAINERD_TASK).expect("a task");
    let mut served = Served::default();
    let (mut records, mut tasks) = (Vec::new(), Vec::new());
    for i in containers {
        let id = container_id(i);
        let record = ctrd::Container {
            id: id.clone(),
            ..record.clone()
        };
        let task = Process {
            id: id.clone(),
            container_id: id.clone(),
            pid: pid(i),
            ..task.clone()
        };
        served.by_id.insert(
            (GET_CONTAINER, id.clone()),
            ctrd::GetContainerResponse {
                container: Some(record.clone()),
            }
            .encode_to_vec()
            .into(),
        );
        served.by_id.insert(
            (GET_TASK, id),
            ctrd::GetResponse {
                process: Some(task.clone()),
            }
            .encode_to_vec()
            .into(),
        );
        served.record_stream.push(
            ctrd::ListContainerMessage {
                container: Some(record.clone()),
            }
            .encode_to_vec()
            .into(),
        );
        records.push(record);
        tasks.push(task);
    }
    let fixed = [
        (
            "/containerd.services.version.v1.Version/Version",
            ctrd::VersionResponse {
                version: "1.7.24~loopback".to_owned(),
                revision: "loopback".to_owned(),
            }
            .encode_to_vec(),
        ),
        (
            "/containerd.services.introspection.v1.Introspection/Server",
            ctrd::ServerResponse {
                uuid: "loopback".to_owned(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/containerd.services.namespaces.v1.Namespaces/List",
            ctrd::ListNamespacesResponse {
                namespaces: vec![ctrd::Namespace {
                    name: NAMESPACE.to_owned(),
                    labels: HashMap::new(),
                }],
            }
            .encode_to_vec(),
        ),
        (
            "/containerd.services.containers.v1.Containers/List",
            ctrd::ListContainersResponse {
                containers: records,
            }
            .encode_to_vec(),
        ),
        (
            "/containerd.services.tasks.v1.Tasks/List",
            ctrd::ListTasksResponse { tasks }.encode_to_vec(),
        ),
    ];
    served.fixed = fixed.into_iter().map(|(m, a)| (m, a.into())).collect();
    served
}

fn serve_cri(containers: Range<usize>) -> Served {
    let container_status: cri::ContainerStatusResponse =
        serde_json::from_str(CRI_CONTAINER_STATUS).expect("a container status");
    let sandbox_status: cri::PodSandboxStatusResponse =
        serde_json::from_str(CRI_SANDBOX_STATUS).expect("a sandbox status");
    let mut served = Served::default();
    let (mut sandboxes, mut running) = (Vec::new(), Vec::new());
    for i in containers {
        let id = container_id(i);
        let pod = i / 2;
        if i % 2 == 0 {
            let mut response = sandbox_status.clone();
            let status = response.status.as_mut().expect("a sandbox status");
            status.id = id.clone();
            let metadata = status.metadata.as_mut().expect("sandbox metadata");
            metadata.name = format!("loopback-{pod}");
            metadata.uid = format!("loopback-uid-{pod}");
            verbose_info(&mut response.info, pid(i), None);
            sandboxes.push(cri::PodSandbox {
                id: id.clone(),
                metadata: status.metadata.clone(),
                state: status.state,
                created_at: status.created_at,
                labels: status.labels.clone(),
                annotations: status.annotations.clone(),
                runtime_handler: status.runtime_handler.clone(),
            });
            served
                .by_id
                .insert((SANDBOX_STATUS, id), response.encode_to_vec().into());
        } else {
            let sandbox_id = container_id(i - 1);
            let mut response = container_status.clone();
            let status = response.status.as_mut().expect("a container status");
            status.id = id.clone();
            verbose_info(&mut response.info, pid(i), Some(&sandbox_id));
            running.push(cri::Container {
                id: id.clone(),
                pod_sandbox_id: sandbox_id,
                metadata: status.metadata.clone(),
                image: status.image.clone(),
                image_ref: status.image_ref.clone(),
                state: status.state,
                created_at: status.created_at,
                labels: status.labels.clone(),
                annotations: status.annotations.clone(),
                ..Default::default()
            });
            served
                .by_id
                .insert((CONTAINER_STATUS, id), response.encode_to_vec().into());
        }
    }
    let fixed = [
        (
            "/runtime.v1.RuntimeService/Version",
            cri::VersionResponse {
                version: "0.1.0".to_owned(),
                runtime_name: "containerd".to_owned(),
                runtime_version: "1.7.24~loopback".to_owned(),
                runtime_api_version: "v1".to_owned(),
            }
            .encode_to_vec(),
        ),
        (
            "/runtime.v1.RuntimeService/ListPodSandbox",
            cri::ListPodSandboxResponse { items: sandboxes }.encode_to_vec(),
        ),
        (
            "/runtime.v1.RuntimeService/ListContainers",
            cri::ListContainersResponse {
                containers: running,
            }
            .encode_to_vec(),
        ),
    ];
    served.fixed = fixed.into_iter().map(|(m, a)| (m, a.into())).collect();
    served
}

/// Sets the PID, and the sandbox of a container, in a verbose status's
/// `info` JSON.
fn verbose_info(info: &mut HashMap<String, String>, pid: u32, sandbox_id: Option<&str>) {
    let text = info.get_mut("info").expect("verbose info");
    let mut json: serde_json::Value = serde_json::from_str(text).expect("JSON info");
    json["pid"] = pid.into();
    if let Some(sandbox_id) = sandbox_id {
        json["sandboxID"] = sandbox_id.into();
    }
    *text = json.to_string();
}

const GET_CONTAINER: &str = "/containerd.services.containers.v1.Containers/Get";
const GET_TASK: &str = "/containerd.services.tasks.v1.Tasks/Get";
const CONTAINER_STATUS: &str = "/runtime.v1.RuntimeService/ContainerStatus";
const SANDBOX_STATUS: &str = "/runtime.v1.RuntimeService/PodSandboxStatus";

/// The id a by-id request asks about.
fn requested_id(method: &str, message: &[u8]) -> Option<(&'static str, String)> {
    let decoded = match method {
        GET_CONTAINER => ctrd::GetContainerRequest::decode(message).map(|r| (GET_CONTAINER, r.id)),
        GET_TASK => ctrd::GetRequest::decode(message).map(|r| (GET_TASK, r.container_id)),
        CONTAINER_STATUS => {
            cri::ContainerStatusRequest::decode(message).map(|r| (CONTAINER_STATUS, r.container_id))
        }
        SANDBOX_STATUS => cri::PodSandboxStatusRequest::decode(message)
            .map(|r| (SANDBOX_STATUS, r.pod_sandbox_id)),
        _ => return None,
    };
    Some(decoded.expect("a well-formed request"))
}

async fn answer(engine: &Engine, request: Request<Incoming>) -> Response<Body> {
    let method = request.uri().path().to_owned();
    let namespace = request
        .headers()
        .get("containerd-namespace")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message = body.get(5..).unwrap_or_default();
    let served = engine.served.lock().expect("served").clone();
    if let Some(answer) = served.fixed.get(method.as_str()) {
        return reply(futures::stream::iter([answer.clone()]), 0);
    }
    if let Some(key) = requested_id(&method, message) {
        return match served.by_id.get(&key) {
            Some(answer) => reply(futures::stream::iter([answer.clone()]), 0),
            None => reply(futures::stream::empty(), NOT_FOUND),
        };
    }
    match method.as_str() {
        "/containerd.services.containers.v1.Containers/ListStream" => {
            reply(futures::stream::iter(served.record_stream.clone()), 0)
        }
        "/containerd.services.events.v1.Events/Publish" => {
            let published = ctrd::PublishRequest::decode(message).expect("a publish request");
            let envelope = Envelope {
                timestamp: Some(std::time::SystemTime::now().into()),
                namespace,
                topic: published.topic,
                event: published.event,
            };
            let _ = engine.published.send(envelope.encode_to_vec().into());
            reply(futures::stream::iter([Bytes::new()]), 0)
        }
        "/containerd.services.events.v1.Events/Subscribe" => {
            let published = published_messages(engine.published.subscribe());
            reply(until_restart(engine, published), UNAVAILABLE)
        }
        "/runtime.v1.RuntimeService/GetContainerEvents" => reply(
            until_restart(engine, futures::stream::pending()),
            UNAVAILABLE,
        ),
        _ => reply(futures::stream::empty(), UNIMPLEMENTED),
    }
}

/// What is published, as a stream; a subscriber that falls behind misses
/// what it missed.
fn published_messages(
    receiver: tokio::sync::broadcast::Receiver<Bytes>,
) -> impl Stream<Item = Bytes> + Send {
    futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(message) => return Some((message, receiver)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// `messages` until the engine's next restart.
fn until_restart(
    engine: &Engine,
    messages: impl Stream<Item = Bytes> + Send + 'static,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let mut restarts = engine.restarts.subscribe();
    messages.take_until(async move {
        let _ = restarts.changed().await;
    })
}

/// A gRPC response: `messages`, each framed, then `status`.
fn reply(messages: impl Stream<Item = Bytes> + Send + 'static, status: u32) -> Response<Body> {
    let frames = messages
        .map(|message| {
            let mut framed = BytesMut::with_capacity(5 + message.len());
            framed.put_u8(0); // not compressed
            framed.put_u32(u32::try_from(message.len()).expect("a message below 4 GiB"));
            framed.put_slice(&message);
            Ok(Frame::data(framed.freeze()))
        })
        .chain(futures::stream::once(async move {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", status.into());
            Ok(Frame::trailers(trailers))
        }));
    Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(frames).boxed_unsync())
        .expect("a response")
}
