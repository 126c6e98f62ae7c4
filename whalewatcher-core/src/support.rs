//! What the engine crates share, for engines of this workspace and of
//! your own: the inspect concurrency, unix socket endpoints and what is
//! wrong with one, and (with the `grpc` feature) a gRPC status as an
//! [`EngineError`].

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::EngineError;

/// Inspects in flight at once during a list (and in the watcher):
/// measured against dockerd, 16 gives the full gain over one at a time,
/// more gains nothing.
pub const DEFAULT_MAX_CONCURRENT_INSPECTS: usize = 16;

/// A unix socket endpoint given as a path or as a `unix://` URL (the form
/// of crictl's `CONTAINER_RUNTIME_ENDPOINT` and of the engines' own `api`):
/// `unix:///run/containerd/containerd.sock` and
/// `/run/containerd/containerd.sock` are the same socket. Returns the
/// socket's path and its `unix://` URL; an empty path or another scheme is
/// an [`EngineError::InvalidEndpoint`].
pub fn unix_endpoint(given: impl Into<PathBuf>) -> Result<(PathBuf, String), EngineError> {
    let given = given.into();
    let text = given.to_string_lossy().into_owned();
    let invalid = |reason: &str| EngineError::InvalidEndpoint {
        endpoint: text.clone(),
        reason: reason.to_owned(),
    };
    let path = match text.strip_prefix("unix://") {
        Some(path) => PathBuf::from(path),
        None if text.contains("://") => {
            return Err(invalid(
                "unsupported scheme; use a socket path or unix://PATH",
            ))
        }
        None => given,
    };
    if path.as_os_str().is_empty() {
        return Err(invalid("no socket path"));
    }
    let api = format!("unix://{}", path.display());
    Ok((path, api))
}

/// The protocol an engine speaks on its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1: the Docker API (Docker, podman).
    Http1,
    /// HTTP/2: gRPC (containerd, CRI runtimes).
    Grpc,
}

/// How long [`diagnose_unix_socket`] waits for a socket to answer.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// Says what is wrong with the unix socket `socket` when the engine there
/// could not be reached or was not understood (`error`): that nothing is
/// there, that it is a directory or a regular file rather than a socket,
/// that nothing listens on it, or that what answers does not speak
/// `expects` (`api_name` names that API in the message: "the Docker API").
/// Returns `error` unchanged when it is neither
/// [`EngineError::Unreachable`] nor [`EngineError::Protocol`], or when
/// nothing more can be told. Costs a `stat`, and at most one connection
/// that sends one `GET /_ping` and waits up to a second for the first
/// bytes.
pub async fn diagnose_unix_socket(
    socket: &Path,
    expects: Protocol,
    api_name: &str,
    error: EngineError,
) -> EngineError {
    use std::os::unix::fs::FileTypeExt;
    let (EngineError::Unreachable { endpoint, .. } | EngineError::Protocol { endpoint, .. }) =
        &error
    else {
        return error;
    };
    let endpoint = endpoint.clone();
    let unreachable = |kind: ErrorKind, message: String| {
        EngineError::unreachable(endpoint.clone(), std::io::Error::new(kind, message))
    };
    let shown = socket.display();
    let file_type = match std::fs::metadata(socket) {
        Ok(metadata) => metadata.file_type(),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return unreachable(ErrorKind::NotFound, format!("there is no {shown}"));
        }
        Err(_) => return error,
    };
    if !file_type.is_socket() {
        let what = if file_type.is_dir() {
            "a directory"
        } else if file_type.is_file() {
            "a regular file"
        } else if file_type.is_fifo() {
            "a named pipe"
        } else {
            "a device"
        };
        return unreachable(
            ErrorKind::InvalidInput,
            format!("{shown} is {what}, not a socket"),
        );
    }
    let mut stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            return unreachable(
                ErrorKind::ConnectionRefused,
                format!("nothing listens on {shown}: the socket of an engine that is gone?"),
            );
        }
        Err(_) => return error,
    };
    let mut answer = [0u8; 256];
    let probe = async {
        stream
            .write_all(b"GET /_ping HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n")
            .await?;
        stream.read(&mut answer).await
    };
    let read = match tokio::time::timeout(PROBE_WAIT, probe).await {
        Ok(Ok(read)) if read > 0 => read,
        _ => return error,
    };
    let answer = &answer[..read];
    let speaks = if answer.starts_with(b"HTTP/1.") {
        Some(Protocol::Http1)
    } else if answer.len() >= 9 && answer[3] == HTTP2_SETTINGS {
        Some(Protocol::Grpc)
    } else {
        None
    };
    let heard = match speaks {
        Some(speaks) if speaks == expects => return error,
        Some(Protocol::Http1) => {
            "it speaks HTTP/1.1, as the Docker API of Docker and podman does".to_owned()
        }
        Some(Protocol::Grpc) => {
            "it speaks HTTP/2, as the gRPC of containerd and CRI runtimes does".to_owned()
        }
        None => {
            let text = String::from_utf8_lossy(answer);
            let line: String = text
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(60)
                .collect();
            format!("it answered {line:?}")
        }
    };
    EngineError::Protocol {
        endpoint,
        message: format!("this is not {api_name}: {heard}"),
    }
}

