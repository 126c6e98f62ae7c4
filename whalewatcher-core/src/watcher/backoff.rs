//! What the watch does after a session was lost: wait this long and
//! synchronize again, or give up — decided from the error, where it came
//! from, what the session achieved and the retry policy, without an
//! engine (so it is tested as a value).

use std::time::Duration;

use crate::error::EngineError;
use crate::retry::RetryPolicy;

/// Where in a session an engine failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    Subscribe,
    Events,
    List,
    Inspect,
    Ping,
}

impl Call {
    /// Whether a permanent error from here says that the engine cannot be
    /// watched at all. Before the first sync, any call may tell. After it,
    /// only the engine's answer to a fresh subscribe: the subscribe
    /// itself, or its stream when the stream before it said the same
    /// (`doubted`). A stream that says so once after a sync — the CRI
    /// engine calls a stream that ends before its first event unsupported,
    /// and an idle engine that goes away may do just that — is one stream
    /// failing; the next session subscribes afresh and asks again. A list
    /// or an inspect is one call failing, not the engine.
    fn decides_the_engine(self, ever_synced: bool, doubted: bool) -> bool {
        !ever_synced || self == Call::Subscribe || (self == Call::Events && doubted)
    }
}

/// What a session achieved before it ended.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Outcome {
    /// Its list was published.
    pub(super) synced: bool,
    /// It stayed up long enough, or delivered news: the engine works.
    pub(super) proven: bool,
}

/// What to do after a lost session.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Synchronize again after this delay.
    Retry(Duration),
    /// The engine cannot be watched: give up, once.
    Unsupported,
    /// The retry policy ran out after this many failures in a row.
    GaveUp { attempts: u32 },
}

/// The retry state of one watch: its failure sequence and what it knows
/// of the engine.
pub(super) struct Backoff {
    policy: RetryPolicy,
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    failures: u32,
    ever_synced: bool,
    /// The last stream said "unsupported" after a sync: this session's
    /// stream is asked again.
    doubted: bool,
}

impl Backoff {
    pub(super) fn new(policy: RetryPolicy) -> Self {
        Backoff {
            delays: policy.delays(),
            policy,
            failures: 0,
            ever_synced: false,
            doubted: false,
        }
    }

    /// Whether a session ever synchronized.
    pub(super) fn ever_synced(&self) -> bool {
        self.ever_synced
    }

    /// The failures in a row so far.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// Takes in a session that ended with `error` at `call`: a session
    /// that proved the engine works starts a new failure sequence.
    pub(super) fn after(&mut self, error: &EngineError, call: Call, outcome: Outcome) -> Next {
        self.ever_synced |= outcome.synced;
        if outcome.proven {
            self.delays = self.policy.delays();
            self.failures = 0;
            self.doubted = false;
        }
        self.failures += 1;
        if error.is_permanent() && call.decides_the_engine(self.ever_synced, self.doubted) {
            return Next::Unsupported;
        }
        self.doubted = error.is_permanent() && call == Call::Events;
        match self.delays.next() {
            Some(delay) => Next::Retry(delay),
            None => Next::GaveUp {
                attempts: self.failures,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsupported() -> EngineError {
        EngineError::Unsupported {
            endpoint: "e".into(),
            what: "events".into(),
        }
    }

    fn lost() -> EngineError {
        EngineError::StreamEnded {
            endpoint: "e".into(),
        }
    }

    const SYNCED: Outcome = Outcome {
        synced: true,
        proven: true,
    };
    const NOTHING: Outcome = Outcome {
        synced: false,
        proven: false,
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_policy_counts_failures_in_a_row_and_a_proven_session_starts_it_again() {
        let policy = RetryPolicy::from_delays(|| [secs(1), secs(2)].into_iter());
        let mut backoff = Backoff::new(policy);
        assert_eq!(
            backoff.after(&lost(), Call::List, NOTHING),
            Next::Retry(secs(1))
        );
        assert_eq!(
            backoff.after(&lost(), Call::List, NOTHING),
            Next::Retry(secs(2))
        );
        assert_eq!(
            backoff.after(&lost(), Call::List, NOTHING),
            Next::GaveUp { attempts: 3 }
        );
        let mut backoff = Backoff::new(RetryPolicy::from_delays(|| [secs(1), secs(2)].into_iter()));
        backoff.after(&lost(), Call::List, NOTHING);
        // The engine worked between: the sequence starts again.
        assert_eq!(
            backoff.after(&lost(), Call::Events, SYNCED),
            Next::Retry(secs(1))
        );
        assert_eq!(backoff.failures(), 1);
        assert!(backoff.ever_synced());
    }

    #[test]
    fn unsupported_decides_before_the_first_sync_and_after_it_only_twice_from_the_stream() {
        let forever = || RetryPolicy::from_delays(|| std::iter::repeat(secs(1)));
        assert_eq!(
            Backoff::new(forever()).after(&unsupported(), Call::List, NOTHING),
            Next::Unsupported
        );
        let mut backoff = Backoff::new(forever());
        // After a sync, a list or an inspect is one call failing.
        assert_eq!(
            backoff.after(&unsupported(), Call::List, SYNCED),
            Next::Retry(secs(1))
        );
        assert_eq!(
            backoff.after(&unsupported(), Call::Inspect, NOTHING),
            Next::Retry(secs(1))
        );
        // The stream once: asked again; twice in a row: the engine.
        assert_eq!(
            backoff.after(&unsupported(), Call::Events, NOTHING),
            Next::Retry(secs(1))
        );
        assert_eq!(
            backoff.after(&unsupported(), Call::Events, NOTHING),
            Next::Unsupported
        );
        // The subscribe itself decides.
        let mut backoff = Backoff::new(forever());
        backoff.after(&lost(), Call::Events, SYNCED);
        assert_eq!(
            backoff.after(&unsupported(), Call::Subscribe, NOTHING),
            Next::Unsupported
        );
    }
}
