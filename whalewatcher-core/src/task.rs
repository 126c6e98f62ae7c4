//! A task that runs until it is stopped, and that its handle stops when
//! dropped: the one shape of a watch's handle and a discovery's.

use std::future::Future;

use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

/// A spawned task with its cancellation token: [`stop_soon`](Self::stop_soon)
/// or dropping the handle cancels the token, which the task watches; the
/// handle waits for the task's end in place.
#[derive(Debug)]
pub struct StopOnDrop<T> {
    cancel: CancellationToken,
    /// `None` once its end was reported.
    task: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> StopOnDrop<T> {
    /// Spawns the future `run` makes of the token that stops it. Panics
    /// outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn<F>(run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(cancel.clone()));
        StopOnDrop {
            cancel,
            task: Some(task),
        }
    }

    /// Handles `task`, which watches `cancel`.
    pub fn of(task: JoinHandle<T>, cancel: CancellationToken) -> Self {
        StopOnDrop {
            cancel,
            task: Some(task),
        }
    }
}

impl<T> StopOnDrop<T> {
    /// Cancels the task's token; its end is still to be waited for.
    pub fn stop_soon(&self) {
        self.cancel.cancel();
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|task| task.is_finished())
    }

    /// Whether the task's end was reported by [`join`](Self::join).
    pub fn reported(&self) -> bool {
        self.task.is_none()
    }

    /// Waits until the task ends, keeping the handle (cancel-safe): its
    /// result, or `None` once that was reported.
    pub async fn join(&mut self) -> Option<Result<T, JoinError>> {
        let task = self.task.as_mut()?;
        let joined = task.await;
        self.task = None;
        Some(joined)
    }
}

impl<T> Drop for StopOnDrop<T> {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_handle_stops_the_task_and_an_end_is_reported_once() {
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let handle = StopOnDrop::spawn(|cancel| async move {
            cancel.cancelled().await;
            let _ = ended_tx.send(());
        });
        drop(handle);
        ended.await.expect("the task saw its token cancelled");

        let mut handle = StopOnDrop::spawn(|cancel| async move {
            cancel.cancelled().await;
            7
        });
        assert!(!handle.reported());
        handle.stop_soon();
        assert_eq!(handle.join().await.map(Result::unwrap), Some(7));
        assert!(handle.reported() && handle.is_finished());
        assert!(handle.join().await.is_none(), "reported once");
    }
}
