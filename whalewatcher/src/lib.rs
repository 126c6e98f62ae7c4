//! whalewatcher keeps an always-synchronized, in-memory picture of the
//! *alive* containers of container engines — Docker and podman, plain
//! containerd, CRI runtimes — and a stream of their lifecycle events.
//!
//! This facade re-exports [`whalewatcher_core`] and, behind cargo features,
//! each engine: `moby` (default; `tls` adds TLS to `tcp://` Docker
//! endpoints), `containerd`, `cri`; and `discovery` (Linux): every engine
//! of the host found by process, engines in containers too, in one
//! [`Fleet`] with PIDs in the reader's PID namespace. With the default
//! features nothing of gRPC is compiled, so a Docker-only user needs no
//! `protoc`.
//!
//! One line per engine makes a watcher; [`Watcher::watch`] then keeps it
//! synchronized:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use whalewatcher::RetryPolicy;
//!
//! let watcher = whalewatcher::docker_watcher(None, RetryPolicy::default())?;
//! // The watch in a task of its own; dropping the handle stops it too.
//! let watching = watcher.spawn();
//! watcher.ready().await?;
//! for container in watcher.portfolio().containers() {
//!     println!("{} {}", container.name(), container.pid());
//! }
//! watching.stop().await?;
//! # Ok(())
//! # }
//! ```

// docs.rs marks each item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

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

/// Every engine of the host, found by process (engines in containers too),
/// in one [`Fleet`], with PIDs in the reader's PID namespace (Linux).
#[cfg(feature = "discovery")]
pub use whalewatcher_discovery as discovery;

/// A watcher of the Docker engine at `endpoint`: the docker CLI's rules
/// apply when it is `None` (`DOCKER_HOST` and its TLS variables, else the
/// current docker context, else `unix:///var/run/docker.sock`; see
/// [`moby::MobyEngineBuilder::endpoint`]). Does no I/O; an endpoint that
/// cannot be used is an [`EngineError::InvalidEndpoint`].
#[cfg(feature = "moby")]
pub fn docker_watcher(endpoint: Option<&str>, retry: RetryPolicy) -> Result<Watcher, EngineError> {
    let builder = moby::MobyEngine::builder();
    let engine = match endpoint {
        Some(endpoint) => builder.endpoint(endpoint),
        None => builder,
    }
    .build()?;
    Ok(Watcher::new(engine, retry))
}

/// A watcher of podman, through its Docker-compatible API at `endpoint`;
/// when `None`, podman's own rule: `CONTAINER_HOST` when set, else
/// [`moby::podman_socket`]. Its engine type is `podman.io` from the start.
/// Does no I/O.
#[cfg(feature = "moby")]
pub fn podman_watcher(endpoint: Option<&str>, retry: RetryPolicy) -> Result<Watcher, EngineError> {
    let builder = moby::MobyEngine::builder().engine_type(moby::PODMAN_TYPE);
    let engine = match endpoint {
        Some(endpoint) => builder.endpoint(endpoint),
        None => builder,
    }
    .build()?;
    Ok(Watcher::new(engine, retry))
}

/// A watcher of plain containerd at the unix socket `socket` (a path or a
/// `unix://` URL); when `None`, at [`containerd::DEFAULT_SOCKET`]
/// (`/run/containerd/containerd.sock`). Does no I/O; an endpoint that is
/// no unix socket path is an [`EngineError::InvalidEndpoint`].
#[cfg(feature = "containerd")]
pub fn containerd_watcher(
    socket: Option<&std::path::Path>,
    retry: RetryPolicy,
) -> Result<Watcher, EngineError> {
    let builder = containerd::ContainerdEngine::builder();
    let engine = match socket {
        Some(socket) => builder.endpoint(socket),
        None => builder,
    }
    .build()?;
    Ok(Watcher::new(engine, retry))
}

/// A watcher of a CRI runtime at the unix socket `socket`, a path or a
/// `unix://` URL (containerd: `/run/containerd/containerd.sock`; cri-o:
/// `/run/crio/crio.sock`); when `None`, crictl's rule:
/// `CONTAINER_RUNTIME_ENDPOINT`, else containerd's socket
/// ([`cri::default_socket`]). Does no I/O; an endpoint that is no unix
/// socket path is an [`EngineError::InvalidEndpoint`].
#[cfg(feature = "cri")]
pub fn cri_watcher(
    socket: Option<&std::path::Path>,
    retry: RetryPolicy,
) -> Result<Watcher, EngineError> {
    let builder = cri::CriEngine::builder();
    let engine = match socket {
        Some(socket) => builder.endpoint(socket),
        None => builder,
    }
    .build()?;
    Ok(Watcher::new(engine, retry))
}
