//! Finding the Docker API endpoint the way the docker CLI does.

use std::path::PathBuf;

use whalewatcher_core::EngineError;

/// Where the docker CLI looks when neither an endpoint nor `DOCKER_HOST`
/// is given.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

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
/// TLS: the `certs` directory when given, else the docker CLI's TLS
/// variables; `env` reads the environment. Returns the endpoint as text (for
/// messages) and resolved.
pub(crate) fn resolve(
    explicit: Option<&str>,
    certs: Option<PathBuf>,
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
        if certs.is_some() {
            return Err(invalid(
                "TLS certificates given for a unix socket; TLS needs tcp://HOST:PORT",
            ));
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
    let tls = certs.or_else(|| {
        (https || nonempty(env("DOCKER_TLS_VERIFY")).is_some()).then(|| {
            nonempty(env("DOCKER_CERT_PATH"))
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env("HOME").unwrap_or_default()).join(".docker"))
        })
    });
    Ok((
        format!("tcp://{address}"),
        Endpoint::Tcp {
            address: address.to_owned(),
            tls,
        },
    ))
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
            resolve(Some("unix:///arg.sock"), None, &from_env).unwrap(),
            (
                "unix:///arg.sock".into(),
                Endpoint::Unix("/arg.sock".into())
            )
        );
        assert_eq!(
            resolve(None, None, &from_env).unwrap().1,
            Endpoint::Unix("/env.sock".into())
        );
        assert_eq!(
            resolve(None, None, env(&[("DOCKER_HOST", "")])).unwrap().1,
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            resolve(Some("/plain/path.sock"), None, env(&[])).unwrap().0,
            "unix:///plain/path.sock"
        );
    }

    #[test]
    fn tcp_uses_tls_when_the_docker_cli_would() {
        assert_eq!(
            resolve(Some("tcp://host:2375"), None, env(&[])).unwrap().1,
            Endpoint::Tcp {
                address: "host:2375".into(),
                tls: None
            }
        );
        let tls = env(&[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/certs")]);
        assert_eq!(
            resolve(Some("tcp://host:2376"), None, &tls).unwrap().1,
            Endpoint::Tcp {
                address: "host:2376".into(),
                tls: Some("/certs".into())
            }
        );
        assert_eq!(
            resolve(
                Some("tcp://host:2376"),
                None,
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
            match resolve(Some(bad), None, env(&[])) {
                Err(EngineError::InvalidEndpoint { endpoint, .. }) => assert_eq!(endpoint, bad),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn certificates_given_win_over_the_environment_and_need_tcp() {
        let tls = env(&[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/certs")]);
        assert_eq!(
            resolve(Some("tcp://host:2376"), Some("/mine".into()), &tls)
                .unwrap()
                .1,
            Endpoint::Tcp {
                address: "host:2376".into(),
                tls: Some("/mine".into())
            }
        );
        let err = resolve(Some("unix:///d.sock"), Some("/mine".into()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("needs tcp://"), "{err}");
    }
}
