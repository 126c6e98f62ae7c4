//! `--follow`: the alive containers, then every lifecycle event, as JSON
//! lines; and whether each engine is connected (`engine-lost`,
//! `engine-back`), so that a follower can tell a quiet engine from a lost
//! one.

use std::collections::HashMap;
use std::process::ExitCode;

use futures::StreamExt;
use whalewatcher::{Fleet, FleetChange, MemberId, SyncState, SyncStatus};

use crate::filter::{self, Filter};
use crate::output::{self, ContainerJson, EventJson, What};
use crate::watches::Watches;
use crate::{exit_after_writing, fail_watch};

/// Prints the alive containers that pass the filters, then each of
/// their events, until Ctrl-C (or SIGTERM) or a watch ends for good.
pub async fn follow(
    fleet: &Fleet,
    filters: &[Filter],
    named: usize,
    watches: &mut Watches,
) -> ExitCode {
    let (snapshot, mut changes) = fleet.subscribe();
    // The alive containers in one write, not a write per line.
    let mut alive = Vec::new();
    for picture in output::in_tree_order(&snapshot, named) {
        let engine = &picture.engine;
        for container in filter::shown(filters, engine.info(), engine.portfolio()) {
            let what = What::Alive {
                kind: "alive",
                container: ContainerJson::of(engine, container),
            };
            if let Err(error) = output::push_line(engine, &snapshot, what, &mut alive) {
                return exit_after_writing(Err(error));
            }
        }
    }
    if let Err(error) = output::write_out(&alive).await {
        return exit_after_writing(Err(error));
    }
    let mut connections: HashMap<MemberId, Connection> = snapshot
        .engines()
        .map(|engine| (engine.member(), Connection::new(engine.status())))
        .collect();
    loop {
        let change = tokio::select! {
            (option, ended) = watches.ended() => return fail_watch(option, ended),
            change = changes.next() => change,
        };
        let change = match change {
            Some(Ok(change)) => change,
            Some(Err(lagged)) => {
                eprintln!("whalewatch: {lagged}");
                continue;
            }
            // The fleet closed.
            None => return ExitCode::SUCCESS,
        };
        let engine = &change.engine;
        let member = engine.member();
        let lines: Vec<What<'_>> = match &change.change {
            FleetChange::Joined => {
                connections.insert(member, Connection::new(engine.status()));
                vec![What::Connection {
                    kind: "engine-joined",
                    error: None,
                }]
            }
            FleetChange::Left { error } => {
                connections.remove(&member);
                vec![What::Connection {
                    kind: "engine-left",
                    error: error.as_ref().map(|e| whalewatcher::describe(e)),
                }]
            }
            FleetChange::Container { event, local_pid } => {
                if filter::passes(filters, engine.info(), &event.container) {
                    vec![What::Event(EventJson::of(event, *local_pid))]
                } else {
                    Vec::new()
                }
            }
            FleetChange::Status => connections
                .get_mut(&member)
                .map(|connection| connection.changes(engine.status()))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let now = fleet.snapshot();
        let mut bytes = Vec::new();
        let pushed = lines
            .into_iter()
            .try_for_each(|what| output::push_line(engine, &now, what, &mut bytes));
        if let Err(error) = pushed {
            return exit_after_writing(Err(error));
        }
        if let Err(error) = output::write_out(&bytes).await {
            return exit_after_writing(Err(error));
        }
    }
}

/// Whether an engine followed by `--follow` is connected, from its status:
/// so that a follower can tell a quiet engine from a lost one.
struct Connection {
    lost: bool,
    /// The attempts count of the last synchronized status seen: a new one
    /// means a resync happened, even if the statuses between were missed.
    synced_attempts: u64,
}

impl Connection {
    fn new(status: &SyncStatus) -> Self {
        Connection {
            lost: false,
            synced_attempts: status.attempts,
        }
    }

    /// The lines a new status calls for: `engine-lost` when the engine is
    /// gone, `engine-back` once it is synchronized again.
    fn changes(&mut self, status: &SyncStatus) -> Vec<What<'static>> {
        let mut lines = Vec::new();
        let resynced = status.state == SyncState::Synced && status.attempts != self.synced_attempts;
        if !self.lost && (status.state != SyncState::Synced || resynced) {
            self.lost = true;
            lines.push(What::Connection {
                kind: "engine-lost",
                error: status
                    .last_error
                    .as_ref()
                    .map(|e| whalewatcher::describe(e)),
            });
        }
        if self.lost && status.state == SyncState::Synced {
            self.lost = false;
            self.synced_attempts = status.attempts;
            lines.push(What::Connection {
                kind: "engine-back",
                error: None,
            });
        }
        lines
    }
}
