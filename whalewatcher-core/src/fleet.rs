//! A fleet: the watchers of several engines, which come and go, seen as
//! one — one snapshot, one subscription, with the contract of a single
//! [`Watcher`].
//!
//! Each member is followed by a task of its own that holds the member's
//! subscription (snapshot and events) and applies each revision of its
//! watcher to the member's place in the fleet's snapshot, under one lock,
//! as one fleet revision. So a fleet snapshot holds, for every engine,
//! exactly the watcher's portfolio of some revision; the fleet's events
//! up to revision `r` applied to a snapshot give the snapshot at `r`.
//!
//! - An engine that **joins** shows its containers as started
//!   ([`EventSource::Sync`]) in the revision that says it joined; one that
//!   **leaves** (removed, or its watch ended) shows them exited in the
//!   revision that says it left.
//! - A member whose own subscription **lags** is resubscribed, and the
//!   difference is published (source sync): the fleet never loses a change.
//! - Every container's PID is also given in the reader's PID namespace
//!   where the member has a [`PidTranslation`] (discovery gives one to
//!   every engine it finds).
//!
//! What joins a fleet is in [`membership`], what it shows in [`view`],
//! the task that follows each member in [`member`].

mod member;
mod membership;
mod view;

use membership::MemberWatch;
pub use membership::{
    FleetMember, FoundBy, MemberId, ParentContainer, PidTranslation, SamePidNamespace,
};
use view::LocalPids;
pub use view::{FleetChange, FleetContainer, FleetEngine, FleetEvent, FleetEvents, FleetSnapshot};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::container::Container;
use crate::engine::EngineInfo;
use crate::error::{EngineError, WatchError};
use crate::event::{Event, Lagged, RevisionStream};
use crate::portfolio::Portfolio;
use crate::support::lock;
use crate::watcher::{SyncState, SyncStatus, WatchHandle, Watcher};

/// Revisions buffered per fleet subscriber before a slow one is told it
/// lagged.
const DEFAULT_EVENT_CAPACITY: usize = 4096;

/// [`Fleet::add`] on a closed fleet: the member it was given, back.
#[derive(Debug, thiserror::Error)]
#[error("the fleet is closed: it takes no new member")]
pub struct FleetClosed(pub Box<FleetMember>);

/// The watchers of several engines as one: one snapshot of all their
/// containers, one subscription to all their changes, engines added and
/// removed at run time.
///
/// Cheap to clone; all clones share one fleet. Dropping the last clone
/// stops every member (as [`close`](Self::close) does, without waiting).
///
/// ```
/// # async fn demo(a: whalewatcher_core::Watcher, b: whalewatcher_core::Watcher) {
/// use whalewatcher_core::{Fleet, FleetMember};
///
/// let fleet = Fleet::new();
/// fleet.add(FleetMember::new(a)).expect("an open fleet");
/// fleet.add(FleetMember::new(b)).expect("an open fleet");
/// let (snapshot, changes) = fleet.subscribe();
/// for container in snapshot.containers() {
///     println!("{} on {}", container.container().name(), container.engine().info().api);
/// }
/// fleet.close().await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Fleet {
    handle: Arc<Handle>,
}

/// Stops the fleet when the last [`Fleet`] goes.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stopping.cancel();
        self.shared.closed.cancel();
    }
}

struct Shared {
    /// The latest published snapshot.
    snapshot: ArcSwap<FleetSnapshot>,
    /// Held while a revision is made and published, and while subscribing.
    publishing: Mutex<()>,
    events: broadcast::Sender<Arc<[FleetEvent]>>,
    /// The running members: how to stop each, and when it has left.
    members: Mutex<HashMap<MemberId, Departure>>,
    next_member: AtomicU64,
    /// Cancelled by `close` or the last drop: every member leaves.
    stopping: CancellationToken,
    /// Cancelled once nothing more will be published: ends the streams.
    closed: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("engines", &self.snapshot.load().engines.len())
            .finish_non_exhaustive()
    }
}

/// How a member is told to leave, and how it says it has.
#[derive(Clone, Debug)]
struct Departure {
    leave: CancellationToken,
    left: CancellationToken,
}

