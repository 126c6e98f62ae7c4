//! One HTTP transport for every endpoint kind: a pooled hyper client over a
//! unix socket, plain tcp or TLS. Every request of the engine goes through
//! it: the GETs the engine parses itself, and bollard's (the event stream,
//! and the application's own calls on [`MobyEngine::docker`]).
//!
//! [`MobyEngine::docker`]: crate::MobyEngine::docker

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use whalewatcher_core::EngineError;

use crate::endpoint::Endpoint;

/// Seconds bollard waits for a response (not for the event stream's body).
const REQUEST_TIMEOUT: u64 = 120;

/// How long an idle pooled connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request over the pooled client; an error is an I/O error of
/// the kind of the one that caused it, its text the whole chain.
type Send = Arc<
    dyn Fn(BollardRequest) -> BoxFuture<'static, Result<hyper::Response<Incoming>, std::io::Error>>
        + std::marker::Send
        + Sync,
>;

/// Where a request's URI points.
#[derive(Clone, Debug)]
enum Target {
    /// A path on a unix socket.
    Unix(PathBuf),
    /// `scheme://authority`.
    Url(String),
}

/// The engine's transport: cheap to clone, sharing one connection pool.
#[derive(Clone)]
pub(crate) struct Transport {
    send: Send,
    target: Target,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// What a GET answers.
pub(crate) struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
    /// The response headers.
    pub headers: hyper::HeaderMap,
}

impl Transport {
    /// The transport for `endpoint` (`api` names it in errors). Reads the
    /// TLS certificates, does no other I/O. Without `reuse`, every request
    /// opens a connection of its own, as bollard's own unix transport does.
    pub(crate) fn new(api: &str, endpoint: &Endpoint, reuse: bool) -> Result<Self, EngineError> {
        match endpoint {
            Endpoint::Unix(socket) => Ok(Transport {
                send: pooled(hyperlocal::UnixConnector, reuse, None),
                target: Target::Unix(socket.clone()),
            }),
            Endpoint::Tcp { address, tls: None } => Ok(Transport {
                send: pooled(HttpConnector::new(), reuse, None),
                target: Target::Url(format!("http://{address}")),
            }),
            Endpoint::Tcp {
                address,
                tls: Some(certs),
            } => Ok(Transport {
                send: tls_connector(api, certs, reuse)?,
                target: Target::Url(format!("https://{address}")),
            }),
        }
    }

    /// The unix socket, for an endpoint that is one.
    pub(crate) fn unix_socket(&self) -> Option<&Path> {
        match &self.target {
            Target::Unix(socket) => Some(socket),
            Target::Url(_) => None,
        }
    }

