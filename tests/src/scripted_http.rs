//! A scripted HTTP/1.1 endpoint on a unix socket that answers like a broken
//! Docker engine: an error status, or JSON cut off halfway.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// How the endpoint misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// Every request: HTTP 500 with a Docker-style error message.
    ServerError,
    /// A proper ping, info and version; lists and inspects cut off
    /// halfway through their JSON.
    TruncatedJson,
}

/// A running endpoint; stops when dropped.
#[derive(Debug)]
pub struct ScriptedHttp {
    socket: PathBuf,
    requests: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl ScriptedHttp {
    /// Serves at a fresh socket in `dir`.
    pub fn start(dir: &Path, how: Misbehaviour) -> Self {
        let socket = dir.join(format!("{}.sock", crate::test_label_value("scripted-http")));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("cannot listen at {}: {e}", socket.display()));
        let requests = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn({
            let requests = requests.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let requests = requests.clone();
                    let service = hyper::service::service_fn(move |request| {
                        requests.fetch_add(1, Ordering::Relaxed);
                        answer(request, how)
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            }
        });
        ScriptedHttp {
            socket,
            requests,
            server,
        }
    }

    /// The endpoint as `unix://` URL.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// How many requests it answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for ScriptedHttp {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

async fn answer(
    request: Request<Incoming>,
    how: Misbehaviour,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let (status, body): (u16, &str) = match how {
        Misbehaviour::ServerError => (500, r#"{"message":"engine on fire"}"#),
        Misbehaviour::TruncatedJson if path.ends_with("/_ping") => (200, "OK"),
        Misbehaviour::TruncatedJson if path.ends_with("/info") => (
            200,
            r#"{"ID":"scripted","SystemTime":"2026-11-23T16:00:00Z"}"#,
        ),
        Misbehaviour::TruncatedJson if path.ends_with("/version") => {
            (200, r#"{"Version":"20.10.0","ApiVersion":"1.41"}"#)
        }
        Misbehaviour::TruncatedJson => (200, r#"[{"Id":"0123456789abcdef","Names":["/half"#),
    };
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("server", "Docker/20.10.0 (linux)")
        .header("date", date)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response"))
}
