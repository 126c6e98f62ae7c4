//! `--live`: a full-screen table of the alive containers, redrawn as
//! events arrive: by engine and project, an exit marked for a few seconds,
//! an engine that is lost or resynchronizing said so in its heading, an
//! engine in a container of another under it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use whalewatcher::{
    Container, EventKind, Fleet, FleetChange, FleetEvents, MemberId, SyncState, SyncStatus,
};

use crate::output::{align, in_tree_order, write_out, Printing, TABLE_HEADER};

/// How long an exited container stays on screen, marked.
const EXIT_MARK: Duration = Duration::from_secs(3);

/// The least time between two redraws: a burst of events is one redraw.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Enter the terminal's alternate screen and hide the cursor; the reverse.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

/// A container that exited a moment ago, still shown.
struct Exited {
    engine: MemberId,
    container: std::sync::Arc<Container>,
    code: Option<i32>,
    at: Instant,
}

/// Shows the fleet's containers until `until` completes; restores the
/// terminal before it returns.
pub async fn run<F: std::future::Future>(
    fleet: &Fleet,
    printing: &Printing<'_>,
    until: F,
) -> std::io::Result<F::Output> {
    let (_, mut changes) = fleet.subscribe();
    write_out(ENTER.as_bytes()).await?;
    let shown = follow(fleet, printing, &mut changes, until).await;
    write_out(LEAVE.as_bytes()).await?;
    shown
}

async fn follow<F: std::future::Future>(
    fleet: &Fleet,
    printing: &Printing<'_>,
    changes: &mut FleetEvents,
    until: F,
) -> std::io::Result<F::Output> {
    tokio::pin!(until);
    let mut exited: Vec<Exited> = Vec::new();
    let mut dirty = true;
    let mut last_draw = Instant::now() - REDRAW_EVERY;
    loop {
        exited.retain(|e| e.at.elapsed() < EXIT_MARK);
        let now = Instant::now();
        if dirty && now - last_draw >= REDRAW_EVERY {
            write_out(screen(fleet, printing, &exited).as_bytes()).await?;
            last_draw = now;
            dirty = false;
        }
        // Wake for the pending redraw, or for the next exit mark to go.
        let wake = if dirty {
            Some(last_draw + REDRAW_EVERY)
        } else {
            exited.iter().map(|e| e.at + EXIT_MARK).min()
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            done = &mut until => return Ok(done),
            Some(change) = changes.next() => {
                if let Ok(change) = change {
                    if let FleetChange::Container { event, .. } = change.change {
                        // An engine that left takes its containers along:
                        // no exit marks for them.
                        let member = change.engine.member();
                        let engine_left = fleet.snapshot().engine(member).is_none();
                        if event.kind == EventKind::Exited
                            && !engine_left
                            && crate::filter::passes(
                                printing.filters,
                                change.engine.info(),
                                &event.container,
                            )
                        {
                            exited.push(Exited {
                                engine: member,
                                code: event.exit.as_ref().and_then(|exit| exit.code),
                                container: event.container,
                                at: Instant::now(),
                            });
                        }
                    }
                }
                dirty = true;
            }
            () = sleep => dirty = true,
        }
    }
}

/// The whole screen, to be drawn in one write.
fn screen(fleet: &Fleet, printing: &Printing<'_>, exited: &[Exited]) -> String {
    let snapshot = fleet.snapshot();
    let pictures = in_tree_order(&snapshot, printing.named);
    let mut lines = vec![format!(
        "whalewatch --live: {} engine{}, at {} (Ctrl-C ends)",
        pictures.len(),
        if pictures.len() == 1 { "" } else { "s" },
        clock()
    )];
    for picture in &pictures {
        let engine = &picture.engine;
        let info = engine.info();
        let portfolio = engine.portfolio();
        let indent = picture.indent();
        lines.push(String::new());
        let mut containers: Vec<(std::sync::Arc<Container>, Option<String>)> =
            crate::filter::shown(printing.filters, info, portfolio)
                .into_iter()
                .map(|c| (c.clone(), None))
                .collect();
        for gone in exited.iter().filter(|e| e.engine == engine.member()) {
            if portfolio.container(gone.container.id()).is_none() {
                let state = match gone.code {
                    Some(code) => format!("exited ({code})"),
                    None => "exited".to_owned(),
                };
                containers.push((gone.container.clone(), Some(state)));
            }
        }
        containers.sort_by(|(a, _), (b, _)| crate::filter::by_project_and_name(a, b));
        lines.push(format!(
            "{indent}{}: {} alive{} · {}",
            picture.heading(),
            portfolio.len(),
            if printing.filters.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} shown",
                    containers.iter().filter(|(_, s)| s.is_none()).count()
                )
            },
            condition(engine.status())
        ));
        if containers.is_empty() {
            continue;
        }
        let mut rows = vec![TABLE_HEADER.map(str::to_owned)];
        for (container, state) in &containers {
            let mut row = printing.table_row(engine, container);
            if let Some(state) = state {
                row[4] = state.clone();
            }
            rows.push(row);
        }
        lines.extend(
            align(rows)
                .into_iter()
                .map(|line| format!("{indent}{line}")),
        );
    }
    let mut screen = String::from("\x1b[H");
    for line in lines {
        screen.push_str(&line);
        screen.push_str("\x1b[K\r\n");
    }
    screen.push_str("\x1b[J");
    screen
}

/// An engine's connection, as its heading tells it.
fn condition(status: &SyncStatus) -> String {
    let why = || {
        status
            .last_error
            .as_ref()
            .map(|error| format!(": {}", whalewatcher::describe(error)))
            .unwrap_or_default()
    };
    match status.state {
        SyncState::Synced => "synced".to_owned(),
        SyncState::Syncing => "resynchronizing".to_owned(),
        SyncState::Lost => format!("LOST, retrying{}", why()),
        SyncState::Stopped => format!("stopped{}", why()),
    }
}

/// The time of day (UTC), to show the screen is alive.
fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
