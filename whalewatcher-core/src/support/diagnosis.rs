//! What is wrong with a unix socket an engine could not be reached at.

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::EngineError;

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
