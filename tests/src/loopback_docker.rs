//! A Docker-API endpoint on a unix socket that serves N running containers
//! from memory, to measure the library's own cost with the engine taken
//! out of the picture. It answers what a sync asks — ping, info, the list,
//! each inspect, an event stream that stays quiet — with inspect bodies
//! made from a captured one (`tests/fixtures/inspect-dockerd-26.json`),
//! each with its own id and name. [`LoopbackDocker::restart`] stands for
//! an engine restart: other containers from then on, every event stream
//! ended.
//!
//! It runs in a thread of its own, on a runtime of its own, so that its CPU
//! time ([`LoopbackDocker::cpu`]) can be told apart from the client's.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

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
}

/// A running endpoint; stops when dropped.
#[derive(Debug)]
pub struct LoopbackDocker {
    socket: PathBuf,
    engine: Arc<Engine>,
    /// The server thread's id, for its CPU time.
    tid: u32,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        });
        let socket = dir.join(format!("{}.sock", crate::test_label_value("loopback")));
        let _ = std::fs::remove_file(&socket);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let (socket, engine) = (socket.clone(), engine.clone());
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::UnixListener::bind(&socket)
                        .unwrap_or_else(|e| panic!("cannot listen at {}: {e}", socket.display()));
                    ready
                        .send(crate::measure::this_thread_id())
                        .expect("the starter waits");
                    let accepting = async {
                        while let Ok((stream, _)) = listener.accept().await {
                            let engine = engine.clone();
                            let service = hyper::service::service_fn(move |request| {
                                let engine = engine.clone();
                                async move { Ok::<_, Infallible>(answer(&engine, &request)) }
                            });
                            tokio::spawn(
                                hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service),
                            );
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = accepting => {}
                    }
                });
            }
        });
        let tid = is_ready.recv().expect("the endpoint listens");
        LoopbackDocker {
            socket,
            engine,
            tid,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The endpoint as `unix://` URL.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The id of the endpoint's thread, to leave it out of the client's.
    pub fn thread_id(&self) -> u32 {
        self.tid
    }

    /// The CPU time the endpoint's thread has used so far.
    pub fn cpu(&self) -> Duration {
        thread_cpu(self.tid)
    }

    /// As an engine restart: from now on the containers `containers` (by
    /// [`container_id`] number) run, and every open event stream ends.
    pub fn restart(&self, containers: impl IntoIterator<Item = usize>) {
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

impl Drop for LoopbackDocker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The id of container `i`: 64 hex digits, as Docker's.
pub fn container_id(i: usize) -> String {
    format!("{:064x}", 0x5eed_0000_0000_u64 + i as u64)
}

/// The list and the inspect bodies of containers `containers`.
fn serve(template: &serde_json::Value, containers: impl IntoIterator<Item = usize>) -> Served {
    let mut inspects = std::collections::HashMap::new();
    let mut list = Vec::new();
    for i in containers {
        let id = container_id(i);
        let mut body = template.clone();
        body["Id"] = id.clone().into();
        body["Name"] = format!("/loopback-{i}").into();
        body["State"]["Pid"] = (10_000 + i).into();
        inspects.insert(
            id.clone(),
            Bytes::from(serde_json::to_vec(&body).expect("JSON")),
        );
        list.push(serde_json::json!({ "Id": id }));
    }
    Served {
        list: Bytes::from(serde_json::to_vec(&list).expect("JSON")),
        inspects,
    }
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
        // Quiet, and open until the client goes or the engine restarts.
        let mut restarts = engine.restarts.subscribe();
        let quiet = futures::stream::once(async move {
            let _ = restarts.changed().await;
        })
        .filter_map(|()| futures::future::ready(None::<Result<Frame<Bytes>, Infallible>>));
        return Response::builder()
            .header("Content-Type", "application/json")
            .body(StreamBody::new(quiet.boxed()).boxed_unsync())
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

/// The CPU time thread `tid` of this process has used, from its
/// schedstat (nanoseconds on the CPU).
pub fn thread_cpu(tid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .unwrap_or_else(|e| panic!("cannot read the schedstat of thread {tid}: {e}"));
    let nanos = stat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("a schedstat line");
    Duration::from_nanos(nanos)
}

/// The CPU time the live threads of this process have used, summed from
/// their schedstat. A benchmark's runtime keeps its threads, so nothing it
/// spent is missed.
pub fn process_cpu() -> Duration {
    crate::measure::threads_cpu(std::process::id())
}
