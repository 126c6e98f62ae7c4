//! Where the rig's engines are, as `docker/setup` wrote it down.

use std::path::PathBuf;

use serde::Deserialize;

/// The endpoints file `docker/setup` writes.
pub fn endpoints_file() -> PathBuf {
    let run =
        std::env::var("WHALEWATCHER_RIG_RUN").unwrap_or_else(|_| "/run/whalewatcher-rig".into());
    PathBuf::from(run).join("endpoints.json")
}

/// One engine of the rig.
#[derive(Clone, Debug, Deserialize)]
pub struct Engine {
    /// Its API endpoint: `unix://…` for Docker APIs, a socket path for gRPC.
    pub endpoint: String,
    /// Its version, as it reported it.
    pub version: String,
    /// The host dockerd's container the engine runs in, if any.
    pub container: Option<String>,
    /// The host PID of that container's initial process (the engine).
    pub container_pid: Option<u32>,
    /// The workload image, as this engine names it.
    pub image: Option<String>,
    /// The CRI sandbox image (containerd only).
    pub pause_image: Option<String>,
}

impl Engine {
    /// The socket path of the endpoint.
    pub fn socket(&self) -> &str {
        self.endpoint
            .strip_prefix("unix://")
            .unwrap_or(&self.endpoint)
    }

    /// The workload image; fails the test if the rig has none here.
    pub fn image(&self) -> &str {
        self.image
            .as_deref()
            .unwrap_or_else(|| panic!("the rig has no workload image for {}", self.endpoint))
    }

    /// The engine container's name; fails the test for host engines.
    pub fn container(&self) -> &str {
        self.container
            .as_deref()
            .unwrap_or_else(|| panic!("{} does not run in a container", self.endpoint))
    }
}

/// All engines of the rig.
#[derive(Clone, Debug, Deserialize)]
pub struct Rig {
    /// The label on everything the rig made.
    pub label: String,
    /// The host dockerd (Debian bookworm's 20.10).
    pub host_docker: Engine,
    /// The host containerd (Debian bookworm's 1.6) under the host dockerd.
    pub host_containerd: Engine,
    /// dockerd 26 in a container.
    pub docker: Engine,
    /// podman 5 (Docker-compatible API) in a container.
    pub podman: Engine,
    /// containerd 1.7 with its CRI plugin in a container.
    pub containerd: Engine,
}

impl Rig {
    /// Reads the endpoints file; fails the test, saying how to bring the
    /// rig up, when it is missing.
    pub fn load() -> Rig {
        let path = endpoints_file();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the engine rig is not up ({}: {e}); bring it up with `docker/setup` \
                 (or run the README's test command, scripts/test)",
                path.display()
            )
        });
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not what docker/setup writes: {e}", path.display()))
    }

    /// The docker CLI arguments that reach the host dockerd.
    pub fn host_docker_args(&self) -> [&str; 2] {
        ["-H", &self.host_docker.endpoint]
    }
}
