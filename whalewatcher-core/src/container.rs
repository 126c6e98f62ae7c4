//! What the portfolio knows of one alive container.

use std::any::Any;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::SystemTime;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::details::{Health, Mount, NetworkIdentity, PodInfo, Resources};

/// An application-specific payload attached to a [`Container`] by a
/// user-supplied packer from the engine's raw inspection data.
///
/// Kept type-erased so that the core stays engine-independent; get it back
/// with [`Container::rucksack`].
pub type Rucksack = Arc<dyn Any + Send + Sync>;

/// An alive container — running or paused, so with an initial process and
/// thus a PID.
///
/// Immutable once built and shared as `Arc<Container>`; a change such as a
/// pause replaces the whole value. Build one with [`Container::new`] and the
/// `with_*` methods.
///
/// Besides what the Go module keeps (id, name, labels, PID, project,
/// paused), it keeps what the engines tell anyway in the same answer — the
/// image, the times, the restart count, the pod — each `None` where an
/// engine does not tell.
#[derive(Clone)]
pub struct Container {
    // Shared with the portfolio's id index, so that the index costs no copy.
    id: Arc<str>,
    name: Box<str>,
    labels: Labels,
    project: Box<str>,
    pid: u32,
    paused: bool,
    // One byte each beside `paused`: no larger a record.
    health: Option<Health>,
    privileged: Option<bool>,
    // Shared, as many containers run one image.
    image: Option<Arc<str>>,
    image_id: Option<Arc<str>>,
    // Nanoseconds since 1970: half a SystemTime's size.
    created: Option<NonZeroU64>,
    started: Option<NonZeroU64>,
    restarts: Option<u32>,
    pod: Option<Arc<PodInfo>>,
    network: Option<Arc<NetworkIdentity>>,
    cgroup: Option<Box<str>>,
    resources: Option<Arc<Resources>>,
    mounts: Option<Arc<[Mount]>>,
    rucksack: Option<Rucksack>,
}

/// Shares equal strings between containers — image names and ids, which
/// many containers repeat — so that a portfolio holds each once. The
/// watcher passes every container through one; strings no container
/// holds any more are dropped as the pool grows, so it stays as large as
/// the images in use.
#[derive(Debug)]
pub struct StringPool {
    strings: std::collections::HashSet<Arc<str>>,
    /// When the pool has this many strings, the unused ones go.
    purge_at: usize,
}

impl Default for StringPool {
    fn default() -> Self {
        StringPool {
            strings: std::collections::HashSet::new(),
            purge_at: 64,
        }
    }
}

impl StringPool {
    /// The pooled string equal to `string`; `string` itself when new.
    pub fn share(&mut self, string: Arc<str>) -> Arc<str> {
        if let Some(pooled) = self.strings.get(&string) {
            return pooled.clone();
        }
        if self.strings.len() >= self.purge_at {
            self.strings.retain(|s| Arc::strong_count(s) > 1);
            self.purge_at = (2 * self.strings.len()).max(64);
        }
        self.strings.insert(string.clone());
        string
    }

    /// How many strings the pool holds.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

impl Container {
    /// A running (not paused) container with the given id, name and PID of
    /// its initial process, without labels and not part of a project.
    pub fn new(id: impl Into<Arc<str>>, name: impl Into<Box<str>>, pid: u32) -> Self {
        Container {
            id: id.into(),
            name: name.into(),
            labels: Labels::default(),
            project: Box::from(""),
            pid,
            paused: false,
            health: None,
            privileged: None,
            network: None,
            cgroup: None,
            resources: None,
            mounts: None,
            image: None,
            image_id: None,
            created: None,
            started: None,
            restarts: None,
            pod: None,
            rucksack: None,
        }
    }

