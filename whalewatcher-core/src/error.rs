//! Errors of engines and of the watcher.

use std::sync::Arc;

/// The underlying cause of an [`EngineError`], shared so errors can be
/// cloned to every party waiting on them.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong talking to a container engine.
///
/// Typed so the watcher can tell a container that is gone (drop it) from an
/// engine that is gone (resynchronize) from an engine that cannot do what
/// we need (give up, once).
///
/// Each message tells its own layer; the cause is the error's
/// [`source`](std::error::Error::source), as chain reporters (anyhow,
/// eyre) expect. [`describe`] writes the whole chain on one line.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine does not know this container.
    #[error("container {id:?} not found")]
    NotFound {
        /// The id or name asked for.
        id: String,
    },
    /// The container exists but has no initial process (created or exited).
    #[error("container {id:?} has no process (not running)")]
    Processless {
        /// The container's id.
        id: String,
    },
    /// The engine could not be reached, or the connection broke.
    #[error("cannot reach the engine at {endpoint}")]
    Unreachable {
        /// The engine's API endpoint.
        endpoint: String,
        /// What failed.
        #[source]
        cause: Cause,
    },
    /// The engine's event stream ended.
    #[error("the event stream of the engine at {endpoint} ended")]
    StreamEnded {
        /// The engine's API endpoint.
        endpoint: String,
    },
    /// The engine lacks something the watcher needs; retrying will not help.
    #[error("the engine at {endpoint} does not support {what}")]
    Unsupported {
        /// The engine's API endpoint.
        endpoint: String,
        /// What is missing, for example "CRI container events".
        what: String,
    },
    /// The endpoint given (or found in the environment) cannot be used.
    #[error("invalid engine endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine did not answer a call within its deadline (see
    /// [`Deadlines`](crate::Deadlines)): it is wedged or overloaded, and
    /// the watcher treats it as lost.
    #[error("the engine at {endpoint} did not answer {call} within {after:?}")]
    Timeout {
        /// The engine's API endpoint.
        endpoint: String,
        /// The call: `info`, `subscribe`, `list` or `inspect`.
        call: &'static str,
        /// The deadline that passed.
        after: std::time::Duration,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The engine's client panicked inside the watch (a bug): the watch
    /// ended, nothing else did.
    #[error("the watch of the engine at {endpoint} panicked: {message}")]
    Panicked {
        /// The engine's API endpoint.
        endpoint: String,
        /// The panic's message.
        message: String,
    },
    /// The engine answered, but not with what its API promises.
    #[error("the engine at {endpoint} answered unexpectedly: {message}")]
    Protocol {
        /// The engine's API endpoint.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
}

impl EngineError {
    /// An [`Unreachable`](Self::Unreachable) error from any error type.
    pub fn unreachable(
        endpoint: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        EngineError::Unreachable {
            endpoint: endpoint.into(),
            cause: Arc::new(cause),
        }
    }

    /// Whether retrying cannot help: the engine lacks a feature we need,
    /// or the endpoint itself is wrong.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            EngineError::Unsupported { .. } | EngineError::InvalidEndpoint { .. }
        )
    }

    /// The kind of the first I/O error among its causes, if any: a missing
    /// socket ([`NotFound`](std::io::ErrorKind::NotFound)), a refused
    /// permission, a refused connection, ... — to tell the user what to try
    /// without reading the message.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        let EngineError::Unreachable { cause, .. } = self else {
            return None;
        };
        // The cause itself first: as a source, the shared cause is seen
        // through its Arc, which no downcast sees through.
        first_io_kind(Some(&**cause))
    }

    /// Whether the error says only that one container is gone or not alive,
    /// not that anything is wrong with the engine.
    pub fn is_container_gone(&self) -> bool {
        matches!(
            self,
            EngineError::NotFound { .. } | EngineError::Processless { .. }
        )
    }
}

/// An error and the causes in its source chain, joined by `": "`, on one
/// line: for a user-facing message or a log. A cause whose text an earlier
/// message already holds is left out: not every library's errors keep
/// their cause out of their message.
pub fn describe(error: &dyn std::error::Error) -> String {
    with_causes(error.to_string(), error.source()).0
}

