//! A tonic channel over a unix socket, and errors that say what failed.

use std::error::Error as _;
use std::path::PathBuf;

use tonic::transport::{Channel, Endpoint};

/// Connects to the gRPC server at the unix socket `socket`; the channel
/// reconnects by itself after a loss (an engine restart, say).
pub(crate) async fn connect(socket: PathBuf) -> Result<Channel, std::io::Error> {
    // The URI is required but unused: the connector dials the socket.
    let endpoint = Endpoint::from_static("http://[::]");
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
        .map_err(|e| flatten(&e))
}

/// tonic's transport error says only "transport error"; the cause that
/// tells a missing socket from a refused permission is in its source
/// chain.
fn flatten(error: &tonic::transport::Error) -> std::io::Error {
    whalewatcher_core::io_error_with_causes(error.to_string(), error.source())
}