    /// The URI of `path_and_query` on the engine; one that is no valid
    /// URI path is an `InvalidInput` error (hyperlocal would panic on it).
    fn uri(&self, path_and_query: &str) -> Result<hyper::Uri, std::io::Error> {
        let invalid = |e: &dyn std::fmt::Display| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{path_and_query:?} is no URI path: {e}"),
            )
        };
        path_and_query
            .parse::<hyper::http::uri::PathAndQuery>()
            .map_err(|e| invalid(&e))?;
        match &self.target {
            Target::Unix(socket) => Ok(hyperlocal::Uri::new(socket, path_and_query).into()),
            Target::Url(base) => format!("{base}{path_and_query}")
                .parse()
                .map_err(|e| invalid(&e)),
        }
    }

    /// GETs `path_and_query` (unversioned: the engine's own API version) and
    /// reads the whole answer.
    pub(crate) async fn get(&self, path_and_query: &str) -> Result<Answer, std::io::Error> {
        let request = hyper::Request::get(self.uri(path_and_query)?)
            .body(bollard::body_full(Bytes::new()))
            .map_err(|e| io_error(&e))?;
        let response = (self.send)(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| io_error(&e))?;
        Ok(Answer {
            status,
            body: body.to_bytes(),
            headers,
        })
    }

    /// A bollard client whose requests go through this transport.
    pub(crate) fn bollard(&self, api: &str) -> Result<Docker, EngineError> {
        let transport = self.clone();
        Docker::connect_with_custom_transport(
            move |request: BollardRequest| {
                let transport = transport.clone();
                async move {
                    let (mut parts, body) = request.into_parts();
                    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                    parts.uri = transport
                        .uri(path)
                        .map_err(|err| bollard::errors::Error::IOError { err })?;
                    (transport.send)(hyper::Request::from_parts(parts, body))
                        .await
                        .map_err(|err| bollard::errors::Error::IOError { err })
                }
            },
            // bollard builds its URIs on this; the transport re-targets them.
            Some("http://docker"),
            REQUEST_TIMEOUT,
            API_DEFAULT_VERSION,
        )
        .map_err(|e| EngineError::InvalidEndpoint {
            endpoint: api.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// A pooled HTTP/1 client over `connector`; idle connections close after
/// [`IDLE_TIMEOUT`], none are kept without `reuse`. `explain` may turn a
/// failed request's error into a clearer one (TLS).
fn pooled<C>(connector: C, reuse: bool, explain: Option<Explain>) -> Send
where
    C: Connect + Clone + std::marker::Send + Sync + 'static,
{
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(IDLE_TIMEOUT);
    if !reuse {
        builder.pool_max_idle_per_host(0);
    }
    let client = builder.build(connector);
    Arc::new(move |request: BollardRequest| {
        let (client, explain) = (client.clone(), explain.clone());
        Box::pin(async move {
            client.request(request).await.map_err(|error| {
                explain
                    .and_then(|explain| explain(&error))
                    .unwrap_or_else(|| io_error(&error))
            })
        })
    })
}

/// Turns a request's error into a clearer I/O error, when it knows one.
type Explain = Arc<
    dyn Fn(&(dyn std::error::Error + 'static)) -> Option<std::io::Error> + Sync + std::marker::Send,
>;

/// An error of the transport as an I/O error of the kind of the I/O error
/// that caused it (a missing socket, a refused permission), so a caller can
/// tell them apart; its text tells the whole chain.
fn io_error(error: &(dyn std::error::Error + 'static)) -> std::io::Error {
    whalewatcher_core::io_error_with_causes(error.to_string(), error.source())
}

#[cfg(feature = "tls")]
fn tls_connector(api: &str, certs: &Path, reuse: bool) -> Result<Send, EngineError> {
    let config =
        crate::tls::client_config(certs).map_err(|reason| EngineError::InvalidEndpoint {
            endpoint: api.to_owned(),
            reason,
        })?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let certs = certs.to_owned();
    let explain: Explain = Arc::new(move |error| crate::tls::explain(error, &certs));
    Ok(pooled(connector, reuse, Some(explain)))
}

#[cfg(not(feature = "tls"))]
fn tls_connector(api: &str, _certs: &Path, _reuse: bool) -> Result<Send, EngineError> {
    Err(EngineError::InvalidEndpoint {
        endpoint: api.to_owned(),
        reason: "TLS (DOCKER_TLS_VERIFY or https://) needs whalewatcher-moby's `tls` feature"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_without_the_feature_says_which_feature() {
        let endpoint = Endpoint::Tcp {
            address: "host:2376".into(),
            tls: Some("/certs".into()),
        };
        let err = Transport::new("tcp://host:2376", &endpoint, true)
            .err()
            .expect("an error");
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }

    #[test]
    fn uris_point_at_the_endpoint() {
        let tcp = Endpoint::Tcp {
            address: "127.0.0.1:2375".into(),
            tls: None,
        };
        let transport = Transport::new("tcp://127.0.0.1:2375", &tcp, true).unwrap();
        assert_eq!(
            transport.uri("/containers/json?all=1").unwrap().to_string(),
            "http://127.0.0.1:2375/containers/json?all=1"
        );
        let unix =
            Transport::new("unix:///d.sock", &Endpoint::Unix("/d.sock".into()), true).unwrap();
        assert_eq!(unix.uri("/_ping").unwrap().path(), "/_ping");
        assert_eq!(unix.uri("/_ping").unwrap().scheme_str(), Some("unix"));
        let err = unix.uri("/containers/a b/json").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
