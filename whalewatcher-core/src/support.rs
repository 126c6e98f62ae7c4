//! What the engine crates share, for engines of this workspace and of
//! your own: the inspect concurrency, unix socket endpoints, and (with the
//! `grpc` feature) a gRPC status as an [`EngineError`].

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

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

/// Locks a mutex whose guarded state no panic can leave half-done (every
/// update is one insert, remove or replace), so a poisoned lock is as good
/// as any.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
