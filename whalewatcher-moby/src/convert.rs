//! Pure conversions of the engine's records into the core's model.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerInspectResponse, EventMessage, EventMessageTypeEnum, SystemInfo};
use serde::Deserialize;
use whalewatcher_core::{
    Container, EngineError, EngineEvent, EventKind, Exit, Health, Labels, Mount, NetworkAddress,
    NetworkIdentity, OomKills, PodInfo, PublishedPort, Resources, COMPOSE_PROJECT_LABEL,
};

use crate::{Packer, INFRA_LABEL, POD_ID_LABEL, POD_NAME_LABEL, PRIVILEGED_LABEL};

/// What podman's own API tells of a container's pod (the Docker API does
/// not tell it at all).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct PodMembership {
    #[serde(rename = "Id")]
    pub id: String,
    /// The pod's id; empty when the container is in no pod.
    #[serde(rename = "Pod", default)]
    pub pod_id: String,
    #[serde(rename = "PodName", default)]
    pub pod_name: String,
    #[serde(rename = "IsInfra", default)]
    pub is_infra: bool,
}

/// The fields of a container inspect response that the record keeps, and
/// nothing else: parsed straight from the body, its strings borrowed where
/// they have no escapes. bollard's full model (hundreds of fields) is
/// parsed only for a [`Packer`], which is handed it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Inspected<'a> {
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    /// The image's id.
    #[serde(borrow)]
    image: Option<Cow<'a, str>>,
    #[serde(borrow)]
    created: Option<Cow<'a, str>>,
    restart_count: Option<i64>,
    #[serde(borrow)]
    state: Option<InspectedState<'a>>,
    #[serde(borrow)]
    config: Option<InspectedConfig<'a>>,
    #[serde(borrow)]
    host_config: Option<InspectedHostConfig<'a>>,
    #[serde(borrow)]
    network_settings: Option<InspectedNetworkSettings<'a>>,
    #[serde(borrow)]
    mounts: Option<Vec<InspectedMount<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InspectedMount<'a> {
    #[serde(borrow, rename = "Type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    destination: Option<Cow<'a, str>>,
    #[serde(rename = "RW")]
    rw: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InspectedNetworkSettings<'a> {
    /// Network name → the container's endpoint on it.
    #[serde(borrow)]
    networks: Option<std::collections::BTreeMap<Cow<'a, str>, InspectedEndpoint<'a>>>,
    /// `80/tcp` → its bindings on the host (`null` when only exposed).
    #[serde(borrow)]
    ports: Option<std::collections::BTreeMap<Cow<'a, str>, Option<Vec<InspectedBinding<'a>>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InspectedEndpoint<'a> {
    #[serde(borrow, rename = "IPAddress")]
    ip_address: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "GlobalIPv6Address")]
    global_ipv6_address: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InspectedBinding<'a> {
    #[serde(borrow)]
    host_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    host_port: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InspectedState<'a> {
    running: Option<bool>,
    paused: Option<bool>,
    pid: Option<i64>,
    #[serde(borrow)]
    started_at: Option<Cow<'a, str>>,
    health: Option<InspectedHealth<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InspectedHealth<'a> {
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InspectedConfig<'a> {
    /// The image as the user named it.
    #[serde(borrow)]
    image: Option<Cow<'a, str>>,
    #[serde(borrow)]
    labels: Option<LabelPairs<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct InspectedHostConfig<'a> {
    privileged: Option<bool>,
    #[serde(borrow)]
    network_mode: Option<Cow<'a, str>>,
    #[serde(borrow)]
    cgroup_parent: Option<Cow<'a, str>>,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<i64>,
    cpu_shares: Option<i64>,
    #[serde(borrow)]
    cpuset_cpus: Option<Cow<'a, str>>,
    #[serde(borrow)]
    cpuset_mems: Option<Cow<'a, str>>,
}

/// The period Docker and podman give `--cpus` (`NanoCpus`): 100 ms.
const NANO_CPUS_PERIOD_MICROS: i64 = 100_000;