/// `head` and the causes in the chain from `source` that it does not
/// already tell, as an I/O error of the kind of the first I/O error in
/// that chain (else `Other`): for wrapping errors whose own text says
/// little or too much (tonic's transport errors and statuses).
pub fn io_error_with_causes(
    head: impl Into<String>,
    source: Option<&(dyn std::error::Error + 'static)>,
) -> std::io::Error {
    let (message, kind) = with_causes(head.into(), source);
    std::io::Error::new(kind.unwrap_or(std::io::ErrorKind::Other), message)
}

/// The kind of the first I/O error in the chain from `source`.
fn first_io_kind(
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> Option<std::io::ErrorKind> {
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = error.source();
    }
    None
}

fn with_causes(
    mut message: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> (String, Option<std::io::ErrorKind>) {
    let kind = first_io_kind(source);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    (message, kind)
}

/// Why [`Watcher::watch`](crate::Watcher::watch) ended other than by
/// cancellation.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The retry policy allowed no further attempt.
    #[error("gave up watching after {attempts} failed attempts")]
    GaveUp {
        /// How many attempts in a row failed.
        attempts: u32,
        /// The error of the last attempt.
        #[source]
        last: EngineError,
    },
    /// The engine cannot be watched at all; retrying would not help.
    #[error("cannot watch this engine")]
    Unsupported(#[source] EngineError),
    /// Another `watch` of the same watcher is running.
    #[error("this watcher is already watching")]
    AlreadyWatching,
    /// The watch panicked (a bug in an engine client, or in the watcher):
    /// it ended, and took nothing else with it.
    #[error("the watch panicked: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
}

/// The message of a caught panic's payload (a `&str` or a `String`, as
/// `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn errors_say_what_failed_and_with_which_input() {
        let err = EngineError::unreachable(
            "unix:///nope.sock",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(
            err.to_string(),
            "cannot reach the engine at unix:///nope.sock"
        );
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("entity not found")
        );
        assert!(!err.is_permanent());
        let err = EngineError::Unsupported {
            endpoint: "unix:///c.sock".into(),
            what: "CRI container events".into(),
        };
        assert!(err.is_permanent());
        assert!(EngineError::NotFound { id: "x".into() }.is_container_gone());
    }

    #[test]
    fn every_layer_is_told_once_in_a_chain() {
        let last = EngineError::unreachable(
            "unix:///c.sock",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        let err = WatchError::GaveUp { attempts: 3, last };
        let mut chain = vec![err.to_string()];
        let mut source = err.source();
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        assert_eq!(
            chain,
            [
                "gave up watching after 3 failed attempts",
                "cannot reach the engine at unix:///c.sock",
                "entity not found"
            ]
        );
        assert_eq!(describe(&err), chain.join(": "));
        let err = WatchError::Unsupported(EngineError::Unsupported {
            endpoint: "unix:///c.sock".into(),
            what: "CRI container events".into(),
        });
        assert_eq!(
            describe(&err),
            "cannot watch this engine: the engine at unix:///c.sock does not support CRI container events"
        );
    }

    #[test]
    fn the_io_kind_is_found_below_any_wrapper() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Connect(#[source] std::io::Error);
        let err = EngineError::unreachable(
            "unix:///d.sock",
            Connect(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        );
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::PermissionDenied));
        let err = EngineError::unreachable(
            "unix:///d.sock",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert_eq!(EngineError::NotFound { id: "x".into() }.io_kind(), None);
    }

    #[test]
    fn describe_adds_the_causes_not_yet_told() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = EngineError::unreachable("unix:///c.sock", io);
        assert_eq!(
            describe(&err),
            "cannot reach the engine at unix:///c.sock: permission denied"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Connect(#[source] std::io::Error);
        let err = EngineError::unreachable(
            "unix:///d.sock",
            Connect(std::io::Error::from(std::io::ErrorKind::NotFound)),
        );
        assert_eq!(
            describe(&err),
            "cannot reach the engine at unix:///d.sock: client error (Connect): entity not found"
        );
        let cause = Connect(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let wrapped = io_error_with_causes("transport error", Some(&cause));
        assert_eq!(wrapped.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            wrapped.to_string(),
            "transport error: client error (Connect): permission denied"
        );
    }
}
