//! A unix socket that accepts connections and never answers: an engine
//! that hangs (a wedged daemon, a socket whose server stopped reading).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// A running silent socket; stops (and removes its socket) when dropped.
#[derive(Debug)]
pub struct SilentSocket {
    socket: PathBuf,
    accepted: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl SilentSocket {
    /// Listens at a fresh socket in `dir`.
    pub fn start(dir: &Path) -> Self {
        let socket = dir.join(format!("{}.sock", crate::test_label_value("silent")));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("cannot listen at {}: {e}", socket.display()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                // Held open, never read or written.
                let mut held = Vec::new();
                while let Ok((connection, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    held.push(connection);
                }
            }
        });
        SilentSocket {
            socket,
            accepted,
            server,
        }
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// How many connections it accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for SilentSocket {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}