/// The limits of `HostConfig` (0: not set) and the cgroup parent asked
/// for; neither Docker's inspect nor podman's compatible one names the
/// container's cgroup itself.
fn resources(inspected: &Inspected<'_>) -> Resources {
    let Some(host) = inspected.host_config.as_ref() else {
        return Resources::default();
    };
    let positive = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
    let text = |s: &Option<Cow<'_, str>>| s.as_deref().filter(|s| !s.is_empty()).map(Into::into);
    // `--cpus` is a quota of a 100 ms period, as the runtime gets it.
    let (cpu_quota, cpu_period) = match host.nano_cpus.filter(|n| *n > 0) {
        Some(nanos) => (
            Some(nanos * NANO_CPUS_PERIOD_MICROS / 1_000_000_000),
            Some(NANO_CPUS_PERIOD_MICROS as u64),
        ),
        None => (host.cpu_quota.filter(|q| *q > 0), positive(host.cpu_period)),
    };
    Resources {
        cgroup_parent: text(&host.cgroup_parent),
        memory_limit: positive(host.memory),
        cpu_quota,
        cpu_period,
        cpu_shares: positive(host.cpu_shares),
        cpuset_cpus: text(&host.cpuset_cpus),
        cpuset_mems: text(&host.cpuset_mems),
    }
}

/// The mounts as the inspect's `Mounts` lists them.
fn mounts(inspected: &Inspected<'_>) -> Vec<Mount> {
    let text = |s: &Option<Cow<'_, str>>| Box::from(s.as_deref().unwrap_or_default());
    inspected
        .mounts
        .iter()
        .flatten()
        .map(|m| Mount {
            destination: text(&m.destination),
            source: text(&m.source),
            kind: text(&m.kind),
            read_only: m.rw == Some(false),
        })
        .collect()
}

/// Where the container is on the network; `None` for one with no network
/// at all (mode `none`, no address, no port).
fn network_identity(inspected: &Inspected<'_>) -> Option<NetworkIdentity> {
    let mode = inspected
        .host_config
        .as_ref()
        .and_then(|host| host.network_mode.as_deref())
        .unwrap_or_default();
    let settings = inspected.network_settings.as_ref();
    let mut addresses: Vec<NetworkAddress> = Vec::new();
    for (network, endpoint) in settings
        .and_then(|s| s.networks.as_ref())
        .into_iter()
        .flatten()
    {
        for ip in [&endpoint.ip_address, &endpoint.global_ipv6_address] {
            if let Some(ip) = ip.as_deref().filter(|ip| !ip.is_empty()) {
                addresses.push(NetworkAddress {
                    network: network.as_ref().into(),
                    ip: ip.into(),
                });
            }
        }
    }
    let mut ports: Vec<PublishedPort> = Vec::new();
    for (port, bindings) in settings
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
    {
        let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
        let Ok(container_port) = number.parse() else {
            continue;
        };
        for binding in bindings.iter().flatten() {
            let Some(host_port) = binding.host_port.as_deref().and_then(|p| p.parse().ok()) else {
                continue;
            };
            ports.push(PublishedPort {
                container_port,
                protocol: protocol.into(),
                host_ip: binding.host_ip.as_deref().unwrap_or_default().into(),
                host_port,
            });
        }
    }
    if (mode.is_empty() || mode == "none") && addresses.is_empty() && ports.is_empty() {
        return None;
    }
    ports.sort();
    Some(NetworkIdentity {
        mode: mode.into(),
        addresses: addresses.into(),
        ports: ports.into(),
    })
}

/// A JSON object of labels, as its pairs in the body's order.
#[derive(Debug, Default)]
struct LabelPairs<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for LabelPairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Pairs<'a> {
            type Value = LabelPairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of label strings")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((key, value)) = map.next_entry::<Borrowed<'a>, Borrowed<'a>>()? {
                    pairs.push((key.0, value.0));
                }
                Ok(LabelPairs(pairs))
            }
        }
        deserializer.deserialize_map(Pairs(std::marker::PhantomData))
    }
}

/// A string, borrowed from the body where it has no escapes.
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
        Text::deserialize(deserializer).map(|text| Borrowed(text.0))
    }
}

