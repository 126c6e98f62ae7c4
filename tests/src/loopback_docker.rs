//! A Docker-API endpoint on a unix socket that serves N running containers
//! from memory, to measure the library's own cost with the engine taken
//! out of the picture. It answers what a sync asks — ping, info, the list,
//! each inspect, an event stream that stays quiet — with inspect bodies
//! made from a captured one (`tests/fixtures/inspect-dockerd-26.json`),
//! each with its own id and name. [`LoopbackDocker::restart`] stands for
//! an engine restart: other containers from then on, every event stream
//! ended.
//!
//! It runs in a thread of its own (see [`crate::loopback`]).

use std::convert::Infallible;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::loopback::{container_id, Loopback, ServerThread};

/// The captured inspect body of a running container on the rig's dockerd
/// 26: compose labels, `sleep`, no network.
pub const DOCKERD_26_INSPECT: &str = include_str!("../fixtures/inspect-dockerd-26.json");

/// The captured inspect body of the same container on the rig's podman 5.
pub const PODMAN_5_INSPECT: &str = include_str!("../fixtures/inspect-podman-5.json");

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// What the endpoint serves.
struct Served {
    list: Bytes,
    inspects: std::collections::HashMap<String, Bytes>,
}

/// What the endpoint serves now, and the restarts so far: an event stream
/// ends at the next.
struct Engine {
    template: serde_json::Value,
    served: Mutex<Arc<Served>>,
    restarts: tokio::sync::watch::Sender<u64>,
    /// Events for the streams open now (see [`LoopbackDocker::emit`]).
    events: tokio::sync::broadcast::Sender<Bytes>,
}

/// A running endpoint; stops when dropped.
#[derive(Debug)]
pub struct LoopbackDocker {
    engine: Arc<Engine>,
    server: ServerThread,
}