/// The type of an HTTP/2 SETTINGS frame, a server's first words.
const HTTP2_SETTINGS: u8 = 0x04;

/// Locks a mutex whose guarded state no panic can leave half-done (every
/// update is one insert, remove or replace), so a poisoned lock is as good
/// as any.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A tonic channel to the gRPC server at the unix socket `socket` (the
/// channel reconnects by itself after a loss, an engine's restart say);
/// an error that says what failed, not only tonic's "transport error".
#[cfg(feature = "grpc")]
pub async fn connect_unix(socket: PathBuf) -> Result<tonic::transport::Channel, std::io::Error> {
    use std::error::Error as _;
    // The URI is required but unused: the connector dials the socket.
    let endpoint = tonic::transport::Endpoint::from_static("http://[::]");
    endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .map_err(|error| crate::io_error_with_causes(error.to_string(), error.source()))
}

/// A gRPC status as the core's error: `NotFound` for the container `id`
/// the call was about, `Unimplemented` as [`EngineError::Unsupported`]
/// (`what` names the API), a lost or failed connection as
/// [`EngineError::Unreachable`], anything else as a protocol error.
#[cfg(feature = "grpc")]
pub fn status_error(
    api: &str,
    status: &tonic::Status,
    id: Option<&str>,
    what: &str,
) -> EngineError {
    use tonic::Code;
    match status.code() {
        Code::NotFound if id.is_some() => EngineError::NotFound {
            id: id.unwrap_or_default().to_owned(),
        },
        Code::Unimplemented => EngineError::Unsupported {
            endpoint: api.to_owned(),
            what: format!("{what} ({})", status.message()),
        },
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
            EngineError::unreachable(api, readable(status))
        }
        _ => EngineError::Protocol {
            endpoint: api.to_owned(),
            message: readable(status).to_string(),
        },
    }
}

/// A gRPC status as a cause that reads well (tonic's own display is its
/// debug dump): its message and the causes beneath it, of the kind of the
/// first I/O error among them.
#[cfg(feature = "grpc")]
pub fn readable(status: &tonic::Status) -> std::io::Error {
    crate::io_error_with_causes(status.message(), std::error::Error::source(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_url_and_its_path_are_the_same_socket() {
        let path = std::path::Path::new("/run/containerd/containerd.sock");
        let (from_url, api) = unix_endpoint("unix:///run/containerd/containerd.sock").unwrap();
        assert_eq!(from_url, path);
        assert_eq!(api, "unix:///run/containerd/containerd.sock");
        assert_eq!(unix_endpoint(path).unwrap().0, path);
        assert_eq!(
            unix_endpoint("relative.sock").unwrap().1,
            "unix://relative.sock"
        );
    }

    #[test]
    fn no_path_or_another_scheme_is_an_invalid_endpoint() {
        for bad in ["", "unix://", "tcp://127.0.0.1:1234"] {
            match unix_endpoint(bad) {
                Err(EngineError::InvalidEndpoint { endpoint, .. }) => assert_eq!(endpoint, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
