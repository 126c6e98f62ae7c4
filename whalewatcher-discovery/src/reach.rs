//! Engines found at their sockets rather than by their processes: at the
//! sockets where each kind of engine listens by default (a user in the
//! `docker` group may connect to root's dockerd without seeing into its
//! process), and engines started by a socket activator (systemd's
//! `docker.socket`, `podman.socket`) on the first connection.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{debug, info};
use whalewatcher_core::{describe, EngineError, FoundBy, MemberId};

use crate::found::Joining;
use crate::probe::{self, Api, EngineProcess};
use crate::procfs::ProcessTable;
use crate::sockets;
use crate::{Discovery, FoundEngine};

/// A socket discovery looked at but could not watch an engine at, and
/// why: it could not connect, or what answered is no engine of the kind.
#[derive(Clone, Debug, Serialize)]
pub struct UnreachedSocket {
    /// The API looked for.
    pub api: Api,
    /// The socket, as reachable from here.
    pub socket: PathBuf,
    /// Why, on one line.
    pub reason: String,
}

/// As whalewatch says it: `docker at /var/run/docker.sock: why`.
impl std::fmt::Display for UnreachedSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (api, socket) = (self.api, self.socket.display());
        write!(f, "{api} at {socket}: {}", self.reason)
    }
}

/// The sockets where each kind of engine listens by default, in the
/// order they are tried: the engine crates' own lists (root's sockets,
/// then the user's under `$XDG_RUNTIME_DIR`). containerd's socket is asked
/// for its native API and then for CRI.
pub(crate) fn well_known() -> Vec<(Api, PathBuf)> {
    #[allow(unused_mut)]
    let mut sockets: Vec<(Api, PathBuf)> = Vec::new();
    #[cfg(feature = "moby")]
    {
        let docker = whalewatcher_moby::docker_sockets().into_iter();
        sockets.extend(docker.map(|path| (Api::Docker, path)));
        let podman = whalewatcher_moby::podman_sockets().into_iter();
        sockets.extend(podman.map(|path| (Api::Podman, path)));
    }
    #[cfg(feature = "containerd")]
    sockets.push((
        Api::Containerd,
        PathBuf::from(whalewatcher_containerd::DEFAULT_SOCKET),
    ));
    #[cfg(feature = "cri")]
    sockets.extend(
        whalewatcher_cri::sockets()
            .into_iter()
            .map(|path| (Api::Cri, path)),
    );
    sockets
}

/// A file's identity: device and inode.
pub(crate) type FileId = (u64, u64);

/// The identity of the socket at `path`; `None` when there is none (no
/// file, or another kind of file); an error when it cannot be looked at.
pub(crate) fn socket_file(path: &Path) -> io::Result<Option<FileId>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => Ok(Some((meta.dev(), meta.ino()))),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// An engine watched at a well-known socket.
#[derive(Debug)]
pub(crate) struct AtSocket {
    file: FileId,
    found: FoundEngine,
    /// The engine process listening on it, by PID and start time.
    listener: Option<(u32, u64)>,
}

/// What discovery knows of the well-known sockets, across scans.
#[derive(Debug, Default)]
pub(crate) struct Sockets {
    /// The engines watched at them.
    watched: HashMap<(Api, PathBuf), AtSocket>,
    /// Sockets whose engine will not be watched (its watch ended, it
    /// cannot be watched), until the socket file changes.
    refused: HashMap<(Api, PathBuf), (FileId, UnreachedSocket)>,
    /// What the last scan could not reach.
    pub(crate) failures: Vec<UnreachedSocket>,
    /// Activator sockets whose engine did not start, by activator process
    /// and socket: not asked again.
    pub(crate) activations_failed: HashMap<(u32, u64, PathBuf), UnreachedSocket>,
}

impl Sockets {
    /// The engines watched at well-known sockets.
    pub(crate) fn found(&self) -> impl Iterator<Item = &FoundEngine> {
        self.watched.values().map(|at| &at.found)
    }

    /// The engine processes reached at a well-known socket: the reasons
    /// they could not be looked into do not matter anymore.
    pub(crate) fn listeners(&self) -> impl Iterator<Item = u32> + '_ {
        self.watched
            .values()
            .filter_map(|at| at.listener.map(|(pid, _)| pid))
    }

    /// Everything that could not be reached, the refused and the failed.
    pub(crate) fn unreached(&self) -> Vec<UnreachedSocket> {
        let mut all: Vec<UnreachedSocket> = self
            .refused
            .values()
            .map(|(_, unreached)| unreached.clone())
            .chain(self.failures.iter().cloned())
            .chain(self.activations_failed.values().cloned())
            .collect();
        all.sort_by(|a, b| (&a.socket, a.api).cmp(&(&b.socket, b.api)));
        all
    }
}

