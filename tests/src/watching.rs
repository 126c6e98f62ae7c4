//! A running watcher of a real engine, with a subscriber from the start.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use whalewatcher_core::{
    Container, Engine, Event, EventKind, EventStream, RetryPolicy, WatchHandle, Watcher,
};

use crate::{within, TEST_LABEL};

/// A watcher running in a task of its own, and what its subscriber saw.
#[derive(Debug)]
pub struct Watching {
    /// The watcher.
    pub watcher: Watcher,
    /// Every event seen so far by [`events_of`](Self::events_of).
    pub seen: Vec<Event>,
    watching: WatchHandle,
    events: EventStream,
}

impl Watching {
    /// Starts watching `engine` with the default (forever) retry policy.
    pub fn start(engine: impl Engine) -> Self {
        let watcher = Watcher::new(engine, RetryPolicy::default());
        let (_, events) = watcher.subscribe();
        Watching {
            watching: watcher.spawn(),
            watcher,
            seen: Vec::new(),
            events,
        }
    }

    /// Starts watching `engine` and waits for the first sync; fails the
    /// test with the engine's error when it does not sync.
    pub async fn synced(engine: impl Engine) -> Self {
        let watching = Self::start(engine);
        within("the first sync", watching.watcher.ready())
            .await
            .expect("synced");
        watching
    }

    /// The containers in the portfolio with this test label value, by id.
    pub fn mine(&self, label: &str) -> BTreeMap<String, Arc<Container>> {
        self.watcher
            .portfolio()
            .containers()
            .filter(|c| c.label(TEST_LABEL) == Some(label))
            .map(|c| (c.id().to_owned(), c.clone()))
            .collect()
    }

    /// Reads events until `done` holds for the kinds of container `id`'s
    /// events; returns those kinds.
    pub async fn events_of(
        &mut self,
        id: &str,
        what: &str,
        done: impl Fn(&[EventKind]) -> bool,
    ) -> Vec<EventKind> {
        within(what, async {
            loop {
                let kinds: Vec<EventKind> = self
                    .seen
                    .iter()
                    .filter(|e| e.container.id() == id)
                    .map(|e| e.kind)
                    .collect();
                if done(&kinds) {
                    return kinds;
                }
                let event = self
                    .events
                    .next()
                    .await
                    .expect("event stream open")
                    .expect("no lag");
                self.seen.push(event);
            }
        })
        .await
    }

    /// Stops the watch and waits for it to end.
    pub async fn stop(self) {
        within("the watch to stop", self.watching.stop())
            .await
            .expect("watch ended with an error");
    }
}
