//! `whalewatch`: the alive containers of one or more container engines, as
//! a table grouped by project or as JSON; with `--follow`, their lifecycle
//! events as JSON lines until Ctrl-C.
//!
//! ```sh
//! whalewatch                                   # Docker, by the docker CLI's rules
//! whalewatch --docker unix:///run/docker.sock --podman --json
//! whalewatch --containerd /run/containerd/containerd.sock --follow
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser};
use futures::stream::{FuturesUnordered, SelectAll};
use futures::StreamExt;
use serde::Serialize;
use whalewatcher::{
    CancellationToken, Container, EngineError, EngineInfo, Event, RetryPolicy, WatchError, Watcher,
};

/// Shows the alive containers of container engines, and follows their
/// lifecycle events.
///
/// Without an engine option, watches Docker by the docker CLI's rules
/// (DOCKER_HOST, else unix:///var/run/docker.sock). Engine options may be
/// given together and repeated.
#[derive(Debug, Parser)]
#[command(name = "whalewatch", version)]
struct Args {
    /// Docker at URL (unix://, tcp://, http(s)://); without URL, by the
    /// docker CLI's rules.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "", action = ArgAction::Append)]
    docker: Vec<String>,
    /// podman's Docker-compatible API at URL; without URL, at
    /// /run/podman/podman.sock (root) or $XDG_RUNTIME_DIR/podman/podman.sock.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "", action = ArgAction::Append)]
    podman: Vec<String>,
    /// containerd's native API at the unix socket PATH; without PATH, at
    /// /run/containerd/containerd.sock.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "", action = ArgAction::Append)]
    containerd: Vec<PathBuf>,
    /// A CRI runtime (containerd 1.7+, cri-o with pod events) at the unix
    /// socket PATH.
    #[arg(long, value_name = "PATH", action = ArgAction::Append)]
    cri: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Print the alive containers, then every lifecycle event, as JSON
    /// lines until Ctrl-C.
    #[arg(long)]
    follow: bool,
}

/// One engine being watched.
struct Watched {
    /// Which option asked for it, for messages: `docker`, `cri`, ...
    option: &'static str,
    watcher: Watcher,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let engines = match engines(&args) {
        Ok(engines) => engines,
        Err((option, error)) => return fail(option, &error),
    };

    let cancel = CancellationToken::new();
    let mut watches: FuturesUnordered<_> = engines
        .iter()
        .map(|engine| {
            let (watcher, cancel, option) = (engine.watcher.clone(), cancel.clone(), engine.option);
            async move { (option, watcher.watch(cancel).await) }
        })
        .collect();
    // The watches run while we wait for every engine's first sync.
    let synced = tokio::select! {
        synced = futures::future::join_all(engines.iter().map(|e| e.watcher.ready())) => synced,
        Some((option, ended)) = watches.next() => {
            cancel.cancel();
            return fail_watch(option, ended);
        }
    };
    let failed = engines
        .iter()
        .zip(synced)
        .find_map(|(engine, synced)| synced.err().map(|error| (engine.option, error)));
    if let Some((option, error)) = failed {
        cancel.cancel();
        while watches.next().await.is_some() {}
        return fail(option, &error);
    }

    let code = if args.follow {
        follow(&engines, &mut watches).await
    } else {
        let written = if args.json {
            print_json(&engines)
        } else {
            print_tables(&engines)
        };
        // A closed pipe (`| head`) is not an error of ours.
        let _ = written;
        ExitCode::SUCCESS
    };
    cancel.cancel();
    while watches.next().await.is_some() {}
    for engine in &engines {
        engine.watcher.close().await;
    }
    code
}

/// The watchers the options ask for; Docker by default.
fn engines(args: &Args) -> Result<Vec<Watched>, (&'static str, EngineError)> {
    let retry = RetryPolicy::default;
    let endpoint = |url: &String| Some(url.clone()).filter(|url| !url.is_empty());
    let mut engines = Vec::new();
    let no_engine_option = args.docker.is_empty()
        && args.podman.is_empty()
        && args.containerd.is_empty()
        && args.cri.is_empty();
    let docker_urls = if no_engine_option {
        vec![String::new()]
    } else {
        args.docker.clone()
    };
    for url in &docker_urls {
        let watcher = whalewatcher::docker_watcher(endpoint(url).as_deref(), retry())
            .map_err(|e| ("docker", e))?;
        engines.push(Watched {
            option: "docker",
            watcher,
        });
    }
    for url in &args.podman {
        let watcher = whalewatcher::podman_watcher(endpoint(url).as_deref(), retry())
            .map_err(|e| ("podman", e))?;
        engines.push(Watched {
            option: "podman",
            watcher,
        });
    }
    for path in &args.containerd {
        let path = Some(path.as_path()).filter(|path| !path.as_os_str().is_empty());
        engines.push(Watched {
            option: "containerd",
            watcher: whalewatcher::containerd_watcher(path, retry()),
        });
    }
    for path in &args.cri {
        engines.push(Watched {
            option: "cri",
            watcher: whalewatcher::cri_watcher(path, retry()),
        });
    }
    Ok(engines)
}

fn fail(option: &str, error: &EngineError) -> ExitCode {
    let message = whalewatcher::describe(error);
    eprintln!(
        "whalewatch: --{option}: {message}{}",
        hint(option, &message)
    );
    ExitCode::FAILURE
}

