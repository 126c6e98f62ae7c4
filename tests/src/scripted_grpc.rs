//! A scripted gRPC endpoint on a unix socket, for engine behaviour the
//! rig's engines cannot show (cri-o ending the event stream at once).
//!
//! It answers each method from a fixed script: one message (or none) and
//! then a status; unknown methods get `Unimplemented`. It counts the calls
//! per method, so tests can tell a single attempt from a busy loop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// The gRPC status code of a method the server does not have.
const UNIMPLEMENTED: u32 = 12;

/// What the endpoint answers to one method.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The encoded protobuf message sent before the status, if any.
    pub message: Option<Vec<u8>>,
    /// The gRPC status code (0 is OK); `None` leaves the call open
    /// forever, like an event stream with nothing to tell.
    pub status: Option<u32>,
    /// How long the endpoint waits before it answers at all.
    pub delay: Duration,
}

impl Answer {
    /// One message, then OK.
    pub fn message(message: &impl prost::Message) -> Self {
        Answer {
            message: Some(message.encode_to_vec()),
            status: Some(0),
            delay: Duration::ZERO,
        }
    }

    /// Headers, then nothing, ever.
    pub fn never_ends() -> Self {
        Answer {
            message: None,
            status: None,
            delay: Duration::ZERO,
        }
    }

    /// No message, just OK: for a stream, the end at once.
    pub fn ends_at_once() -> Self {
        Answer {
            message: None,
            status: Some(0),
            delay: Duration::ZERO,
        }
    }

    /// No message, and the gRPC status `code`.
    pub fn status(code: u32) -> Self {
        Answer {
            message: None,
            status: Some(code),
            delay: Duration::ZERO,
        }
    }

    /// `Unimplemented`, but only after `delay`: a refusal that comes late.
    pub fn unimplemented_after(delay: Duration) -> Self {
        Answer {
            message: None,
            status: Some(UNIMPLEMENTED),
            delay,
        }
    }
}

/// A running scripted endpoint; stops when dropped.
#[derive(Debug)]
pub struct ScriptedGrpc {
    socket: PathBuf,
    calls: Arc<Mutex<HashMap<String, usize>>>,
    server: JoinHandle<()>,
}

impl ScriptedGrpc {
    /// Serves `script` (method path → answer) at a fresh socket in `dir`.
    /// A key `method@namespace` answers that method in that containerd
    /// namespace only.
    pub fn start<M: Into<String>>(
        dir: &Path,
        script: impl IntoIterator<Item = (M, Answer)>,
    ) -> Self {
        let socket = dir.join(format!("{}.sock", crate::test_label_value("scripted-grpc")));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("cannot listen at {}: {e}", socket.display()));
        let calls = Arc::new(Mutex::new(HashMap::new()));
        let script: Arc<HashMap<String, Answer>> =
            Arc::new(script.into_iter().map(|(m, a)| (m.into(), a)).collect());
        let server = tokio::spawn({
            let calls = calls.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (calls, script) = (calls.clone(), script.clone());
                    let service = hyper::service::service_fn(move |request| {
                        answer(request, script.clone(), calls.clone())
                    });
                    tokio::spawn(
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            }
        });
        ScriptedGrpc {
            socket,
            calls,
            server,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// How often `method` was called.
    pub fn calls(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }
}

impl Drop for ScriptedGrpc {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

async fn answer(
    request: Request<Incoming>,
    script: Arc<HashMap<String, Answer>>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let method = request.uri().path().to_owned();
    *calls.lock().unwrap().entry(method.clone()).or_default() += 1;
    // A containerd call's answer may depend on its namespace.
    let namespaced = request
        .headers()
        .get("containerd-namespace")
        .and_then(|ns| ns.to_str().ok())
        .map(|ns| format!("{method}@{ns}"));
    let answer = namespaced
        .and_then(|key| script.get(&key))
        .or_else(|| script.get(method.as_str()))
        .cloned()
        .unwrap_or(Answer {
            message: None,
            status: Some(UNIMPLEMENTED),
            delay: Duration::ZERO,
        });
    tokio::time::sleep(answer.delay).await;
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = Vec::new();
    if let Some(message) = answer.message {
        let mut framed = Vec::with_capacity(5 + message.len());
        framed.push(0); // not compressed
        framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        framed.extend_from_slice(&message);
        frames.push(Ok(Frame::data(Bytes::from(framed))));
    }
    let open = answer.status.is_none();
    if let Some(status) = answer.status {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", status.into());
        frames.push(Ok(Frame::trailers(trailers)));
    }
    let frames = futures::stream::iter(frames);
    let body = if open {
        BodyExt::boxed(StreamBody::new(futures::StreamExt::chain(
            frames,
            futures::stream::pending(),
        )))
    } else {
        BodyExt::boxed(StreamBody::new(frames))
    };
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("a valid response"))
}
