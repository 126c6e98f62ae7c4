//! The portfolio: all alive containers of one engine, grouped into projects.
//!
//! A [`Portfolio`] is an immutable value built from persistent maps, so a
//! snapshot costs an `Arc` increment, a change shares everything it did not
//! touch with the previous snapshot, and a reader holding a snapshot never
//! sees it torn or blocks the writer.

use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::container::Container;
use crate::details::PodInfo;
use crate::event::EventKind;

/// All containers by id: the look-up of the read path. foldhash instead
/// of SipHash: ids come from the engine, and the read path is
/// hashing-bound.
type IdMap = imbl::GenericHashMap<
    Arc<str>,
    Arc<Container>,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// A project's or a pod's containers, by id. A B-tree, not a hash trie:
/// its nodes are at least half full, where a hash trie's fixed-width
/// nodes stand mostly empty once a level overflows (at 50,000 containers
/// in one project, the B-tree took 135 bytes less per container). Keyed
/// by the id's hash first, so that its comparisons read a number in the
/// node, not the id behind a pointer; the id decides between equal
/// hashes.
#[derive(Clone, Default)]
struct GroupMap(imbl::OrdMap<GroupKey, Arc<Container>>);

/// An id and its hash, ordered by the hash, then the id (the fields'
/// order), as a [`GroupQuery`] is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    hash: u64,
    id: Arc<str>,
}

/// The hash groups are ordered by: the same in every portfolio.
fn group_hash(id: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(id)
}

/// What a group's keys are compared as: a [`GroupKey`], or an id and its
/// hash to look one up without making a key.
trait GroupQuery {
    fn parts(&self) -> (u64, &str);
}

impl GroupQuery for GroupKey {
    fn parts(&self) -> (u64, &str) {
        (self.hash, &self.id)
    }
}

impl GroupQuery for (u64, &str) {
    fn parts(&self) -> (u64, &str) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn GroupQuery + 'a> for GroupKey {
    fn borrow(&self) -> &(dyn GroupQuery + 'a) {
        self
    }
}

impl PartialEq for dyn GroupQuery + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn GroupQuery + '_ {}

impl PartialOrd for dyn GroupQuery + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn GroupQuery + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl GroupMap {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, id: &str) -> Option<&Arc<Container>> {
        let query: &dyn GroupQuery = &(group_hash(id), id);
        self.0.get(query)
    }

    fn insert(&mut self, container: Arc<Container>) {
        let key = GroupKey {
            hash: group_hash(container.id()),
            id: container.shared_id().clone(),
        };
        self.0.insert(key, container);
    }

    fn remove(&mut self, id: &str) {
        let query: &dyn GroupQuery = &(group_hash(id), id);
        self.0.remove(query);
    }

    fn values(&self) -> impl ExactSizeIterator<Item = &Arc<Container>> {
        self.0.values()
    }
}

/// A (compose) project and its alive containers.
///
/// The unnamed project `""` holds every container that belongs to no
/// project; it always exists, even when empty. A named project exists only
/// while it has containers.
#[derive(Clone)]
pub struct Project {
    name: Arc<str>,
    containers: GroupMap,
}

impl Project {
    fn new(name: Arc<str>) -> Self {
        Project {
            name,
            containers: GroupMap::default(),
        }
    }

    /// The project's name; `""` for the unnamed project.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of containers in this project.
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    /// Whether the project has no containers (only ever true for `""`).
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    /// The container with this id, if it belongs to this project.
    pub fn container(&self, id: &str) -> Option<&Arc<Container>> {
        self.containers.get(id)
    }

    /// The container with this id or, failing that, this name.
    ///
    /// The name look-up scans the project.
    pub fn find(&self, name_or_id: &str) -> Option<&Arc<Container>> {
        self.container(name_or_id)
            .or_else(|| self.containers().find(|c| c.name() == name_or_id))
    }

    /// The project's containers, in no particular order.
    pub fn containers(&self) -> impl ExactSizeIterator<Item = &Arc<Container>> {
        self.containers.values()
    }

    /// The project's containers sorted by name, then id.
    pub fn containers_by_name(&self) -> Vec<&Arc<Container>> {
        let mut containers: Vec<_> = self.containers().collect();
        containers.sort_by(|a, b| (a.name(), a.id()).cmp(&(b.name(), b.id())));
        containers
    }
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("name", &self.name)
            .field("containers", &self.containers_by_name())
            .finish()
    }
}

