//! Following one member of a fleet: its watcher's revisions become fleet
//! revisions, from the moment it joins until it leaves.

use std::pin::Pin;
use std::sync::Arc;

use futures::stream::Peekable;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    Departure, FleetChange, FleetEngine, FleetEvent, FleetMember, LocalPids, MemberId, MemberWatch,
    PidTranslation, Shared,
};
use crate::container::Container;
use crate::error::{panic_message, WatchError};
use crate::event::{Event, EventKind, EventSource, EventStream};
use crate::portfolio::Portfolio;
use crate::support::lock;
use crate::watcher::{SyncStatus, WatchHandle, Watcher};

/// A member being followed by its task.
pub(super) struct Following {
    shared: Arc<Shared>,
    id: MemberId,
    watcher: Watcher,
    events: Peekable<EventStream>,
    status: watch::Receiver<SyncStatus>,
    pids: Option<Arc<dyn PidTranslation>>,
    watch: Watch,
    close_on_leave: bool,
}

/// The watch a member follows.
enum Watch {
    /// The fleet's own: stopped when the member leaves.
    Owned(WatchHandle),
    /// One run elsewhere (which of the watcher's watches; `None`: none ran
    /// when the member joined): the member leaves when it ends.
    Followed(Option<u64>),
    /// Ended, and told.
    Ended,
}

impl Watch {
    /// Ends when the watch ends; never once that was told.
    async fn ended(&mut self, watcher: &Watcher) -> Result<(), WatchError> {
        let ended = match self {
            Watch::Owned(handle) => handle.finished().await,
            Watch::Followed(Some(watch)) => watcher.watch_ended(*watch).await,
            Watch::Followed(None) => Ok(()),
            Watch::Ended => std::future::pending().await,
        };
        *self = Watch::Ended;
        ended
    }
}

/// Whatever becomes of a member's task — also a panic in it — the member
/// is gone from the fleet's list and whoever waits for it is told.
struct Gone<'a> {
    shared: &'a Shared,
    id: MemberId,
    left: &'a CancellationToken,
}

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        lock(&self.shared.members).remove(&self.id);
        self.left.cancel();
    }
}

impl Following {
    /// Joins `member` to the fleet: subscribes to its watcher, publishes the
    /// engine with the containers of that snapshot, and starts its watch
    /// unless it brings one.
    pub(super) fn join(shared: Arc<Shared>, id: MemberId, member: FleetMember) -> Self {
        let FleetMember {
            watcher,
            parent,
            pids,
            local_pid,
            found_by,
            watch,
            close_on_leave,
        } = member;
        let (snapshot, events) = watcher.subscribe();
        let mut status = watcher.subscribe_status();
        let current = status.borrow_and_update().clone();
        let local_pids = snapshot
            .containers()
            .filter_map(|c| Some((c.shared_id().clone(), translate(&pids, c)?)))
            .collect();
        let engine = Arc::new(FleetEngine {
            member: id,
            watcher: watcher.clone(),
            info: watcher.engine_info(),
            status: current,
            parent,
            local_pid,
            found_by,
            portfolio: snapshot.clone(),
            local_pids,
        });
        shared.publish(|engines| {
            engines.insert(id, engine.clone());
            let mut changes = vec![FleetEvent {
                engine: engine.clone(),
                change: FleetChange::Joined,
                revision: 0,
            }];
            let mut containers: Vec<&Arc<Container>> = snapshot.containers().collect();
            containers.sort_by(|a, b| a.id().cmp(b.id()));
            changes.extend(containers.into_iter().map(|container| {
                let event = sync_event(EventKind::Started, container, snapshot.revision());
                container_change(&engine, event)
            }));
            changes
        });
        let watch = match watch {
            // Asked for now: refused at once if another watch runs on.
            MemberWatch::Start => Watch::Owned(watcher.spawn()),
            MemberWatch::Owned(handle) => Watch::Owned(handle),
            MemberWatch::Follow => Watch::Followed(watcher.running_watch()),
        };
        Following {
            shared,
            id,
            watcher,
            events: events.peekable(),
            status,
            pids,
            watch,
            close_on_leave,
        }
    }

