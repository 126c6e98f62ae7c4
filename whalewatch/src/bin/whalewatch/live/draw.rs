//! How `--live` draws its view on a ratatui frame: a title area (a line
//! for the fleet, one per engine with its event-rate sparkline), a pinned
//! column header, the rows that fit (only those are formatted), a status
//! line; the detail and help panes over them. Columns give way as the
//! width shrinks; nothing wraps.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;
use whalewatcher::{FleetEngine, FleetSnapshot, SyncState, SyncStatus};

use super::model::{Grouping, Mark, Row, View};
use crate::output::{in_tree_order, Picture};

/// The columns, and the order in which they give way when the width is
/// short: first shortened to their least, then dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Project,
    Name,
    Image,
    Pid,
    State,
    Id,
}

const COLUMNS: [Column; 6] = [
    Column::Project,
    Column::Name,
    Column::Image,
    Column::Pid,
    Column::State,
    Column::Id,
];

/// How columns give way as the width shrinks: IMAGE and ID shorten, then
/// IMAGE, ID, PROJECT and PID go, then NAME and STATE shorten.
const SHORTEN_FIRST: [Column; 2] = [Column::Image, Column::Id];
const DROP: [Column; 4] = [Column::Image, Column::Id, Column::Project, Column::Pid];
const SHORTEN_LAST: [Column; 2] = [Column::Name, Column::State];

impl Column {
    fn header(self) -> &'static str {
        match self {
            Column::Project => "PROJECT",
            Column::Name => "CONTAINER",
            Column::Image => "IMAGE",
            Column::Pid => "PID",
            Column::State => "STATE",
            Column::Id => "ID",
        }
    }

    /// The least width it is shortened to before it goes.
    fn least(self) -> usize {
        match self {
            Column::Project => 6,
            Column::Name => 8,
            Column::Image => 10,
            Column::Pid => 5,
            Column::State => 7,
            Column::Id => 6,
        }
    }

    /// The most width it takes.
    fn most(self) -> usize {
        match self {
            Column::Project => 20,
            Column::Name => 40,
            Column::Image => 40,
            Column::Pid => 7,
            Column::State => 12,
            Column::Id => 12,
        }
    }
}

/// The cells of a container row.
fn cells(engine: &FleetEngine, row: &Row, view: &View) -> Option<[String; 6]> {
    let Row::Container {
        container, mark, ..
    } = row
    else {
        return None;
    };
    let group = match view.grouping {
        Grouping::Project => container.project().to_owned(),
        Grouping::Pod => container
            .pod()
            .map(|pod| pod.name.to_string())
            .unwrap_or_default(),
    };
    let health = container
        .health()
        .map(|health| format!(" ({})", health.as_str()))
        .unwrap_or_default();
    let state = match mark {
        Some(Mark::Exited(Some(code))) => format!("exited ({code})"),
        Some(Mark::Exited(None)) => "exited".to_owned(),
        _ if container.is_paused() => format!("paused{health}"),
        _ => format!("running{health}"),
    };
    let pid = engine
        .local_pid_of(container.id())
        .unwrap_or(container.pid());
    Some([
        if group.is_empty() { "-".into() } else { group },
        container.name().to_owned(),
        container.image().unwrap_or("-").to_owned(),
        pid.to_string(),
        state,
        short_id(container.id()).to_owned(),
    ])
}