fn fail_watch(option: &str, ended: Result<(), WatchError>) -> ExitCode {
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(WatchError::Unsupported(error) | WatchError::GaveUp { last: error, .. }) => {
            fail(option, &error)
        }
        Err(error) => {
            eprintln!("whalewatch: --{option}: {}", whalewatcher::describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// What to try, for the errors a newcomer meets first.
fn hint(option: &str, message: &str) -> String {
    let lower = message.to_lowercase();
    if lower.contains("permission denied") {
        " (try as root, or as a member of the socket's group)".to_owned()
    } else if lower.contains("no such file or directory") {
        " (is the engine running? is that its socket?)".to_owned()
    } else if message.starts_with("cannot reach the engine")
        || message.contains("answered unexpectedly")
    {
        format!(" (is it a {option} endpoint?)")
    } else {
        String::new()
    }
}

/// The portfolio of each engine as a table grouped by project.
fn print_tables(engines: &[Watched]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for (n, engine) in engines.iter().enumerate() {
        let info = engine.watcher.engine_info();
        let portfolio = engine.watcher.portfolio();
        if n > 0 {
            writeln!(out)?;
        }
        writeln!(
            out,
            "{} {} at {} (engine id {}): {} alive",
            info.engine_type,
            info.version,
            info.api,
            info.id,
            portfolio.len()
        )?;
        if portfolio.is_empty() {
            continue;
        }
        let mut rows = vec![[
            "PROJECT".to_owned(),
            "CONTAINER".to_owned(),
            "IMAGE".to_owned(),
            "PID".to_owned(),
            "STATE".to_owned(),
            "ID".to_owned(),
        ]];
        let mut projects: Vec<_> = portfolio.projects().collect();
        projects.sort_by_key(|p| p.name());
        for project in projects {
            for container in project.containers_by_name() {
                rows.push(row(project.name(), container));
            }
        }
        let widths: Vec<usize> = (0..6)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            writeln!(out, "{}", line.join("  ").trim_end())?;
        }
    }
    Ok(())
}

fn row(project: &str, container: &Container) -> [String; 6] {
    let id = container.id();
    // Docker's and CRI's 64-hex ids are told apart by 12.
    let short = if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    };
    [
        if project.is_empty() { "-" } else { project }.to_owned(),
        container.name().to_owned(),
        container.image().unwrap_or("-").to_owned(),
        container.pid().to_string(),
        if container.is_paused() {
            "paused"
        } else {
            "running"
        }
        .to_owned(),
        short.to_owned(),
    ]
}

/// An engine and its containers, by project, for `--json`.
#[derive(Serialize)]
struct EngineJson<'a> {
    engine: &'a EngineInfo,
    projects: Vec<ProjectJson<'a>>,
}

#[derive(Serialize)]
struct ProjectJson<'a> {
    name: &'a str,
    containers: Vec<&'a Container>,
}

fn print_json(engines: &[Watched]) -> std::io::Result<()> {
    let infos: Vec<_> = engines.iter().map(|e| e.watcher.engine_info()).collect();
    let portfolios: Vec<_> = engines.iter().map(|e| e.watcher.portfolio()).collect();
    let json: Vec<EngineJson> = infos
        .iter()
        .zip(&portfolios)
        .map(|(info, portfolio)| {
            let mut projects: Vec<ProjectJson> = portfolio
                .projects()
                .map(|p| ProjectJson {
                    name: p.name(),
                    containers: p.containers_by_name().into_iter().map(|c| &**c).collect(),
                })
                .collect();
            projects.sort_by_key(|p| p.name);
            EngineJson {
                engine: info,
                projects,
            }
        })
        .collect();
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &json)?;
    std::io::Write::write_all(&mut out, b"\n")
}

/// One line of `--follow`: a container alive at the start, or an event.
#[derive(Serialize)]
struct Line<'a> {
    engine: &'a str,
    #[serde(flatten)]
    what: What<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum What<'a> {
    Alive {
        kind: &'static str,
        container: &'a Container,
    },
    Event(&'a Event),
}

/// Prints the alive containers, then each event, until Ctrl-C (or
/// SIGTERM) or a watch ends for good.
async fn follow(
    engines: &[Watched],
    watches: &mut FuturesUnordered<
        impl std::future::Future<Output = (&'static str, Result<(), WatchError>)>,
    >,
) -> ExitCode {
    let apis: Vec<String> = engines.iter().map(|e| e.watcher.api()).collect();
    let mut events = SelectAll::new();
    for (engine, api) in engines.iter().zip(&apis) {
        let (snapshot, stream) = engine.watcher.subscribe();
        let mut alive: Vec<_> = snapshot.containers().collect();
        alive.sort_by_key(|c| (c.project(), c.name()));
        for container in alive {
            let what = What::Alive {
                kind: "alive",
                container,
            };
            if !print_line(api, what) {
                return ExitCode::SUCCESS;
            }
        }
        events.push(stream.map(move |event| (api, event)));
    }
    loop {
        tokio::select! {
            _ = shutdown() => return ExitCode::SUCCESS,
            Some((option, ended)) = watches.next() => return fail_watch(option, ended),
            Some((api, event)) = events.next() => match event {
                Ok(event) => {
                    if !print_line(api, What::Event(&event)) {
                        return ExitCode::SUCCESS;
                    }
                }
                Err(lagged) => eprintln!("whalewatch: {api}: {lagged}"),
            },
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM, as from `kill` or a service manager.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Prints one JSON line; false when stdout is gone.
fn print_line(engine: &str, what: What) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &Line { engine, what }).is_ok()
        && out.write_all(b"\n").is_ok()
        && out.flush().is_ok()
}
