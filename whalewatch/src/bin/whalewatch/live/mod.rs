//! `--live`: a full-screen view of the alive containers, on ratatui —
//! engines in tree order with their containers, recent starts and exits
//! marked, each engine's event rate, keys to move, sort, filter and look
//! at one container — redrawn as events arrive, at most 10 times a
//! second. The terminal is restored on every way out: a key, a signal,
//! an engine's error, a panic.

mod draw;
mod model;

use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use whalewatcher::Fleet;

use crate::filter::Filter;
use model::{Grouping, Row, View};

/// The least time between two redraws: a burst of events is one redraw.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// The terminal in raw mode on the alternate screen, restored when
/// dropped — also while a panic unwinds (and by the panic hook, which
/// runs before: so that the panic's message is readable).
struct Screen {
    terminal: ratatui::DefaultTerminal,
}

impl Screen {
    fn enter() -> std::io::Result<Self> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            ratatui::restore();
            hook(info);
        }));
        Ok(Screen {
            terminal: ratatui::try_init()?,
        })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// What a key asks for.
enum Asked {
    Nothing,
    Redraw,
    Quit,
}

/// Shows the fleet's containers until `until` completes or the user
/// quits (`None` then); restores the terminal before it returns.
pub async fn run<F: std::future::Future>(
    fleet: &Fleet,
    filters: &[Filter],
    named: usize,
    until: F,
) -> std::io::Result<Option<F::Output>> {
    let (_, mut changes) = fleet.subscribe();
    let mut screen = Screen::enter()?;
    let mut keys = EventStream::new();
    let mut view = View::new(filters.to_vec());
    let mut rows: Vec<Row> = Vec::new();
    // Rows are made again only when the fleet, the marks or the view
    // changed; the clock's redraw reuses them.
    let mut stale = true;
    let mut marks_due: Option<Instant> = None;
    let mut dirty = true;
    let mut last_draw = Instant::now() - REDRAW_EVERY;
    let mut page = 10;
    tokio::pin!(until);
    loop {
        let snapshot = fleet.snapshot();
        let now = Instant::now();
        if marks_due.is_some_and(|due| due <= now) {
            stale = true;
        }
        if dirty && now - last_draw >= REDRAW_EVERY {
            if stale {
                marks_due = view.expire(&snapshot);
                rows = view.rows(&snapshot, named);
                stale = false;
            }
            screen.terminal.draw(|frame| {
                page = frame.area().height.saturating_sub(4).max(1) as usize;
                draw::draw(frame, &snapshot, &mut view, &rows, named);
            })?;
            last_draw = now;
            dirty = false;
        }
        // Wake for the pending redraw, the next mark to go, or the clock.
        let clock = last_draw + Duration::from_secs(1);
        let wake = if dirty {
            last_draw + REDRAW_EVERY
        } else {
            marks_due.map_or(clock, |due| due.min(clock))
        };
        tokio::select! {
            done = &mut until => return Ok(Some(done)),
            Some(change) = changes.next() => {
                if let Ok(change) = change {
                    view.take_in(&change, &fleet.snapshot());
                }
                dirty = true;
                stale = true;
            }
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) => match asked(&mut view, &rows, key, page) {
                    Asked::Quit => return Ok(None),
                    Asked::Redraw => {
                        dirty = true;
                        stale = true;
                        // Keys answer at once, not at the next redraw slot.
                        last_draw = Instant::now() - REDRAW_EVERY;
                    }
                    Asked::Nothing => {}
                },
                Some(Ok(Event::Resize(..))) => {
                    dirty = true;
                    last_draw = Instant::now() - REDRAW_EVERY;
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(None),
            },
            () = tokio::time::sleep_until(wake.into()) => dirty = true,
        }
    }
}

/// What `key` does to the view.
fn asked(view: &mut View, rows: &[Row], key: KeyEvent, page: usize) -> Asked {
    if key.kind == KeyEventKind::Release {
        return Asked::Nothing;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Asked::Quit;
    }
    if let Some(typing) = view.typing.as_mut() {
        match key.code {
            KeyCode::Enter => view.apply_typed(),
            KeyCode::Esc => view.typing = None,
            KeyCode::Backspace => {
                typing.pop();
            }
            KeyCode::Char(c) => typing.push(c),
            _ => return Asked::Nothing,
        }
        return Asked::Redraw;
    }
    if view.help || view.detail {
        match key.code {
            KeyCode::Char('q') => return Asked::Quit,
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?') => {
                view.help = false;
                view.detail = false;
            }
            _ => return Asked::Nothing,
        }
        return Asked::Redraw;
    }
    let page = page as isize;
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return Asked::Quit,
        KeyCode::Up | KeyCode::Char('k') => view.move_cursor(rows, -1),
        KeyCode::Down | KeyCode::Char('j') => view.move_cursor(rows, 1),
        KeyCode::PageUp => view.move_cursor(rows, -page),
        KeyCode::PageDown => view.move_cursor(rows, page),
        KeyCode::Home | KeyCode::Char('g') => view.jump(rows, 0),
        KeyCode::End | KeyCode::Char('G') => view.jump(rows, usize::MAX),
        KeyCode::Char('s') => view.sort = view.sort.next(),
        KeyCode::Char('p') => {
            view.grouping = match view.grouping {
                Grouping::Project => Grouping::Pod,
                Grouping::Pod => Grouping::Project,
            }
        }
        KeyCode::Char('/') => view.typing = Some(String::new()),
        KeyCode::Enter => view.detail = true,
        KeyCode::Char('?') => view.help = true,
        _ => return Asked::Nothing,
    }
    Asked::Redraw
}
