//! Lifecycle events: what engines report to the watcher, and what the
//! watcher reports to its subscribers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures::Stream;
use serde::Serialize;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::container::Container;

/// The lifecycle changes of an alive container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EventKind {
    /// The container's initial process started: it became alive.
    Started,
    /// The container's initial process ended: it is no longer alive.
    Exited,
    /// The container's processes were frozen.
    Paused,
    /// The container's processes were thawed.
    Unpaused,
    /// The container's record changed while its initial process stayed the
    /// same — a new name (`docker rename`), its health, other labels or
    /// project — as a (re)synchronization or an inspect found. From an
    /// engine, an `Updated` event says the record changed (a rename, a
    /// health check's new result): the watcher inspects the container
    /// again, and publishes `Updated` when the record differs.
    Updated,
}

impl EventKind {
    /// The kind's name as serialized: `started`, `exited`, `paused`,
    /// `unpaused`, `updated`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Exited => "exited",
            EventKind::Paused => "paused",
            EventKind::Unpaused => "unpaused",
            EventKind::Updated => "updated",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A lifecycle event as an engine reports it to the watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineEvent {
    /// What happened.
    pub kind: EventKind,
    /// The container's id, in the same form [`Container::id`] uses.
    pub id: String,
    /// The container's project when the engine tells it; never relied upon
    /// (podman 3 and 4's exit events, for one, lacked the labels it comes
    /// from).
    pub project: Option<String>,
    /// When it happened, by the engine's clock, if the engine says.
    pub timestamp: Option<SystemTime>,
    /// For an exit: how the process ended, as far as the engine says.
    pub exit: Option<Exit>,
}

/// How a container's initial process ended, as far as the engine says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Exit {
    /// The exit code; a process killed by signal `n` has `128 + n` (137
    /// for SIGKILL), as the engines report it.
    pub code: Option<i32>,
    /// Whether the kernel's OOM killer struck the container, where the
    /// engine says (CRI's `OOMKilled` reason; Docker's and containerd's
    /// OOM events seen before the exit).
    pub oom_killed: Option<bool>,
}

impl EngineEvent {
    /// An event of `kind` for container `id`, without project or timestamp.
    pub fn new(kind: EventKind, id: impl Into<String>) -> Self {
        EngineEvent {
            kind,
            id: id.into(),
            project: None,
            timestamp: None,
            exit: None,
        }
    }

    /// Sets the timestamp.
    pub fn at(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets how the process ended (for an exit).
    pub fn with_exit(mut self, exit: Exit) -> Self {
        self.exit = Some(exit);
        self
    }
}

/// The OOM kills an engine reported ahead of an exit (Docker's `oom`,
/// containerd's `/tasks/oom`), for an engine crate to tell on the exit that
/// follows — as Docker's own `State.OOMKilled` does: an OOM kill belongs
/// to the container's current life.
#[derive(Debug, Default)]
pub struct OomKills(std::collections::HashSet<String>);

impl OomKills {
    /// The engine reported an OOM kill in container `id`.
    pub fn reported(&mut self, id: impl Into<String>) {
        self.0.insert(id.into());
    }

    /// Takes in a lifecycle event: a start begins a new life; an exit
    /// tells whether an OOM kill was reported in the life it ends.
    pub fn take_in(&mut self, event: &mut EngineEvent) {
        match event.kind {
            EventKind::Started => {
                self.0.remove(&event.id);
            }
            EventKind::Exited if self.0.remove(&event.id) => {
                event.exit.get_or_insert_with(Exit::default).oom_killed = Some(true);
            }
            _ => {}
        }
    }
}

/// Why the watcher emitted an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// A live engine event — also one that arrived while a list was in
    /// flight and was folded into the list's difference — with the
    /// engine's timestamp when it gave one.
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
    /// For an exit the engine reported: how the process ended. `None` for
    /// other kinds, and for an exit a (re)sync inferred.
    pub exit: Option<Exit>,
    /// The [revision](crate::Portfolio::revision) of the portfolio that
    /// includes this change; the events of one (re)sync share one, and so
    /// do the changes that were ready at once (up to 256 live events and
    /// inspected starts).
    ///
    /// A snapshot of revision `r` plus the events up to revision `s` equals
    /// the snapshot of revision `s`: every change of content comes with an
    /// event, and each revision's events are delivered together.
    pub revision: u64,
}

