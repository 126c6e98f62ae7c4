//! The interface every engine crate implements.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;

use crate::container::Container;
use crate::error::EngineError;
use crate::event::{EngineEvent, Exit};

/// The lifecycle events of an engine, as [`Engine::subscribe`] returns them.
///
/// An `Err` item or the end of the stream means the subscription is lost;
/// the watcher then resynchronizes.
pub type EngineEvents = BoxStream<'static, Result<EngineEvent, EngineError>>;

/// What an engine says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EngineInfo {
    /// The engine's (more or less) unique id; its form depends on the engine.
    pub id: String,
    /// The kind of engine, for example `docker.com` or `podman.io`.
    #[serde(rename = "type")]
    pub engine_type: String,
    /// The engine's version.
    pub version: String,
    /// The API endpoint the engine is reached at.
    pub api: String,
    /// The engine's PID, when known.
    pub pid: Option<u32>,
}

/// A part of an engine that a list had to leave out, and why: a
/// containerd namespace whose list failed. The next list tries it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Omission {
    /// The part, as the engine names it: `namespace "builds"`.
    pub part: String,
    /// Why it could not be listed.
    pub reason: String,
}

impl std::fmt::Display for Omission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} left out: {}", self.part, self.reason)
    }
}

/// What a list found, and what it had to leave out.
#[derive(Debug, Default)]
pub struct Listing {
    /// The alive containers of the parts that could be listed.
    pub containers: Vec<Container>,
    /// The parts that could not.
    pub omitted: Vec<Omission>,
}

/// A container engine, as the watcher needs it: list, inspect, subscribe.
///
/// Implemented once per engine (Docker/podman, containerd, CRI); the watcher
/// does everything else. Implementations convert the engine's records into
/// [`Container`]s and its events into [`EngineEvent`]s, and return typed
/// [`EngineError`]s.
///
/// An engine is also [`Any`]: [`Watcher::engine_as`](crate::Watcher::engine_as)
/// hands the concrete engine back, for its client.
#[async_trait]
pub trait Engine: Any + Send + Sync + Debug {
    /// The API endpoint, for messages and [`EngineInfo::api`]; known
    /// without talking to the engine.
    fn api(&self) -> &str;

    /// The kind of engine as far as known without talking to it; the
    /// answer of [`info`](Self::info) may refine it (podman behind a Docker
    /// endpoint, say).
    fn engine_type(&self) -> &str;

    /// The engine's PID, when the caller told it.
    fn pid(&self) -> Option<u32> {
        None
    }

    /// Asks the engine for its id, type and version.
    async fn info(&self) -> Result<EngineInfo, EngineError>;

    /// All alive (running or paused) containers, fully inspected.
    async fn list(&self) -> Result<Vec<Container>, EngineError>;

    /// Like [`list`](Self::list), for an engine whose parts are listed
    /// apart (containerd's namespaces): a part that fails is left out and
    /// said, rather than failing the whole list, unless every part fails.
    /// The watcher lists with this and shows the omissions in its
    /// [`SyncStatus::omitted`](crate::SyncStatus::omitted). The default
    /// lists and leaves nothing out.
    async fn list_with_omissions(&self) -> Result<Listing, EngineError> {
        Ok(Listing {
            containers: self.list().await?,
            omitted: Vec::new(),
        })
    }

    /// One container by id (or name, where the engine has names).
    ///
    /// [`EngineError::NotFound`] when the engine does not know it,
    /// [`EngineError::Processless`] when it is not alive.
    async fn inspect(&self, id_or_name: &str) -> Result<Container, EngineError>;

    /// Subscribes to the engine's lifecycle events.
    ///
    /// Resolves only once no event can be missed any more — the
    /// subscription is live, or the engine will replay from a point taken
    /// before this call returned — so that a [`list`](Self::list) right
    /// after it misses nothing.
    async fn subscribe(&self) -> Result<EngineEvents, EngineError>;

    /// Whether the engine still answers, as cheaply as it can (the Docker
    /// API's `/_ping`, a gRPC `Version`): the watcher's liveness probe
    /// while the event stream is quiet, so that an engine that stopped
    /// answering (frozen, deadlocked) is seen as lost. The default asks
    /// for the engine's [`info`](Self::info).
    async fn ping(&self) -> Result<(), EngineError> {
        self.info().await.map(|_| ())
    }

    /// How containers exited that were alive at the last sync and are gone
    /// from a new list, with no event that said so — they ended while the
    /// watch could not hear the engine (it was lost, or frozen) — as far
    /// as the engine still knows (containerd keeps a stopped task until
    /// it is deleted). Asked after such a list, within the inspect
    /// deadline; the exits it answers go with the containers' `Exited`
    /// events. The default knows none.
    async fn exits(&self, ids: &[Arc<str>]) -> HashMap<Arc<str>, Exit> {
        let _ = ids;
        HashMap::new()
    }

    /// Says more of an error that kept a session from synchronizing, when
    /// the engine can tell: that its socket is a directory, that nothing
    /// listens on it, that another kind of engine answers there (see
    /// [`support::diagnose_unix_socket`](crate::support::diagnose_unix_socket)).
    /// The watcher asks before it reports an unreachable endpoint or a
    /// protocol error of a session that never synchronized; the default
    /// returns the error as it is.
    async fn diagnose(&self, error: EngineError) -> EngineError {
        error
    }

    /// Releases the engine's connections; called by
    /// [`Watcher::close`](crate::Watcher::close).
    async fn close(&self) {}
}