impl Shared {
    /// Makes one revision from `change` (applied to the current snapshot)
    /// and publishes it with the changes it returns; nothing when it
    /// returns none.
    fn publish(
        &self,
        change: impl FnOnce(&mut imbl::OrdMap<MemberId, Arc<FleetEngine>>) -> Vec<FleetEvent>,
    ) {
        let _pairing = lock(&self.publishing);
        let current = self.snapshot.load_full();
        let mut engines = current.engines.clone();
        let mut events = change(&mut engines);
        if events.is_empty() {
            return;
        }
        let revision = current.revision + 1;
        for event in &mut events {
            event.revision = revision;
        }
        self.snapshot
            .store(Arc::new(FleetSnapshot { engines, revision }));
        // No subscribers is fine; a lagging one is its own problem.
        let _ = self.events.send(events.into());
    }
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    /// An empty fleet.
    pub fn new() -> Self {
        Self::with_event_capacity(DEFAULT_EVENT_CAPACITY)
    }

    /// An empty fleet whose subscribers may fall behind by `capacity`
    /// revisions (at least 1) before they are told they lagged.
    pub fn with_event_capacity(capacity: usize) -> Self {
        Fleet {
            handle: Arc::new(Handle {
                shared: Arc::new(Shared {
                    snapshot: ArcSwap::from_pointee(FleetSnapshot::default()),
                    publishing: Mutex::new(()),
                    events: broadcast::channel(capacity.max(1)).0,
                    members: Mutex::new(HashMap::new()),
                    next_member: AtomicU64::new(1),
                    stopping: CancellationToken::new(),
                    closed: CancellationToken::new(),
                }),
            }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Adds a member: it has joined (with the containers its watcher has
    /// now) when this returns, and is followed by a task of its own until
    /// it leaves. Must be called within a tokio runtime, as the task is
    /// spawned on it. Refused once the fleet is [closed](Self::close) (or
    /// its last clone dropped): the member comes back untouched, its
    /// engine not asked anything.
    pub fn add(&self, member: FleetMember) -> Result<MemberId, FleetClosed> {
        let shared = self.shared();
        let id = MemberId(shared.next_member.fetch_add(1, Ordering::Relaxed));
        let departure = Departure {
            leave: shared.stopping.child_token(),
            left: CancellationToken::new(),
        };
        {
            // `close` takes the members under this lock after it stops
            // the fleet: a member is either refused here or seen there.
            let mut members = lock(&shared.members);
            if shared.stopping.is_cancelled() {
                return Err(FleetClosed(Box::new(member)));
            }
            members.insert(id, departure.clone());
        }
        let following = member::Following::join(shared.clone(), id, member);
        tokio::spawn(following.run(departure));
        Ok(id)
    }

    /// Removes a member and waits until it has left (its containers
    /// exited, its watch stopped); `false` when it is no member (any more).
    pub async fn remove(&self, member: MemberId) -> bool {
        let departure = lock(&self.shared().members).get(&member).cloned();
        let Some(departure) = departure else {
            return false;
        };
        departure.leave.cancel();
        departure.left.cancelled().await;
        true
    }

    /// Sets (or clears) the container a member's engine runs in; `false`
    /// when it is no member. Published as [`FleetChange::Parent`] when it
    /// changed.
    pub fn set_parent(&self, member: MemberId, parent: Option<ParentContainer>) -> bool {
        let mut found = false;
        self.shared().publish(|engines| {
            let Some(engine) = engines.get(&member) else {
                return Vec::new();
            };
            found = true;
            if engine.parent == parent {
                return Vec::new();
            }
            let mut changed = (**engine).clone();
            changed.parent = parent;
            let changed = Arc::new(changed);
            engines.insert(member, changed.clone());
            vec![FleetEvent {
                engine: changed,
                change: FleetChange::Parent,
                revision: 0,
            }]
        });
        found
    }

    /// The current snapshot of all engines and containers.
    pub fn snapshot(&self) -> Arc<FleetSnapshot> {
        self.shared().snapshot.load_full()
    }

    /// The current snapshot and the stream of every change after it, taken
    /// atomically: applying the changes in order to the snapshot gives each
    /// later snapshot, with nothing missed or counted twice.
    pub fn subscribe(&self) -> (Arc<FleetSnapshot>, FleetEvents) {
        let shared = self.shared();
        let _pairing = lock(&shared.publishing);
        (
            shared.snapshot.load_full(),
            FleetEvents(RevisionStream::new(
                shared.events.subscribe(),
                shared.closed.clone(),
            )),
        )
    }

    /// Makes every member leave, waits until all have, then ends every
    /// subscriber's stream. Later [`add`](Self::add)s are refused.
    pub async fn close(&self) {
        let shared = self.shared();
        shared.stopping.cancel();
        loop {
            let departures: Vec<Departure> = lock(&shared.members).values().cloned().collect();
            if departures.is_empty() {
                break;
            }
            for departure in departures {
                departure.left.cancelled().await;
            }
        }
        shared.closed.cancel();
    }
}

#[cfg(test)]
mod tests;
