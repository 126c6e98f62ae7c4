//! Where the engines are when an option names none: the rules of the
//! docker CLI (its current context), podman (`CONTAINER_HOST`, in the
//! facade) and crictl (`CONTAINER_RUNTIME_ENDPOINT`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// crictl's first default endpoint, containerd's.
const CRI_DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// A docker context's Docker endpoint.
#[derive(Clone, Debug)]
pub struct ContextEndpoint {
    /// The endpoint URL.
    pub host: String,
    /// The directory of its TLS certificates (`ca.pem`, `cert.pem`,
    /// `key.pem`), when it has them.
    pub tls_certs: Option<PathBuf>,
}

/// The Docker endpoint of the docker CLI's current context, when that is
/// not the default one and `DOCKER_HOST` is unset (it takes precedence
/// over contexts, and the facade reads it): `DOCKER_CONTEXT`, else the
/// `currentContext` of `$DOCKER_CONFIG/config.json` (`~/.docker`).
pub fn docker_context() -> Result<Option<ContextEndpoint>, String> {
    if std::env::var_os("DOCKER_HOST").is_some_and(|host| !host.is_empty()) {
        return Ok(None);
    }
    let Some(config) = docker_config_dir() else {
        return Ok(None);
    };
    let name = match std::env::var("DOCKER_CONTEXT") {
        Ok(name) if !name.is_empty() => name,
        _ => match current_context(&config)? {
            Some(name) => name,
            None => return Ok(None),
        },
    };
    if name == "default" {
        return Ok(None);
    }
    context_host(&config, &name).map(Some)
}

/// The CRI socket when `--cri` names none: crictl's
/// `CONTAINER_RUNTIME_ENDPOINT` (a path or a `unix://` URL, as the engine
/// takes it), else containerd's socket.
pub fn cri_default_socket() -> PathBuf {
    match std::env::var_os("CONTAINER_RUNTIME_ENDPOINT") {
        Some(endpoint) if !endpoint.is_empty() => PathBuf::from(endpoint),
        _ => PathBuf::from(CRI_DEFAULT_SOCKET),
    }
}

fn docker_config_dir() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker")),
    }
}

/// The `currentContext` of the docker CLI's config file, if any.
fn current_context(config: &Path) -> Result<Option<String>, String> {
    let file = config.join("config.json");
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", file.display())),
    };
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not JSON: {error}", file.display()))?;
    Ok(json["currentContext"]
        .as_str()
        .filter(|name| !name.is_empty())
        .map(str::to_owned))
}

/// The Docker endpoint a named context stores; its metadata and its TLS
/// certificates are filed under the SHA-256 of its name.
fn context_host(config: &Path, name: &str) -> Result<ContextEndpoint, String> {
    let digest = format!("{:x}", Sha256::digest(name.as_bytes()));
    let meta = config.join("contexts/meta").join(&digest).join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|error| {
        format!(
            "docker context {name:?} not found ({}: {error})",
            meta.display()
        )
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not JSON: {error}", meta.display()))?;
    let docker = &json["Endpoints"]["docker"];
    let host = docker["Host"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("docker context {name:?} has no Docker endpoint"))?;
    let tls = config.join("contexts/tls").join(&digest).join("docker");
    let tls_certs = tls.exists().then_some(tls);
    if tls_certs.is_some() && docker["SkipTLSVerify"].as_bool() == Some(true) {
        return Err(format!(
            "docker context {name:?} skips verifying the engine's certificate, \
             which whalewatch does not do"
        ));
    }
    Ok(ContextEndpoint { host, tls_certs })
}
