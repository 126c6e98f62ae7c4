//! What `--live` shows, apart from how: the rows in order (engines in tree
//! order, each with its containers), the marks of recent events, the
//! event rates, and where the user is (selection, sort, filter, panes).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use whalewatcher::{
    Container, EventKind, Exit, FleetChange, FleetEngine, FleetEvent, FleetSnapshot, MemberId,
};

use crate::filter::{self, Filter};
use crate::output::in_tree_order;

/// How long a started container is highlighted, and an exited one kept.
pub const MARK: Duration = Duration::from_secs(3);

/// The seconds of event rate each engine's sparkline covers.
pub const RATE_SECONDS: usize = 60;

/// The order of the containers within their engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Project,
    Name,
    Engine,
    Pid,
    Age,
}

impl Sort {
    pub fn next(self) -> Self {
        match self {
            Sort::Project => Sort::Name,
            Sort::Name => Sort::Engine,
            Sort::Engine => Sort::Pid,
            Sort::Pid => Sort::Age,
            Sort::Age => Sort::Project,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Project => "project",
            Sort::Name => "name",
            Sort::Engine => "engine",
            Sort::Pid => "PID",
            Sort::Age => "age",
        }
    }
}

/// How rows within an engine are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    Project,
    Pod,
}

/// A recent event that marks a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    Started,
    Exited(Option<i32>),
}

/// One row of the table.
pub enum Row {
    /// An engine's heading, at its nesting depth.
    Engine {
        engine: Arc<FleetEngine>,
        depth: usize,
    },
    /// A container of the engine above.
    Container {
        engine: Arc<FleetEngine>,
        depth: usize,
        container: Arc<Container>,
        mark: Option<Mark>,
    },
}

impl Row {
    /// The identity of a container row: to keep the selection on it.
    fn key(&self) -> Option<(MemberId, &str)> {
        match self {
            Row::Container {
                engine, container, ..
            } => Some((engine.member(), container.id())),
            Row::Engine { .. } => None,
        }
    }
}

/// A container that exited a moment ago, still shown.
struct Exited {
    engine: MemberId,
    container: Arc<Container>,
    code: Option<i32>,
    at: Instant,
}

/// Events per second of one engine, over the last [`RATE_SECONDS`].
#[derive(Default)]
pub struct Rate {
    /// (second since the view began, events in it), oldest first.
    seconds: VecDeque<(u64, u32)>,
}

impl Rate {
    fn count(&mut self, second: u64) {
        match self.seconds.back_mut() {
            Some((at, n)) if *at == second => *n += 1,
            _ => self.seconds.push_back((second, 1)),
        }
        while self
            .seconds
            .front()
            .is_some_and(|(at, _)| *at + RATE_SECONDS as u64 <= second)
        {
            self.seconds.pop_front();
        }
    }

    /// The counts of the last `RATE_SECONDS` seconds up to `now`, oldest
    /// first.
    pub fn last_minute(&self, now: u64) -> Vec<u32> {
        let first = (now + 1).saturating_sub(RATE_SECONDS as u64);
        let mut counts = vec![0; RATE_SECONDS];
        for (at, n) in &self.seconds {
            if *at >= first && *at <= now {
                counts[(*at - first) as usize] = *n;
            }
        }
        counts
    }
}

/// Where the user is, and what has happened lately.
pub struct View {
    pub began: Instant,
    pub sort: Sort,
    pub grouping: Grouping,
    /// The filters of the command line.
    pub filters: Vec<Filter>,
    /// The filter typed with `/`: a `--filter` or a substring.
    pub typed: Option<Typed>,
    /// Being typed, after `/`.
    pub typing: Option<String>,
    pub detail: bool,
    pub help: bool,
    /// The selected row's container, kept across redraws.
    selected: Option<(MemberId, Arc<str>)>,
    /// The selected row's index in the last rows.
    pub cursor: usize,
    /// The first row shown.
    pub top: usize,
    /// Recent starts: container id → (its engine, when).
    started: HashMap<Arc<str>, (MemberId, Instant)>,
    exited: Vec<Exited>,
    /// The last exit of each container seen exiting (kept while it is
    /// shown, or alive again after a restart).
    pub last_exit: HashMap<Arc<str>, Exit>,
    pub rates: HashMap<MemberId, Rate>,
}

/// A filter typed with `/`.
pub enum Typed {
    /// A `--filter`, and the text it was typed as.
    Filter(Filter, String),
    /// Lower case.
    Substring(String),
}