    /// Sets the image as the container was created from it (the reference
    /// as the user named it, such as `nginx:1.27`).
    pub fn with_image(mut self, image: impl Into<Arc<str>>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sets the id (or digest) of the image, as the engine tells it.
    pub fn with_image_id(mut self, image_id: impl Into<Arc<str>>) -> Self {
        self.image_id = Some(image_id.into());
        self
    }

    /// Sets when the container was created (a time before 1970 is none).
    pub fn with_created(mut self, created: SystemTime) -> Self {
        self.created = to_nanos(created);
        self
    }

    /// Sets when the container's initial process started (a time before
    /// 1970 is none).
    pub fn with_started(mut self, started: SystemTime) -> Self {
        self.started = to_nanos(started);
        self
    }

    /// Sets how often the engine restarted the container (Docker's restart
    /// count, a CRI container's attempt).
    pub fn with_restarts(mut self, restarts: u32) -> Self {
        self.restarts = Some(restarts);
        self
    }

    /// Shares the image name and id with the other containers of `pool`.
    pub fn with_shared_strings(mut self, pool: &mut StringPool) -> Self {
        self.image = self.image.map(|image| pool.share(image));
        self.image_id = self.image_id.map(|id| pool.share(id));
        self
    }

    /// Sets the pod the container belongs to.
    pub fn with_pod(mut self, pod: Arc<PodInfo>) -> Self {
        self.pod = Some(pod);
        self
    }

    /// Sets the labels.
    pub fn with_labels(mut self, labels: impl Into<Labels>) -> Self {
        self.labels = labels.into();
        self
    }

    /// Sets the (compose) project name; `""` means no project.
    pub fn with_project(mut self, project: impl Into<Box<str>>) -> Self {
        self.project = project.into();
        self
    }

    /// Sets whether the container is paused.
    pub fn with_paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }

    /// Sets where the container is on the network.
    pub fn with_network(mut self, network: NetworkIdentity) -> Self {
        self.network = Some(Arc::new(network));
        self
    }

    /// Sets where the container is on the network, sharing the value with
    /// other containers in the same place (a pod's).
    pub fn with_shared_network(mut self, network: Arc<NetworkIdentity>) -> Self {
        self.network = Some(network);
        self
    }

    /// Marked privileged (`true`) or not, as its engine tells.
    pub fn with_privileged(mut self, privileged: bool) -> Self {
        self.privileged = Some(privileged);
        self
    }

    /// With its cgroup, as a path (see [`cgroup`](Self::cgroup)).
    pub fn with_cgroup(mut self, cgroup: impl Into<Box<str>>) -> Self {
        self.cgroup = Some(cgroup.into());
        self
    }

    /// With its limits; nothing is kept when `resources` tells nothing.
    pub fn with_resources(mut self, resources: Resources) -> Self {
        self.resources = (!resources.is_empty()).then(|| Arc::new(resources));
        self
    }

    /// With its mounts, sorted by destination; nothing is kept for none.
    pub fn with_mounts(mut self, mounts: impl Into<Vec<Mount>>) -> Self {
        let mut mounts = mounts.into();
        mounts.sort();
        self.mounts = (!mounts.is_empty()).then(|| mounts.into());
        self
    }

    /// Sets the container's health, as its engine's health check tells.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// Sets the PID of the container's initial process.
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = pid;
        self
    }

    /// Attaches an application-specific payload.
    pub fn with_rucksack(mut self, rucksack: Rucksack) -> Self {
        self.rucksack = Some(rucksack);
        self
    }

    /// The container's unique id; for engines with namespaces this is the
    /// engine's display id (for example `namespace/id` for containerd).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id as the shared string the portfolio indexes by.
    pub(crate) fn shared_id(&self) -> &Arc<str> {
        &self.id
    }

    /// The container's name (without Docker's leading slash).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The value of one label, if the container has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }

    /// The (compose) project the container belongs to; `""` when none.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The PID of the container's initial process, as the engine reports it
    /// (in the engine's PID namespace).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the container is paused (its processes frozen).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Where the container is on the network — its mode, addresses and
    /// published ports — where the engine tells (Docker, podman); `None`
    /// for a container with no network (mode `none`, no address, no port).
    pub fn network(&self) -> Option<&Arc<NetworkIdentity>> {
        self.network.as_ref()
    }

    /// The result of the container's health check, where it has one and
    /// the engine tells (Docker, podman); kept current as the engine
    /// reports a change.
    pub fn health(&self) -> Option<Health> {
        self.health
    }

