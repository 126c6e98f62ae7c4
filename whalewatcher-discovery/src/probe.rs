//! Which processes are engines, which of their sockets is which API, and
//! asking a socket whether it is one.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use whalewatcher_core::{Deadlines, EngineError, EngineInfo, RetryPolicy, Watcher};

use crate::procfs::{Process, ProcessTable, Procfs};
use crate::sockets::ListeningSocket;

/// The engine processes discovery knows, by their command names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EngineProcess {
    /// `dockerd`: the Docker API.
    Dockerd,
    /// `containerd` (not its shims, not the one a dockerd runs for
    /// itself): the native API, and CRI where its plugin has events.
    Containerd,
    /// `podman system service`: podman's Docker-compatible API.
    Podman,
    /// `crio`: CRI.
    Crio,
}

impl EngineProcess {
    /// The kind of engine process `process` is, if any. A containerd whose
    /// parent is a dockerd is that dockerd's own: it holds the containers
    /// of dockerd's `moby` namespace, which dockerd reports.
    pub(crate) fn of(procfs: &Procfs, process: &Process, table: &ProcessTable) -> Option<Self> {
        match process.name.as_str() {
            "dockerd" => Some(EngineProcess::Dockerd),
            "containerd" => {
                let parent = table.get(&process.ppid).map(|p| p.name.as_str());
                (parent != Some("dockerd")).then_some(EngineProcess::Containerd)
            }
            "crio" => Some(EngineProcess::Crio),
            "podman" => {
                let args = procfs.cmdline(process.pid).ok()?;
                args.windows(2)
                    .any(|pair| pair[0] == "system" && pair[1] == "service")
                    .then_some(EngineProcess::Podman)
            }
            _ => None,
        }
    }

    /// Its command name.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineProcess::Dockerd => "dockerd",
            EngineProcess::Containerd => "containerd",
            EngineProcess::Podman => "podman",
            EngineProcess::Crio => "crio",
        }
    }

    /// The APIs to look for on its sockets, in this order.
    pub(crate) fn apis(self) -> &'static [Api] {
        match self {
            EngineProcess::Dockerd => &[Api::Docker],
            EngineProcess::Podman => &[Api::Podman],
            EngineProcess::Containerd => &[Api::Containerd, Api::Cri],
            EngineProcess::Crio => &[Api::Cri],
        }
    }

    /// Its API sockets worth asking, the one of its usual name first:
    /// neither containerd's ttrpc and debug sockets nor dockerd's metrics
    /// and network plugin sockets serve an engine API.
    pub(crate) fn candidates(self, sockets: &[ListeningSocket]) -> Vec<ListeningSocket> {
        let usual = match self {
            EngineProcess::Dockerd => "docker.sock",
            EngineProcess::Containerd => "containerd.sock",
            EngineProcess::Podman => "podman.sock",
            EngineProcess::Crio => "crio.sock",
        };
        let name = |s: &ListeningSocket| {
            s.bound
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let mut candidates: Vec<ListeningSocket> = sockets
            .iter()
            .filter(|s| {
                let name = name(s);
                !name.ends_with(".ttrpc")
                    && !name.ends_with("-debug.sock")
                    && name != "metrics.sock"
                    && !s.bound.components().any(|c| c.as_os_str() == "libnetwork")
            })
            .cloned()
            .collect();
        candidates.sort_by_key(|s| name(s) != usual);
        candidates
    }
}

impl std::fmt::Display for EngineProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// An engine API, as one of the engine crates speaks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Api {
    /// The Docker API of dockerd (whalewatcher-moby).
    Docker,
    /// podman's Docker-compatible API (whalewatcher-moby).
    Podman,
    /// containerd's native API (whalewatcher-containerd).
    Containerd,
    /// CRI with container events (whalewatcher-cri).
    Cri,
}

impl Api {
    /// Its name, as in the engine options of `whalewatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Docker => "docker",
            Api::Podman => "podman",
            Api::Containerd => "containerd",
            Api::Cri => "cri",
        }
    }

    /// Whether this build can watch it (its engine's cargo feature).
    pub(crate) fn is_built(self) -> bool {
        match self {
            Api::Docker | Api::Podman => cfg!(feature = "moby"),
            Api::Containerd => cfg!(feature = "containerd"),
            Api::Cri => cfg!(feature = "cri"),
        }
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// How probed engines are watched.
#[derive(Clone, Debug)]
pub(crate) struct WatchSettings {
    pub(crate) retry: RetryPolicy,
    pub(crate) deadlines: Deadlines,
    pub(crate) probe_deadline: Duration,
    pub(crate) ignore_namespaces: Option<Vec<String>>,
}

/// A watcher of `api` at `socket` (reachable from here) of the engine
/// process `pid` (here, when known), once the engine there answered that
/// it is one.
pub(crate) async fn probe(
    api: Api,
    socket: &Path,
    pid: Option<u32>,
    settings: &WatchSettings,
) -> Result<(Watcher, EngineInfo), EngineError> {
    let _ = (socket, pid, settings);
    match api {
        #[cfg(feature = "moby")]
        Api::Docker | Api::Podman => {
            let builder = whalewatcher_moby::MobyEngine::builder()
                .endpoint(format!("unix://{}", socket.display()));
            let builder = match pid {
                Some(pid) => builder.pid(pid),
                None => builder,
            };
            let builder = if api == Api::Podman {
                builder.engine_type(whalewatcher_moby::PODMAN_TYPE)
            } else {
                builder
            };
            answered(builder.build()?, settings).await
        }
        #[cfg(feature = "containerd")]
        Api::Containerd => {
            let builder = whalewatcher_containerd::ContainerdEngine::builder().endpoint(socket);
            let builder = match pid {
                Some(pid) => builder.pid(pid),
                None => builder,
            };
            let builder = match &settings.ignore_namespaces {
                Some(ignored) => builder.ignore_namespaces(ignored.iter().cloned()),
                None => builder,
            };
            answered(builder.build()?, settings).await
        }
        #[cfg(feature = "cri")]
        Api::Cri => {
            let builder = whalewatcher_cri::CriEngine::builder().endpoint(socket);
            let builder = match pid {
                Some(pid) => builder.pid(pid),
                None => builder,
            };
            answered(builder.build()?, settings).await
        }
        #[allow(unreachable_patterns)]
        _ => Err(EngineError::Unsupported {
            endpoint: socket.display().to_string(),
            what: format!("{api} in this build (its cargo feature is off)"),
        }),
    }
}

/// A watcher of `engine`, and what it said, once it described itself
/// within the probe's deadline; why not otherwise, as the engine
/// diagnoses it.
#[cfg(any(feature = "moby", feature = "containerd", feature = "cri"))]
async fn answered(
    engine: impl whalewatcher_core::Engine,
    settings: &WatchSettings,
) -> Result<(Watcher, EngineInfo), EngineError> {
    match tokio::time::timeout(settings.probe_deadline, engine.info()).await {
        Ok(Ok(info)) => Ok((
            Watcher::builder(engine)
                .retry(settings.retry.clone())
                .deadlines(settings.deadlines)
                .build(),
            info,
        )),
        Ok(Err(error)) => Err(engine.diagnose(error).await),
        Err(_) => Err(EngineError::Timeout {
            endpoint: engine.api().to_owned(),
            call: "info",
            after: settings.probe_deadline,
        }),
    }
}