/// Whether `name` is a process that may hold an engine's socket for it
/// until the first connection: systemd (the system's or a user's), or
/// `systemd-socket-activate` (its command name cut to 15 bytes).
fn is_activator(name: &str) -> bool {
    name == "systemd" || name.starts_with("systemd-socket")
}

/// The engine API served at an activator's socket, by the socket's usual
/// name.
fn activated_api(path: &Path) -> Option<Api> {
    match path.file_name()?.to_str()? {
        "docker.sock" => Some(Api::Docker),
        "podman.sock" => Some(Api::Podman),
        _ => None,
    }
}

impl Discovery {
    /// Connects to the engine sockets that socket activators hold for
    /// engines not running yet, so that the engines start and are found
    /// by their processes. Whether any did.
    pub(crate) async fn wake_activated(&self, sockets: &mut Sockets, table: &ProcessTable) -> bool {
        let inner = &self.inner;
        let watched = self.watched_socket_files();
        let mut woke = false;
        for process in table.values().filter(|p| is_activator(&p.name)) {
            // Other users' activators cannot be looked into; their sockets
            // are among the well-known ones, where they are usual.
            let Ok(listening) = sockets::listening_sockets(&inner.procfs, process.pid) else {
                continue;
            };
            for socket in listening {
                let Some(api) = activated_api(&socket.bound).filter(|api| api.is_built()) else {
                    continue;
                };
                let key = (process.pid, process.started, socket.reachable.clone());
                if sockets.activations_failed.contains_key(&key) {
                    continue;
                }
                match socket_file(&socket.reachable) {
                    Ok(Some(file)) if !watched.contains(&file) => {}
                    _ => continue,
                }
                let settings = probe::WatchSettings {
                    probe_deadline: inner.first_sync_wait,
                    ..inner.settings.clone()
                };
                match probe::probe(api, &socket.reachable, None, &settings).await {
                    Ok((watcher, _)) => {
                        watcher.close().await;
                        info!(%api, socket = %socket.reachable.display(), activator = process.pid,
                            "engine started by its socket");
                        woke = true;
                    }
                    Err(error) => {
                        let reason = format!(
                            "no engine started at the socket {} holds: {}",
                            process.name,
                            describe(&error)
                        );
                        let unreached = UnreachedSocket {
                            api,
                            socket: socket.reachable.clone(),
                            reason,
                        };
                        sockets.activations_failed.insert(key, unreached);
                    }
                }
            }
        }
        woke
    }

    /// Watches the engines at the well-known sockets that no member of
    /// the fleet watches yet; drops those whose socket or listening
    /// process is gone. Returns the members that joined.
    pub(crate) async fn reach_well_known(
        &self,
        sockets: &mut Sockets,
        table: &ProcessTable,
    ) -> Vec<MemberId> {
        self.prune_sockets(sockets, table).await;
        sockets.failures.clear();
        let mut joined = Vec::new();
        for (api, path) in well_known() {
            if !api.is_built() {
                continue;
            }
            let key = (api, path.clone());
            if sockets.watched.contains_key(&key) {
                continue;
            }
            let file = match socket_file(&path) {
                Ok(Some(file)) => file,
                Ok(None) => continue,
                Err(error) => {
                    sockets.failures.push(UnreachedSocket {
                        api,
                        socket: path,
                        reason: format!("cannot look at it: {error}"),
                    });
                    continue;
                }
            };
            if sockets.refused.get(&key).is_some_and(|(at, _)| *at == file) {
                continue;
            }
            // Found by its process already (the same file), or reached at
            // another path: not asked again.
            if self.watched_socket_files().contains(&file) {
                continue;
            }
            match self.watch_socket(api, &path, file, table).await {
                Ok(Some(at)) => {
                    joined.push(at.found.member);
                    sockets.watched.insert(key, at);
                }
                Ok(None) => {}
                Err(error) => {
                    let unreached = UnreachedSocket {
                        api,
                        socket: path,
                        reason: describe(&error),
                    };
                    if error.is_permanent() {
                        sockets.refused.insert(key, (file, unreached));
                    } else {
                        sockets.failures.push(unreached);
                    }
                }
            }
        }
        joined
    }

