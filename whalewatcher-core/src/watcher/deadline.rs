//! Every engine call of the watcher runs under its deadline.

use std::future::Future;
use std::time::Duration;

use crate::error::EngineError;

/// An engine call under its deadline.
pub(super) async fn within<T>(
    deadline: Duration,
    api: &str,
    call: &'static str,
    work: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| {
            Err(EngineError::Timeout {
                endpoint: api.to_owned(),
                call,
                after: deadline,
            })
        })
}