    /// Follows the member until it is told to leave or its watch ends,
    /// then leaves: its containers exit, the engine goes. A panic while
    /// following (a bug in a [`PidTranslation`], say) ends this member as
    /// its watch's panic does: it leaves, saying so.
    pub(super) async fn run(mut self, departure: Departure) {
        let shared = self.shared.clone();
        let _gone = Gone {
            shared: &shared,
            id: self.id,
            left: &departure.left,
        };
        let following = std::panic::AssertUnwindSafe(self.follow(&departure.leave));
        let error = match following.catch_unwind().await {
            Ok(error) => error,
            Err(payload) => Some(WatchError::Panicked {
                message: panic_message(&*payload),
            }),
        };
        self.leave(error);
        if let Watch::Owned(handle) = std::mem::replace(&mut self.watch, Watch::Ended) {
            // How it ended was told already, if it ended by itself.
            let _ = handle.stop().await;
        }
        if self.close_on_leave {
            self.watcher.close().await;
        }
    }

    /// Applies the watcher's revisions and status changes; returns why the
    /// member leaves by itself (`None`: told to, or its watcher closed).
    async fn follow(&mut self, leave: &CancellationToken) -> Option<WatchError> {
        loop {
            tokio::select! {
                biased;
                _ = leave.cancelled() => return None,
                ended = self.watch.ended(&self.watcher) => return ended.err(),
                item = self.events.next() => match item {
                    Some(Ok(event)) => self.apply(event),
                    Some(Err(_lagged)) => self.resubscribe(),
                    None => return None,
                },
                changed = self.status.changed() => match changed {
                    Ok(()) => self.update_status(),
                    Err(_) => return None,
                },
            }
        }
    }

    /// Applies `first` and the rest of its watcher revision (delivered
    /// together, so at hand) as one fleet revision.
    fn apply(&mut self, first: Event) {
        let revision = first.revision;
        let mut batch = vec![first];
        while let Some(Some(Ok(next))) = Pin::new(&mut self.events).peek().now_or_never() {
            if next.revision != revision {
                break;
            }
            match self.events.next().now_or_never() {
                Some(Some(Ok(next))) => batch.push(next),
                _ => break,
            }
        }
        let translated: Vec<(Event, Option<u32>)> = batch
            .into_iter()
            .map(|event| {
                // An exited process can no longer be found: its exit
                // carries the PID it had here, from the fleet's own record.
                let local = match event.kind {
                    EventKind::Exited => None,
                    _ => translate(&self.pids, &event.container),
                };
                (event, local)
            })
            .collect();
        self.publish_changes(translated, |changed, changes| {
            let portfolio = Arc::make_mut(&mut changed.portfolio);
            for (event, _) in changes {
                match event.kind {
                    EventKind::Exited => {
                        portfolio.remove(event.container.shared_id());
                    }
                    _ => {
                        portfolio.insert(event.container.clone());
                    }
                }
            }
            portfolio.set_revision(revision);
        });
    }

    /// Publishes `changes` of this member as one fleet revision: its
    /// portfolio as `update` makes it, its local PIDs following the
    /// changes (an exit takes the PID it had here along), a fleet event
    /// each.
    fn publish_changes(
        &self,
        mut changes: Vec<(Event, Option<u32>)>,
        update: impl FnOnce(&mut FleetEngine, &[(Event, Option<u32>)]),
    ) {
        let id = self.id;
        self.shared.publish(|engines| {
            let Some(engine) = engines.get(&id) else {
                return Vec::new();
            };
            let mut changed = (**engine).clone();
            update(&mut changed, &changes);
            for (event, local) in &mut changes {
                let container_id = event.container.shared_id();
                if event.kind == EventKind::Exited {
                    *local = changed.local_pids.remove(container_id);
                } else {
                    set_local(&mut changed.local_pids, container_id, *local);
                }
            }
            let changed = Arc::new(changed);
            engines.insert(id, changed.clone());
            changes
                .into_iter()
                .map(|(event, local_pid)| FleetEvent {
                    engine: changed.clone(),
                    change: FleetChange::Container { event, local_pid },
                    revision: 0,
                })
                .collect()
        });
    }

