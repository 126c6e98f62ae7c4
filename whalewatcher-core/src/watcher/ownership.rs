//! Who runs a watcher's watch: one at a time, handed out as a
//! [`WatchHandle`], and who waits for which.

use super::*;

/// A watch running in a task of its own, from [`Watcher::spawn`]. Dropping
/// it stops the watch (without waiting for it to end).
#[derive(Debug)]
pub struct WatchHandle {
    pub(super) task: StopOnDrop<Result<(), WatchError>>,
}

impl WatchHandle {
    /// Stops the watch and waits until it has ended: `Ok(())`, or the error
    /// it ended with before it was stopped.
    pub async fn stop(mut self) -> Result<(), WatchError> {
        self.task.stop_soon();
        self.join().await
    }

    /// Waits until the watch ends by itself: its retry policy gave up, the
    /// engine cannot be watched, or [`Watcher::close`] was called.
    pub async fn ended(mut self) -> Result<(), WatchError> {
        self.join().await
    }

    /// Whether the watch has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the watch ends, keeping the handle: cancel-safe, for a
    /// `select!` that may stop the watch instead. Pending forever once it
    /// has reported its end.
    pub(crate) async fn finished(&mut self) -> Result<(), WatchError> {
        if self.task.reported() {
            return std::future::pending().await;
        }
        self.join().await
    }

    /// Waits for the task in place, so that dropping this future midway
    /// keeps the handle whole.
    async fn join(&mut self) -> Result<(), WatchError> {
        match self.task.join().await {
            None => Ok(()),
            Some(Ok(ended)) => ended,
            // The watch catches its own panics; this is one outside it.
            Some(Err(error)) if error.is_panic() => Err(WatchError::Panicked {
                message: panic_message(&*error.into_panic()),
            }),
            // Its runtime shut down.
            Some(Err(_)) => Ok(()),
        }
    }
}

/// Who runs a watcher's watch: one at a time, and who waits for which.
#[derive(Debug, Default)]
pub(super) struct WatchSlot {
    /// Watches asked for so far ([`Watcher::watch`] calls, spawns).
    pub(super) asked: u64,
    /// Of those, how many have begun or been refused: [`Watcher::ready`]
    /// answers once every watch asked for before it has.
    pub(super) settled: u64,
    /// Watches begun so far; the running one is the last.
    pub(super) begun: u64,
    /// The stop token of the running watch: a watch asked for while it is
    /// cancelled waits for it to end instead of being refused.
    pub(super) running: Option<CancellationToken>,
    /// How the last watch that ended ended, and which one it was.
    pub(super) last_end: Option<(u64, Result<(), WatchError>)>,
}

impl WatchSlot {
    /// Begins a watch if none runs: `None` when one does.
    fn try_begin(&mut self, shared: &Arc<Shared>, cancel: &CancellationToken) -> Option<Running> {
        if self.running.is_some() {
            return None;
        }
        self.running = Some(cancel.clone());
        self.begun += 1;
        // Reported before the watch counts as settled: `ready` must not
        // see the last watch's status after it.
        shared.report(Transition::Began);
        self.settled += 1;
        Some(Running {
            shared: shared.clone(),
            watch: self.begun,
            ended: None,
            error: None,
        })
    }

    /// Whether the running watch is being stopped.
    fn running_stops(&self, closing: &CancellationToken) -> bool {
        closing.is_cancelled()
            || self
                .running
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
    }
}

/// A watch asked for, from the call until it has begun or been refused.
pub(super) enum Claim {
    /// It runs.
    Begun(Running),
    /// It waits for the running watch, which is being stopped, to end.
    Waiting(Waiting),
    /// Another watch runs on.
    Refused,
}

/// A watch waiting for its turn; counted as settled when it is dropped
/// before it got one, so nobody's `ready` waits for it.
pub(super) struct Waiting {
    shared: Arc<Shared>,
    settled: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.watching.send_modify(|slot| slot.settled += 1);
        }
    }
}

impl Claim {
    /// Asks for a watch, now: it begins, waits, or is refused.
    pub(super) fn ask(shared: Arc<Shared>, cancel: &CancellationToken) -> Claim {
        let mut claim = Claim::Refused;
        shared.watching.send_modify(|slot| {
            slot.asked += 1;
            claim = match slot.try_begin(&shared, cancel) {
                Some(running) => Claim::Begun(running),
                None if slot.running_stops(&shared.closing) => Claim::Waiting(Waiting {
                    shared: shared.clone(),
                    settled: false,
                }),
                None => {
                    slot.settled += 1;
                    Claim::Refused
                }
            };
        });
        claim
    }

    /// The watch, once it has begun; `None` when stopped while it waited.
    pub(super) async fn begin(
        self,
        cancel: &CancellationToken,
    ) -> Result<Option<Running>, WatchError> {
        let mut waiting = match self {
            Claim::Begun(running) => return Ok(Some(running)),
            Claim::Refused => return Err(WatchError::AlreadyWatching),
            Claim::Waiting(waiting) => waiting,
        };
        let shared = waiting.shared.clone();
        let mut slot = shared.watching.subscribe();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = slot.wait_for(|slot| slot.running.is_none()) => {}
            }
            let mut turn = None;
            shared.watching.send_modify(|slot| {
                turn = match slot.try_begin(&shared, cancel) {
                    Some(running) => Some(Ok(running)),
                    None if slot.running_stops(&shared.closing) => None,
                    None => {
                        slot.settled += 1;
                        Some(Err(WatchError::AlreadyWatching))
                    }
                };
            });
            if let Some(turn) = turn {
                waiting.settled = true;
                return turn.map(Some);
            }
        }
    }
}

/// A running watch loop, one at a time per watcher; when it ends — also
/// by being dropped — the status says so and the next watch may begin.
pub(super) struct Running {
    pub(super) shared: Arc<Shared>,
    /// Which watch of the watcher this is.
    pub(super) watch: u64,
    /// How it ended, once it has.
    pub(super) ended: Option<Result<(), WatchError>>,
    /// The status's error for an end the engine did not cause (a panic).
    pub(super) error: Option<EngineError>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let ended = self.ended.take().unwrap_or(Ok(()));
        let error = match (&self.error, &ended) {
            (Some(error), _) => Some(error.clone()),
            // Given up: the last error stays.
            (None, Err(_)) => None,
            (None, Ok(())) => Some(EngineError::Cancelled),
        };
        self.shared.report(Transition::Ended { error });
        if self.shared.closing.is_cancelled() {
            // Nothing will be published any more.
            self.shared.closed.cancel();
        }
        self.shared.watching.send_modify(|slot| {
            slot.running = None;
            slot.last_end = Some((self.watch, ended));
        });
    }
}

impl Watcher {
    /// The running watch (which one of the watcher's watches it is), if
    /// one runs and is not being stopped: a fleet member follows it.
    pub(crate) fn running_watch(&self) -> Option<u64> {
        let slot = self.shared.watching.borrow();
        match slot.running_stops(&self.shared.closing) {
            true => None,
            false => slot.running.as_ref().map(|_| slot.begun),
        }
    }

    /// Waits until watch number `watch` has ended (at once if it has),
    /// and tells how, where still known.
    pub(crate) async fn watch_ended(&self, watch: u64) -> Result<(), WatchError> {
        let mut slot = self.shared.watching.subscribe();
        let ended = slot
            .wait_for(|slot| slot.begun != watch || slot.running.is_none())
            .await;
        match ended.as_deref().map(|slot| &slot.last_end) {
            Ok(Some((last, ended))) if *last == watch => ended.clone(),
            _ => Ok(()),
        }
    }
}