impl Typed {
    fn parse(text: &str) -> Option<Typed> {
        if text.is_empty() {
            return None;
        }
        Some(match text.parse::<Filter>() {
            Ok(filter) => Typed::Filter(filter, text.to_owned()),
            Err(_) => Typed::Substring(text.to_lowercase()),
        })
    }

    pub fn text(&self) -> String {
        match self {
            Typed::Filter(_, text) | Typed::Substring(text) => text.clone(),
        }
    }

    fn passes(&self, engine: &FleetEngine, container: &Container) -> bool {
        match self {
            Typed::Filter(filter, _) => {
                filter::passes(std::slice::from_ref(filter), engine.info(), container)
            }
            Typed::Substring(text) => [
                container.name(),
                container.id(),
                container.project(),
                container.image().unwrap_or_default(),
            ]
            .iter()
            .any(|field| field.to_lowercase().contains(text.as_str())),
        }
    }
}

impl View {
    pub fn new(filters: Vec<Filter>) -> Self {
        View {
            began: Instant::now(),
            sort: Sort::Project,
            grouping: Grouping::Project,
            filters,
            typed: None,
            typing: None,
            detail: false,
            help: false,
            selected: None,
            cursor: 0,
            top: 0,
            started: HashMap::new(),
            exited: Vec::new(),
            last_exit: HashMap::new(),
            rates: HashMap::new(),
        }
    }

    /// The second since the view began.
    pub fn second(&self) -> u64 {
        self.began.elapsed().as_secs()
    }

    /// Takes in one change of the fleet: marks and rates.
    pub fn take_in(&mut self, change: &FleetEvent, snapshot: &FleetSnapshot) {
        let FleetChange::Container { event, .. } = &change.change else {
            return;
        };
        let member = change.engine.member();
        let second = self.second();
        self.rates.entry(member).or_default().count(second);
        let id: Arc<str> = Arc::from(event.container.id());
        match event.kind {
            EventKind::Started => {
                self.started.insert(id, (member, Instant::now()));
            }
            EventKind::Exited => {
                self.started.remove(&id);
                if let Some(exit) = event.exit {
                    self.last_exit.insert(id, exit);
                }
                // An engine that left takes its containers along: no marks.
                if snapshot.engine(member).is_some() {
                    self.exited.push(Exited {
                        engine: member,
                        code: event.exit.and_then(|exit| exit.code),
                        container: event.container.clone(),
                        at: Instant::now(),
                    });
                }
            }
            _ => {}
        }
    }

    /// Forgets marks older than [`MARK`], and exits of containers no
    /// longer anywhere; when the next mark goes, if any.
    pub fn expire(&mut self, snapshot: &FleetSnapshot) -> Option<Instant> {
        self.started.retain(|_, (_, at)| at.elapsed() < MARK);
        self.exited.retain(|e| e.at.elapsed() < MARK);
        let exited = &self.exited;
        self.last_exit.retain(|id, _| {
            exited.iter().any(|e| e.container.id() == id.as_ref())
                || snapshot
                    .engines()
                    .any(|e| e.portfolio().container(id).is_some())
        });
        let live: Vec<MemberId> = snapshot.engines().map(|e| e.member()).collect();
        self.rates.retain(|member, _| live.contains(member));
        self.started
            .values()
            .map(|(_, at)| at)
            .chain(self.exited.iter().map(|e| &e.at))
            .map(|at| *at + MARK)
            .min()
    }

    fn passes(&self, engine: &FleetEngine, container: &Container) -> bool {
        filter::passes(&self.filters, engine.info(), container)
            && self
                .typed
                .as_ref()
                .is_none_or(|typed| typed.passes(engine, container))
    }