    /// Whether the container runs privileged, where the engine tells
    /// (Docker, podman, a CRI runtime's verbose status).
    pub fn privileged(&self) -> Option<bool> {
        self.privileged
    }

    /// Its cgroup, where known: as a path below the reader's cgroup root
    /// (`/proc/PID/cgroup`, for containerd in the reader's PID namespace)
    /// or as the engine names it (a CRI runtime's `cgroupsPath`, which may
    /// be systemd's `slice:prefix:name`).
    pub fn cgroup(&self) -> Option<&str> {
        self.cgroup.as_deref()
    }

    /// Its resource limits, where the engine tells any.
    pub fn resources(&self) -> Option<&Arc<Resources>> {
        self.resources.as_ref()
    }

    /// Its mounts, sorted by destination; empty where it has none or the
    /// engine does not tell (containerd, whose spec is not read).
    pub fn mounts(&self) -> &[Mount] {
        self.mounts.as_deref().unwrap_or_default()
    }

    /// The image as the container was created from it, if the engine tells.
    pub fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }

    /// The image's id or digest, if the engine tells.
    pub fn image_id(&self) -> Option<&str> {
        self.image_id.as_deref()
    }

    /// When the container was created, if the engine tells.
    pub fn created(&self) -> Option<SystemTime> {
        self.created.map(from_nanos)
    }

    /// When the container's initial process started, if the engine tells.
    pub fn started(&self) -> Option<SystemTime> {
        self.started.map(from_nanos)
    }

    /// How often the engine restarted the container, if it counts.
    pub fn restarts(&self) -> Option<u32> {
        self.restarts
    }

    /// The pod the container belongs to, if any.
    pub fn pod(&self) -> Option<&Arc<PodInfo>> {
        self.pod.as_ref()
    }

    /// The application-specific payload, if one of type `T` is attached.
    pub fn rucksack<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.rucksack.as_deref()?.downcast_ref()
    }
}

fn to_nanos(time: SystemTime) -> Option<NonZeroU64> {
    unix_nanos(time).and_then(NonZeroU64::new)
}

/// A time as nanoseconds since the Unix epoch, like the engines' own
/// `timeNano` fields; `None` before the epoch. (Here, not in `event`,
/// which uses containers: no import loop.)
pub(crate) fn unix_nanos(time: SystemTime) -> Option<u64> {
    let nanos = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    u64::try_from(nanos).ok()
}

fn from_nanos(nanos: NonZeroU64) -> SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos.get())
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("project", &self.project)
            .field("paused", &self.paused)
            .field("image", &self.image)
            .field("pod", &self.pod)
            .field("labels", &self.labels)
            .field("rucksack", &self.rucksack.is_some())
            .finish()
    }
}

/// Equality ignores the rucksack, which is opaque.
impl PartialEq for Container {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.name == other.name
            && self.pid == other.pid
            && self.project == other.project
            && self.paused == other.paused
            && self.health == other.health
            && self.labels == other.labels
            && self.image == other.image
            && self.image_id == other.image_id
            && self.created == other.created
            && self.started == other.started
            && self.restarts == other.restarts
            && self.pod == other.pod
            && self.network == other.network
            && self.privileged == other.privileged
            && self.cgroup == other.cgroup
            && self.resources == other.resources
            && self.mounts == other.mounts
    }
}

impl Eq for Container {}

impl Serialize for Container {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let nanos = |t: &Option<NonZeroU64>| t.map(NonZeroU64::get);
        let mut s = serializer.serialize_struct("Container", 19)?;
        s.serialize_field("id", &*self.id)?;
        s.serialize_field("name", &*self.name)?;
        s.serialize_field("pid", &self.pid)?;
        s.serialize_field("project", &*self.project)?;
        s.serialize_field("paused", &self.paused)?;
        s.serialize_field("health", &self.health)?;
        s.serialize_field("image", &self.image.as_deref())?;
        s.serialize_field("image_id", &self.image_id.as_deref())?;
        s.serialize_field("created", &nanos(&self.created))?;
        s.serialize_field("started", &nanos(&self.started))?;
        s.serialize_field("restarts", &self.restarts)?;
        s.serialize_field("pod", &self.pod.as_deref())?;
        s.serialize_field("network", &self.network.as_deref())?;
        s.serialize_field("privileged", &self.privileged)?;
        s.serialize_field("cgroup", &self.cgroup.as_deref())?;
        s.serialize_field("resources", &self.resources.as_deref())?;
        s.serialize_field("mounts", self.mounts())?;
        s.serialize_field("labels", &self.labels)?;
        s.end()
    }
}