/// Docker's and CRI's 64-hex ids are told apart by their first 12.
fn short_id(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

/// The width each column gets (0: dropped), so that a row of `indent`
/// plus the columns and their gaps fits in `width`.
fn widths(rows: &[[String; 6]], indent: usize, width: usize) -> [usize; 6] {
    let mut widths = COLUMNS.map(|column| column.header().len());
    for row in rows {
        for (n, cell) in row.iter().enumerate() {
            widths[n] = widths[n].max(cell.chars().count());
        }
    }
    for (n, column) in COLUMNS.iter().enumerate() {
        widths[n] = widths[n].min(column.most());
    }
    let desired = widths;
    let total = |widths: &[usize; 6]| {
        let shown = widths.iter().filter(|w| **w > 0).count();
        indent + widths.iter().sum::<usize>() + 2 * shown.saturating_sub(1)
    };
    let at = |column: Column| COLUMNS.iter().position(|c| *c == column).unwrap_or(0);
    let shorten = |widths: &mut [usize; 6], column: Column| {
        let over = total(widths).saturating_sub(width);
        let n = at(column);
        widths[n] = widths[n]
            .saturating_sub(over)
            .max(column.least().min(widths[n]));
    };
    for column in SHORTEN_FIRST {
        shorten(&mut widths, column);
    }
    for column in DROP {
        if total(&widths) > width {
            widths[at(column)] = 0;
        }
    }
    for column in SHORTEN_LAST {
        shorten(&mut widths, column);
    }
    // Room freed by a column that went goes back to those still shown.
    for column in [Column::Name, Column::State, Column::Image, Column::Id] {
        let n = at(column);
        if widths[n] > 0 {
            let room = width.saturating_sub(total(&widths));
            widths[n] = (widths[n] + room).min(desired[n]);
        }
    }
    widths
}

/// `text` cut to `width` characters, an ellipsis marking the cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut short: String = text.chars().take(width - 1).collect();
    short.push('…');
    short
}

fn line_of(cells: &[String; 6], widths: &[usize; 6], indent: usize) -> String {
    let mut line = " ".repeat(indent);
    let mut first = true;
    for (cell, width) in cells.iter().zip(widths) {
        if *width == 0 {
            continue;
        }
        if !first {
            line.push_str("  ");
        }
        first = false;
        line.push_str(&format!("{:<width$}", cut(cell, *width)));
    }
    line.trim_end().to_owned()
}

/// An engine's connection, in a few words.
pub fn condition(status: &SyncStatus) -> String {
    let why = || {
        status
            .last_error
            .as_ref()
            .map(|error| format!(": {}", whalewatcher::describe(error)))
            .unwrap_or_default()
    };
    match status.state {
        SyncState::Synced if !status.omitted.is_empty() => {
            format!("synced, {}", crate::output::joined(&status.omitted))
        }
        SyncState::Synced => "synced".to_owned(),
        SyncState::Syncing => "resynchronizing".to_owned(),
        SyncState::Lost => format!("LOST, retrying{}", why()),
        SyncState::Stopped => format!("stopped{}", why()),
    }
}

/// Events per second as block characters, the last `width` seconds.
fn sparkline(counts: &[u32], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown = &counts[counts.len().saturating_sub(width)..];
    let most = shown.iter().copied().max().unwrap_or(0).max(1);
    shown
        .iter()
        .map(|n| {
            if *n == 0 {
                ' '
            } else {
                BARS[((*n as usize * 8).div_ceil(most as usize)).clamp(1, 8) - 1]
            }
        })
        .collect()
}

/// The heading of an engine's group of rows: its counts and connection
/// first, where it is after (cut first when the width is short).
fn engine_heading(picture: &Picture, view: &View, shown: usize) -> String {
    let engine = &picture.engine;
    let info = engine.info();
    let filtered = !view.filters.is_empty() || view.typed.is_some();
    let full = picture.heading();
    let what = format!("{} {}", info.engine_type, info.version);
    let place = full.strip_prefix(&what).unwrap_or(&full).trim_start();
    format!(
        "{}{what}: {} alive{} · {} · {place}",
        picture.indent(),
        engine.portfolio().len(),
        if filtered {
            format!(", {shown} shown")
        } else {
            String::new()
        },
        condition(engine.status())
    )
}

