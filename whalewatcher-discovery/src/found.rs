//! What a scan found, and what it could not reach or watch.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use whalewatcher_core::{FoundBy, MemberId, ParentContainer};

use crate::{Api, EngineProcess, PidLevels, PidTranslator, UnreachedSocket};

/// Why a scan could not look at the processes at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The process list (`/proc`) cannot be read.
    #[error("cannot read the processes in {}", path.display())]
    Processes {
        /// The `/proc` looked at.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// An engine a scan found, and where.
#[derive(Clone, Debug, Serialize)]
pub struct FoundEngine {
    /// Its member in the fleet.
    pub member: MemberId,
    /// The API it is watched through.
    pub api: Api,
    /// How it was found: by its process, or at a well-known socket.
    pub found_by: FoundBy,
    /// The kind of process it is, when known (an engine reached at a
    /// well-known socket whose listener is no engine process of ours to
    /// see — an activator's, a proxy's — is not).
    pub process: Option<EngineProcess>,
    /// Its process's PIDs: here, and in its own PID namespace, when known.
    pub pid: Option<PidLevels>,
    /// Its PID namespace, as `/proc/PID/ns/pid` names it (`pid:[…]`), when
    /// this process may look.
    pub pid_namespace: Option<String>,
    /// The socket as the engine bound it, in its mount namespace (for an
    /// engine found at a well-known socket: that socket, here).
    pub socket: PathBuf,
    /// The endpoint it is reached at from here.
    pub endpoint: String,
}

/// A probed engine about to join the fleet, and what is known of it.
pub(crate) struct Joining {
    pub(crate) api: Api,
    pub(crate) process: Option<EngineProcess>,
    pub(crate) socket: PathBuf,
    pub(crate) found_by: FoundBy,
    pub(crate) translation: Option<Translation>,
    pub(crate) parent: Option<ParentContainer>,
}

/// How an engine's PIDs become ours: the translator, where its process
/// sits, and its PID namespace (when we may look).
pub(crate) type Translation = (Arc<PidTranslator>, PidLevels, Option<String>);

/// An engine process a scan could not watch (or not through one of its
/// APIs), and why.
#[derive(Clone, Debug, Serialize)]
pub struct Unreached {
    /// The kind of process.
    pub process: EngineProcess,
    /// Its PID here.
    pub pid: u32,
    /// The API that failed, when it got that far.
    pub api: Option<Api>,
    /// The socket asked, when it got that far (as the engine bound it).
    pub socket: Option<PathBuf>,
    /// Why, on one line.
    pub reason: String,
}

/// As whalewatch says it: `dockerd docker (PID 42): why`.
impl std::fmt::Display for Unreached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.process)?;
        if let Some(api) = self.api {
            write!(f, " {api}")?;
        }
        write!(f, " (PID {}): {}", self.pid, self.reason)
    }
}

/// An engine a scan found that another member of the fleet — one added
/// by the fleet's owner, not by discovery — watches already: at the same
/// socket, or with the same engine type and id. It is not watched twice.
#[derive(Clone, Debug, Serialize)]
pub struct WatchedAlready {
    /// The kind of process.
    pub process: EngineProcess,
    /// Its PID here.
    pub pid: u32,
    /// The API found.
    pub api: Api,
    /// The socket, as the engine bound it.
    pub socket: PathBuf,
    /// The member that watches it.
    pub member: MemberId,
}

/// What a scan found: every engine watched now, and every engine process
/// (or API of one) that could not be watched.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Scan {
    /// The engines watched, by member.
    pub engines: Vec<FoundEngine>,
    /// What could not be watched, and why.
    pub unreached: Vec<Unreached>,
    /// Engines found that other members of the fleet watch already.
    pub watched_already: Vec<WatchedAlready>,
    /// Well-known sockets (and activators' sockets) where no engine could
    /// be watched, and why; a well-known socket that is not there is not
    /// listed.
    pub unreached_sockets: Vec<UnreachedSocket>,
    /// How many processes the scan looked at.
    pub processes: usize,
    /// How long the scan took (probes and first syncs of new engines
    /// included).
    pub took: Duration,
}
