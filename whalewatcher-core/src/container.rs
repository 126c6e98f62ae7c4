//! What the portfolio knows of one alive container.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

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
#[derive(Clone)]
pub struct Container {
    // Shared with the portfolio's id index, so that the index costs no copy.
    id: Arc<str>,
    name: Box<str>,
    labels: Labels,
    project: Box<str>,
    pid: u32,
    paused: bool,
    rucksack: Option<Rucksack>,
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
            rucksack: None,
        }
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

    /// The application-specific payload, if one of type `T` is attached.
    pub fn rucksack<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.rucksack.as_deref()?.downcast_ref()
    }
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("project", &self.project)
            .field("paused", &self.paused)
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
            && self.labels == other.labels
    }
}

impl Eq for Container {}

impl Serialize for Container {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Container", 6)?;
        s.serialize_field("id", &*self.id)?;
        s.serialize_field("name", &*self.name)?;
        s.serialize_field("pid", &self.pid)?;
        s.serialize_field("project", &*self.project)?;
        s.serialize_field("paused", &self.paused)?;
        s.serialize_field("labels", &self.labels)?;
        s.end()
    }
}

/// A container's labels: key-value pairs, unique by key, sorted by key.
///
/// Stored as one compact sorted slice rather than a map: containers carry a
/// handful of labels, are built once and never change, so a binary search
/// beats a tree's per-node overhead.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        let index = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.0[index].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels as `(key, value)` pairs, sorted by key.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for Labels {
    /// Collects labels; when a key repeats, the last value wins.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut pairs: Vec<(Box<str>, Box<str>)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // A stable sort keeps repeated keys in input order, so keeping the
        // last of each run makes the last value win.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            match unique.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => unique.push(pair),
            }
        }
        Labels(unique.into_boxed_slice())
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> From<std::collections::HashMap<K, V>> for Labels {
    fn from(map: std::collections::HashMap<K, V>) -> Self {
        map.into_iter().collect()
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> From<std::collections::BTreeMap<K, V>> for Labels {
    fn from(map: std::collections::BTreeMap<K, V>) -> Self {
        map.into_iter().collect()
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> From<Vec<(K, V)>> for Labels {
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
                "labels": {"com.docker.compose.project": "shop"}
            })
        );
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