    /// Engines whose socket file changed or went, or whose listening
    /// process ended, leave; those whose watch ended are refused.
    async fn prune_sockets(&self, sockets: &mut Sockets, table: &ProcessTable) {
        let fleet = &self.inner.fleet;
        let snapshot = fleet.snapshot();
        let keys: Vec<(Api, PathBuf)> = sockets.watched.keys().cloned().collect();
        for key in keys {
            let at = &sockets.watched[&key];
            let socket_changed = socket_file(&key.1).ok().flatten() != Some(at.file);
            let listener_gone = at
                .listener
                .is_some_and(|(pid, started)| table.get(&pid).is_none_or(|p| p.started != started));
            let ended = snapshot.engine(at.found.member).is_none();
            if !(socket_changed || listener_gone || ended) {
                continue;
            }
            let Some(at) = sockets.watched.remove(&key) else {
                continue;
            };
            if ended && !socket_changed && !listener_gone {
                let unreached = UnreachedSocket {
                    api: key.0,
                    socket: key.1.clone(),
                    reason: "its watch ended".into(),
                };
                sockets.refused.insert(key, (at.file, unreached));
            } else {
                info!(api = %at.found.api, endpoint = %at.found.endpoint, "engine socket gone");
                fleet.remove(at.found.member).await;
            }
        }
    }

    /// Probes `path` for `api` and, when an engine answers that no member
    /// watches already, watches it.
    async fn watch_socket(
        &self,
        api: Api,
        path: &Path,
        file: FileId,
        table: &ProcessTable,
    ) -> Result<Option<AtSocket>, EngineError> {
        let inner = &self.inner;
        let listening = tokio::time::timeout(
            inner.settings.probe_deadline,
            whalewatcher_core::support::listener_pid(path),
        )
        .await
        .unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::TimedOut)));
        let pid = listening
            .map_err(|error| EngineError::unreachable(path.display().to_string(), error))?;
        // The listener's PIDs, when it is an engine process (not an
        // activator, not a proxy) whose PIDs we may read.
        let engine_process = pid
            .and_then(|pid| table.get(&pid))
            .filter(|process| EngineProcess::of(&inner.procfs, process, table).is_some());
        let (watcher, info) =
            probe::probe(api, path, engine_process.map(|p| p.pid), &inner.settings).await?;
        if let Some(member) = self.watched_elsewhere(api, path, &info) {
            watcher.close().await;
            debug!(%api, %member, socket = %path.display(), "engine watched already");
            return Ok(None);
        }
        let translation = engine_process.and_then(|p| self.translation(p.pid).ok());
        let found_by = FoundBy::Socket {
            path: path.display().to_string().into(),
            pid: engine_process.map(|p| p.pid),
        };
        let parent = engine_process.and_then(|p| {
            let containers = crate::parents::ContainerPids::of(&inner.fleet.snapshot(), table);
            containers.parent_of(p.pid, &[], table)
        });
        let joining = Joining {
            api,
            process: engine_process.and_then(|p| EngineProcess::of(&inner.procfs, p, table)),
            socket: path.to_owned(),
            found_by,
            translation,
            parent,
        };
        let found = self.join(watcher, joining).await?;
        Ok(Some(AtSocket {
            file,
            found,
            listener: engine_process.map(|p| (p.pid, p.started)),
        }))
    }

    /// The socket files the fleet's members watch (unix endpoints only).
    fn watched_socket_files(&self) -> Vec<FileId> {
        self.inner
            .fleet
            .snapshot()
            .engines()
            .filter_map(|engine| crate::socket_path(&engine.info().api))
            .filter_map(|path| socket_file(path).ok().flatten())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_file_is_told_from_a_plain_file_and_from_none() {
        let dir = std::env::temp_dir().join(format!("ww-socket-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("engine.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, "").unwrap();
        assert!(socket_file(&socket).unwrap().is_some());
        assert_eq!(socket_file(&plain).unwrap(), None, "not a socket");
        assert_eq!(socket_file(&dir.join("none")).unwrap(), None, "none");
        // (A socket bound again at its path may get the same inode number:
        // the file's identity alone does not tell an engine's restart; the
        // listening process's end does, where it is known.)
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
