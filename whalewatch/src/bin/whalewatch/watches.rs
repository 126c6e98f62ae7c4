//! The watches of the engines the options name, each run by its own
//! handle ([`Watcher::spawn`](whalewatcher::Watcher::spawn)): whichever
//! ends first by itself says which engine and why. Dropping them stops
//! them; [`Watcher::close`](whalewatcher::Watcher::close) then waits for
//! each to end.

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use whalewatcher::WatchError;

use crate::Watched;

/// How a watch ended: the option that named its engine, and why.
pub(crate) type Ended = (&'static str, Result<(), WatchError>);

/// The running watches of the named engines.
pub(crate) struct Watches(FuturesUnordered<BoxFuture<'static, Ended>>);

impl Watches {
    /// Starts a watch of each engine.
    pub(crate) fn spawn(engines: &[Watched]) -> Self {
        Watches(
            engines
                .iter()
                .map(|engine| {
                    let (handle, option) = (engine.watcher.spawn(), engine.option);
                    async move { (option, handle.ended().await) }.boxed()
                })
                .collect(),
        )
    }

    /// The next watch that ends by itself (its engine cannot be watched,
    /// its retries gave up); pending while none does, and forever when no
    /// engine is named.
    pub(crate) async fn ended(&mut self) -> Ended {
        match self.0.next().await {
            Some(ended) => ended,
            None => std::future::pending().await,
        }
    }
}