    /// The rows to show, in order; moves the cursor to the selected
    /// container where it still is.
    pub fn rows(&mut self, snapshot: &FleetSnapshot, named: usize) -> Vec<Row> {
        let mut rows = Vec::new();
        for picture in in_tree_order(snapshot, named) {
            let engine = picture.engine;
            let member = engine.member();
            let mut containers: Vec<(Arc<Container>, Option<Mark>)> = engine
                .portfolio()
                .containers()
                .filter(|c| self.passes(&engine, c))
                .map(|c| {
                    let started = self
                        .started
                        .get(c.id())
                        .is_some_and(|(engine, _)| *engine == member);
                    (c.clone(), started.then_some(Mark::Started))
                })
                .collect();
            for gone in self.exited.iter().filter(|e| e.engine == member) {
                if engine.portfolio().container(gone.container.id()).is_none()
                    && self.passes(&engine, &gone.container)
                {
                    containers.push((gone.container.clone(), Some(Mark::Exited(gone.code))));
                }
            }
            self.order(&engine, &mut containers);
            rows.push(Row::Engine {
                engine: engine.clone(),
                depth: picture.depth,
            });
            rows.extend(
                containers
                    .into_iter()
                    .map(|(container, mark)| Row::Container {
                        engine: engine.clone(),
                        depth: picture.depth,
                        container,
                        mark,
                    }),
            );
        }
        if let Some((member, id)) = &self.selected {
            if let Some(at) = rows
                .iter()
                .position(|row| row.key() == Some((*member, id.as_ref())))
            {
                self.cursor = at;
            }
        }
        self.cursor = self.cursor.min(rows.len().saturating_sub(1));
        rows
    }

    fn order(&self, engine: &FleetEngine, containers: &mut [(Arc<Container>, Option<Mark>)]) {
        let pod = |c: &Container| c.pod().map(|pod| (pod.namespace.clone(), pod.name.clone()));
        let pid = |c: &Container| engine.local_pid_of(c.id()).unwrap_or(c.pid());
        // Youngest first; unknown start times last.
        let age = |c: &Container| std::cmp::Reverse(c.started().unwrap_or(SystemTime::UNIX_EPOCH));
        // No allocation per comparison: at 5,000 containers, ten times a
        // second, it shows.
        match (self.sort, self.grouping) {
            (Sort::Project, Grouping::Project) => containers.sort_unstable_by(|(a, _), (b, _)| {
                (a.project(), a.name()).cmp(&(b.project(), b.name()))
            }),
            (Sort::Project, Grouping::Pod) => {
                containers.sort_by_cached_key(|(c, _)| (pod(c), c.name().to_owned()))
            }
            (Sort::Name, _) => containers.sort_unstable_by(|(a, _), (b, _)| a.name().cmp(b.name())),
            (Sort::Engine, _) => containers.sort_unstable_by(|(a, _), (b, _)| a.id().cmp(b.id())),
            (Sort::Pid, _) => containers.sort_unstable_by_key(|(c, _)| pid(c)),
            (Sort::Age, _) => containers.sort_unstable_by(|(a, _), (b, _)| {
                age(a).cmp(&age(b)).then_with(|| a.name().cmp(b.name()))
            }),
        }
    }

    /// Moves the cursor by `delta` rows (within `rows`), and remembers
    /// the container there.
    pub fn move_cursor(&mut self, rows: &[Row], delta: isize) {
        if rows.is_empty() {
            return;
        }
        let last = rows.len() as isize - 1;
        self.cursor = (self.cursor as isize + delta).clamp(0, last) as usize;
        self.remember(rows);
    }

    /// Puts the cursor on row `at`.
    pub fn jump(&mut self, rows: &[Row], at: usize) {
        self.cursor = at.min(rows.len().saturating_sub(1));
        self.remember(rows);
    }

    fn remember(&mut self, rows: &[Row]) {
        self.selected = rows.get(self.cursor).and_then(|row| match row {
            Row::Container {
                engine, container, ..
            } => Some((engine.member(), Arc::from(container.id()))),
            Row::Engine { .. } => None,
        });
    }

    /// Keeps the cursor's row within the `height` rows shown.
    pub fn scroll_to_cursor(&mut self, height: usize) {
        if self.cursor < self.top {
            self.top = self.cursor;
        } else if height > 0 && self.cursor >= self.top + height {
            self.top = self.cursor + 1 - height;
        }
    }

    /// Applies the filter typed so far.
    pub fn apply_typed(&mut self) {
        if let Some(text) = self.typing.take() {
            self.typed = Typed::parse(text.trim());
            self.top = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_filter_shows_as_typed() {
        let typed = Typed::parse("name=web").expect("a filter");
        assert!(matches!(typed, Typed::Filter(..)));
        assert_eq!(typed.text(), "name=web");
        let typed = Typed::parse("Web").expect("a substring");
        assert!(matches!(typed, Typed::Substring(_)));
        assert_eq!(typed.text(), "web");
        assert!(Typed::parse("").is_none());
    }
}
