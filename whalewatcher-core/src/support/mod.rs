//! What the engine crates share, for engines of this workspace and of
//! your own: the inspect concurrency, unix socket endpoints and what is
//! wrong with one, what this host tells of an engine's processes, and
//! (with the `grpc` feature) a gRPC connection and status as an
//! [`EngineError`](crate::EngineError).

use std::sync::{Mutex, MutexGuard, PoisonError};

mod diagnosis;
mod endpoint;
#[cfg(feature = "grpc")]
mod grpc;
mod host;

pub use diagnosis::{diagnose_unix_socket, Protocol};
pub use endpoint::unix_endpoint;
#[cfg(feature = "grpc")]
pub use grpc::{connect_unix, readable, status_error};
pub use host::{cgroup_of, listener_pid, serves_our_pid_namespace};

/// Inspects in flight at once during a list (and in the watcher):
/// measured against dockerd, 16 gives the full gain over one at a time,
/// more gains nothing.
pub const DEFAULT_MAX_CONCURRENT_INSPECTS: usize = 16;

/// Locks a mutex whose guarded state no panic can leave half-done (every
/// update is one insert, remove or replace), so a poisoned lock is as good
/// as any.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
