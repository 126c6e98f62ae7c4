//! whalewatcher keeps an always-synchronized, in-memory picture of the
//! *alive* containers of container engines — Docker and podman, plain
//! containerd, CRI runtimes — and a stream of their lifecycle events.
//!
//! This facade re-exports [`whalewatcher_core`] and, behind cargo features,
//! each engine: `moby` (default), `containerd`, `cri`.

pub use whalewatcher_core::*;

/// Docker and podman, through the Docker-compatible API.
#[cfg(feature = "moby")]
pub use whalewatcher_moby as moby;

/// Plain containerd, through its native API.
#[cfg(feature = "containerd")]
pub use whalewatcher_containerd as containerd;

/// CRI runtimes, through the CRI container events API.
#[cfg(feature = "cri")]
pub use whalewatcher_cri as cri;
