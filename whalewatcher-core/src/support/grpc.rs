//! The gRPC engines' connection and errors (tonic).

use std::path::PathBuf;

use crate::EngineError;

/// A tonic channel to the gRPC server at the unix socket `socket` (the
/// channel reconnects by itself after a loss, an engine's restart say);
/// an error that says what failed, not only tonic's "transport error".
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
pub fn readable(status: &tonic::Status) -> std::io::Error {
    crate::io_error_with_causes(status.message(), std::error::Error::source(status))
}
