//! What engines tell of a container besides its identity: its network,
//! health, pod, resources and mounts. Kept in the record as shared,
//! optional parts, so they cost nothing where an engine does not tell.

use std::sync::Arc;

use serde::Serialize;

use crate::container::Labels;

/// Where a container is on the network, as its engine tells: its network
/// mode, its address on each network, its published ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct NetworkIdentity {
    /// Docker's and podman's network mode: `host`, `bridge`, a network's
    /// name, `container:ID`, …
    pub mode: Box<str>,
    /// Its addresses, IPv4 and IPv6, each on its network.
    pub addresses: Box<[NetworkAddress]>,
    /// Its ports published on the host.
    pub ports: Box<[PublishedPort]>,
}

/// A container's address on one network.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NetworkAddress {
    /// The network's name.
    pub network: Box<str>,
    /// The address, as the engine writes it.
    pub ip: Box<str>,
}

/// A container port published on the host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PublishedPort {
    /// The port inside the container.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: Box<str>,
    /// The host address it is bound to (`0.0.0.0`, `::`, …).
    pub host_ip: Box<str>,
    /// The host port.
    pub host_port: u16,
}

/// A container's health, as its health check last said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Health {
    /// Not checked often enough yet to tell.
    Starting,
    /// The last checks passed.
    Healthy,
    /// The checks failed as often as the container allows.
    Unhealthy,
}

impl Health {
    /// As Docker and podman name it: `starting`, `healthy`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }

    /// From the engines' name; `None` for `none` and what is unknown.
    pub fn parse(text: &str) -> Option<Health> {
        match text {
            "starting" => Some(Health::Starting),
            "healthy" => Some(Health::Healthy),
            "unhealthy" => Some(Health::Unhealthy),
            _ => None,
        }
    }
}

/// The pod a container belongs to (a CRI pod, or a podman pod), shared by
/// its containers.
///
/// The CRI engine fills it from the pod sandbox's status, once per pod;
/// podman tells only the pod's id and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PodInfo {
    /// The pod's unique id: the Kubernetes pod UID; podman's pod id.
    pub uid: Box<str>,
    /// The pod's name, unique within its namespace.
    pub name: Box<str>,
    /// The pod's Kubernetes namespace; `""` for a podman pod.
    pub namespace: Box<str>,
    /// The CRI pod sandbox's id; `""` where not told (podman). Shared with
    /// the sandbox's own record.
    pub sandbox_id: Arc<str>,
    /// The pod's own labels (a CRI pod's metadata; its containers carry
    /// their own).
    pub labels: Labels,
    /// The pod's annotations (a CRI pod's).
    pub annotations: Labels,
    /// Which of the host's namespaces the pod shares; all `false` where not
    /// told.
    pub host_namespaces: HostNamespaces,
}

/// Which namespaces of the host (the node) a pod shares instead of having
/// its own: Kubernetes' `hostNetwork`, `hostPID`, `hostIPC`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct HostNamespaces {
    /// In the host's network namespace.
    pub network: bool,
    /// In the host's PID namespace.
    pub pid: bool,
    /// In the host's IPC namespace.
    pub ipc: bool,
}

/// What a container's resources are limited to, and the parent cgroup
/// it was asked to be put under, as its engine tells; each field `None`
/// where not told or not set. (Its own cgroup is
/// [`Container::cgroup`](crate::Container::cgroup).)
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Resources {
    /// The parent cgroup the container was asked to be put under (Docker's
    /// and podman's `CgroupParent`).
    pub cgroup_parent: Option<Box<str>>,
    /// The memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// The CPU time the container may use per period, in microseconds
    /// (Docker's `--cpus` becomes a quota of a 100 ms period).
    pub cpu_quota: Option<i64>,
    /// The period of the quota, in microseconds.
    pub cpu_period: Option<u64>,
    /// The relative CPU weight (cgroup v1 shares; 1024 is the default).
    pub cpu_shares: Option<u64>,
    /// The CPUs it may run on, like `0-3,6`.
    pub cpuset_cpus: Option<Box<str>>,
    /// The memory nodes it may allocate on.
    pub cpuset_mems: Option<Box<str>>,
}

impl Resources {
    /// Whether nothing is told.
    pub fn is_empty(&self) -> bool {
        self == &Resources::default()
    }
}

/// A file system mount of a container, as its engine tells.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Mount {
    /// Where it is mounted inside the container.
    pub destination: Box<str>,
    /// What is mounted: a host path, a volume's path, a tmpfs' name.
    pub source: Box<str>,
    /// Its kind as the engine names it: `bind`, `volume`, `tmpfs`, …;
    /// `""` where not told.
    pub kind: Box<str>,
    /// Mounted read-only.
    pub read_only: bool,
}
