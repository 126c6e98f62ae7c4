//! Lifecycle events: what engines report to the watcher, and what the
//! watcher reports to its subscribers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures::Stream;
use serde::Serialize;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::container::Container;

/// The lifecycle changes of an alive container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The container's initial process started: it became alive.
    Started,
    /// The container's initial process ended: it is no longer alive.
    Exited,
    /// The container's processes were frozen.
    Paused,
    /// The container's processes were thawed.
    Unpaused,
}

/// A lifecycle event as an engine reports it to the watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineEvent {
    /// What happened.
    pub kind: EventKind,
    /// The container's id, in the same form [`Container::id`] uses.
    pub id: String,
    /// The container's project when the engine tells it; never relied upon
    /// (podman's exit events, for one, lack the labels it comes from).
    pub project: Option<String>,
    /// When it happened, by the engine's clock, if the engine says.
    pub timestamp: Option<SystemTime>,
}

impl EngineEvent {
    /// An event of `kind` for container `id`, without project or timestamp.
    pub fn new(kind: EventKind, id: impl Into<String>) -> Self {
        EngineEvent {
            kind,
            id: id.into(),
            project: None,
            timestamp: None,
        }
    }

    /// Sets the timestamp.
    pub fn at(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Why the watcher emitted an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// A live engine event.
    Engine,
    /// A (re)synchronization found this difference to what subscribers had
    /// seen: the engine reported no event for it to us (it happened before
    /// the watch began, or while the engine was unreachable).
    Sync,
}

/// A lifecycle event as the watcher reports it to subscribers, after the
/// portfolio has taken it in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The container after the change; for [`EventKind::Exited`], as it was
    /// last known.
    pub container: Arc<Container>,
    /// The engine's timestamp, when the engine gave one.
    #[serde(with = "unix_nanos")]
    pub timestamp: Option<SystemTime>,
    /// Whether this came from a live engine event or from a (re)sync.
    pub source: EventSource,
    /// The [revision](crate::Portfolio::revision) of the portfolio that
    /// includes this change; the events of one (re)sync share one.
    pub revision: u64,
}

/// Serializes a timestamp as nanoseconds since the Unix epoch, like the
/// engines' own `timeNano` fields.
mod unix_nanos {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    pub fn serialize<S: Serializer>(ts: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match ts.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => s.serialize_u128(d.as_nanos()),
            None => s.serialize_none(),
        }
    }
}

/// A subscriber fell behind: `missed` events were dropped for it rather
/// than slowing down the watcher. Take a fresh
/// [`subscribe`](crate::Watcher::subscribe) to start over from a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the event subscriber lagged behind and missed {missed} events")]
pub struct Lagged {
    /// How many events this subscriber missed.
    pub missed: u64,
}

/// The events after a snapshot, as handed out by
/// [`Watcher::subscribe`](crate::Watcher::subscribe).
///
/// Yields `Err(Lagged)` when this subscriber fell behind, then goes on with
/// the oldest event still buffered. Ends when the watcher is dropped.
#[derive(Debug)]
pub struct EventStream {
    inner: BroadcastStream<Event>,
}

impl EventStream {
    pub(crate) fn new(receiver: tokio::sync::broadcast::Receiver<Event>) -> Self {
        EventStream {
            inner: BroadcastStream::new(receiver),
        }
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|item| {
            item.map(|result| {
                result.map_err(|BroadcastStreamRecvError::Lagged(missed)| Lagged { missed })
            })
        })
    }
}