/// Draws the whole screen: the title area, the table with its header,
/// the status line, and the pane asked for.
pub fn draw(
    frame: &mut Frame,
    snapshot: &FleetSnapshot,
    view: &mut View,
    rows: &[Row],
    named: usize,
) {
    let area = frame.area();
    let pictures = in_tree_order(snapshot, named);
    // The title area: the fleet, then an engine a line while the table
    // keeps at least 3 rows.
    let engine_lines = pictures
        .len()
        .min((area.height as usize).saturating_sub(8) / 3);
    let [title, header, table, status] = Layout::vertical([
        Constraint::Length(1 + engine_lines as u16),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);

    draw_title(frame, title, snapshot, view, &pictures, engine_lines);
    let height = draw_table(frame, header, table, view, rows);
    draw_status(frame, status, view, rows, height);
    if view.detail {
        if let Some(row) = rows.get(view.cursor) {
            detail(frame, area, row, view);
        }
    }
    if view.help {
        help(frame, area);
    }
}

/// The title area: a line for the fleet, then one an engine (of the
/// first `engine_lines`) with its event rate.
fn draw_title(
    frame: &mut Frame,
    title: Rect,
    snapshot: &FleetSnapshot,
    view: &View,
    pictures: &[Picture],
    engine_lines: usize,
) {
    let width = title.width as usize;
    let alive: usize = snapshot.engines().map(|e| e.portfolio().len()).sum();
    let lost = snapshot
        .engines()
        .filter(|e| e.status().state != SyncState::Synced)
        .count();
    let mut title_lines = vec![Line::from(cut(
        &format!(
            "whalewatch --live: {} engine{}{}{}, {alive} alive, at {}",
            pictures.len(),
            if pictures.len() == 1 { "" } else { "s" },
            if engine_lines < pictures.len() && engine_lines > 0 {
                format!(" (the first {engine_lines} below)")
            } else {
                String::new()
            },
            if lost > 0 {
                format!(" ({lost} not synchronized)")
            } else {
                String::new()
            },
            clock()
        ),
        width,
    ))
    .bold()];
    let now = view.second();
    for picture in pictures.iter().take(engine_lines) {
        let engine = &picture.engine;
        let info = engine.info();
        let spark_width = (width / 4).clamp(0, 30);
        let counts = view
            .rates
            .get(&engine.member())
            .map(|rate| rate.last_minute(now))
            .unwrap_or_else(|| vec![0; super::model::RATE_SECONDS]);
        let per_second: f64 = counts.iter().map(|n| f64::from(*n)).sum::<f64>() / 60.0;
        // What it is gives way before how it is.
        let how = format!(
            ": {} alive · {} · {per_second:.1}/s",
            engine.portfolio().len(),
            condition(engine.status()),
        );
        let room = width.saturating_sub(spark_width + 1);
        let what = format!("{}{} {}", picture.indent(), info.engine_type, info.version);
        let what = cut(&what, room.saturating_sub(how.chars().count()).max(8));
        let text = cut(&format!("{what}{how}"), room);
        let pad = width.saturating_sub(text.chars().count() + spark_width);
        let mut spans = vec![Span::raw(text), Span::raw(" ".repeat(pad))];
        spans.push(Span::raw(sparkline(&counts, spark_width)).cyan());
        let mut line = Line::from(spans);
        if engine.status().state != SyncState::Synced {
            line = line.red();
        }
        title_lines.push(line);
    }
    frame.render_widget(Paragraph::new(title_lines), title);
}

/// The pinned header and the rows that fit (only those are formatted);
/// how many rows fit.
fn draw_table(
    frame: &mut Frame,
    header: Rect,
    table: Rect,
    view: &mut View,
    rows: &[Row],
) -> usize {
    let width = table.width as usize;
    // The rows that fit: only those are formatted.
    let height = table.height as usize;
    view.scroll_to_cursor(height);
    view.top = view.top.min(rows.len().saturating_sub(height));
    view.scroll_to_cursor(height);
    let visible = &rows[view.top.min(rows.len())..(view.top + height).min(rows.len())];
    let deepest = visible
        .iter()
        .map(|row| match row {
            Row::Engine { depth, .. } | Row::Container { depth, .. } => *depth,
        })
        .max()
        .unwrap_or(0);
    let cell_rows: Vec<Option<[String; 6]>> = visible
        .iter()
        .map(|row| match row {
            Row::Container { engine, .. } => cells(engine, row, view),
            Row::Engine { .. } => None,
        })
        .collect();
    let all_cells: Vec<[String; 6]> = cell_rows.iter().flatten().cloned().collect();
    let widths = widths(&all_cells, 2 * deepest, width);
    let header_cells = COLUMNS.map(|column| column.header().to_owned());
    frame.render_widget(
        Paragraph::new(Line::from(line_of(&header_cells, &widths, 2 * deepest)).reversed()),
        header,
    );
    let mut lines = Vec::with_capacity(visible.len());
    for (n, (row, cells)) in visible.iter().zip(&cell_rows).enumerate() {
        let selected = view.top + n == view.cursor;
        let mut line = match (row, cells) {
            (Row::Engine { engine, depth }, _) => {
                let picture = Picture {
                    engine: engine.clone(),
                    depth: *depth,
                };
                let shown = rows
                    .iter()
                    .filter(|r| {
                        matches!(r, Row::Container { engine: e, mark, .. }
                        if e.member() == engine.member() && !matches!(mark, Some(Mark::Exited(_))))
                    })
                    .count();
                let line = Line::from(cut(&engine_heading(&picture, view, shown), width)).bold();
                if engine.status().state == SyncState::Synced {
                    line
                } else {
                    line.red()
                }
            }
            (Row::Container { engine, mark, .. }, Some(cells)) => {
                let line = Line::from(cut(&line_of(cells, &widths, 2 * deepest), width));
                let line = match mark {
                    Some(Mark::Started) => line.green().bold(),
                    Some(Mark::Exited(_)) => line.red(),
                    None => line,
                };
                if engine.status().state == SyncState::Synced {
                    line
                } else {
                    line.add_modifier(Modifier::DIM)
                }
            }
            _ => Line::default(),
        };
        if selected {
            line = line.patch_style(Style::new().add_modifier(Modifier::REVERSED));
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), table);

    height
}

/// The status line: filter, sort, position, keys.
fn draw_status(frame: &mut Frame, status: Rect, view: &View, rows: &[Row], height: usize) {
    let width = status.width as usize;
    // The status line.
    let containers = rows
        .iter()
        .filter(|row| matches!(row, Row::Container { .. }))
        .count();
    let (first, last) = (view.top + 1, (view.top + height).min(rows.len()));
    let filter = match (&view.typing, &view.typed) {
        (Some(typing), _) => format!("/{typing}▏ "),
        (None, Some(typed)) => format!("filter {} · ", typed.text()),
        (None, None) => String::new(),
    };
    let status_text = format!(
        "{filter}sort {} · rows {first}–{last} of {} ({containers} containers) · q quit · ? help",
        view.sort.as_str(),
        rows.len()
    );
    frame.render_widget(
        Paragraph::new(Line::from(cut(&status_text, width)).reversed()),
        status,
    );
}

/// A pane over the table, `lines` in a box.
fn pane(frame: &mut Frame, area: Rect, title: &str, lines: Vec<String>) {
    let width = area.width.saturating_sub(4).max(10);
    let height = (lines.len() as u16 + 2)
        .min(area.height.saturating_sub(2))
        .max(3);
    let pane = Rect {
        x: area.x + (area.width.saturating_sub(width)) / 2,
        y: area.y + (area.height.saturating_sub(height)) / 2,
        width: width.min(area.width),
        height: height.min(area.height),
    };
    let inner = pane.width.saturating_sub(2) as usize;
    let lines: Vec<Line> = lines.iter().map(|l| Line::from(cut(l, inner))).collect();
    frame.render_widget(Clear, pane);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title.to_owned()),
        ),
        pane,
    );
}