/// Parses the fields the record keeps out of an inspect body.
pub(crate) fn parse_inspect(body: &[u8]) -> Result<Inspected<'_>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Builds a [`Container`] from an inspect response (`body`, its kept
/// fields `inspected`); a container without a running or paused process
/// is [`EngineError::Processless`]. With a packer, bollard's full model
/// of the body is parsed too, and the packer completes the record.
pub(crate) fn container(
    inspected: &Inspected<'_>,
    body: &[u8],
    pod: Option<&PodMembership>,
    packer: Option<&Packer>,
    endpoint: &str,
) -> Result<Container, EngineError> {
    let id = inspected
        .id
        .as_deref()
        .ok_or_else(|| EngineError::Protocol {
            endpoint: endpoint.to_owned(),
            message: "container inspect response without an Id".into(),
        })?;
    let state = inspected.state.as_ref();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    let paused = state.and_then(|s| s.paused).unwrap_or(false);
    let pid = state.and_then(|s| s.pid).unwrap_or(0);
    if !(running || paused) || pid <= 0 {
        return Err(EngineError::Processless { id: id.to_owned() });
    }
    let config = inspected.config.as_ref();
    let given: &[(Cow<'_, str>, Cow<'_, str>)] = config
        .and_then(|c| c.labels.as_ref())
        .map_or(&[], |labels| &labels.0);
    let project = given
        .iter()
        .rev()
        .find(|(key, _)| key == COMPOSE_PROJECT_LABEL)
        .map(|(_, value)| value.as_ref())
        .unwrap_or_default();
    let mut labels: Vec<(&str, &str)> = given
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    if inspected.host_config.as_ref().and_then(|h| h.privileged) == Some(true) {
        labels.push((PRIVILEGED_LABEL, ""));
    }
    let pod = pod.filter(|p| !p.pod_id.is_empty());
    if let Some(pod) = pod {
        labels.push((POD_ID_LABEL, &pod.pod_id));
        labels.push((POD_NAME_LABEL, &pod.pod_name));
        if pod.is_infra {
            labels.push((INFRA_LABEL, ""));
        }
    }
    let name = inspected.name.as_deref().unwrap_or_default();
    let mut container = Container::new(id, name.trim_start_matches('/'), pid as u32)
        .with_labels(labels.into_iter().collect::<Labels>())
        .with_project(project)
        .with_paused(paused);
    // What the same answer tells besides: image as named and its id,
    // times, restarts, a podman pod.
    if let Some(image) = config.and_then(|c| c.image.as_deref()) {
        container = container.with_image(image);
    }
    if let Some(image_id) = inspected.image.as_deref().filter(|i| !i.is_empty()) {
        container = container.with_image_id(image_id);
    }
    if let Some(created) = inspected.created.as_deref().and_then(rfc3339) {
        container = container.with_created(created);
    }
    if let Some(started) = state
        .and_then(|s| s.started_at.as_deref())
        .and_then(rfc3339)
    {
        container = container.with_started(started);
    }
    if let Some(network) = network_identity(inspected) {
        container = container.with_network(network);
    }
    if let Some(privileged) = inspected.host_config.as_ref().and_then(|h| h.privileged) {
        container = container.with_privileged(privileged);
    }
    container = container
        .with_resources(resources(inspected))
        .with_mounts(mounts(inspected));
    let health = inspected
        .state
        .as_ref()
        .and_then(|state| state.health.as_ref()?.status.as_deref())
        .and_then(Health::parse);
    if let Some(health) = health {
        container = container.with_health(health);
    }
    if let Some(restarts) = inspected.restart_count.and_then(|n| u32::try_from(n).ok()) {
        container = container.with_restarts(restarts);
    }
    if let Some(pod) = pod {
        container = container.with_pod(std::sync::Arc::new(PodInfo {
            uid: pod.pod_id.as_str().into(),
            name: pod.pod_name.as_str().into(),
            ..Default::default()
        }));
    }
    Ok(match packer {
        Some(pack) => {
            let full = inspect_response(body).map_err(|e| EngineError::Protocol {
                endpoint: endpoint.to_owned(),
                message: format!("the inspect of {id} ({e})"),
            })?;
            pack(container, &full)
        }
        None => container,
    })
}

/// An RFC 3339 time as the engines write it; `None` for Docker's zero time
/// (`0001-01-01T00:00:00Z`, not set) and anything else before 1970.
fn rfc3339(text: &str) -> Option<SystemTime> {
    let parsed =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = u64::try_from(parsed.unix_timestamp_nanos()).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// The lifecycle event in an engine event, with the exit's OOM kill where
/// Docker sent an `oom` before its `die`; remembers an `oom`.
pub(crate) fn lifecycle_event(message: &EventMessage, kills: &mut OomKills) -> Option<EngineEvent> {
    if message.typ == Some(EventMessageTypeEnum::CONTAINER)
        && message.action.as_deref() == Some("oom")
    {
        if let Some(id) = message.actor.as_ref().and_then(|a| a.id.clone()) {
            kills.reported(id);
        }
        return None;
    }
    let mut event = engine_event(message)?;
    kills.take_in(&mut event);
    Some(event)
}

/// The lifecycle event in an engine event, if it is one: a container's
/// start, die (podman's native name: died, both with the exit code), pause
/// or unpause; a rename or a health check's new result as an update.
pub(crate) fn engine_event(message: &EventMessage) -> Option<EngineEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let kind = match message.action.as_deref()? {
        "start" => EventKind::Started,
        "die" | "died" => EventKind::Exited,
        "pause" => EventKind::Paused,
        "unpause" => EventKind::Unpaused,
        // The record changed: inspected again. Docker's health action is
        // `health_status: healthy` (and the like).
        "rename" => EventKind::Updated,
        action if action.starts_with("health_status") => EventKind::Updated,
        _ => return None,
    };
    let actor = message.actor.as_ref()?;
    let mut event = EngineEvent::new(kind, actor.id.clone()?);
    event.project = actor
        .attributes
        .as_ref()
        .and_then(|a| a.get(COMPOSE_PROJECT_LABEL).cloned());
    event.timestamp = match (message.time_nano, message.time) {
        (Some(nanos), _) if nanos > 0 => Some(UNIX_EPOCH + Duration::from_nanos(nanos as u64)),
        (_, Some(secs)) if secs > 0 => Some(UNIX_EPOCH + Duration::from_secs(secs as u64)),
        _ => None,
    };
    if kind == EventKind::Exited {
        let code = actor
            .attributes
            .as_ref()
            .and_then(|a| a.get("exitCode"))
            .and_then(|code| code.parse().ok());
        event = event.with_exit(Exit {
            code,
            oom_killed: None,
        });
    }
    Some(event)
}

