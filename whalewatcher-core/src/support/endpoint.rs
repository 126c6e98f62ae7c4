//! Unix socket endpoints, as a path or a `unix://` URL.

use std::path::PathBuf;

use crate::EngineError;

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