impl LoopbackDocker {
    /// Serves `n` running containers at a fresh socket in `dir`, each
    /// inspect body made from `template` with its own id and name.
    pub fn start(dir: &Path, template: &str, n: usize) -> Self {
        let template: serde_json::Value = serde_json::from_str(template).expect("a JSON template");
        let engine = Arc::new(Engine {
            served: Mutex::new(Arc::new(serve(&template, 0..n))),
            template,
            restarts: tokio::sync::watch::channel(0).0,
            events: tokio::sync::broadcast::channel(4096).0,
        });
        let server = ServerThread::start(dir, "loopback-docker", {
            let engine = engine.clone();
            move |stream| {
                let engine = engine.clone();
                async move {
                    let service = hyper::service::service_fn(move |request| {
                        let engine = engine.clone();
                        async move { Ok::<_, Infallible>(answer(&engine, &request)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
        LoopbackDocker { engine, server }
    }
}

impl LoopbackDocker {
    /// Sends `event` (one JSON event, as dockerd writes them) on every
    /// event stream open now.
    pub fn emit(&self, event: Bytes) {
        let _ = self.engine.events.send(event);
    }
}

/// A `pause` (or `unpause`) event of container `i`, as dockerd sends it.
pub fn pause_event(i: usize, paused: bool) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch");
    let event = serde_json::json!({
        "Type": "container",
        "Action": if paused { "pause" } else { "unpause" },
        "Actor": {"ID": container_id(i), "Attributes": {"name": format!("loopback-{i}")}},
        "scope": "local",
        "time": now.as_secs(),
        "timeNano": now.as_nanos() as u64,
    });
    let mut line = serde_json::to_vec(&event).expect("JSON");
    line.push(b'\n');
    Bytes::from(line)
}

impl Loopback for LoopbackDocker {
    /// A `unix://` URL.
    fn endpoint(&self) -> String {
        format!("unix://{}", self.server.socket().display())
    }

    fn cpu(&self) -> Duration {
        self.server.cpu()
    }

    fn thread_id(&self) -> u32 {
        self.server.thread_id()
    }

    fn restart(&self, containers: Range<usize>) {
        let served = Arc::new(serve(&self.engine.template, containers));
        *self.engine.served.lock().expect("served") = served;
        self.engine.restarts.send_modify(|n| *n += 1);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("restarts", &*self.restarts.borrow())
            .finish_non_exhaustive()
    }
}

/// The list and the inspect bodies of containers `containers`.
fn serve(template: &serde_json::Value, containers: impl IntoIterator<Item = usize>) -> Served {
    let mut inspects = std::collections::HashMap::new();
    let mut list = Vec::new();
    for i in containers {
        let id = container_id(i);
        inspects.insert(id.clone(), inspect_body(template, i));
        list.push(serde_json::json!({ "Id": id }));
    }
    Served {
        list: Bytes::from(serde_json::to_vec(&list).expect("JSON")),
        inspects,
    }
}

/// The inspect body of container `i`: `template` with its own id, name
/// and PID.
fn inspect_body(template: &serde_json::Value, i: usize) -> Bytes {
    let mut body = template.clone();
    body["Id"] = container_id(i).into();
    body["Name"] = format!("/loopback-{i}").into();
    body["State"]["Pid"] = (10_000 + i).into();
    Bytes::from(serde_json::to_vec(&body).expect("JSON"))
}

/// The inspect bodies of `containers`, as the endpoint serves them.
pub fn inspect_bodies(template: &str, containers: Range<usize>) -> Vec<Bytes> {
    let template: serde_json::Value = serde_json::from_str(template).expect("a JSON template");
    containers.map(|i| inspect_body(&template, i)).collect()
}

fn answer(engine: &Engine, request: &Request<Incoming>) -> Response<Body> {
    let served = engine.served.lock().expect("served").clone();
    let path = request.uri().path();
    let full = |status: u16, body: Bytes| {
        Response::builder()
            .status(status)
            .header("Content-Type", "application/json")
            .body(Full::new(body).boxed_unsync())
            .expect("a response")
    };
    if path == "/_ping" {
        return Response::builder()
            .header("Server", "Docker/26.1.5 (linux)")
            .header(
                "Date",
                httpdate::fmt_http_date(std::time::SystemTime::now()),
            )
            .body(Full::new(Bytes::from_static(b"OK")).boxed_unsync())
            .expect("a response");
    }
    if path == "/info" {
        return full(
            200,
            Bytes::from_static(
                br#"{"ID":"loopback","Name":"loopback","DockerRootDir":"/var/lib/docker"}"#,
            ),
        );
    }
    if path == "/events" || path.ends_with("/events") {
        // What is emitted from now on (quiet unless a test emits), open
        // until the client goes or the engine restarts.
        let restarts = engine.restarts.subscribe();
        let events = engine.events.subscribe();
        let stream = futures::stream::unfold(
            (restarts, events),
            |(mut restarts, mut events)| async move {
                loop {
                    tokio::select! {
                        _ = restarts.changed() => return None,
                        event = events.recv() => match event {
                            Ok(event) => {
                                let frame = Ok::<_, Infallible>(Frame::data(event));
                                return Some((frame, (restarts, events)));
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(_) => return None,
                        },
                    }
                }
            },
        );
        return Response::builder()
            .header("Content-Type", "application/json")
            .body(StreamBody::new(stream.boxed()).boxed_unsync())
            .expect("a response");
    }
    if path == "/containers/json" || path.ends_with("/containers/json") {
        return full(200, served.list.clone());
    }
    if let Some(id) = path
        .strip_prefix("/containers/")
        .and_then(|rest| rest.strip_suffix("/json"))
    {
        return match served.inspects.get(id) {
            Some(body) => full(200, body.clone()),
            None => full(
                404,
                Bytes::from(format!(r#"{{"message":"No such container: {id}"}}"#)),
            ),
        };
    }
    full(404, Bytes::from_static(br#"{"message":"page not found"}"#))
}