/// What a ping's answer headers tell about the engine.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ping {
    /// Whether it is podman (`Server: Libpod/…`) rather than Docker.
    pub podman: bool,
    /// The engine's version.
    pub version: String,
    /// The engine's clock as `since` for events: whole seconds.
    pub since: String,
}

/// Reads a ping's `Server` (`Docker/20.10.24+dfsg1 (linux)`,
/// `Libpod/5.4.2 (linux)`) and `Date` headers; `None` unless both are
/// there and of that form.
pub(crate) fn ping(server: Option<&str>, date: Option<&str>) -> Option<Ping> {
    let (product, rest) = server?.split_once('/')?;
    let podman = match product {
        "Docker" => false,
        "Libpod" => true,
        _ => return None,
    };
    let version = rest.split_whitespace().next()?.to_owned();
    let clock = httpdate::parse_http_date(date?).ok()?;
    let since = clock
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs()
        .to_string();
    Some(Ping {
        podman,
        version,
        since,
    })
}

/// Parses a container inspect response, first mapping container states
/// that bollard's typed model does not know (podman's `stopped`,
/// `configured`, `initialized`) onto Docker's, and dropping any other
/// unknown one: one odd container must not fail a whole list.
pub(crate) fn inspect_response(body: &[u8]) -> Result<ContainerInspectResponse, serde_json::Error> {
    // Almost always the state is one bollard knows: parsed once, straight.
    if let Ok(parsed) = serde_json::from_slice(body) {
        return Ok(parsed);
    }
    let mut value: serde_json::Value = serde_json::from_slice(body)?;
    if let Some(state) = value.get_mut("State").and_then(|s| s.as_object_mut()) {
        let status = state
            .get("Status")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        let docker_status = match status {
            "" | "created" | "running" | "paused" | "restarting" | "removing" | "exited"
            | "dead" | "stopping" => Some(status),
            "stopped" => Some("exited"),
            "configured" | "initialized" => Some("created"),
            _ => None,
        }
        .map(str::to_owned);
        match docker_status {
            Some(status) => state.insert("Status".into(), status.into()),
            None => state.remove("Status"),
        };
    }
    serde_json::from_value(value)
}

/// Whether `id_or_name` could be a container's id (or a prefix of one) or
/// name on Docker and podman: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, a name with
/// Docker's leading slash too. Anything else names no container, and must
/// not reach the request's path (a space, `?`, `/`).
pub(crate) fn could_name_a_container(id_or_name: &str) -> bool {
    let name = id_or_name.strip_prefix('/').unwrap_or(id_or_name);
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Whether an inspect's error answer says the container is gone: HTTP
/// 404, or podman's HTTP 500 with the cause "no such container", its
/// answer to an inspect that found the container and lost it to a removal
/// before reading it.
pub(crate) fn says_no_such_container(status: u16, body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Failure<'a> {
        #[serde(borrow)]
        cause: Option<Cow<'a, str>>,
    }
    status == 404
        || status == 500
            && serde_json::from_slice::<Failure<'_>>(body)
                .is_ok_and(|failure| failure.cause.as_deref() == Some("no such container"))
}

/// The ids in a container list response, without parsing anything else
/// (the list's typed state is as strict as the inspect's).
pub(crate) fn listed_ids(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Listed {
        #[serde(rename = "Id")]
        id: String,
    }
    Ok(serde_json::from_slice::<Vec<Listed>>(body)?
        .into_iter()
        .map(|listed| listed.id)
        .collect())
}

