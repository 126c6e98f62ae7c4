//! Where the Docker API is when no endpoint is named, by the rules of the
//! tools users know: the docker CLI's (`DOCKER_HOST`, then its current
//! context, then the default socket) and podman's (`CONTAINER_HOST`, then
//! root's or the user's socket); and the sockets where each listens by
//! default, for those who look for engines (discovery).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use whalewatcher_core::EngineError;

/// Where the docker CLI looks when neither an endpoint, `DOCKER_HOST` nor
/// a context is given.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";

/// podman's API socket when run as root.
pub const PODMAN_ROOT_SOCKET: &str = "/run/podman/podman.sock";

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

/// Whose rules find the endpoint when none is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rules {
    /// The docker CLI's.
    Docker,
    /// podman's.
    Podman,
}

/// Resolves `explicit`, else the endpoint `rules` name, and TLS: the
/// `certs` directory when given, else a docker context's, else the docker
/// CLI's TLS variables; `env` reads the environment. Returns the endpoint
/// as text (for messages) and resolved.
pub(crate) fn resolve(
    explicit: Option<&str>,
    certs: Option<PathBuf>,
    rules: Rules,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, Endpoint), EngineError> {
    let (raw, certs) = match (explicit, rules) {
        (Some(endpoint), _) => (endpoint.to_owned(), certs),
        (None, Rules::Podman) => (podman_endpoint(&env), certs),
        (None, Rules::Docker) => match nonempty(env("DOCKER_HOST")) {
            Some(host) => (host, certs),
            None => match docker_context(&env)? {
                Some(context) => (context.host, certs.or(context.tls_certs)),
                None => (DEFAULT_ENDPOINT.to_owned(), certs),
            },
        },
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

/// The Docker endpoint the user configured for the docker CLI:
/// `DOCKER_HOST`, else the host of the current docker context when that is
/// not the default one; `None` when the docker CLI would use its default
/// socket. An error when the current context cannot be read.
pub fn configured_endpoint() -> Result<Option<String>, EngineError> {
    let env = |name: &str| std::env::var(name).ok();
    match nonempty(env("DOCKER_HOST")) {
        Some(host) => Ok(Some(host)),
        None => Ok(docker_context(&env)?.map(|context| context.host)),
    }
}

fn nonempty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

/// podman's endpoint when none is named: `CONTAINER_HOST`, else its
/// default socket.
fn podman_endpoint(env: &impl Fn(&str) -> Option<String>) -> String {
    nonempty(env("CONTAINER_HOST")).unwrap_or_else(|| podman_default(env))
}

fn podman_default(env: &impl Fn(&str) -> Option<String>) -> String {
    let rootless = nonempty(env("XDG_RUNTIME_DIR")).filter(|_| !is_root());
    match rootless {
        Some(dir) => format!(
            "unix://{}",
            Path::new(&dir).join("podman/podman.sock").display()
        ),
        None => format!("unix://{PODMAN_ROOT_SOCKET}"),
    }
}

/// Where podman's API socket is by default: [`PODMAN_ROOT_SOCKET`] for
/// root, `$XDG_RUNTIME_DIR/podman/podman.sock` for everybody else (as a
/// `unix://` URL).
pub fn podman_socket() -> String {
    podman_default(&|name: &str| std::env::var(name).ok())
}

/// The sockets where a Docker engine listens by default, root's first:
/// `/var/run/docker.sock`, then rootless Docker's
/// `$XDG_RUNTIME_DIR/docker.sock`.
pub fn docker_sockets() -> Vec<PathBuf> {
    let mut sockets = vec![PathBuf::from(
        DEFAULT_ENDPOINT.trim_start_matches("unix://"),
    )];
    sockets.extend(runtime_dir().map(|dir| dir.join("docker.sock")));
    sockets
}

/// The sockets where podman's API service listens by default, root's
/// first: [`PODMAN_ROOT_SOCKET`], then `$XDG_RUNTIME_DIR/podman/podman.sock`.
pub fn podman_sockets() -> Vec<PathBuf> {
    let mut sockets = vec![PathBuf::from(PODMAN_ROOT_SOCKET)];
    sockets.extend(runtime_dir().map(|dir| dir.join("podman/podman.sock")));
    sockets
}

fn runtime_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // Our own /proc entry is owned by our effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A docker context's Docker endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ContextEndpoint {
    host: String,
    /// The directory of its TLS certificates, when it has them.
    tls_certs: Option<PathBuf>,
}

/// The Docker endpoint of the docker CLI's current context, when that is
/// not the default one: `DOCKER_CONTEXT`, else the `currentContext` of
/// `$DOCKER_CONFIG/config.json` (`~/.docker`).
fn docker_context(
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<ContextEndpoint>, EngineError> {
    let config = match nonempty(env("DOCKER_CONFIG")) {
        Some(dir) => PathBuf::from(dir),
        None => match nonempty(env("HOME")) {
            Some(home) => Path::new(&home).join(".docker"),
            None => return Ok(None),
        },
    };
    let name = match nonempty(env("DOCKER_CONTEXT")) {
        Some(name) => name,
        None => match current_context(&config)? {
            Some(name) => name,
            None => return Ok(None),
        },
    };
    if name == "default" {
        return Ok(None);
    }
    context_host(&config, &name).map(Some)
}

/// An endpoint a docker context names that cannot be used.
fn context_error(name: &str, reason: String) -> EngineError {
    EngineError::InvalidEndpoint {
        endpoint: format!("docker context {name}"),
        reason,
    }
}

/// The `currentContext` of the docker CLI's config file, if any.
fn current_context(config: &Path) -> Result<Option<String>, EngineError> {
    let file = config.join("config.json");
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(context_error(
                "(current)",
                format!("cannot read {}: {error}", file.display()),
            ))
        }
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
        context_error(
            "(current)",
            format!("{} is not JSON: {error}", file.display()),
        )
    })?;
    Ok(json["currentContext"]
        .as_str()
        .filter(|name| !name.is_empty())
        .map(str::to_owned))
}

