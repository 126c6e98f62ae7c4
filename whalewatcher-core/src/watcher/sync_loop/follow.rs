//! The follow phase: the event stream, the inspects of started
//! containers, safety relists and the liveness probe, until the session
//! ends.

use super::*;

/// The liveness probe of the follow phase: once the event stream has been
/// quiet for the probe period, a ping within its deadline; an answer
/// starts the next quiet period, anything the stream says starts it too
/// (and drops a ping under way).
struct Liveness {
    engine: Arc<dyn crate::Engine>,
    /// The quiet period; `None`: no probe.
    period: Option<Duration>,
    deadline: Duration,
    quiet_until: tokio::time::Instant,
    ping: Option<BoxFuture<'static, Result<(), EngineError>>>,
}

impl Liveness {
    fn new(shared: &Shared) -> Self {
        let period = shared.probe_when_quiet;
        Liveness {
            engine: shared.engine.clone(),
            deadline: shared.deadlines.ping,
            quiet_until: tokio::time::Instant::now() + period.unwrap_or_default(),
            period,
            ping: None,
        }
    }

    /// The stream said something.
    fn heard(&mut self) {
        if let Some(period) = self.period {
            self.quiet_until = tokio::time::Instant::now() + period;
            self.ping = None;
        }
    }

    /// Pings once the stream has been quiet for the period; resolves with
    /// the answer. Pending forever without a probe.
    async fn probe(&mut self) -> Result<(), EngineError> {
        let Some(period) = self.period else {
            return std::future::pending().await;
        };
        let ping = match &mut self.ping {
            Some(ping) => ping,
            None => {
                tokio::time::sleep_until(self.quiet_until).await;
                let engine = self.engine.clone();
                let deadline = self.deadline;
                self.ping.insert(
                    async move { within(deadline, engine.api(), "ping", engine.ping()).await }
                        .boxed(),
                )
            }
        };
        let answered = ping.await;
        self.ping = None;
        self.quiet_until = tokio::time::Instant::now() + period;
        answered
    }
}

/// What a batch of events and inspects, applied together, ended with.
#[derive(Default)]
struct Batch {
    /// How many of the engine's events were news: they changed the
    /// portfolio or began an inspect. A replayed or duplicate event is none.
    news: usize,
    /// The stream failed or ended after them.
    ended: Option<Interrupt>,
}

impl SyncLoop {
    /// The follow phase: events, the inspects of started containers, and
    /// safety relists, until the session ends. Returns why, and whether the
    /// engine proved to work (an event came, or the session stayed up for
    /// the stable period).
    pub(super) async fn follow(
        &mut self,
        mut events: EngineEvents,
        stop: &Stop,
    ) -> (Interrupt, bool) {
        let mut proven = false;
        let mut safety_relist = self.shared.safety_relist.map(|period| {
            let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer
        });
        let proving = tokio::time::sleep(self.shared.stable_after);
        tokio::pin!(proving);
        let mut liveness = Liveness::new(&self.shared);
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.stopped() => return (Interrupt::Stopped, proven),
                item = events.next() => Ready::Event(item),
                Some(done) = self.inspections.next_done() => Ready::Inspected(done),
                _ = tick(&mut safety_relist) => {
                    if let Err(interrupt) = self.relist(&mut events, stop).await {
                        return (interrupt, proven);
                    }
                    continue;
                }
                () = &mut proving, if !proven => {
                    proven = true;
                    continue;
                }
                answered = liveness.probe() => match answered {
                    Ok(()) => continue,
                    Err(error) => return (Interrupt::Lost(error, Call::Ping), proven),
                },
            };
            if matches!(first, Ready::Event(_)) {
                // The stream spoke: the engine lives.
                liveness.heard();
            }
            let batch = self.apply_ready(first, &mut events);
            proven |= batch.news > 0;
            if let Some(interrupt) = batch.ended {
                return (interrupt, proven);
            }
        }
    }

    /// Applies `first` and whatever is ready right after it — engine
    /// events and finished inspects, taking turns, up to [`MAX_BATCH`] —
    /// and publishes their changes as one revision: a burst costs one
    /// publication per batch rather than one per change, and a lone event
    /// is still published at once. The changes are those of applying each
    /// in turn, so the batch is what the follow loop would have published
    /// one by one, in fewer revisions.
    fn apply_ready(&mut self, first: Ready, events: &mut EngineEvents) -> Batch {
        let shared = self.shared.clone();
        let mut current = lock(&shared.current);
        let mut changes = Vec::new();
        let batch = self.apply_batch(&mut current, &mut changes, first, events);
        self.publish(&mut current, changes);
        batch
    }

    /// The body of [`apply_ready`](Self::apply_ready): applies to
    /// `working`, collecting the changes.
    fn apply_batch(
        &mut self,
        working: &mut Portfolio,
        changes: &mut Vec<Event>,
        first: Ready,
        events: &mut EngineEvents,
    ) -> Batch {
        let mut batch = Batch::default();
        let mut next = Some(first);
        let mut applied = 0;
        while let Some(ready) = next.take() {
            let event_first = match ready {
                Ready::Event(Some(Ok(event))) => {
                    let applied = self.apply_event(working, event);
                    batch.news += usize::from(applied.news);
                    changes.extend(applied.changes);
                    false
                }
                Ready::Event(Some(Err(error))) => {
                    batch.ended = Some(Interrupt::Lost(error, Call::Events));
                    return batch;
                }
                Ready::Event(None) => {
                    batch.ended = Some(Interrupt::Lost(self.stream_ended(), Call::Events));
                    return batch;
                }
                Ready::Inspected(done) => match self.apply_inspection(working, done) {
                    Ok(found) => {
                        changes.extend(found);
                        true
                    }
                    Err(interrupt) => {
                        batch.ended = Some(interrupt);
                        return batch;
                    }
                },
            };
            applied += 1;
            if applied == MAX_BATCH {
                break;
            }
            // Polled without this task's waker: when nothing is ready, the
            // follow loop polls both again before it waits.
            let event = |events: &mut EngineEvents| events.next().now_or_never().map(Ready::Event);
            let inspected = |inspections: &mut Inspections| {
                inspections
                    .next_done()
                    .now_or_never()
                    .flatten()
                    .map(Ready::Inspected)
            };
            next = if event_first {
                event(events).or_else(|| inspected(&mut self.inspections))
            } else {
                inspected(&mut self.inspections).or_else(|| event(events))
            };
        }
        batch
    }
}