/// The whole record of the selected container.
fn detail(frame: &mut Frame, area: Rect, row: &Row, view: &View) {
    let Row::Container {
        engine, container, ..
    } = row
    else {
        return;
    };
    let time = |at: Option<std::time::SystemTime>| {
        at.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|since| format!("{} s after the epoch", since.as_secs()))
            .unwrap_or_else(|| "-".into())
    };
    let mut lines = vec![
        format!("id        {}", container.id()),
        format!("name      {}", container.name()),
        format!("project   {}", container.project()),
        format!("image     {}", container.image().unwrap_or("-")),
        format!("image id  {}", container.image_id().unwrap_or("-")),
        format!(
            "PID       {} here, {} in its engine",
            engine
                .local_pid_of(container.id())
                .map_or("-".to_owned(), |pid| pid.to_string()),
            container.pid()
        ),
        format!("paused    {}", container.is_paused()),
        format!("created   {}", time(container.created())),
        format!("started   {}", time(container.started())),
        format!(
            "restarts  {}",
            container.restarts().map_or("-".into(), |n| n.to_string())
        ),
        format!(
            "pod       {}",
            container
                .pod()
                .map(|pod| format!("{}/{}", pod.namespace, pod.name))
                .unwrap_or_else(|| "-".into())
        ),
        format!(
            "last exit {}",
            view.last_exit
                .get(container.id())
                .map(|exit| format!(
                    "code {}, OOM killed {}",
                    exit.code.map_or("-".into(), |c| c.to_string()),
                    exit.oom_killed.map_or("-".into(), |o| o.to_string())
                ))
                .unwrap_or_else(|| "-".into())
        ),
        format!("engine    {}", engine.info().api),
        "labels".to_owned(),
    ];
    let mut labels: Vec<(&str, &str)> = container.labels().iter().collect();
    labels.sort();
    lines.extend(labels.into_iter().map(|(k, v)| format!("  {k}={v}")));
    pane(frame, area, " container (Enter or Esc closes) ", lines);
}