impl Serialize for Project {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Project", 2)?;
        s.serialize_field("name", &*self.name)?;
        s.serialize_field("containers", &self.containers_by_name())?;
        s.end()
    }
}

/// A pod — a Kubernetes pod of a CRI engine, or a podman pod — and its
/// alive containers (a CRI pod's sandbox among them).
#[derive(Clone)]
pub struct Pod {
    info: Arc<PodInfo>,
    containers: GroupMap,
}

impl Pod {
    /// The pod's uid, name and namespace.
    pub fn info(&self) -> &PodInfo {
        &self.info
    }

    /// The number of the pod's alive containers.
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    /// Whether the pod has no alive containers (never, in a portfolio).
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    /// The pod's containers, in no particular order.
    pub fn containers(&self) -> impl ExactSizeIterator<Item = &Arc<Container>> {
        self.containers.values()
    }
}

impl std::fmt::Debug for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut containers: Vec<_> = self.containers().collect();
        containers.sort_by(|a, b| a.id().cmp(b.id()));
        f.debug_struct("Pod")
            .field("info", &self.info)
            .field("containers", &containers)
            .finish()
    }
}

/// All alive containers of one engine, indexed by id and grouped into
/// projects and pods; an immutable, consistent snapshot.
///
/// Cloning is cheap (a few reference counts) and [`insert`](Self::insert) /
/// [`remove`](Self::remove) return nothing shared with other clones, so a
/// consumer may keep its own copy up to date from the event stream.
#[derive(Clone)]
pub struct Portfolio {
    containers: IdMap,
    projects: imbl::OrdMap<Arc<str>, Project>,
    /// By uid; only pods with alive containers.
    pods: imbl::OrdMap<Box<str>, Pod>,
    revision: u64,
}

impl Default for Portfolio {
    fn default() -> Self {
        let unnamed: Arc<str> = Arc::from("");
        Portfolio {
            containers: IdMap::default(),
            projects: imbl::OrdMap::unit(unnamed.clone(), Project::new(unnamed)),
            pods: imbl::OrdMap::new(),
            revision: 0,
        }
    }
}

