//! An HTTP proxy on a unix socket in front of a real Docker socket that
//! plays the hardened deployments users put between a tool and dockerd: a
//! docker-socket-proxy that forbids some endpoints (HTTP 403), and a proxy
//! whose short idle timeout ends every event stream soon after it began.
//! It records when each request came, so tests can count relists.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

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

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// A running proxy; stops (and removes its socket) when dropped.
#[derive(Debug)]
pub struct DockerProxy {
    socket: PathBuf,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    server: JoinHandle<()>,
}

impl DockerProxy {
    /// Proxies a fresh socket in `dir` to the Docker socket `target`.
    pub fn start(target: impl Into<PathBuf>, dir: &Path, rules: Rules) -> Self {
        let target: Arc<PathBuf> = Arc::new(target.into());
        let socket = dir.join(format!("{}.sock", crate::test_label_value("docker-proxy")));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("cannot listen at {}: {e}", socket.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let rules = Arc::new(rules);
        let server = tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (target, rules, log) = (target.clone(), rules.clone(), log.clone());
                    tokio::spawn(serve(client, target, rules, log));
                }
            }
        });
        DockerProxy {
            socket,
            log,
            server,
        }
    }

    /// The proxy as `unix://` URL, to give the engine instead of dockerd.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// When the requests whose path ends with `suffix` came.
    pub fn requests(&self, suffix: &str) -> Vec<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, path)| path.ends_with(suffix))
            .map(|(at, _)| *at)
            .collect()
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One client connection; each request goes to dockerd over a connection
/// of its own, so that an event stream cut short leaves nothing behind.
async fn serve(
    client: UnixStream,
    target: Arc<PathBuf>,
    rules: Arc<Rules>,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (target, rules, log) = (target.clone(), rules.clone(), log.clone());
        async move {
            let path = request.uri().path().to_owned();
            log.lock().unwrap().push((Instant::now(), path.clone()));
            if rules.forbidden.iter().any(|f| path.ends_with(f)) {
                let body = Full::new(Bytes::from_static(b"{\"message\":\"forbidden\"}"));
                return Ok(Response::builder()
                    .status(403)
                    .header("content-type", "application/json")
                    .body(body.map_err(|never| match never {}).boxed_unsync())
                    .expect("a valid response"));
            }
            let upstream = UnixStream::connect(&*target)
                .await
                .unwrap_or_else(|e| panic!("cannot reach {}: {e}", target.display()));
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(upstream))
                    .await?;
            tokio::spawn(connection);
            let (head, body) = sender.send_request(request).await?.into_parts();
            let body: Body = match rules.end_events_after {
                Some(after) if path.ends_with("/events") => {
                    let frames = BodyStream::new(body).take_until(tokio::time::sleep(after));
                    StreamBody::new(frames).boxed_unsync()
                }
                _ => body.boxed_unsync(),
            };
            Ok::<_, hyper::Error>(Response::from_parts(head, body))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await;
}
