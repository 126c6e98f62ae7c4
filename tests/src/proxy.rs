//! A unix-socket proxy in front of an engine that can cut every open
//! connection and refuse new ones for a while: an event stream lost
//! without the engine restarting, for HTTP (Docker, podman) and gRPC
//! (containerd, CRI) alike, since it only moves bytes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{UnixListener, UnixStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A running proxy; stops (and removes its socket) when dropped.
#[derive(Debug)]
pub struct CuttableProxy {
    socket: PathBuf,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    connections: Mutex<Vec<AbortHandle>>,
    holding: AtomicBool,
    accepted: AtomicUsize,
}

impl CuttableProxy {
    /// Proxies a fresh socket in `dir` to the engine socket `target`.
    pub fn start(target: impl Into<PathBuf>, dir: &Path) -> Self {
        let target = target.into();
        let socket = dir.join(format!("{}.sock", crate::test_label_value("proxy")));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("cannot listen at {}: {e}", socket.display()));
        let shared = Arc::new(Shared::default());
        let server = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    if shared.holding.load(Ordering::Relaxed) {
                        continue; // dropped: the connection closes at once
                    }
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        let Ok(mut engine) = UnixStream::connect(&target).await else {
                            return;
                        };
                        let mut client = client;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    });
                    let mut connections = shared.connections.lock().unwrap();
                    connections.retain(|c| !c.is_finished());
                    connections.push(task.abort_handle());
                }
            }
        });
        CuttableProxy {
            socket,
            shared,
            server,
        }
    }

    /// The proxy's socket, to give the engine instead of the real one.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Closes every open connection and refuses new ones until
    /// [`restore`](Self::restore).
    pub fn cut_and_hold(&self) {
        self.shared.holding.store(true, Ordering::Relaxed);
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.shared.holding.store(false, Ordering::Relaxed);
    }

    /// How many connections were accepted so far (refused ones included).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.server.abort();
        for connection in self.shared.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
