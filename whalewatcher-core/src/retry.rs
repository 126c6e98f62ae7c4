//! When to try again after losing the engine.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_retry::strategy::{jitter, ExponentialBackoff};

type DelayFactory = dyn Fn() -> Box<dyn Iterator<Item = Duration> + Send> + Send + Sync;

/// No delay is shorter: a failing engine retried without a pause would
/// make the watcher a busy loop against it.
pub const MIN_RETRY_DELAY: Duration = Duration::from_millis(10);

/// The delays between attempts to (re)synchronize with an engine.
///
/// The default retries forever with an exponential backoff from 100 ms up to
/// a cap of 30 s, jittered so that many watchers do not reconnect in
/// lockstep. Giving up is always an explicit choice:
/// [`none`](Self::none) or [`max_retries`](Self::max_retries).
///
/// Each failure sequence starts afresh once a session has proved itself
/// (see [`WatcherBuilder::stable_after`](crate::WatcherBuilder::stable_after)):
/// only then does the next loss begin again with the shortest delay. A
/// session that syncs and is lost at once counts as one more failure, so
/// a flapping engine backs off and a bounded policy gives up.
///
/// No delay is shorter than [`MIN_RETRY_DELAY`].
#[derive(Clone)]
pub struct RetryPolicy {
    delays: Arc<DelayFactory>,
    description: String,
}

impl RetryPolicy {
    /// Never retry: the first failure ends the watch.
    pub fn none() -> Self {
        RetryPolicy {
            delays: Arc::new(|| Box::new(std::iter::empty())),
            description: "no retries".into(),
        }
    }

    /// Retry forever, the delay doubling from `initial` up to `max`, each
    /// delay jittered into `[d/2, d)`.
    ///
    /// Half the delay is fixed so that a retrying watcher never spins, half
    /// is random so that watchers spread out. A `max` below `initial` is
    /// raised to it.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        let initial_ms = initial.as_millis().clamp(2, u64::MAX as u128) as u64;
        let max = max.max(Duration::from_millis(initial_ms));
        RetryPolicy {
            delays: Arc::new(move || {
                // tokio-retry's delay n is base^(n+1) * factor.
                let backoff = ExponentialBackoff::from_millis(2)
                    .factor(initial_ms / 2)
                    .max_delay(max);
                Box::new(backoff.map(|d| d / 2 + jitter(d / 2)))
            }),
            description: format!("exponential backoff from {initial:?} up to {max:?}, jittered"),
        }
    }

    /// Any sequence of delays: the iterator `delays` makes is used for each
    /// failure sequence; when it ends, the watch gives up. Delays shorter
    /// than [`MIN_RETRY_DELAY`] are raised to it.
    pub fn from_delays<F, I>(delays: F) -> Self
    where
        F: Fn() -> I + Send + Sync + 'static,
        I: IntoIterator<Item = Duration>,
        I::IntoIter: Send + 'static,
    {
        RetryPolicy {
            delays: Arc::new(move || Box::new(delays().into_iter())),
            description: "custom delays".into(),
        }
    }

    /// The same policy, but giving up after `retries` retries in a row.
    pub fn max_retries(self, retries: usize) -> Self {
        let delays = self.delays;
        RetryPolicy {
            delays: Arc::new(move || Box::new(delays().take(retries))),
            description: format!("{}, at most {retries} retries", self.description),
        }
    }

    /// A fresh sequence of delays for one sequence of failures.
    pub(crate) fn delays(&self) -> Box<dyn Iterator<Item = Duration> + Send> {
        Box::new((self.delays)().map(|delay| delay.max(MIN_RETRY_DELAY)))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RetryPolicy")
            .field(&self.description)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retries_forever_jittered_and_capped() {
        let delays: Vec<Duration> = RetryPolicy::default().delays().take(1000).collect();
        assert_eq!(delays.len(), 1000, "the default must never give up");
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] < Duration::from_millis(100));
        assert!(delays[1] >= Duration::from_millis(100) && delays[1] < Duration::from_millis(200));
        assert!(delays.iter().all(|d| *d < Duration::from_secs(30)));
        assert!(
            delays[999] >= Duration::from_secs(15),
            "capped, not shrinking"
        );
        let distinct: std::collections::HashSet<_> = delays[100..].iter().collect();
        assert!(distinct.len() > 1, "jittered");
    }

    #[test]
    fn zero_delays_are_raised_so_retrying_never_spins() {
        let zero_cap = RetryPolicy::exponential(Duration::from_millis(100), Duration::ZERO);
        assert!(zero_cap
            .delays()
            .take(100)
            .all(|d| d >= Duration::from_millis(50)));
        let zeros = RetryPolicy::from_delays(|| std::iter::repeat(Duration::ZERO));
        assert!(zeros.delays().take(100).all(|d| d == MIN_RETRY_DELAY));
        let zero_start = RetryPolicy::exponential(Duration::ZERO, Duration::ZERO);
        assert!(zero_start.delays().take(100).all(|d| d >= MIN_RETRY_DELAY));
    }

    #[test]
    fn none_gives_up_at_once_and_max_retries_bounds() {
        assert_eq!(RetryPolicy::none().delays().count(), 0);
        assert_eq!(RetryPolicy::default().max_retries(3).delays().count(), 3);
        let fixed = RetryPolicy::from_delays(|| [Duration::from_secs(1), Duration::from_secs(2)]);
        assert_eq!(
            fixed.delays().collect::<Vec<_>>(),
            [Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert!(format!("{:?}", RetryPolicy::default().max_retries(3)).contains("at most 3"));
    }
}