impl Portfolio {
    /// An empty portfolio (with just the empty unnamed project).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times the watcher published a change: each
    /// [`Event`](crate::Event) carries the revision it produced, so the
    /// first event after a snapshot of revision `r` has revision `r + 1`.
    /// [`insert`](Self::insert) and [`remove`](Self::remove) leave it alone.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub(crate) fn set_revision(&mut self, revision: u64) {
        self.revision = revision;
    }

    /// The total number of containers.
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    /// Whether there are no containers at all.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    /// The container with this id.
    pub fn container(&self, id: &str) -> Option<&Arc<Container>> {
        self.containers.get(id)
    }

    /// The container with this id or, failing that, this name.
    ///
    /// The id look-up is a hash look-up; the name look-up scans.
    pub fn find(&self, name_or_id: &str) -> Option<&Arc<Container>> {
        self.container(name_or_id)
            .or_else(|| self.containers().find(|c| c.name() == name_or_id))
    }

    /// All containers, in no particular order.
    pub fn containers(&self) -> impl ExactSizeIterator<Item = &Arc<Container>> {
        self.containers.values()
    }

    /// The project with this name; `""` always exists.
    pub fn project(&self, name: &str) -> Option<&Project> {
        self.projects.get(name)
    }

    /// All projects, sorted by name, so the unnamed project `""` comes first.
    pub fn projects(&self) -> impl ExactSizeIterator<Item = &Project> {
        self.projects.values()
    }

    /// The names of all projects, sorted, so `""` comes first.
    pub fn project_names(&self) -> Vec<&str> {
        self.projects.keys().map(|name| &**name).collect()
    }

    /// The pods with alive containers, sorted by uid.
    pub fn pods(&self) -> impl ExactSizeIterator<Item = &Pod> {
        self.pods.values()
    }

    /// The pod with this uid, if it has alive containers.
    pub fn pod(&self, uid: &str) -> Option<&Pod> {
        self.pods.get(uid)
    }

    /// Adds a container, or replaces the one with the same id; returns the
    /// replaced one.
    pub fn insert(&mut self, container: impl Into<Arc<Container>>) -> Option<Arc<Container>> {
        let container = container.into();
        let id = container.shared_id().clone();
        let replaced = self.containers.insert(id.clone(), container.clone());
        if let Some(old) = &replaced {
            if old.project() != container.project() {
                self.remove_from_project(old);
            }
            if old.pod().map(|p| &p.uid) != container.pod().map(|p| &p.uid) {
                self.remove_from_pod(old);
            }
        }
        if let Some(info) = container.pod() {
            match self.pods.get_mut(&*info.uid) {
                Some(pod) => {
                    pod.containers.insert(container.clone());
                }
                None => {
                    let mut pod = Pod {
                        info: info.clone(),
                        containers: GroupMap::default(),
                    };
                    pod.containers.insert(container.clone());
                    self.pods.insert(info.uid.clone(), pod);
                }
            }
        }
        match self.projects.get_mut(container.project()) {
            Some(project) => {
                project.containers.insert(container);
            }
            None => {
                let name: Arc<str> = Arc::from(container.project());
                let mut project = Project::new(name.clone());
                project.containers.insert(container);
                self.projects.insert(name, project);
            }
        }
        replaced
    }

    /// Removes the container with this id, whatever project it is in;
    /// returns it.
    pub fn remove(&mut self, id: &str) -> Option<Arc<Container>> {
        let removed = self.containers.remove(id)?;
        self.remove_from_project(&removed);
        self.remove_from_pod(&removed);
        Some(removed)
    }

    fn remove_from_pod(&mut self, container: &Container) {
        let Some(uid) = container.pod().map(|p| &p.uid) else {
            return;
        };
        let Some(pod) = self.pods.get_mut(&**uid) else {
            return;
        };
        pod.containers.remove(container.id());
        if pod.is_empty() {
            self.pods.remove(&**uid);
        }
    }

    fn remove_from_project(&mut self, container: &Container) {
        let name = container.project();
        let Some(project) = self.projects.get_mut(name) else {
            return;
        };
        project.containers.remove(container.id());
        if project.is_empty() && !name.is_empty() {
            self.projects.remove(name);
        }
    }

    /// What happened between `old` and `self`, as the events a subscriber
    /// who saw `old` needs to arrive at `self` (see [`Difference`]).
    pub(crate) fn changes_since(&self, old: &Portfolio) -> Vec<Change> {
        let mut difference = Difference::default();
        for before in old.containers() {
            difference.add(Some(before), self.container(before.id()));
        }
        for now in self.containers() {
            if old.container(now.id()).is_none() {
                difference.add(None, Some(now));
            }
        }
        difference.into_events()
    }

    /// Makes this portfolio hold exactly `listed`, keeping the records that
    /// did not change (they stay shared with earlier snapshots); returns
    /// the ids of the containers that came, went or changed.
    pub(crate) fn replace_all(&mut self, listed: Vec<Container>) -> Vec<Arc<str>> {
        // Only the ids: a map of the records themselves would hold a
        // second copy of the whole list while the portfolio is built.
        let ids: std::collections::HashSet<&str, foldhash::fast::RandomState> =
            listed.iter().map(Container::id).collect();
        let gone: Vec<Arc<str>> = self
            .containers
            .keys()
            .filter(|id| !ids.contains(&***id))
            .cloned()
            .collect();
        drop(ids);
        let mut touched = gone.clone();
        for id in gone {
            self.remove(&id);
        }
        for now in listed {
            if self
                .container(now.id())
                .is_some_and(|before| **before == now)
            {
                continue;
            }
            touched.push(now.shared_id().clone());
            self.insert(now);
        }
        touched
    }
}

/// A change of one container, as a subscriber is told it.
pub(crate) type Change = (EventKind, Arc<Container>);