/// The Docker endpoint a named context stores; its metadata and its TLS
/// certificates are filed under the SHA-256 of its name.
fn context_host(config: &Path, name: &str) -> Result<ContextEndpoint, EngineError> {
    let digest = format!("{:x}", Sha256::digest(name.as_bytes()));
    let meta = config.join("contexts/meta").join(&digest).join("meta.json");
    let text = std::fs::read_to_string(&meta)
        .map_err(|error| context_error(name, format!("not found ({}: {error})", meta.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| context_error(name, format!("{} is not JSON: {error}", meta.display())))?;
    let docker = &json["Endpoints"]["docker"];
    let host = docker["Host"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| context_error(name, "it has no Docker endpoint".into()))?;
    let tls = config.join("contexts/tls").join(&digest).join("docker");
    let tls_certs = tls.exists().then_some(tls);
    if tls_certs.is_some() && docker["SkipTLSVerify"].as_bool() == Some(true) {
        return Err(context_error(
            name,
            "it skips verifying the engine's certificate, which whalewatcher does not do".into(),
        ));
    }
    Ok(ContextEndpoint { host, tls_certs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_docker(
        explicit: Option<&str>,
        certs: Option<PathBuf>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(String, Endpoint), EngineError> {
        resolve(explicit, certs, Rules::Docker, env)
    }

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
            resolve_docker(Some("unix:///arg.sock"), None, &from_env).unwrap(),
            (
                "unix:///arg.sock".into(),
                Endpoint::Unix("/arg.sock".into())
            )
        );
        assert_eq!(
            resolve_docker(None, None, &from_env).unwrap().1,
            Endpoint::Unix("/env.sock".into())
        );
        assert_eq!(
            resolve_docker(None, None, env(&[("DOCKER_HOST", "")]))
                .unwrap()
                .1,
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            resolve_docker(Some("/plain/path.sock"), None, env(&[]))
                .unwrap()
                .0,
            "unix:///plain/path.sock"
        );
    }

    #[test]
    fn tcp_uses_tls_when_the_docker_cli_would() {
        assert_eq!(
            resolve_docker(Some("tcp://host:2375"), None, env(&[]))
                .unwrap()
                .1,
            Endpoint::Tcp {
                address: "host:2375".into(),
                tls: None
            }
        );
        let tls = env(&[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/certs")]);
        assert_eq!(
            resolve_docker(Some("tcp://host:2376"), None, &tls)
                .unwrap()
                .1,
            Endpoint::Tcp {
                address: "host:2376".into(),
                tls: Some("/certs".into())
            }
        );
        assert_eq!(
            resolve_docker(
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
            match resolve_docker(Some(bad), None, env(&[])) {
                Err(EngineError::InvalidEndpoint { endpoint, .. }) => assert_eq!(endpoint, bad),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn certificates_given_win_over_the_environment_and_need_tcp() {
        let tls = env(&[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/certs")]);
        assert_eq!(
            resolve_docker(Some("tcp://host:2376"), Some("/mine".into()), &tls)
                .unwrap()
                .1,
            Endpoint::Tcp {
                address: "host:2376".into(),
                tls: Some("/mine".into())
            }
        );
        let err =
            resolve_docker(Some("unix:///d.sock"), Some("/mine".into()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("needs tcp://"), "{err}");
    }

    /// A docker config directory with contexts, under a fresh temporary
    /// directory; removed when dropped.
    struct Config(PathBuf);

    impl Config {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("ww-ctx-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Config(dir)
        }

        fn context(&self, name: &str, host: &str, tls: bool) {
            let digest = format!("{:x}", Sha256::digest(name.as_bytes()));
            let meta = self.0.join("contexts/meta").join(&digest);
            std::fs::create_dir_all(&meta).unwrap();
            let json =
                format!(r#"{{"Name":"{name}","Endpoints":{{"docker":{{"Host":"{host}"}}}}}}"#);
            std::fs::write(meta.join("meta.json"), json).unwrap();
            if tls {
                let certs = self.0.join("contexts/tls").join(&digest).join("docker");
                std::fs::create_dir_all(certs).unwrap();
            }
        }

        fn current(&self, name: &str) {
            let json = format!(r#"{{"currentContext":"{name}"}}"#);
            std::fs::write(self.0.join("config.json"), json).unwrap();
        }

        fn dir(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for Config {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_docker_context_counts_unless_docker_host_is_set_as_for_the_docker_cli() {
        let config = Config::new("rules");
        config.context("remote", "tcp://remote:2376", true);
        config.context("other", "unix:///other.sock", false);
        config.current("other");
        let dir = config.dir();
        // currentContext of config.json
        assert_eq!(
            resolve_docker(None, None, env(&[("DOCKER_CONFIG", dir)]))
                .unwrap()
                .1,
            Endpoint::Unix("/other.sock".into())
        );
        // DOCKER_CONTEXT wins over it, and brings the context's TLS files.
        let named_vars = [("DOCKER_CONFIG", dir), ("DOCKER_CONTEXT", "remote")];
        let named = env(&named_vars);
        let digest = format!("{:x}", Sha256::digest(b"remote"));
        assert_eq!(
            resolve_docker(None, None, &named).unwrap().1,
            Endpoint::Tcp {
                address: "remote:2376".into(),
                tls: Some(config.0.join("contexts/tls").join(digest).join("docker")),
            }
        );
        // DOCKER_HOST wins over both; "default" is the default socket.
        let host_vars = [
            ("DOCKER_CONFIG", dir),
            ("DOCKER_CONTEXT", "remote"),
            ("DOCKER_HOST", "unix:///host.sock"),
        ];
        let host = env(&host_vars);
        assert_eq!(
            resolve_docker(None, None, &host).unwrap().1,
            Endpoint::Unix("/host.sock".into())
        );
        let default_vars = [("DOCKER_CONFIG", dir), ("DOCKER_CONTEXT", "default")];
        let default = env(&default_vars);
        assert_eq!(
            resolve_docker(None, None, &default).unwrap().0,
            DEFAULT_ENDPOINT
        );
        // ~/.docker without DOCKER_CONFIG.
        let home = Config::new("home");
        std::fs::create_dir_all(home.0.join(".docker")).unwrap();
        std::fs::rename(config.0.join("contexts"), home.0.join(".docker/contexts")).unwrap();
        std::fs::rename(
            config.0.join("config.json"),
            home.0.join(".docker/config.json"),
        )
        .unwrap();
        assert_eq!(
            resolve_docker(None, None, env(&[("HOME", home.dir())]))
                .unwrap()
                .1,
            Endpoint::Unix("/other.sock".into())
        );
    }

    #[test]
    fn a_context_that_cannot_be_used_is_an_error_naming_it() {
        let config = Config::new("bad");
        let missing_vars = [("DOCKER_CONFIG", config.dir()), ("DOCKER_CONTEXT", "gone")];
        let missing = env(&missing_vars);
        let error = resolve_docker(None, None, &missing).unwrap_err();
        assert!(
            matches!(&error, EngineError::InvalidEndpoint { endpoint, reason }
                if endpoint == "docker context gone" && reason.starts_with("not found")),
            "{error:?}"
        );
        std::fs::write(config.0.join("config.json"), "{").unwrap();
        let error =
            resolve_docker(None, None, env(&[("DOCKER_CONFIG", config.dir())])).unwrap_err();
        assert!(error.to_string().contains("is not JSON"), "{error}");
    }

    #[test]
    fn podman_takes_container_host_else_its_socket() {
        let podman =
            |vars: &[(&str, &str)]| resolve(None, None, Rules::Podman, env(vars)).unwrap().0;
        assert_eq!(
            podman(&[("CONTAINER_HOST", "unix:///mine.sock")]),
            "unix:///mine.sock"
        );
        // DOCKER_HOST is the docker CLI's, not podman's.
        let expected = if is_root() {
            "unix:///run/podman/podman.sock"
        } else {
            "unix:///run/user/1000/podman/podman.sock"
        };
        assert_eq!(
            podman(&[
                ("DOCKER_HOST", "unix:///d.sock"),
                ("XDG_RUNTIME_DIR", "/run/user/1000")
            ]),
            expected
        );
    }
}
