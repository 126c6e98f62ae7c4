//! The engine-independent core of whalewatcher.
//!
//! whalewatcher keeps an always-current, in-memory picture of the *alive*
//! containers of a container engine — running or paused, so with a PID — and
//! a stream of their lifecycle events, so that tools can ask "which
//! containers are alive right now?" at any moment, in bursts, without
//! loading the engine.
//!
//! - [`Container`], [`Project`], [`Portfolio`]: the picture, as immutable
//!   snapshots that are cheap to take.
//! - [`Engine`]: what each engine crate implements (list, inspect,
//!   subscribe).
//! - [`Watcher`]: the synchronization state machine that keeps a portfolio
//!   in step with an engine, through reconnects, under a [`RetryPolicy`].
//!
//! ```
//! # async fn demo(engine: impl whalewatcher_core::Engine) {
//! use whalewatcher_core::{RetryPolicy, Watcher};
//!
//! let watcher = Watcher::new(engine, RetryPolicy::default());
//! // The watch in a task of its own; dropping the handle stops it too.
//! let watching = watcher.spawn();
//! if watcher.ready().await.is_ok() {
//!     for project in watcher.portfolio().projects() {
//!         for container in project.containers() {
//!             println!("{:?} {} {}", project.name(), container.name(), container.pid());
//!         }
//!     }
//! }
//! let _ = watching.stop().await;
//! # }
//! ```

// docs.rs marks each item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod container;
mod details;
mod engine;
mod error;
mod event;
mod fleet;
mod portfolio;
mod retry;
pub mod support;
mod task;
mod watcher;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use container::{Container, Labels, Rucksack, StringPool};
pub use details::{
    Health, HostNamespaces, Mount, NetworkAddress, NetworkIdentity, PodInfo, PublishedPort,
    Resources,
};
pub use engine::{Engine, EngineEvents, EngineInfo, Listing, Omission};
pub use error::{describe, io_error_with_causes, Cause, EngineError, WatchError};
pub use event::{EngineEvent, Event, EventKind, EventSource, EventStream, Exit, Lagged, OomKills};
pub use fleet::{
    Fleet, FleetChange, FleetClosed, FleetContainer, FleetEngine, FleetEvent, FleetEvents,
    FleetMember, FleetSnapshot, FoundBy, MemberId, ParentContainer, PidTranslation,
    SamePidNamespace,
};
pub use portfolio::{Pod, Portfolio, Project};
pub use retry::{RetryPolicy, MIN_RETRY_DELAY};
pub use task::StopOnDrop;
pub use watcher::{Deadlines, SyncState, SyncStatus, WatchHandle, Watcher, WatcherBuilder};

/// Re-exported so users need not depend on async-trait to implement
/// [`Engine`].
pub use async_trait::async_trait;
/// Re-exported: [`Watcher::watch`] takes one.
pub use tokio_util::sync::CancellationToken;

/// The label carrying the compose project name (Docker compose, nerdctl
/// compose).
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
