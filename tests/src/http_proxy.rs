//! An HTTP proxy on a unix socket in front of a real engine socket — HTTP/1
//! for Docker and podman, HTTP/2 for containerd's and CRI's gRPC — that
//! plays what sits between a tool and an engine in real deployments, and
//! forces the races the watcher must survive:
//!
//! - a docker-socket-proxy that forbids some endpoints (HTTP 403);
//! - a short idle timeout that ends every event stream soon after it began;
//! - a list answer held back while the engine's events flow past it, so
//!   that a list and changes overlap for sure ([`HttpProxy::hold_answers`]);
//! - every connection cut and refused for a while.
//!
//! It records when each request came and counts the event messages it
//! passed on, so tests can tell what happened on the wire.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// Which HTTP the engine speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Docker and podman.
    Http1,
    /// gRPC: containerd and CRI.
    Http2,
}

/// What the proxy does besides passing requests on.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// Requests whose path ends with one of these are answered 403, as
    /// docker-socket-proxy answers what it was not told to allow.
    pub forbidden: Vec<&'static str>,
    /// Event streams end (cleanly, as after an idle timeout) this long
    /// after they began.
    pub end_events_after: Option<Duration>,
}

/// The paths of event streams: Docker's `/events`, containerd's
/// `Subscribe`, CRI's `GetContainerEvents`.
const EVENT_PATHS: [&str; 3] = ["/events", "/Subscribe", "/GetContainerEvents"];

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// A running proxy; stops (and removes its socket) when dropped.
#[derive(Debug)]
pub struct HttpProxy {
    socket: PathBuf,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    target: PathBuf,
    protocol: Protocol,
    rules: Rules,
    log: Mutex<Vec<(Instant, String)>>,
    /// Answers to requests whose path ends with one of these wait for a
    /// release.
    holding: Mutex<Vec<&'static str>>,
    /// Bumped by each release.
    released: watch::Sender<u64>,
    held_now: AtomicUsize,
    event_messages: AtomicUsize,
    refusing: AtomicBool,
    connections: Mutex<Vec<AbortHandle>>,
}

