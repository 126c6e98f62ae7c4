//! Finding the Docker API endpoint the way the docker CLI does, and
//! connecting bollard to it with a connection-reusing transport.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use whalewatcher_core::EngineError;

/// Where the docker CLI looks when neither an endpoint nor `DOCKER_HOST`
/// is given.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// Seconds bollard waits for a response (not for the event stream's body).
const REQUEST_TIMEOUT: u64 = 120;

/// A resolved endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port` over plain HTTP, or over TLS with the certificates in
    /// the given directory (`key.pem`, `cert.pem`, `ca.pem`).
    Tcp {
        address: String,
        tls: Option<PathBuf>,
    },
}

/// Resolves `explicit`, else `DOCKER_HOST`, else [`DEFAULT_ENDPOINT`], and
/// the docker CLI's TLS variables; `env` reads the environment. Returns the
/// endpoint as text (for messages) and resolved.
pub(crate) fn resolve(
    explicit: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, Endpoint), EngineError> {
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let raw = match explicit {
        Some(endpoint) => endpoint.to_owned(),
        None => nonempty(env("DOCKER_HOST")).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
    };
    let invalid = |reason: &str| EngineError::InvalidEndpoint {
        endpoint: raw.clone(),
        reason: reason.to_owned(),
    };
    if let Some(path) = raw
        .strip_prefix("unix://")
        .or(raw.starts_with('/').then_some(raw.as_str()))
    {
        if path.is_empty() {
            return Err(invalid("no socket path"));
        }
        return Ok((
            format!("unix://{path}"),
            Endpoint::Unix(PathBuf::from(path)),
        ));
    }
    let (address, https) = if let Some(rest) = raw.strip_prefix("tcp://") {
        (rest, false)
    } else if let Some(rest) = raw.strip_prefix("http://") {
        (rest, false)
    } else if let Some(rest) = raw.strip_prefix("https://") {
        (rest, true)
    } else {
        return Err(invalid(
            "unsupported scheme; use unix://PATH or tcp://HOST:PORT",
        ));
    };
    let address = address.trim_end_matches('/');
    if address.is_empty() {
        return Err(invalid("no host"));
    }
    let tls = (https || nonempty(env("DOCKER_TLS_VERIFY")).is_some()).then(|| {
        nonempty(env("DOCKER_CERT_PATH"))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env("HOME").unwrap_or_default()).join(".docker"))
    });
    Ok((
        format!("tcp://{address}"),
        Endpoint::Tcp {
            address: address.to_owned(),
            tls,
        },
    ))
}

/// A GET of a path on the engine's socket: for the parts of podman's own
/// (libpod) API that the Docker API lacks, lists and inspects without
/// bollard's typed model, and the engine's clock.
pub(crate) type RawGet =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<RawResponse, std::io::Error>> + Send + Sync>;

/// An error of the raw transport as an I/O error of the kind of the I/O
/// error that caused it (a missing socket, a refused permission), so a
/// caller can tell them apart; its text tells the whole chain.
fn io_error(error: impl std::error::Error) -> std::io::Error {
    whalewatcher_core::io_error_with_causes(error.to_string(), error.source())
}

/// What a [`RawGet`] answers.
pub(crate) struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
    /// The response headers.
    pub headers: hyper::HeaderMap,
}

/// A bollard client for the endpoint, and for unix sockets a raw GET over
/// the same connections. Does no I/O.
pub(crate) fn connect(
    api: &str,
    endpoint: &Endpoint,
    reuse_connections: bool,
) -> Result<(Docker, Option<RawGet>), EngineError> {
    let failed = |e: bollard::errors::Error| EngineError::InvalidEndpoint {
        endpoint: api.to_owned(),
        reason: e.to_string(),
    };
    match endpoint {
        Endpoint::Unix(path) => {
            let (docker, raw) = unix_transport(path.clone(), reuse_connections).map_err(failed)?;
            Ok((docker, Some(raw)))
        }
        Endpoint::Tcp { address, tls: None } => Docker::connect_with_http(
            &format!("tcp://{address}"),
            REQUEST_TIMEOUT,
            API_DEFAULT_VERSION,
        )
        .map(|docker| (docker, None))
        .map_err(failed),
        Endpoint::Tcp {
            address,
            tls: Some(certs),
        } => connect_tls(api, address, certs).map(|docker| (docker, None)),
    }
}

#[cfg(feature = "tls")]
fn connect_tls(api: &str, address: &str, certs: &std::path::Path) -> Result<Docker, EngineError> {
    Docker::connect_with_ssl(
        &format!("https://{address}"),
        &certs.join("key.pem"),
        &certs.join("cert.pem"),
        &certs.join("ca.pem"),
        REQUEST_TIMEOUT,
        API_DEFAULT_VERSION,
    )
    .map_err(|e| EngineError::InvalidEndpoint {
        endpoint: api.to_owned(),
        reason: format!("TLS with the certificates in {}: {e}", certs.display()),
    })
}

