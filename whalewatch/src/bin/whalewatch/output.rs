//! What whalewatch prints: a table, JSON, ids, or chosen fields, of the
//! containers that pass the filters; and the lines of `--follow`. Engines
//! come from one fleet snapshot, an engine that runs in a container of
//! another listed right after that one, indented.
//!
//! The JSON is one schema for both modes, versioned by its `schema`
//! field ([`SCHEMA`]); docs/whalewatch.md documents it.

use std::io::Write;
use std::sync::Arc;

use serde::Serialize;
use whalewatcher::{
    Container, EngineInfo, Event, EventKind, EventSource, Exit, FleetEngine, FleetSnapshot,
    FoundBy, MemberId,
};

use crate::filter::{shown, Filter};

/// The version of the JSON that `--format json` and `--follow` print;
/// raised when a field changes meaning or goes away (not when one is
/// added).
pub const SCHEMA: u32 = 1;

/// How the alive containers are printed.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// A table per engine, grouped by project.
    Table,
    /// One JSON document: `{schema, engines: [{engine, projects}]}`.
    Json,
    /// The chosen fields of each container, tab-separated, no header.
    Fields(Vec<Field>),
}

/// A column of `--format FIELD,...`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Field {
    Id,
    Name,
    Project,
    Pod,
    Pid,
    State,
    Health,
    Image,
    Engine,
    Ip,
    Ports,
    Network,
    Privileged,
    Memory,
    Cpus,
    Cgroup,
    Mounts,
}

/// The fields `--format` takes, for its help and errors.
pub const FIELDS: &str = "id, name, project, pod, pid, state, health, image, engine, ip, ports, \
                          network, privileged, memory, cpus, cgroup, mounts";

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            fields => fields
                .split(',')
                .map(|field| match field.trim() {
                    "id" => Ok(Field::Id),
                    "name" => Ok(Field::Name),
                    "project" => Ok(Field::Project),
                    "pod" => Ok(Field::Pod),
                    "pid" => Ok(Field::Pid),
                    "state" => Ok(Field::State),
                    "health" => Ok(Field::Health),
                    "image" => Ok(Field::Image),
                    "engine" => Ok(Field::Engine),
                    "ip" => Ok(Field::Ip),
                    "ports" => Ok(Field::Ports),
                    "network" => Ok(Field::Network),
                    "privileged" => Ok(Field::Privileged),
                    "memory" => Ok(Field::Memory),
                    "cpus" => Ok(Field::Cpus),
                    "cgroup" => Ok(Field::Cgroup),
                    "mounts" => Ok(Field::Mounts),
                    other => Err(format!(
                        "unknown format or field {other:?} (table, json, or fields of: {FIELDS})"
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Format::Fields),
        }
    }
}

/// The table's columns and their headings.
const TABLE_COLUMNS: [Field; 6] = [
    Field::Project,
    Field::Name,
    Field::Image,
    Field::Pid,
    Field::State,
    Field::Id,
];
pub const TABLE_HEADER: [&str; 6] = ["PROJECT", "CONTAINER", "IMAGE", "PID", "STATE", "ID"];

/// A size in bytes as docker stats writes it: `64MiB`, `1.5GiB`, `512B`.
fn bytes(size: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{}{}", decimal(value), UNITS[unit])
}