/// Serializes a timestamp as nanoseconds since the Unix epoch.
mod unix_nanos {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(ts: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match ts.and_then(crate::container::unix_nanos) {
            Some(nanos) => s.serialize_u64(nanos),
            None => s.serialize_none(),
        }
    }
}

/// A subscriber fell behind: the changes of `missed` revisions were
/// dropped for it rather than slowing down the watcher. Take a fresh
/// [`subscribe`](crate::Watcher::subscribe) to start over from a snapshot.
///
/// A revision is one step of the portfolio: the live events and inspected
/// starts that were ready at once (one, when they come one by one; up to
/// 256 in a burst), or the whole difference of a (re)synchronization,
/// however many containers it holds. So a big resync or a burst never makes a reading
/// subscriber lag; only reading too slowly does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the event subscriber lagged behind and missed {missed} revisions")]
pub struct Lagged {
    /// How many revisions (each one or more events) this subscriber missed.
    pub missed: u64,
}

/// The events that took the portfolio to one revision, published as one
/// item so that the buffer counts revisions, not containers.
pub(crate) type Revision = Arc<[Event]>;

/// The items of one broadcast of revisions, handed out one by one: what
/// [`EventStream`] and the fleet's [`FleetEvents`](crate::FleetEvents)
/// share. Yields `Err(Lagged)` when the subscriber fell behind; ends once
/// `closed` is cancelled and nothing is buffered any more.
pub(crate) struct RevisionStream<T: Clone + Send + Sync + 'static> {
    revisions: BroadcastStream<Arc<[T]>>,
    /// The revision being handed out, and the index of its next item.
    current: Option<(Arc<[T]>, usize)>,
    /// Cancelled once the publisher is closed and publishes no more.
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    ended: bool,
}

impl<T: Clone + Send + Sync + 'static> RevisionStream<T> {
    pub(crate) fn new(
        receiver: tokio::sync::broadcast::Receiver<Arc<[T]>>,
        closed: CancellationToken,
    ) -> Self {
        RevisionStream {
            revisions: BroadcastStream::new(receiver),
            current: None,
            closed: Box::pin(closed.cancelled_owned()),
            ended: false,
        }
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    fn next_of_current(&mut self) -> Option<T> {
        let (revision, next) = self.current.as_mut()?;
        let item = revision.get(*next).cloned();
        *next += 1;
        if *next >= revision.len() {
            self.current = None;
        }
        item
    }
}

impl<T: Clone + Send + Sync + 'static> Stream for RevisionStream<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.next_of_current() {
                return Poll::Ready(Some(Ok(item)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.revisions).poll_next(cx) {
                Poll::Ready(Some(Ok(revision))) => this.current = Some((revision, 0)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                    return Poll::Ready(Some(Err(Lagged { missed })))
                }
                Poll::Ready(None) => this.ended = true,
                // Nothing buffered: once closed, nothing will come.
                Poll::Pending => match this.closed.as_mut().poll(cx) {
                    Poll::Ready(()) => this.ended = true,
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }
}

/// The events after a snapshot, as handed out by
/// [`Watcher::subscribe`](crate::Watcher::subscribe).
///
/// Yields `Err(Lagged)` when this subscriber fell behind, then goes on with
/// the oldest revision still buffered. Ends once the watcher is
/// [closed](crate::Watcher::close) (after everything published before) or
/// dropped; a cancelled [`watch`](crate::Watcher::watch) does not end it,
/// as the watcher may watch again.
pub struct EventStream(RevisionStream<Event>);

impl EventStream {
    pub(crate) fn new(
        receiver: tokio::sync::broadcast::Receiver<Revision>,
        closed: CancellationToken,
    ) -> Self {
        EventStream(RevisionStream::new(receiver, closed))
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("ended", &self.0.is_ended())
            .finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}