#[cfg(not(feature = "tls"))]
fn connect_tls(api: &str, _address: &str, _certs: &std::path::Path) -> Result<Docker, EngineError> {
    Err(EngineError::InvalidEndpoint {
        endpoint: api.to_owned(),
        reason: "TLS (DOCKER_TLS_VERIFY or https://) needs whalewatcher-moby's `tls` feature"
            .into(),
    })
}

/// bollard over a unix socket, reusing connections, plus a raw GET sharing
/// them.
///
/// bollard's own unix transport keeps no idle connections, so every request
/// pays a connect and the engine an accept; a pooled hyper client keeps
/// them open (idle ones close after 30 s). Without `reuse`, it keeps none,
/// like bollard.
fn unix_transport(
    socket: PathBuf,
    reuse: bool,
) -> Result<(Docker, RawGet), bollard::errors::Error> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(Duration::from_secs(30));
    if !reuse {
        builder.pool_max_idle_per_host(0);
    }
    let client = builder.build(UnixConnector);
    let raw: RawGet = {
        let (client, socket) = (client.clone(), socket.clone());
        Arc::new(move |path: String| {
            let (client, socket) = (client.clone(), socket.clone());
            Box::pin(async move {
                let request = hyper::Request::get(hyperlocal::Uri::new(&socket, &path))
                    .body(bollard::body_full(Bytes::new()))
                    .map_err(io_error)?;
                let response = client.request(request).await.map_err(io_error)?;
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = response.into_body().collect().await.map_err(io_error)?;
                Ok(RawResponse {
                    status,
                    body: body.to_bytes(),
                    headers,
                })
            })
        })
    };
    let docker = Docker::connect_with_custom_transport(
        move |request: BollardRequest| {
            let (client, socket) = (client.clone(), socket.clone());
            async move {
                let (mut parts, body) = request.into_parts();
                let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                parts.uri = hyperlocal::Uri::new(&socket, path).into();
                client
                    .request(hyper::Request::from_parts(parts, body))
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some("http://docker"),
        REQUEST_TIMEOUT,
        API_DEFAULT_VERSION,
    )?;
    Ok((docker, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_argument_wins_over_docker_host_which_wins_over_the_default() {
        let from_env = env(&[("DOCKER_HOST", "unix:///env.sock")]);
        assert_eq!(
            resolve(Some("unix:///arg.sock"), &from_env).unwrap(),
            (
                "unix:///arg.sock".into(),
                Endpoint::Unix("/arg.sock".into())
            )
        );
        assert_eq!(
            resolve(None, &from_env).unwrap().1,
            Endpoint::Unix("/env.sock".into())
        );
        assert_eq!(
            resolve(None, env(&[("DOCKER_HOST", "")])).unwrap().1,
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            resolve(Some("/plain/path.sock"), env(&[])).unwrap().0,
            "unix:///plain/path.sock"
        );
    }

    #[test]
    fn tcp_uses_tls_when_the_docker_cli_would() {
        assert_eq!(
            resolve(Some("tcp://host:2375"), env(&[])).unwrap().1,
            Endpoint::Tcp {
                address: "host:2375".into(),
                tls: None
            }
        );
        let tls = env(&[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/certs")]);
        assert_eq!(
            resolve(Some("tcp://host:2376"), &tls).unwrap().1,
            Endpoint::Tcp {
                address: "host:2376".into(),
                tls: Some("/certs".into())
            }
        );
        assert_eq!(
            resolve(
                Some("tcp://host:2376"),
                env(&[("DOCKER_TLS_VERIFY", "1"), ("HOME", "/home/u")])
            )
            .unwrap()
            .1,
            Endpoint::Tcp {
                address: "host:2376".into(),
                tls: Some("/home/u/.docker".into())
            }
        );
    }

    #[test]
    fn unusable_endpoints_are_typed_errors_naming_the_endpoint() {
        for bad in [
            "ssh://user@host",
            "npipe:////./pipe/docker",
            "unix://",
            "tcp://",
            "docker.sock",
        ] {
            match resolve(Some(bad), env(&[])) {
                Err(EngineError::InvalidEndpoint { endpoint, .. }) => assert_eq!(endpoint, bad),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_without_the_feature_says_which_feature() {
        let (api, endpoint) = resolve(Some("https://host:2376"), env(&[])).unwrap();
        let err = connect(&api, &endpoint, true).err().expect("an error");
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }
}