fn help(frame: &mut Frame, area: Rect) {
    let lines = [
        "↑ ↓ j k        move",
        "PgUp PgDn      a page",
        "Home End       first, last",
        "Enter          the container's whole record",
        "s              sort: project, name, engine, PID, age",
        "p              group by project or by pod",
        "/              filter: KEY=VALUE as --filter, or a substring",
        "q Esc Ctrl-C   quit",
        "?              this help",
    ];
    pane(
        frame,
        area,
        " whalewatch --live ",
        lines.iter().map(|l| (*l).to_owned()).collect(),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synced_engine_says_what_its_list_left_out() {
        let mut status = SyncStatus {
            state: SyncState::Synced,
            ..SyncStatus::default()
        };
        assert_eq!(condition(&status), "synced");
        status.omitted = vec![whalewatcher::Omission {
            part: "namespace \"builds\"".into(),
            reason: "permission denied".into(),
        }];
        assert_eq!(
            condition(&status),
            "synced, namespace \"builds\" left out: permission denied"
        );
    }

    fn row(project: &str, name: &str, image: &str) -> [String; 6] {
        [
            project.into(),
            name.into(),
            image.into(),
            "123456".into(),
            "exited (137)".into(),
            "0123456789ab".into(),
        ]
    }

    #[test]
    fn columns_give_way_image_and_id_first_name_and_state_last() {
        let rows = [row(
            "shop",
            "shop-web-a-rather-long-container-name-1",
            "registry.example.com/team/shop/web:1.2.3",
        )];
        for width in [200, 120, 80, 60, 40, 30, 20] {
            let widths = widths(&rows, 2, width);
            let line = line_of(&rows[0], &widths, 2);
            assert!(line.chars().count() <= width, "{width}: {line:?}");
            let shown =
                |column: Column| widths[COLUMNS.iter().position(|c| *c == column).unwrap()] > 0;
            // NAME and STATE stay while anything does.
            assert!(
                shown(Column::Name) && shown(Column::State),
                "{width}: {widths:?}"
            );
            // Nothing goes before IMAGE has gone.
            if shown(Column::Image) {
                assert!(
                    shown(Column::Id) && shown(Column::Project) && shown(Column::Pid),
                    "{width}: {widths:?}"
                );
            }
        }
        let wide = widths(&rows, 0, 200);
        assert_eq!(wide[1], 39, "the whole name where it fits: {wide:?}");
        let narrow = widths(&rows, 0, 40);
        assert_eq!(narrow[2], 0, "no image at 40 columns: {narrow:?}");
    }

    #[test]
    fn a_cut_is_marked_and_a_sparkline_scales_to_the_busiest_second() {
        assert_eq!(cut("container", 5), "cont…");
        assert_eq!(cut("short", 5), "short");
        assert_eq!(sparkline(&[0, 1, 2, 4, 8], 5), " ▁▂▄█");
        assert_eq!(sparkline(&[0, 0, 0], 2), "  ");
    }
}