/// A container's labels: key-value pairs, unique by key, sorted by key.
///
/// Stored as all keys and values in one string plus where each ends,
/// rather than a map or a string per key and value: containers carry a
/// handful of labels, are built once and never change, so a binary search
/// over one buffer beats a tree's per-node overhead and costs two
/// allocations, not two per label.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels {
    /// Key, value, key, value, … one after the other.
    text: Box<str>,
    /// Where each key and each value ends in `text`.
    ends: Box<[u32]>,
}

impl Labels {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = (low + high) / 2;
            let (k, v) = self.pair(middle);
            match k.cmp(key) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some(v),
            }
        }
        None
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The labels as `(key, value)` pairs, sorted by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        (0..self.len()).map(|index| self.pair(index))
    }

    /// The `index`th pair.
    fn pair(&self, index: usize) -> (&str, &str) {
        let start = match index {
            0 => 0,
            _ => self.ends[2 * index - 1] as usize,
        };
        let key_end = self.ends[2 * index] as usize;
        let value_end = self.ends[2 * index + 1] as usize;
        (&self.text[start..key_end], &self.text[key_end..value_end])
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    /// Collects labels; when a key repeats, the last value wins.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(K, V)> = iter.into_iter().collect();
        // A stable sort keeps repeated keys in input order, so keeping the
        // last of each run makes the last value win.
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let mut unique: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
        for (key, value) in &pairs {
            let pair = (key.as_ref(), value.as_ref());
            match unique.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => unique.push(pair),
            }
        }
        let mut text = String::with_capacity(unique.iter().map(|(k, v)| k.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(2 * unique.len());
        for (key, value) in unique {
            for part in [key, value] {
                text.push_str(part);
                ends.push(u32::try_from(text.len()).expect("labels of less than 4 GiB"));
            }
        }
        Labels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl<K: AsRef<str>, V: AsRef<str>> From<std::collections::HashMap<K, V>> for Labels {
    fn from(map: std::collections::HashMap<K, V>) -> Self {
        map.into_iter().collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> From<std::collections::BTreeMap<K, V>> for Labels {
    fn from(map: std::collections::BTreeMap<K, V>) -> Self {
        map.into_iter().collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> From<Vec<(K, V)>> for Labels {
    fn from(pairs: Vec<(K, V)>) -> Self {
        pairs.into_iter().collect()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_unique_and_the_last_value_wins() {
        let labels = Labels::from([("b", "1"), ("a", "2"), ("b", "3")]);
        assert_eq!(labels.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
        assert_eq!(labels.get("b"), Some("3"));
        assert_eq!(labels.get("c"), None);
        assert!(labels.contains_key("a"));
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn labels_find_every_key_empty_keys_and_values_included() {
        let pairs: Vec<(String, String)> = (0..37)
            .map(|i| (format!("key-{i:02}"), "v".repeat(i % 4)))
            .chain([(String::new(), "empty key".to_owned())])
            .collect();
        let labels: Labels = pairs.iter().map(|(k, v)| (k, v)).collect();
        assert_eq!(labels.len(), 38);
        for (key, value) in &pairs {
            assert_eq!(labels.get(key), Some(value.as_str()), "{key:?}");
        }
        assert_eq!(labels.get("key-37"), None);
        assert_eq!(labels.get("zzz"), None);
        let empty = Labels::default();
        assert!(empty.is_empty() && empty.get("").is_none());
        assert_eq!(empty.iter().count(), 0);
        assert_eq!(Labels::from(Vec::<(&str, &str)>::new()), empty);
    }

    #[test]
    fn container_serializes_without_rucksack() {
        let container = Container::new("abc", "web", 42)
            .with_project("shop")
            .with_labels([("com.docker.compose.project", "shop")])
            .with_rucksack(Arc::new(7u8));
        let json = serde_json::to_value(&container).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "abc", "name": "web", "pid": 42, "project": "shop", "paused": false,
                "health": null, "image": null, "image_id": null, "created": null, "started": null,
                "restarts": null, "pod": null, "network": null,
                "privileged": null, "cgroup": null, "resources": null, "mounts": [],
                "labels": {"com.docker.compose.project": "shop"}
            })
        );
        let pod = Arc::new(PodInfo {
            uid: "u1".into(),
            name: "shop".into(),
            namespace: "retail".into(),
            ..Default::default()
        });
        let detailed = Container::new("abc", "web", 42)
            .with_image("nginx:1.27")
            .with_image_id("sha256:0123")
            .with_created(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(5))
            .with_started(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1))
            .with_restarts(2)
            .with_pod(pod);
        let json = serde_json::to_value(&detailed).unwrap();
        assert_eq!(json["image"], "nginx:1.27");
        assert_eq!(json["image_id"], "sha256:0123");
        assert_eq!(json["created"], 5);
        assert_eq!(json["started"], 1_000_000_000);
        assert_eq!(json["restarts"], 2);
        assert_eq!(
            json["pod"],
            serde_json::json!({
                "uid": "u1", "name": "shop", "namespace": "retail", "sandbox_id": "",
                "labels": {}, "annotations": {},
                "host_namespaces": {"network": false, "pid": false, "ipc": false}
            })
        );
    }

    #[test]
    fn resources_and_mounts_are_kept_only_when_told() {
        let bare = Container::new("a", "a", 1)
            .with_resources(Resources::default())
            .with_mounts(Vec::new());
        assert_eq!((bare.resources(), bare.mounts()), (None, &[][..]));
        let mount = |destination: &str| Mount {
            destination: destination.into(),
            source: "/src".into(),
            kind: "bind".into(),
            read_only: true,
        };
        let told = Container::new("a", "a", 1)
            .with_privileged(true)
            .with_resources(Resources {
                memory_limit: Some(1 << 20),
                ..Default::default()
            })
            .with_mounts(vec![mount("/z"), mount("/a")]);
        assert_ne!(told, bare, "equality sees them");
        assert_eq!(told.mounts(), &[mount("/a"), mount("/z")], "sorted");
        let json = serde_json::to_value(&told).unwrap();
        assert_eq!(json["privileged"], true);
        assert_eq!(json["resources"]["memory_limit"], 1 << 20);
        assert_eq!(json["resources"]["cpu_quota"], serde_json::Value::Null);
        assert_eq!(
            json["mounts"][0],
            serde_json::json!({"destination": "/a", "source": "/src", "kind": "bind", "read_only": true})
        );
    }

    #[test]
    fn a_string_pool_shares_equal_strings_and_forgets_unused_ones() {
        let mut pool = StringPool::default();
        let a = Container::new("a", "a", 1)
            .with_image("nginx:1.27")
            .with_shared_strings(&mut pool);
        let b = Container::new("b", "b", 2)
            .with_image(String::from("nginx:1.27"))
            .with_shared_strings(&mut pool);
        let (a_image, b_image) = (a.image.clone().unwrap(), b.image.clone().unwrap());
        assert!(Arc::ptr_eq(&a_image, &b_image), "one string for both");
        drop((a, b, a_image, b_image));
        for i in 0..200 {
            let image: Arc<str> = Arc::from(format!("image-{i}"));
            pool.share(image);
        }
        assert!(pool.len() < 100, "unused strings go: {}", pool.len());
    }

    #[test]
    fn rucksack_comes_back_only_as_its_own_type() {
        let container = Container::new("abc", "web", 42).with_rucksack(Arc::new(String::from("x")));
        assert_eq!(
            container.rucksack::<String>().map(String::as_str),
            Some("x")
        );
        assert!(container.rucksack::<u32>().is_none());
        assert!(Container::new("d", "e", 1).rucksack::<String>().is_none());
    }
}