/// The engine's id, stable across restarts. dockerd keeps its `/info`
/// `ID` in its data root. podman makes up a new one on every call, so its
/// id is its host name and storage root, which are unique per host and
/// user. `None` when the engine tells neither.
pub(crate) fn engine_id(info: &SystemInfo, podman: bool) -> Option<String> {
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    if podman {
        if let (Some(host), Some(root)) = (nonempty(&info.name), nonempty(&info.docker_root_dir)) {
            return Some(format!("{host}:{root}"));
        }
    }
    nonempty(&info.id)
}

/// A unix time as a [`SystemTime`](std::time::SystemTime), for tests.
#[cfg(test)]
fn at(nanos: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_inspect_that_lost_the_race_to_a_removal_says_no_such_container() {
        // As podman 5.4 answers an inspect racing `podman rm`.
        let lost = br#"{"cause":"no such container","message":"no container with ID 3a84bc602895 found in database: no such container","response":500}"#;
        assert!(says_no_such_container(500, lost));
        assert!(says_no_such_container(
            404,
            br#"{"message":"No such container: x"}"#
        ));
        assert!(!says_no_such_container(
            500,
            br#"{"message":"engine on fire"}"#
        ));
        assert!(!says_no_such_container(
            500,
            br#"{"cause":"database is locked"}"#
        ));
        assert!(!says_no_such_container(500, b"no such container"));
        assert!(!says_no_such_container(200, lost));
    }

    #[test]
    fn a_ping_tells_flavor_version_and_clock() {
        let date = Some("Mon, 23 Nov 2026 16:04:46 GMT");
        assert_eq!(
            ping(Some("Docker/20.10.24+dfsg1 (linux)"), date),
            Some(Ping {
                podman: false,
                version: "20.10.24+dfsg1".into(),
                since: "1795449886".into(),
            })
        );
        let podman = ping(Some("Libpod/5.4.2 (linux)"), date).unwrap();
        assert!(podman.podman);
        assert_eq!(podman.version, "5.4.2");
        assert_eq!(ping(Some("nginx/1.2"), date), None);
        assert_eq!(ping(Some("Docker/26.1.5 (linux)"), None), None);
        assert_eq!(ping(None, date), None);
    }

    use super::*;

    #[test]
    fn network_identity_has_the_mode_each_address_and_the_published_ports() {
        let body = br#"{
            "Id": "abc", "Name": "/web",
            "State": {"Running": true, "Pid": 42},
            "HostConfig": {"NetworkMode": "shop_net"},
            "NetworkSettings": {
                "Networks": {
                    "shop_net": {"IPAddress": "198.18.0.2", "GlobalIPv6Address": "fd00::2"},
                    "other": {"IPAddress": ""}
                },
                "Ports": {
                    "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
                    "53/udp": null
                }
            }
        }"#;
        let identity = network_identity(&parse_inspect(body).unwrap()).unwrap();
        assert_eq!(&*identity.mode, "shop_net");
        let addresses: Vec<(&str, &str)> = identity
            .addresses
            .iter()
            .map(|a| (&*a.network, &*a.ip))
            .collect();
        assert_eq!(
            addresses,
            [("shop_net", "198.18.0.2"), ("shop_net", "fd00::2")]
        );
        let ports: Vec<(u16, &str, &str, u16)> = identity
            .ports
            .iter()
            .map(|p| (p.container_port, &*p.protocol, &*p.host_ip, p.host_port))
            .collect();
        assert_eq!(
            ports,
            [(80, "tcp", "0.0.0.0", 8080), (80, "tcp", "::", 8080)]
        );
        // No network at all: nothing kept.
        let none = br#"{"Id": "n", "HostConfig": {"NetworkMode": "none"},
            "NetworkSettings": {"Networks": {"none": {"IPAddress": ""}}, "Ports": {}}}"#;
        assert_eq!(network_identity(&parse_inspect(none).unwrap()), None);
        // The host's network: no address of its own, but it says so.
        let host = br#"{"Id": "h", "HostConfig": {"NetworkMode": "host"},
            "NetworkSettings": {"Networks": {"host": {"IPAddress": ""}}}}"#;
        let host = network_identity(&parse_inspect(host).unwrap()).unwrap();
        assert_eq!((&*host.mode, host.addresses.len()), ("host", 0));
    }

    #[test]
    fn resources_are_the_limits_set_and_mounts_say_read_only() {
        let body = br#"{
            "Id": "abc",
            "HostConfig": {"CgroupParent": "/shop", "Memory": 0, "NanoCpus": 0,
                "CpuQuota": 25000, "CpuPeriod": 50000, "CpuShares": 0,
                "CpusetCpus": "", "CpusetMems": "0"},
            "Mounts": [
                {"Type": "volume", "Name": "v", "Source": "/var/lib/docker/volumes/v/_data",
                 "Destination": "/v", "RW": true},
                {"Type": "bind", "Source": "/etc", "Destination": "/host-etc", "RW": false}
            ]
        }"#;
        let inspected = parse_inspect(body).unwrap();
        assert_eq!(
            resources(&inspected),
            Resources {
                cgroup_parent: Some("/shop".into()),
                cpu_quota: Some(25_000),
                cpu_period: Some(50_000),
                cpuset_mems: Some("0".into()),
                ..Default::default()
            },
            "0 and \"\" are not set"
        );
        let told = mounts(&inspected);
        let told: Vec<(&str, &str, &str, bool)> = told
            .iter()
            .map(|m| (&*m.destination, &*m.source, &*m.kind, m.read_only))
            .collect();
        assert_eq!(
            told,
            [
                ("/v", "/var/lib/docker/volumes/v/_data", "volume", false),
                ("/host-etc", "/etc", "bind", true)
            ]
        );
        let none = parse_inspect(br#"{"Id": "n"}"#).unwrap();
        assert!(resources(&none).is_empty());
        assert!(mounts(&none).is_empty());
    }

    /// An inspect response captured from dockerd 26 on the rig (shortened).
    const DOCKER_INSPECT: &str = r#"{
        "Id": "bacfbd845efa3620b58547cdd7e91abe0106b4199b83965ad3e810743d68a638",
        "Name": "/shop-web-1",
        "Created": "2026-11-26T04:20:38.123456789Z",
        "Image": "sha256:2f1f7b0fc8bc91e1bc5e9fc9e4ba0ce3e0de7c6ad4c2e1a8a02b1d9d6b9f0c0e",
        "RestartCount": 2,
        "State": {"Status": "running", "Running": true, "Paused": false, "Restarting": false,
                  "OOMKilled": false, "Dead": false, "Pid": 4242, "ExitCode": 0,
                  "StartedAt": "2026-11-26T04:20:39.5Z", "FinishedAt": "0001-01-01T00:00:00Z"},
        "Config": {"Image": "nginx:1.27",
                   "Labels": {"com.docker.compose.project": "shop",
                              "com.docker.compose.service": "web"}},
        "HostConfig": {"Privileged": true, "NetworkMode": "none"}
    }"#;

    /// A paused container as podman 5's Docker API shows it (shortened).
    const PODMAN_PAUSED_INSPECT: &str = r#"{
        "Id": "f30a4d7b43dfaa22617d224c73927412ab176b12a9d28dad51901567eb855e66",
        "Name": "/inpod",
        "State": {"Status": "paused", "Running": false, "Paused": true, "Pid": 313},
        "Config": {"Labels": {"whalewatcher-rig": "image"}},
        "HostConfig": {"Privileged": false}
    }"#;

    const EXITED_INSPECT: &str = r#"{
        "Id": "dead", "Name": "/gone",
        "State": {"Status": "exited", "Running": false, "Paused": false, "Pid": 0, "ExitCode": 137}
    }"#;

    /// The record of an inspect body, as the engine makes it.
    fn record(
        json: &str,
        pod: Option<&PodMembership>,
        packer: Option<&Packer>,
    ) -> Result<Container, EngineError> {
        let body = json.as_bytes();
        container(&parse_inspect(body).unwrap(), body, pod, packer, "x")
    }

    #[test]
    fn docker_inspect_becomes_a_container_with_project_and_privileged_marker() {
        let c = record(DOCKER_INSPECT, None, None).unwrap();
        assert_eq!(c.name(), "shop-web-1", "no leading slash");
        assert_eq!(c.pid(), 4242);
        assert_eq!(c.project(), "shop");
        assert!(!c.is_paused());
        assert_eq!(c.label(PRIVILEGED_LABEL), Some(""));
        assert_eq!(c.label("com.docker.compose.service"), Some("web"));
        assert_eq!(c.image(), Some("nginx:1.27"), "as the user named it");
        assert_eq!(
            c.image_id(),
            Some("sha256:2f1f7b0fc8bc91e1bc5e9fc9e4ba0ce3e0de7c6ad4c2e1a8a02b1d9d6b9f0c0e")
        );
        assert_eq!(c.created(), Some(at(1_795_666_838_123_456_789)));
        assert_eq!(c.started(), Some(at(1_795_666_839_500_000_000)));
        assert_eq!(c.restarts(), Some(2));
        assert!(c.pod().is_none());
        let bare = record(PODMAN_PAUSED_INSPECT, None, None).unwrap();
        assert_eq!(
            (bare.image(), bare.created(), bare.restarts()),
            (None, None, None)
        );
    }

    #[test]
    fn labels_with_escapes_null_labels_and_unknown_fields_are_read() {
        let escaped = DOCKER_INSPECT.replace(
            r#""com.docker.compose.service": "web""#,
            r#""com.docker.compose.service": "web", "quote\"d": "line\nbreak \u00e9""#,
        );
        let c = record(&escaped, None, None).unwrap();
        assert_eq!(c.label("quote\"d"), Some("line\nbreak é"));
        assert_eq!(c.project(), "shop");
        let null = PODMAN_PAUSED_INSPECT.replace(r#"{"whalewatcher-rig": "image"}"#, "null");
        let c = record(&null, None, None).unwrap();
        assert!(c.labels().is_empty());
        let extra = DOCKER_INSPECT.replace(
            r#""Name""#,
            r#""Mounts": [{"x": [1, {"y": null}]}], "Name""#,
        );
        assert_eq!(record(&extra, None, None).unwrap().name(), "shop-web-1");
    }

    #[test]
    fn podman_paused_container_in_a_pod_gets_pod_labels() {
        let pod = PodMembership {
            id: "f30a4d7b43df".into(),
            pod_id: "165700d0c263".into(),
            pod_name: "rigpod".into(),
            is_infra: true,
        };
        let c = record(PODMAN_PAUSED_INSPECT, Some(&pod), None).unwrap();
        assert!(c.is_paused());
        assert_eq!(c.pid(), 313);
        assert_eq!(c.label(POD_NAME_LABEL), Some("rigpod"));
        assert_eq!(c.label(POD_ID_LABEL), Some("165700d0c263"));
        assert_eq!(c.label(INFRA_LABEL), Some(""));
        assert_eq!(c.label(PRIVILEGED_LABEL), None);
        assert_eq!(c.project(), "");
        let pod = c.pod().expect("the pod");
        assert_eq!(
            (&*pod.uid, &*pod.name, &*pod.namespace),
            ("165700d0c263", "rigpod", "")
        );
    }

    #[test]
    fn not_in_a_pod_means_no_pod_labels() {
        let pod = PodMembership {
            id: "x".into(),
            ..Default::default()
        };
        let c = record(PODMAN_PAUSED_INSPECT, Some(&pod), None).unwrap();
        assert_eq!(c.label(POD_ID_LABEL), None);
    }

    #[test]
    fn a_container_without_process_is_processless() {
        let err = record(EXITED_INSPECT, None, None).unwrap_err();
        assert!(matches!(err, EngineError::Processless { id } if id == "dead"));
    }

    #[test]
    fn the_packer_sees_the_raw_inspect_response_and_completes_the_record() {
        let packer: Packer = std::sync::Arc::new(|c: Container, raw: &ContainerInspectResponse| {
            let mode = raw
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.clone());
            let labels: Vec<(String, String)> = c
                .labels()
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .chain([("packed".to_owned(), "yes".to_owned())])
                .collect();
            c.with_labels(labels)
                .with_rucksack(std::sync::Arc::new(mode.unwrap_or_default()))
        });
        let c = record(DOCKER_INSPECT, None, Some(&packer)).unwrap();
        assert_eq!(c.rucksack::<String>().map(String::as_str), Some("none"));
        assert_eq!(c.label("packed"), Some("yes"));
        assert_eq!(c.project(), "shop", "the rest of the record stays");
    }

    #[test]
    fn lifecycle_events_are_mapped_and_others_dropped() {
        let event = |action: &str| -> EventMessage {
            serde_json::from_str(&format!(
                r#"{{"Type": "container", "Action": "{action}", "time": 1795350473,
                    "timeNano": 1795350473144202114,
                    "Actor": {{"ID": "abc", "Attributes": {{"com.docker.compose.project": "shop", "name": "web"}}}}}}"#
            ))
            .unwrap()
        };
        let started = engine_event(&event("start")).unwrap();
        assert_eq!(started.kind, EventKind::Started);
        assert_eq!(started.id, "abc");
        assert_eq!(started.project.as_deref(), Some("shop"));
        assert_eq!(started.timestamp, Some(at(1795350473144202114)));
        assert_eq!(engine_event(&event("die")).unwrap().kind, EventKind::Exited);
        assert_eq!(
            engine_event(&event("died")).unwrap().kind,
            EventKind::Exited
        );
        assert_eq!(
            engine_event(&event("pause")).unwrap().kind,
            EventKind::Paused
        );
        assert_eq!(
            engine_event(&event("unpause")).unwrap().kind,
            EventKind::Unpaused
        );
        // The record changed: to be inspected again.
        for updated in ["rename", "health_status: healthy", "health_status"] {
            assert_eq!(
                engine_event(&event(updated)).unwrap().kind,
                EventKind::Updated,
                "{updated}"
            );
        }
        for other in ["create", "kill", "destroy", "exec_start: sh"] {
            assert!(engine_event(&event(other)).is_none(), "{other}");
        }
        let network: EventMessage =
            serde_json::from_str(r#"{"Type": "network", "Action": "start", "Actor": {"ID": "n"}}"#)
                .unwrap();
        assert!(engine_event(&network).is_none());
    }

    #[test]
    fn an_exit_tells_its_code_and_an_oom_kill_reported_before_it() {
        let event = |action: &str, attributes: &str| -> EventMessage {
            serde_json::from_str(&format!(
                r#"{{"Type": "container", "Action": "{action}", "time": 1795350473,
                    "Actor": {{"ID": "abc", "Attributes": {{{attributes}}}}}}}"#
            ))
            .unwrap()
        };
        let mut kills = OomKills::default();
        let mut take_in = |message: EventMessage| lifecycle_event(&message, &mut kills);
        let died = take_in(event("die", r#""exitCode": "3""#)).unwrap();
        assert_eq!(
            died.exit,
            Some(Exit {
                code: Some(3),
                oom_killed: None
            })
        );
        assert!(take_in(event("oom", "")).is_none());
        let killed = take_in(event("die", r#""exitCode": "137""#)).unwrap();
        assert_eq!(
            killed.exit,
            Some(Exit {
                code: Some(137),
                oom_killed: Some(true)
            })
        );
        // An OOM kill belongs to one life of the container.
        assert!(take_in(event("oom", "")).is_none());
        assert!(take_in(event("start", "")).is_some());
        let later = take_in(event("die", r#""exitCode": "0""#)).unwrap();
        assert_eq!(later.exit.unwrap().oom_killed, None);
        let started = take_in(event("start", "")).unwrap();
        assert_eq!(started.exit, None);
    }

    #[test]
    fn a_podman_died_event_without_labels_still_names_the_container() {
        let died: EventMessage = serde_json::from_str(
            r#"{"Type": "container", "Action": "die", "timeNano": 5, "Actor": {"ID": "abc", "Attributes": {"exitCode": "137"}}}"#,
        )
        .unwrap();
        let event = engine_event(&died).unwrap();
        assert_eq!(
            (event.kind, event.id.as_str(), event.project),
            (EventKind::Exited, "abc", None)
        );
    }

    #[test]
    fn podman_only_states_do_not_break_parsing() {
        for (podman, docker) in [
            ("stopped", Some("exited")),
            ("initialized", Some("created")),
            ("weird", None),
        ] {
            let json = EXITED_INSPECT.replace("\"exited\"", &format!("\"{podman}\""));
            let parsed = inspect_response(json.as_bytes()).unwrap();
            let status = parsed.state.and_then(|s| s.status).map(|s| s.to_string());
            assert_eq!(status.as_deref(), docker, "{podman}");
        }
        for podman in ["stopped", "initialized", "weird"] {
            let json = DOCKER_INSPECT.replace("\"running\"", &format!("\"{podman}\""));
            assert_eq!(record(&json, None, None).unwrap().pid(), 4242, "{podman}");
        }
    }

    #[test]
    fn only_what_could_name_a_container_is_asked_for() {
        for good in ["4f2a", "shop-db-1", "/shop_db.1", "a"] {
            assert!(could_name_a_container(good), "{good}");
        }
        for bad in ["", "/", "no such one", "x?all=1", "../info", "-x", "a/b"] {
            assert!(!could_name_a_container(bad), "{bad}");
        }
    }

    #[test]
    fn list_ids_are_read_whatever_the_states() {
        let body = br#"[{"Id": "a", "State": "stopped"}, {"Id": "b", "State": "running", "Names": ["/b"]}]"#;
        assert_eq!(listed_ids(body).unwrap(), ["a", "b"]);
    }

    #[test]
    fn a_podmans_id_is_its_host_and_storage_root_a_dockerds_its_own() {
        let info = SystemInfo {
            id: Some("02819d8c-3508-431c-a5e1-bf6b90b456fb".into()),
            name: Some("box".into()),
            docker_root_dir: Some("/var/lib/containers/storage".into()),
            ..Default::default()
        };
        assert_eq!(
            engine_id(&info, true).as_deref(),
            Some("box:/var/lib/containers/storage")
        );
        assert_eq!(
            engine_id(&info, false).as_deref(),
            Some("02819d8c-3508-431c-a5e1-bf6b90b456fb")
        );
        assert_eq!(engine_id(&SystemInfo::default(), true), None);
    }
}