impl HttpProxy {
    /// Proxies a fresh socket in `dir` to the engine socket `target`.
    pub fn start(target: impl Into<PathBuf>, dir: &Path, protocol: Protocol, rules: Rules) -> Self {
        let socket = dir.join(format!("{}.sock", crate::test_label_value("http-proxy")));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("cannot listen at {}: {e}", socket.display()));
        let shared = Arc::new(Shared {
            target: target.into(),
            protocol,
            rules,
            log: Mutex::default(),
            holding: Mutex::default(),
            released: watch::channel(0).0,
            held_now: AtomicUsize::new(0),
            event_messages: AtomicUsize::new(0),
            refusing: AtomicBool::new(false),
            connections: Mutex::default(),
        });
        let server = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if shared.refusing.load(Ordering::Relaxed) {
                        continue; // dropped: the connection closes at once
                    }
                    let task = tokio::spawn(serve(client, shared.clone()));
                    let mut connections = shared.connections.lock().unwrap();
                    connections.retain(|c| !c.is_finished());
                    connections.push(task.abort_handle());
                }
            }
        });
        HttpProxy {
            socket,
            shared,
            server,
        }
    }

    /// A proxy in front of a Docker-API engine of the rig.
    pub fn docker(engine: &crate::rig::Engine, rules: Rules) -> Self {
        Self::start(
            engine.socket(),
            &std::env::temp_dir(),
            Protocol::Http1,
            rules,
        )
    }

    /// A proxy in front of a gRPC engine of the rig (containerd, CRI).
    pub fn grpc(engine: &crate::rig::Engine, rules: Rules) -> Self {
        Self::start(
            engine.socket(),
            &std::env::temp_dir(),
            Protocol::Http2,
            rules,
        )
    }

    /// The proxy's socket, to give an engine crate instead of the engine's.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The proxy as `unix://` URL.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// When the requests whose path ends with `suffix` came.
    pub fn requests(&self, suffix: &str) -> Vec<Instant> {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, path)| path.ends_with(suffix))
            .map(|(at, _)| *at)
            .collect()
    }

    /// From now on, the engine's answers to requests whose path ends with
    /// one of `suffixes` are held back until [`release`](Self::release):
    /// the engine has answered (as of the moment it was asked), but the
    /// client does not know yet, while everything else flows.
    pub fn hold_answers(&self, suffixes: &[&'static str]) {
        self.shared.holding.lock().unwrap().extend(suffixes);
    }

    /// Lets every held answer through, and holds none from now on.
    pub fn release(&self) {
        self.shared.holding.lock().unwrap().clear();
        self.shared.released.send_modify(|n| *n += 1);
    }

    /// Forces a list and changes to overlap: waits until an answer is
    /// held back (the watcher's list is waiting for it, as taken when
    /// asked), runs `changes`, waits until `events` more event messages
    /// than before have passed on to the watcher, then lets the answer
    /// through. Returns the output of `changes` and how many event
    /// messages passed while the answer was held: the proof that the
    /// overlap happened.
    pub async fn overlap<F: Future>(&self, changes: F, events: usize) -> (F::Output, usize) {
        crate::eventually("a list answer held back", || async { self.held() > 0 }).await;
        let before = self.event_messages();
        let output = changes.await;
        crate::eventually(
            &format!("{events} event messages passed while the list waits"),
            || async { self.event_messages() >= before + events },
        )
        .await;
        let passed = self.event_messages() - before;
        self.release();
        (output, passed)
    }

    /// How many answers are held back right now.
    pub fn held(&self) -> usize {
        self.shared.held_now.load(Ordering::Relaxed)
    }

    /// How many event messages the proxy passed on so far (Docker: JSON
    /// lines; gRPC: data frames).
    pub fn event_messages(&self) -> usize {
        self.shared.event_messages.load(Ordering::Relaxed)
    }

    /// Closes every open connection and refuses new ones until
    /// [`restore`](Self::restore): the engine is lost, though it runs.
    pub fn cut_and_hold(&self) {
        self.shared.refusing.store(true, Ordering::Relaxed);
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.shared.refusing.store(false, Ordering::Relaxed);
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.server.abort();
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Sends requests on to the engine: for HTTP/1 over a connection each (so
/// that an event stream cut short leaves nothing behind), for HTTP/2 over
/// one connection per client connection.
#[derive(Clone)]
enum Upstream {
    Http1(Arc<PathBuf>),
    Http2(hyper::client::conn::http2::SendRequest<Incoming>),
}

impl Upstream {
    async fn send(&self, request: Request<Incoming>) -> hyper::Result<Response<Incoming>> {
        match self {
            Upstream::Http1(target) => {
                let engine = UnixStream::connect(&**target)
                    .await
                    .unwrap_or_else(|e| panic!("cannot reach {}: {e}", target.display()));
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(engine)).await?;
                tokio::spawn(connection);
                sender.send_request(request).await
            }
            Upstream::Http2(sender) => sender.clone().send_request(request).await,
        }
    }
}

async fn serve(client: UnixStream, shared: Arc<Shared>) {
    let upstream = match shared.protocol {
        Protocol::Http1 => Upstream::Http1(Arc::new(shared.target.clone())),
        Protocol::Http2 => {
            let Ok(engine) = UnixStream::connect(&shared.target).await else {
                return;
            };
            let Ok((sender, connection)) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(engine))
                    .await
            else {
                return;
            };
            tokio::spawn(connection);
            Upstream::Http2(sender)
        }
    };
    let protocol = shared.protocol;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (upstream, shared) = (upstream.clone(), shared.clone());
        async move { answer(request, upstream, shared).await }
    });
    let io = TokioIo::new(client);
    let _ = match protocol {
        Protocol::Http1 => {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
        }
        Protocol::Http2 => {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await
        }
    };
}

async fn answer(
    request: Request<Incoming>,
    upstream: Upstream,
    shared: Arc<Shared>,
) -> hyper::Result<Response<Body>> {
    let path = request.uri().path().to_owned();
    shared
        .log
        .lock()
        .unwrap()
        .push((Instant::now(), path.clone()));
    if shared.rules.forbidden.iter().any(|f| path.ends_with(f)) {
        let body = Full::new(Bytes::from_static(b"{\"message\":\"forbidden\"}"));
        return Ok(Response::builder()
            .status(403)
            .header("content-type", "application/json")
            .body(body.map_err(|never| match never {}).boxed_unsync())
            .expect("a valid response"));
    }
    let released = shared.released.subscribe();
    let (head, body) = upstream.send(request).await?.into_parts();
    let hold = shared
        .holding
        .lock()
        .unwrap()
        .iter()
        .any(|suffix| path.ends_with(suffix));
    if hold {
        shared.held_now.fetch_add(1, Ordering::Relaxed);
        let mut released = released;
        let _ = released.changed().await;
        shared.held_now.fetch_sub(1, Ordering::Relaxed);
    }
    if !EVENT_PATHS.iter().any(|events| path.ends_with(events)) {
        return Ok(Response::from_parts(head, body.boxed_unsync()));
    }
    let counted = {
        let (shared, protocol) = (shared.clone(), shared.protocol);
        BodyStream::new(body).inspect(move |frame| {
            if let Some(data) = frame.as_ref().ok().and_then(Frame::data_ref) {
                let messages = match protocol {
                    Protocol::Http1 => data.iter().filter(|b| **b == b'\n').count(),
                    Protocol::Http2 => 1,
                };
                shared.event_messages.fetch_add(messages, Ordering::Relaxed);
            }
        })
    };
    let body = match shared.rules.end_events_after {
        Some(after) => {
            StreamBody::new(counted.take_until(tokio::time::sleep(after))).boxed_unsync()
        }
        None => StreamBody::new(counted).boxed_unsync(),
    };
    Ok(Response::from_parts(head, body))
}