/// A number with at most two decimals, none where they are zeros: `0.5`,
/// `1.33`, `2`.
fn decimal(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The rows as lines, each column as wide as its widest cell.
pub fn align<const N: usize>(rows: Vec<[String; N]>) -> Vec<String> {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// One engine of a fleet snapshot, as every mode prints it.
pub struct Picture {
    pub engine: Arc<FleetEngine>,
    /// How many containers deep it runs: 0 on the host, 1 in a container
    /// of an engine on the host, ...
    pub depth: usize,
}

impl Picture {
    /// The engine's heading: what it is, where, its PID, the container it
    /// runs in, and how it was found when not named.
    pub fn heading(&self) -> String {
        let engine = &self.engine;
        let info = engine.info();
        let pid = engine
            .local_pid()
            .or(info.pid)
            .map(|pid| format!(", PID {pid}"))
            .unwrap_or_default();
        let inside = engine
            .parent()
            .map(|parent| format!(" in container {}", parent.name))
            .unwrap_or_default();
        let found = match engine.found_by() {
            FoundBy::Process { command, .. } => format!(", found by its process {command}"),
            FoundBy::Socket { .. } => ", found at a well-known socket".to_owned(),
            _ => String::new(),
        };
        format!(
            "{} {} at {} (engine id {}{pid}{found}){inside}",
            info.engine_type, info.version, info.api, info.id
        )
    }

    /// Indentation for its heading and rows.
    pub fn indent(&self) -> String {
        "  ".repeat(self.depth)
    }
}

/// The engines of `snapshot` with those in containers right after their
/// parent engine: the `named` first members (the engines the options
/// name) in the order they were named, then the ones discovery found, by
/// API endpoint (discovery adds them as their probes end: in no order).
pub fn in_tree_order(snapshot: &FleetSnapshot, named: usize) -> Vec<Picture> {
    let parent_of = |engine: &FleetEngine| {
        engine
            .parent()
            .map(|parent| parent.engine)
            .filter(|member| snapshot.engine(*member).is_some())
    };
    let mut ordered: Vec<&Arc<FleetEngine>> = snapshot.engines().collect();
    ordered.sort_by_cached_key(|engine| {
        let member = engine.member().get();
        if member <= named as u64 {
            (0, member, String::new(), String::new())
        } else {
            let info = engine.info();
            (1, 0, info.api.clone(), info.engine_type.clone())
        }
    });
    fn visit(
        ordered: &[&Arc<FleetEngine>],
        parent: Option<MemberId>,
        depth: usize,
        parent_of: &dyn Fn(&FleetEngine) -> Option<MemberId>,
        pictures: &mut Vec<Picture>,
    ) {
        for engine in ordered {
            // A cycle (a stale parent) cannot nest deeper than there are engines.
            if parent_of(engine) == parent && depth <= ordered.len() {
                pictures.push(Picture {
                    engine: Arc::clone(engine),
                    depth,
                });
                visit(
                    ordered,
                    Some(engine.member()),
                    depth + 1,
                    parent_of,
                    pictures,
                );
            }
        }
    }
    let mut pictures = Vec::new();
    visit(&ordered, None, 0, &parent_of, &mut pictures);
    pictures
}

/// What to print, and how.
pub struct Printing<'a> {
    pub format: &'a Format,
    pub quiet: bool,
    pub no_trunc: bool,
    pub filters: &'a [Filter],
    /// How many engines the options name (see [`in_tree_order`]).
    pub named: usize,
}

impl Printing<'_> {
    /// Prints the engines' alive containers that pass the filters.
    pub fn print(&self, snapshot: &FleetSnapshot, out: &mut impl Write) -> std::io::Result<()> {
        let pictures = &in_tree_order(snapshot, self.named);
        if self.quiet {
            for picture in pictures {
                for container in self.sorted(picture) {
                    writeln!(out, "{}", self.id(container.id()))?;
                }
            }
            return Ok(());
        }
        match self.format {
            Format::Table => self.tables(pictures, out),
            Format::Json => self.json(pictures, snapshot, out),
            Format::Fields(fields) => {
                for picture in pictures {
                    for container in self.sorted(picture) {
                        let cells: Vec<String> = fields
                            .iter()
                            .map(|field| self.cell(*field, &picture.engine, container))
                            .collect();
                        writeln!(out, "{}", cells.join("\t"))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The containers that pass, by project, then by name.
    fn sorted<'p>(&self, picture: &'p Picture) -> Vec<&'p Arc<Container>> {
        shown(
            self.filters,
            picture.engine.info(),
            picture.engine.portfolio(),
        )
    }

    /// Docker's and CRI's 64-hex ids are told apart by 12, unless
    /// `--no-trunc`.
    fn id<'a>(&self, id: &'a str) -> &'a str {
        if !self.no_trunc && id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            &id[..12]
        } else {
            id
        }
    }

    fn cell(&self, field: Field, engine: &FleetEngine, container: &Container) -> String {
        let or_dash = |text: &str| if text.is_empty() { "-" } else { text }.to_owned();
        let resources = container.resources();
        match field {
            Field::Id => self.id(container.id()).to_owned(),
            Field::Name => container.name().to_owned(),
            Field::Project => or_dash(container.project()),
            Field::Pod => container.pod().map_or_else(
                || "-".to_owned(),
                |pod| {
                    if pod.namespace.is_empty() {
                        pod.name.to_string()
                    } else {
                        format!("{}/{}", pod.namespace, pod.name)
                    }
                },
            ),
            // Where the fleet knows it, in whalewatch's own PID namespace.
            Field::Pid => engine
                .local_pid_of(container.id())
                .unwrap_or(container.pid())
                .to_string(),
            // As docker ps says it: `running (healthy)`.
            Field::State => {
                let state = if container.is_paused() {
                    "paused"
                } else {
                    "running"
                };
                match container.health() {
                    Some(health) => format!("{state} ({})", health.as_str()),
                    None => state.to_owned(),
                }
            }
            Field::Health => or_dash(container.health().map(|h| h.as_str()).unwrap_or_default()),
            Field::Image => or_dash(container.image().unwrap_or_default()),
            Field::Engine => engine.info().api.clone(),
            // Every address, comma-separated, as docker inspect lists them.
            Field::Ip => or_dash(
                &container
                    .network()
                    .map(|n| {
                        n.addresses
                            .iter()
                            .map(|a| &*a.ip)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
            ),
            // As docker ps writes them: 0.0.0.0:8080->80/tcp.
            Field::Ports => or_dash(
                &container
                    .network()
                    .map(|n| {
                        n.ports
                            .iter()
                            .map(|p| {
                                format!(
                                    "{}:{}->{}/{}",
                                    p.host_ip, p.host_port, p.container_port, p.protocol
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            ),
            Field::Network => or_dash(container.network().map_or("", |n| &*n.mode)),
            Field::Privileged => or_dash(match container.privileged() {
                Some(true) => "yes",
                Some(false) => "no",
                None => "",
            }),
            Field::Memory => or_dash(
                &resources
                    .and_then(|r| r.memory_limit)
                    .map(bytes)
                    .unwrap_or_default(),
            ),
            // As docker run --cpus takes it: the quota over the period.
            Field::Cpus => or_dash(
                &resources
                    .and_then(|r| Some((r.cpu_quota?, r.cpu_period?)))
                    .filter(|(_, period)| *period > 0)
                    .map(|(quota, period)| decimal(quota as f64 / period as f64))
                    .unwrap_or_default(),
            ),
            Field::Cgroup => or_dash(container.cgroup().unwrap_or_default()),
            // As docker run -v writes them: source:destination[:ro].
            Field::Mounts => or_dash(
                &container
                    .mounts()
                    .iter()
                    .map(|m| {
                        let ro = if m.read_only { ":ro" } else { "" };
                        format!("{}:{}{ro}", m.source, m.destination)
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        }
    }

    /// A container's row of the table, the columns of [`TABLE_HEADER`].
    pub fn table_row(&self, engine: &FleetEngine, container: &Container) -> [String; 6] {
        TABLE_COLUMNS.map(|field| self.cell(field, engine, container))
    }

    fn tables(&self, pictures: &[Picture], out: &mut impl Write) -> std::io::Result<()> {
        for (n, picture) in pictures.iter().enumerate() {
            let containers = self.sorted(picture);
            if n > 0 {
                writeln!(out)?;
            }
            let indent = picture.indent();
            writeln!(
                out,
                "{indent}{}: {} alive{}{}",
                picture.heading(),
                picture.engine.portfolio().len(),
                if self.filters.is_empty() {
                    String::new()
                } else {
                    format!(", {} shown", containers.len())
                },
                unsynced(&picture.engine)
            )?;
            if containers.is_empty() {
                continue;
            }
            let mut rows = vec![TABLE_HEADER.map(str::to_owned)];
            for container in &containers {
                rows.push(self.table_row(&picture.engine, container));
            }
            for line in align(rows) {
                writeln!(out, "{indent}{line}")?;
            }
        }
        Ok(())
    }

    fn json(
        &self,
        pictures: &[Picture],
        snapshot: &FleetSnapshot,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let engines: Vec<EngineJson> = pictures
            .iter()
            .map(|picture| {
                let containers = self.sorted(picture);
                let mut projects: Vec<ProjectJson<'_>> = Vec::new();
                for container in containers {
                    let record = ContainerJson::of(&picture.engine, container);
                    match projects.last_mut() {
                        Some(last) if last.name == container.project() => {
                            last.containers.push(record)
                        }
                        _ => projects.push(ProjectJson {
                            name: container.project().to_owned(),
                            containers: vec![record],
                        }),
                    }
                }
                EngineJson {
                    engine: EngineRecord::of(&picture.engine, snapshot),
                    projects,
                }
            })
            .collect();
        serde_json::to_writer_pretty(
            &mut *out,
            &Document {
                schema: SCHEMA,
                engines,
            },
        )?;
        out.write_all(b"\n")
    }
}

#[derive(Serialize)]
struct Document<'a> {
    schema: u32,
    engines: Vec<EngineJson<'a>>,
}

/// Said after the count of an engine that is not synchronized (yet).
fn unsynced(engine: &FleetEngine) -> String {
    let omitted = &engine.status().omitted;
    if engine.status().is_synced() {
        return match omitted.is_empty() {
            true => String::new(),
            false => format!(" ({})", joined(omitted)),
        };
    }
    let why = engine
        .last_error()
        .map(|error| format!(": {}", whalewatcher::describe(error)))
        .unwrap_or_default();
    format!(" (not synchronized{why})")
}

/// What lists left out, as one phrase.
pub fn joined(omitted: &[whalewatcher::Omission]) -> String {
    let each: Vec<String> = omitted.iter().map(ToString::to_string).collect();
    each.join("; ")
}

#[derive(Serialize)]
struct EngineJson<'a> {
    engine: EngineRecord<'a>,
    projects: Vec<ProjectJson<'a>>,
}

/// An engine as the JSON shows it: what it says of itself, the
/// container of another listed engine it runs in (or `null`), and how it
/// was found (`{"by": "name"}` for an engine an option named,
/// `{"by": "process", "command", "pid"}`, `{"by": "socket", "path",
/// "pid"}`).
#[derive(Serialize)]
pub struct EngineRecord<'a> {
    #[serde(flatten)]
    info: &'a EngineInfo,
    parent: Option<ParentJson<'a>>,
    found: &'a FoundBy,
    /// What its last list left out (a containerd namespace): `[{part,
    /// reason}]`.
    omitted: &'a [whalewatcher::Omission],
}

impl<'a> EngineRecord<'a> {
    /// `engine` of the fleet `snapshot` shows (which names the parent's
    /// engine).
    pub fn of(engine: &'a FleetEngine, snapshot: &'a FleetSnapshot) -> Self {
        let parent = engine.parent().map(|parent| ParentJson {
            engine: snapshot
                .engine(parent.engine)
                .map(|engine| engine.info().api.as_str()),
            id: &parent.id,
            name: &parent.name,
        });
        EngineRecord {
            info: engine.info(),
            parent,
            found: engine.found_by(),
            omitted: &engine.status().omitted,
        }
    }
}

/// The container an engine runs in: which engine's (by its API endpoint;
/// `null` once that engine left), its id and name.
#[derive(Serialize)]
struct ParentJson<'a> {
    engine: Option<&'a str>,
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct ProjectJson<'a> {
    name: String,
    containers: Vec<ContainerJson<'a>>,
}

/// A container as the JSON shows it: as its engine reports it, plus
/// `local_pid`, its PID in whalewatch's PID namespace where known.
#[derive(Serialize)]
pub struct ContainerJson<'a> {
    #[serde(flatten)]
    container: &'a Container,
    local_pid: Option<u32>,
}

impl<'a> ContainerJson<'a> {
    pub fn of(engine: &FleetEngine, container: &'a Container) -> Self {
        ContainerJson {
            container,
            local_pid: engine.local_pid_of(container.id()),
        }
    }
}

/// A lifecycle event as a `--follow` line tells it: the watcher's event,
/// its container with `local_pid`.
#[derive(Serialize)]
pub struct EventJson<'a> {
    kind: EventKind,
    container: ContainerJson<'a>,
    /// Nanoseconds since the Unix epoch, as the watcher's events have it.
    timestamp: Option<u64>,
    source: EventSource,
    exit: Option<Exit>,
    revision: u64,
}

impl<'a> EventJson<'a> {
    pub fn of(event: &'a Event, local_pid: Option<u32>) -> Self {
        EventJson {
            kind: event.kind,
            container: ContainerJson {
                container: &event.container,
                local_pid,
            },
            timestamp: event
                .timestamp
                .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|since| u64::try_from(since.as_nanos()).ok()),
            source: event.source,
            exit: event.exit,
            revision: event.revision,
        }
    }
}

/// One line of `--follow`: a container alive at the start, or an event.
#[derive(Serialize)]
pub struct Line<'a> {
    pub schema: u32,
    pub engine: EngineRecord<'a>,
    #[serde(flatten)]
    pub what: What<'a>,
}

/// What a `--follow` line tells.
#[derive(Serialize)]
#[serde(untagged)]
pub enum What<'a> {
    /// A container alive when following began.
    Alive {
        kind: &'static str,
        container: ContainerJson<'a>,
    },
    /// A lifecycle event.
    Event(EventJson<'a>),
    /// The engine was lost (`engine-lost`, with why) or is back and
    /// synchronized again (`engine-back`); an engine discovery found
    /// joined (`engine-joined`, its containers follow as started) or
    /// left (`engine-left`, after its containers exited; with why, when
    /// its watch ended).
    Connection {
        kind: &'static str,
        error: Option<String>,
    },
}

/// Appends one `--follow` line to `out`.
pub fn push_line(
    engine: &FleetEngine,
    snapshot: &FleetSnapshot,
    what: What<'_>,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let line = Line {
        schema: SCHEMA,
        engine: EngineRecord::of(engine, snapshot),
        what,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.push(b'\n');
    Ok(())
}

/// Writes `bytes` to stdout and flushes them; awaits a full pipe or a
/// paused terminal off the runtime's threads, so that the watchers go on.
pub async fn write_out(bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    if bytes.is_empty() {
        return Ok(());
    }
    let mut out = tokio::io::stdout();
    out.write_all(bytes).await?;
    out.flush().await
}