/// The events that take a subscriber from one state of some containers to
/// another: exited for what vanished, started for what is new, exited then
/// started for a container whose initial process changed (it restarted),
/// paused/unpaused for a changed pause state (carrying any other change
/// too), updated for any other change of the record, nothing for the
/// unchanged.
///
/// Ordered by kind — exits first, then starts, pause changes and updates —
/// then by id, so a restart's exit precedes its start and the result is
/// deterministic.
#[derive(Debug, Default)]
pub(crate) struct Difference {
    exited: Vec<Change>,
    started: Vec<Change>,
    toggled: Vec<Change>,
    updated: Vec<Change>,
}

impl Difference {
    /// Adds what changed for one container from `before` to `after`
    /// (`None`: not alive).
    pub(crate) fn add(&mut self, before: Option<&Arc<Container>>, after: Option<&Arc<Container>>) {
        match (before, after) {
            (None, None) => {}
            (None, Some(now)) => self.started.push((EventKind::Started, now.clone())),
            (Some(then), None) => self.exited.push((EventKind::Exited, then.clone())),
            (Some(then), Some(now)) if Arc::ptr_eq(then, now) => {}
            (Some(then), Some(now)) if then.pid() != now.pid() => {
                self.exited.push((EventKind::Exited, then.clone()));
                self.started.push((EventKind::Started, now.clone()));
            }
            (Some(then), Some(now)) if then.is_paused() != now.is_paused() => {
                let kind = if now.is_paused() {
                    EventKind::Paused
                } else {
                    EventKind::Unpaused
                };
                self.toggled.push((kind, now.clone()));
            }
            (Some(then), Some(now)) if then != now => {
                self.updated.push((EventKind::Updated, now.clone()));
            }
            (Some(_), Some(_)) => {}
        }
    }

    /// Whether nothing changed.
    pub(crate) fn is_empty(&self) -> bool {
        self.exited.is_empty()
            && self.started.is_empty()
            && self.toggled.is_empty()
            && self.updated.is_empty()
    }

    /// The changes in their order.
    pub(crate) fn into_events(self) -> Vec<Change> {
        let mut groups = [self.exited, self.started, self.toggled, self.updated];
        let mut events = Vec::with_capacity(groups.iter().map(Vec::len).sum());
        for group in &mut groups {
            group.sort_by(|a, b| a.1.id().cmp(b.1.id()));
            events.append(group);
        }
        events
    }
}

impl<C: Into<Arc<Container>>> FromIterator<C> for Portfolio {
    fn from_iter<I: IntoIterator<Item = C>>(iter: I) -> Self {
        let mut portfolio = Portfolio::new();
        for container in iter {
            portfolio.insert(container);
        }
        portfolio
    }
}

impl std::fmt::Debug for Portfolio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.projects()).finish()
    }
}

/// Two portfolios are equal when they hold equal containers, whatever
/// their revisions.
impl PartialEq for Portfolio {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .containers()
                .all(|c| other.container(c.id()).is_some_and(|o| **o == **c))
    }
}

