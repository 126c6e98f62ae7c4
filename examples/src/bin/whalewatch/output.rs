//! What whalewatch prints: a table, JSON, ids, or chosen fields, of the
//! containers that pass the filters; and the lines of `--follow`.
//!
//! The JSON is one schema for both modes, versioned by its `schema`
//! field ([`SCHEMA`]); the README documents it.

use std::io::Write;
use std::sync::Arc;

use serde::Serialize;
use whalewatcher::{Container, EngineInfo, Event, Portfolio};

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
    Image,
    Engine,
}

/// The fields `--format` takes, for its help and errors.
pub const FIELDS: &str = "id, name, project, pod, pid, state, image, engine";

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
                    "image" => Ok(Field::Image),
                    "engine" => Ok(Field::Engine),
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

/// One engine's picture, as the one-shot modes print it.
pub struct Picture {
    pub info: Arc<EngineInfo>,
    pub portfolio: Arc<Portfolio>,
}

/// What to print, and how.
pub struct Printing<'a> {
    pub format: &'a Format,
    pub quiet: bool,
    pub no_trunc: bool,
    pub filters: &'a [Filter],
}

impl Printing<'_> {
    /// Prints the engines' alive containers that pass the filters.
    pub fn print(&self, pictures: &[Picture], out: &mut impl Write) -> std::io::Result<()> {
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
            Format::Json => self.json(pictures, out),
            Format::Fields(fields) => {
                for picture in pictures {
                    for container in self.sorted(picture) {
                        let cells: Vec<String> = fields
                            .iter()
                            .map(|field| self.cell(*field, &picture.info, container))
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
        shown(self.filters, &picture.info, &picture.portfolio)
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

    fn cell(&self, field: Field, engine: &EngineInfo, container: &Container) -> String {
        let or_dash = |text: &str| if text.is_empty() { "-" } else { text }.to_owned();
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
            Field::Pid => container.pid().to_string(),
            Field::State => if container.is_paused() {
                "paused"
            } else {
                "running"
            }
            .to_owned(),
            Field::Image => or_dash(container.image().unwrap_or_default()),
            Field::Engine => engine.api.clone(),
        }
    }

    /// A container's row of the table, the columns of [`TABLE_HEADER`].
    pub fn table_row(&self, engine: &EngineInfo, container: &Container) -> [String; 6] {
        TABLE_COLUMNS.map(|field| self.cell(field, engine, container))
    }

    fn tables(&self, pictures: &[Picture], out: &mut impl Write) -> std::io::Result<()> {
        for (n, picture) in pictures.iter().enumerate() {
            let info = &picture.info;
            let containers = self.sorted(picture);
            if n > 0 {
                writeln!(out)?;
            }
            writeln!(
                out,
                "{} {} at {} (engine id {}): {} alive{}",
                info.engine_type,
                info.version,
                info.api,
                info.id,
                picture.portfolio.len(),
                if self.filters.is_empty() {
                    String::new()
                } else {
                    format!(", {} shown", containers.len())
                }
            )?;
            if containers.is_empty() {
                continue;
            }
            let mut rows = vec![TABLE_HEADER.map(str::to_owned)];
            for container in &containers {
                rows.push(self.table_row(info, container));
            }
            for line in align(rows) {
                writeln!(out, "{line}")?;
            }
        }
        Ok(())
    }

    fn json(&self, pictures: &[Picture], out: &mut impl Write) -> std::io::Result<()> {
        let engines: Vec<EngineJson> = pictures
            .iter()
            .map(|picture| {
                let containers = self.sorted(picture);
                let mut projects: Vec<ProjectJson<'_>> = Vec::new();
                for container in containers {
                    match projects.last_mut() {
                        Some(last) if last.name == container.project() => {
                            last.containers.push(container)
                        }
                        _ => projects.push(ProjectJson {
                            name: container.project().to_owned(),
                            containers: vec![container],
                        }),
                    }
                }
                EngineJson {
                    engine: &picture.info,
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

#[derive(Serialize)]
struct EngineJson<'a> {
    engine: &'a EngineInfo,
    projects: Vec<ProjectJson<'a>>,
}

#[derive(Serialize)]
struct ProjectJson<'a> {
    name: String,
    containers: Vec<&'a Arc<Container>>,
}

/// One line of `--follow`: a container alive at the start, or an event.
#[derive(Serialize)]
pub struct Line<'a> {
    pub schema: u32,
    pub engine: &'a EngineInfo,
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
        container: &'a Container,
    },
    /// A lifecycle event.
    Event(&'a Event),
    /// The engine was lost (`engine-lost`, with why) or is back and
    /// synchronized again (`engine-back`).
    Connection {
        kind: &'static str,
        error: Option<String>,
    },
}

/// Prints one `--follow` line and flushes it; awaits a full pipe
/// without blocking the runtime, so a signal is still heard.
pub async fn print_line(engine: &EngineInfo, what: What<'_>) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let line = Line {
        schema: SCHEMA,
        engine,
        what,
    };
    let mut bytes = serde_json::to_vec(&line)?;
    bytes.push(b'\n');
    let mut out = tokio::io::stdout();
    out.write_all(&bytes).await?;
    out.flush().await
}