    /// The member's own subscription lagged: a fresh one, and the
    /// difference to what the fleet shows of the member, published.
    fn resubscribe(&mut self) {
        let (snapshot, events) = self.watcher.subscribe();
        self.events = events.peekable();
        let Some(before) = self.shared.snapshot.load().engine(self.id).cloned() else {
            return;
        };
        let changes: Vec<(Event, Option<u32>)> = snapshot
            .changes_since(&before.portfolio)
            .into_iter()
            .map(|(kind, container)| {
                let local = match kind {
                    EventKind::Exited => None,
                    _ => translate(&self.pids, &container),
                };
                (sync_event(kind, &container, snapshot.revision()), local)
            })
            .collect();
        self.publish_changes(changes, |changed, _| changed.portfolio = snapshot.clone());
    }

    /// Publishes the watcher's connection state and engine info, when
    /// either changed.
    fn update_status(&mut self) {
        let status = self.status.borrow_and_update().clone();
        let info = self.watcher.engine_info();
        let id = self.id;
        self.shared.publish(|engines| {
            let Some(engine) = engines.get(&id) else {
                return Vec::new();
            };
            let error_text = |e: &Option<crate::EngineError>| e.as_ref().map(|e| e.to_string());
            let known = &engine.status;
            if known.state == status.state
                && known.attempts == status.attempts
                && known.sync_duration == status.sync_duration
                && known.omitted == status.omitted
                && error_text(&known.last_error) == error_text(&status.last_error)
                && *engine.info == *info
            {
                return Vec::new();
            }
            let mut changed = (**engine).clone();
            changed.status = status.clone();
            changed.info = info.clone();
            let changed = Arc::new(changed);
            engines.insert(id, changed.clone());
            vec![FleetEvent {
                engine: changed,
                change: FleetChange::Status,
                revision: 0,
            }]
        });
    }

    /// Publishes the member's leaving: its containers exited, then the
    /// engine gone.
    fn leave(&mut self, error: Option<WatchError>) {
        let id = self.id;
        self.shared.publish(|engines| {
            let Some(engine) = engines.remove(&id) else {
                return Vec::new();
            };
            let mut gone = (*engine).clone();
            let revision = engine.portfolio.revision();
            let mut emptied = Portfolio::new();
            emptied.set_revision(revision);
            gone.portfolio = Arc::new(emptied);
            gone.local_pids = LocalPids::default();
            let gone = Arc::new(gone);
            let mut containers: Vec<&Arc<Container>> = engine.portfolio.containers().collect();
            containers.sort_by(|a, b| a.id().cmp(b.id()));
            let mut changes: Vec<FleetEvent> = containers
                .into_iter()
                .map(|container| {
                    let event = sync_event(EventKind::Exited, container, revision);
                    FleetEvent {
                        engine: gone.clone(),
                        change: FleetChange::Container {
                            event,
                            local_pid: engine.local_pids.get(container.id()).copied(),
                        },
                        revision: 0,
                    }
                })
                .collect();
            changes.push(FleetEvent {
                engine: gone,
                change: FleetChange::Left { error },
                revision: 0,
            });
            changes
        });
    }
}

fn translate(pids: &Option<Arc<dyn PidTranslation>>, container: &Container) -> Option<u32> {
    pids.as_ref()?.local_pid(container.pid())
}

fn set_local(pids: &mut LocalPids, id: &Arc<str>, local: Option<u32>) {
    match local {
        Some(pid) => {
            pids.insert(id.clone(), pid);
        }
        None => {
            pids.remove(id);
        }
    }
}

/// A change the fleet infers (a join, a leave, a lagged member's
/// difference), as the watcher would tell it after a sync.
fn sync_event(kind: EventKind, container: &Arc<Container>, revision: u64) -> Event {
    Event {
        kind,
        container: container.clone(),
        timestamp: None,
        source: EventSource::Sync,
        exit: None,
        revision,
    }
}

fn container_change(engine: &Arc<FleetEngine>, event: Event) -> FleetEvent {
    let local_pid = engine.local_pids.get(event.container.id()).copied();
    FleetEvent {
        engine: engine.clone(),
        change: FleetChange::Container { event, local_pid },
        revision: 0,
    }
}