impl Serialize for Portfolio {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let projects: Vec<&Project> = self.projects().collect();
        let mut s = serializer.serialize_struct("Portfolio", 1)?;
        s.serialize_field("projects", &projects)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, project: &str) -> Container {
        Container::new(id, format!("name-{id}"), 100).with_project(project)
    }

    #[test]
    fn unnamed_project_always_exists_named_ones_vanish_with_their_last_container() {
        let mut portfolio = Portfolio::new();
        assert!(portfolio.project("").is_some_and(Project::is_empty));
        portfolio.insert(container("a", "shop"));
        portfolio.insert(container("b", "shop"));
        portfolio.insert(container("c", ""));
        assert_eq!(portfolio.project_names(), ["", "shop"]);
        assert_eq!(portfolio.project("shop").map(Project::len), Some(2));

        portfolio.remove("a");
        portfolio.remove("b");
        assert_eq!(portfolio.project_names(), [""]);
        portfolio.remove("c");
        assert!(portfolio.project("").is_some_and(Project::is_empty));
        assert!(portfolio.is_empty());
    }

    #[test]
    fn removal_is_by_id_whatever_the_project() {
        let mut portfolio: Portfolio = [container("a", "shop")].into_iter().collect();
        assert_eq!(
            portfolio.remove("a").map(|c| c.project().to_owned()),
            Some("shop".into())
        );
        assert!(portfolio.project("shop").is_none());
        assert!(portfolio.remove("a").is_none());
    }

    #[test]
    fn replacing_moves_a_container_between_projects() {
        let mut portfolio: Portfolio = [container("a", "one")].into_iter().collect();
        assert!(portfolio.insert(container("a", "two")).is_some());
        assert_eq!(portfolio.project_names(), ["", "two"]);
        assert_eq!(portfolio.len(), 1);
    }

    #[test]
    fn pods_group_their_containers_and_vanish_with_the_last() {
        let pod = |uid: &str| {
            Arc::new(PodInfo {
                uid: uid.into(),
                name: format!("pod-{uid}").into(),
                namespace: "ns".into(),
                ..Default::default()
            })
        };
        let mut portfolio: Portfolio = [
            container("sandbox", "").with_pod(pod("u1")),
            container("app", "").with_pod(pod("u1")),
            container("other", "").with_pod(pod("u2")),
            container("solo", ""),
        ]
        .into_iter()
        .collect();
        let uids: Vec<&str> = portfolio.pods().map(|p| &*p.info().uid).collect();
        assert_eq!(uids, ["u1", "u2"]);
        assert_eq!(portfolio.pod("u1").map(Pod::len), Some(2));
        assert_eq!(portfolio.pod("u1").unwrap().info().name.as_ref(), "pod-u1");
        // Moved to another pod, then gone.
        portfolio.insert(container("other", "").with_pod(pod("u1")));
        assert!(portfolio.pod("u2").is_none());
        assert_eq!(portfolio.pod("u1").map(Pod::len), Some(3));
        for id in ["sandbox", "app", "other"] {
            portfolio.remove(id);
        }
        assert_eq!(portfolio.pods().len(), 0);
    }

    #[test]
    fn snapshots_are_independent_of_later_changes() {
        let mut portfolio: Portfolio = [container("a", "")].into_iter().collect();
        let snapshot = portfolio.clone();
        portfolio.insert(container("b", "x"));
        portfolio.remove("a");
        assert!(snapshot.container("a").is_some());
        assert!(snapshot.container("b").is_none());
        assert_eq!(snapshot.project_names(), [""]);
    }

    #[test]
    fn find_takes_ids_first_then_names() {
        let portfolio: Portfolio = [container("a", "p"), Container::new("b", "a", 1)]
            .into_iter()
            .collect();
        assert_eq!(portfolio.find("a").map(|c| c.id()), Some("a"));
        assert_eq!(portfolio.find("name-a").map(|c| c.id()), Some("a"));
        assert_eq!(
            portfolio
                .project("p")
                .and_then(|p| p.find("name-a"))
                .map(|c| c.id()),
            Some("a")
        );
        assert!(portfolio.find("nope").is_none());
    }

    #[test]
    fn changes_since_reports_only_the_difference_every_change_of_content_included() {
        let old: Portfolio = [
            container("gone", ""),
            container("same", ""),
            container("restarted", ""),
            container("paused", ""),
        ]
        .into_iter()
        .collect();
        let new: Portfolio = [
            container("same", "").with_labels([("irrelevant", "change")]),
            container("restarted", "").with_pid(200),
            container("paused", "").with_paused(true),
            container("new", ""),
        ]
        .into_iter()
        .collect();
        let changes: Vec<(EventKind, String)> = new
            .changes_since(&old)
            .into_iter()
            .map(|(kind, c)| (kind, c.id().to_owned()))
            .collect();
        assert_eq!(
            changes,
            [
                (EventKind::Exited, "gone".to_owned()),
                (EventKind::Exited, "restarted".to_owned()),
                (EventKind::Started, "new".to_owned()),
                (EventKind::Started, "restarted".to_owned()),
                (EventKind::Paused, "paused".to_owned()),
                (EventKind::Updated, "same".to_owned()),
            ]
        );
        assert!(new.changes_since(&new).is_empty());
    }

    #[test]
    fn serializes_projects_with_containers_sorted_by_name() {
        let portfolio: Portfolio = [
            Container::new("2", "b", 2),
            Container::new("1", "a", 1),
            Container::new("3", "c", 3).with_project("p"),
        ]
        .into_iter()
        .collect();
        let json = serde_json::to_value(&portfolio).unwrap();
        let names: Vec<_> = json["projects"][0]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(json["projects"][1]["name"], "p");
    }
}
