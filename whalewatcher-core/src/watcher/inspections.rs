//! The inspects of started containers: bounded in number, one per
//! container, each under a deadline, and abortable, so that a container
//! that dies (or a session that ends) frees its slot at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::container::Container;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::event::EngineEvent;

use super::deadline::within;

/// A finished inspect of a started container.
pub(super) struct Inspected {
    pub(super) id: String,
    generation: u64,
    pub(super) result: Result<Container, EngineError>,
}

/// A start being inspected, and the pause changes that arrived meanwhile.
pub(super) struct Tracked {
    generation: u64,
    pub(super) timestamp: Option<SystemTime>,
    pub(super) behind_inspect: Vec<EngineEvent>,
    /// Set once the inspect runs.
    abort: Option<AbortHandle>,
}

/// The inspects of started containers: at most `limit` in flight, at most
/// one per container; later events of a container wait for its inspect.
pub(super) struct Inspections {
    engine: Arc<dyn Engine>,
    limit: usize,
    deadline: Duration,
    tracked: HashMap<String, Tracked>,
    queue: VecDeque<(String, u64)>,
    /// An aborted inspect answers `None`.
    running: FuturesUnordered<BoxFuture<'static, Option<Inspected>>>,
    next_generation: u64,
}

impl Inspections {
    pub(super) fn new(engine: Arc<dyn Engine>, limit: usize, deadline: Duration) -> Self {
        Inspections {
            engine,
            limit,
            deadline,
            tracked: HashMap::new(),
            queue: VecDeque::new(),
            running: FuturesUnordered::new(),
            next_generation: 0,
        }
    }

    pub(super) fn is_tracking(&self, id: &str) -> bool {
        self.tracked.contains_key(id)
    }

    pub(super) fn start(&mut self, id: String, timestamp: Option<SystemTime>) {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.tracked.insert(
            id.clone(),
            Tracked {
                generation,
                timestamp,
                behind_inspect: Vec::new(),
                abort: None,
            },
        );
        self.queue.push_back((id, generation));
        self.fill();
    }

    pub(super) fn hold_back(&mut self, event: EngineEvent) {
        if let Some(tracked) = self.tracked.get_mut(&event.id) {
            tracked.behind_inspect.push(event);
        }
    }

    /// Stops caring about a container's inspect: a running one is aborted
    /// (its slot is free once [`next_done`](Self::next_done) is polled), a
    /// queued one never starts. Returns whether it was tracked.
    pub(super) fn forget(&mut self, id: &str) -> bool {
        let Some(tracked) = self.tracked.remove(id) else {
            return false;
        };
        if let Some(abort) = tracked.abort {
            abort.abort();
        }
        true
    }

    /// Takes the tracking of a finished inspect, unless it was forgotten.
    pub(super) fn finish(&mut self, done: &Inspected) -> Option<Tracked> {
        match self.tracked.get(&done.id) {
            Some(tracked) if tracked.generation == done.generation => self.tracked.remove(&done.id),
            _ => None,
        }
    }

    /// Drops every inspect, running or queued.
    pub(super) fn clear(&mut self) {
        self.tracked.clear();
        self.queue.clear();
        self.running = FuturesUnordered::new();
    }

    fn fill(&mut self) {
        while self.running.len() < self.limit {
            let Some((id, generation)) = self.queue.pop_front() else {
                break;
            };
            let Some(tracked) = self
                .tracked
                .get_mut(&id)
                .filter(|t| t.generation == generation)
            else {
                continue; // forgotten while queued
            };
            let (abort, registration) = AbortHandle::new_pair();
            tracked.abort = Some(abort);
            let (engine, deadline) = (self.engine.clone(), self.deadline);
            let inspect = async move {
                let api = engine.api().to_owned();
                let result = within(deadline, &api, "inspect", engine.inspect(&id)).await;
                Inspected {
                    id,
                    generation,
                    result,
                }
            };
            self.running.push(Box::pin(async move {
                Abortable::new(inspect, registration).await.ok()
            }));
        }
    }

    /// The next finished inspect; `None` at once when none is in flight.
    pub(super) async fn next_done(&mut self) -> Option<Inspected> {
        loop {
            let done = self.running.next().await?;
            self.fill();
            if done.is_some() {
                return done;
            }
        }
    }
}
