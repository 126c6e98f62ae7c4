//! Engines taken out of the picture: endpoints on unix sockets that serve
//! N running containers from memory, made from records captured on the
//! rig's engines, to measure the library's own cost. Each runs in a thread
//! of its own, on a runtime of its own, so that its CPU time can be told
//! apart from the client's.
//!
//! - the Docker API, inspect bodies of dockerd 26 or podman 5:
//!   [`LoopbackDocker`];
//! - containerd's native API or the CRI, records of containerd 1.7:
//!   [`LoopbackGrpc`].

use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use whalewatcher_core::WatcherBuilder;

use crate::loopback_docker::{LoopbackDocker, DOCKERD_26_INSPECT};
use crate::loopback_grpc::LoopbackGrpc;

/// Which API a loopback endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The Docker API, dockerd 26's inspect bodies.
    Docker,
    /// containerd's native API.
    Containerd,
    /// The CRI: half of the records pod sandboxes, half containers.
    Cri,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Docker, Kind::Containerd, Kind::Cri];

    /// Its name, as `WW_*_KINDS` settings take it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Docker => "docker",
            Kind::Containerd => "containerd",
            Kind::Cri => "cri",
        }
    }

    /// The kinds a comma-separated setting names.
    pub fn parse_list(list: &str) -> Vec<Kind> {
        list.split(',')
            .map(|name| {
                Kind::ALL
                    .into_iter()
                    .find(|kind| kind.name() == name.trim())
                    .unwrap_or_else(|| panic!("no loopback kind {name:?}: docker, containerd, cri"))
            })
            .collect()
    }

    /// Serves `n` running containers of this kind at a fresh socket in
    /// `dir`.
    pub fn start(self, dir: &Path, n: usize) -> Box<dyn Loopback> {
        match self {
            Kind::Docker => Box::new(LoopbackDocker::start(dir, DOCKERD_26_INSPECT, n)),
            Kind::Containerd | Kind::Cri => Box::new(LoopbackGrpc::start(dir, self, n)),
        }
    }

    /// The messages a sync of `n` containers receives from the endpoint
    /// of this kind, each with what it is (see [`crate::kept::parse`]).
    pub fn sync_messages(self, n: usize) -> Vec<(&'static str, bytes::Bytes)> {
        match self {
            Kind::Docker => crate::loopback_docker::inspect_bodies(DOCKERD_26_INSPECT, 0..n)
                .into_iter()
                .map(|body| ("inspect", body))
                .collect(),
            Kind::Containerd | Kind::Cri => crate::loopback_grpc::sync_messages(self, n),
        }
    }

    /// A watcher of this kind's engine at `endpoint`.
    pub fn watcher(self, endpoint: &str) -> WatcherBuilder {
        use whalewatcher_core::Watcher;
        match self {
            Kind::Docker => Watcher::builder(
                whalewatcher_moby::MobyEngine::new(endpoint).expect("a Docker engine"),
            ),
            Kind::Containerd => Watcher::builder(
                whalewatcher_containerd::ContainerdEngine::new(endpoint)
                    .expect("a containerd engine"),
            ),
            Kind::Cri => {
                Watcher::builder(whalewatcher_cri::CriEngine::new(endpoint).expect("a CRI engine"))
            }
        }
    }
}

/// A running loopback endpoint; stops when dropped.
pub trait Loopback: std::fmt::Debug {
    /// The endpoint, as the engine of its kind takes it.
    fn endpoint(&self) -> String;

    /// The CPU time the endpoint's thread has used so far.
    fn cpu(&self) -> Duration;

    /// The id of the endpoint's thread, to leave it out of the client's.
    fn thread_id(&self) -> u32;

    /// As an engine restart: from now on the containers `containers` (by
    /// [`container_id`] number) run, and every open event stream ends.
    fn restart(&self, containers: Range<usize>);
}

/// The id of container `i`: 64 hex digits, as Docker's and the CRI's.
pub fn container_id(i: usize) -> String {
    format!("{:064x}", 0x5eed_0000_0000_u64 + i as u64)
}

/// The thread an endpoint serves in, on a runtime of its own.
#[derive(Debug)]
pub(crate) struct ServerThread {
    socket: PathBuf,
    tid: u32,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Listens at a fresh socket in `dir` named after `what`, and serves
    /// each connection with `serve` in a task of its own.
    pub(crate) fn start<F, Fut>(dir: &Path, what: &str, serve: F) -> Self
    where
        F: Fn(tokio::net::UnixStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let socket = dir.join(format!("{}.sock", crate::test_label_value(what)));
        let _ = std::fs::remove_file(&socket);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (ready, is_ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let socket = socket.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::UnixListener::bind(&socket)
                        .unwrap_or_else(|e| panic!("cannot listen at {}: {e}", socket.display()));
                    ready
                        .send(crate::measure::this_thread_id())
                        .expect("the starter waits");
                    let accepting = async {
                        while let Ok((stream, _)) = listener.accept().await {
                            tokio::spawn(serve(stream));
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = accepting => {}
                    }
                });
            }
        });
        let tid = is_ready.recv().expect("the endpoint listens");
        ServerThread {
            socket,
            tid,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The socket path.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The thread's id.
    pub(crate) fn thread_id(&self) -> u32 {
        self.tid
    }

    /// The CPU time the thread has used so far.
    pub(crate) fn cpu(&self) -> Duration {
        thread_cpu(self.tid)
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The CPU time thread `tid` of this process has used, from its
/// schedstat (nanoseconds on the CPU).
pub fn thread_cpu(tid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .unwrap_or_else(|e| panic!("cannot read the schedstat of thread {tid}: {e}"));
    let nanos = stat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("a schedstat line");
    Duration::from_nanos(nanos)
}
