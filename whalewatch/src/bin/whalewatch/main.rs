//! `whalewatch`: the alive containers of one or more container engines, as
//! a table grouped by project or as JSON; with `--follow`, their lifecycle
//! events as JSON lines until Ctrl-C.
//!
//! ```sh
//! whalewatch                                   # every engine of the host, found by process
//! whalewatch --docker                          # Docker, by the docker CLI's rules
//! whalewatch --docker unix:///run/docker.sock --podman --json
//! whalewatch --containerd /run/containerd/containerd.sock --follow
//! ```

mod engines;
mod filter;
mod follow;
mod live;
mod output;
mod watches;

use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser};
use whalewatcher::discovery::Discovery;
use whalewatcher::{EngineError, Fleet, FleetMember, WatchError, Watcher};

use filter::Filter;
use output::{Format, Printing};
use watches::Watches;

/// Shows the alive containers of container engines, and follows their
/// lifecycle events.
///
/// Without an engine option, watches every engine this user can reach (as
/// --discover does): those found by their processes, and those at the
/// sockets where each kind of engine listens by default that this user may
/// connect to (/var/run/docker.sock, $XDG_RUNTIME_DIR/docker.sock,
/// /run/podman/podman.sock, $XDG_RUNTIME_DIR/podman/podman.sock,
/// /run/containerd/containerd.sock, /run/crio/crio.sock) — unless
/// DOCKER_HOST is set or a docker context other than the default is
/// current: then watches that Docker. Exits 1 when no engine could be
/// watched. Engine options may be given together and repeated.
/// RUST_LOG=whalewatcher=debug tells what the watchers do, on stderr.
#[derive(Debug, Parser)]
#[command(name = "whalewatch", version)]
struct Args {
    /// Docker at URL (unix://, tcp://, http(s)://); without URL, by the
    /// docker CLI's rules.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "", action = ArgAction::Append)]
    docker: Vec<String>,
    /// podman's Docker-compatible API at URL; without URL, at
    /// $CONTAINER_HOST, else /run/podman/podman.sock (root) or
    /// $XDG_RUNTIME_DIR/podman/podman.sock.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "", action = ArgAction::Append)]
    podman: Vec<String>,
    /// containerd's native API at the unix socket PATH; without PATH, at
    /// /run/containerd/containerd.sock.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "", action = ArgAction::Append)]
    containerd: Vec<String>,
    /// A CRI runtime (containerd 1.7+, cri-o with pod events) at the unix
    /// socket PATH; without PATH, at $CONTAINER_RUNTIME_ENDPOINT, else
    /// /run/containerd/containerd.sock.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "", action = ArgAction::Append)]
    cri: Vec<String>,
    /// Also find the host's engines by their processes — dockerd,
    /// containerd (also as CRI), podman system service, cri-o — engines
    /// inside containers too, reached through /proc; each engine nested
    /// under the container it runs in, every PID also in whalewatch's PID
    /// namespace. Engines whose socket an activator (systemd) holds are
    /// started by connecting to it. Engines at the well-known sockets are
    /// watched too, each engine once. Needs root to look into other users'
    /// engines; what it cannot reach, it says on stderr. With --follow and
    /// --live, engines that start or stop later join or leave (and no
    /// engine at the start is no failure).
    #[arg(long)]
    discover: bool,
    /// Only the containers that pass: label=KEY[=VALUE], name=TEXT,
    /// project=NAME (- for none), pod=[NAMESPACE/]NAME, engine=TYPE-OR-API.
    /// Filters of one key are alternatives; of different keys, all must hold.
    #[arg(long, short = 'f', value_name = "KEY=VALUE", action = ArgAction::Append)]
    filter: Vec<Filter>,
    /// table (the default), json, or a comma-separated list of fields
    /// (id, name, project, pod, pid, state, health, image, engine, ip,
    /// ports) printed tab-separated.
    #[arg(long, value_name = "FORMAT", conflicts_with = "json")]
    format: Option<Format>,
    /// Print JSON instead of a table (the same as --format json).
    #[arg(long)]
    json: bool,
    /// Only the container ids, one per line.
    #[arg(long, short = 'q', conflicts_with_all = ["format", "json", "follow"])]
    quiet: bool,
    /// Full ids, not their first 12 characters.
    #[arg(long)]
    no_trunc: bool,
    /// Give up when an engine has not synchronized within this many
    /// seconds (for example 5 or 0.5); without it, wait as long as the
    /// engines keep failing in a way worth retrying.
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    timeout: Option<Duration>,
    /// Print the alive containers, then every lifecycle event, as JSON
    /// lines until Ctrl-C.
    #[arg(long)]
    follow: bool,
    /// A full-screen table of the alive containers, by engine and
    /// project, redrawn as events arrive, until Ctrl-C.
    #[arg(long, conflicts_with_all = ["quiet", "format", "json", "follow"])]
    live: bool,
    /// Print the completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell), and nothing else.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// Print the man page (roff), and nothing else.
    #[arg(long, exclusive = true)]
    man: bool,
}

/// A `--timeout`: non-negative seconds, fractions allowed.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

/// One engine being watched.
pub(crate) struct Watched {
    /// Which option asked for it, for messages: `docker`, `cri`, ...
    pub(crate) option: &'static str,
    pub(crate) watcher: Watcher,
}

fn main() -> ExitCode {
    // One thread: the watchers mostly wait on their engines, and a second
    // worker cost more in wake-ups than it won (with 500 containers on
    // dockerd, half the CPU for the same wall time; BENCHMARKS.md).
    // Output and /proc reads wait on blocking threads, not on this one.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("whalewatch: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    // A write still blocked on a full pipe must not hold the exit.
    runtime.shutdown_background();
    code
}

/// Logs to stderr as `RUST_LOG` says; nothing without it.
fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// `--completions SHELL` and `--man`: written from the options alone.
fn about_the_options(args: &Args) -> Option<ExitCode> {
    if let Some(shell) = args.completions {
        let mut command = Args::command();
        clap_complete::generate(shell, &mut command, "whalewatch", &mut std::io::stdout());
        return Some(exit_after_writing(std::io::Write::flush(
            &mut std::io::stdout(),
        )));
    }
    if args.man {
        let mut out = std::io::stdout().lock();
        let written = clap_mangen::Man::new(Args::command())
            .render(&mut out)
            .and_then(|()| std::io::Write::flush(&mut out));
        return Some(exit_after_writing(written));
    }
    None
}

async fn run() -> ExitCode {
    init_tracing();
    let args = Args::parse();
    if let Some(code) = about_the_options(&args) {
        return code;
    }
    // Caught from the start in the modes that run until told to stop: a
    // signal that comes while output is blocked is neither lost nor fatal.
    let mut signals = if args.follow || args.live {
        match Signals::install() {
            Ok(signals) => Some(signals),
            Err(error) => return fail("follow", &format!("cannot catch signals: {error}")),
        }
    } else {
        None
    };
    let (engines, discover) = match engines::engines(&args) {
        Ok(engines) => engines,
        Err((option, message)) => return fail(option, &message),
    };
    let began = tokio::time::Instant::now();

    // Each return drops the watches, which stops them.
    let mut watches = Watches::spawn(&engines);
    // The watches run while we wait for every engine's first sync.
    let all_ready = futures::future::join_all(engines.iter().map(|e| e.watcher.ready()));
    let deadline = || async {
        match args.timeout {
            Some(timeout) => tokio::time::sleep_until(began + timeout).await,
            None => futures::future::pending().await,
        }
    };
    let synced = tokio::select! {
        synced = all_ready => synced,
        (option, ended) = watches.ended() => return fail_watch(option, ended),
        () = deadline() => return fail_timeout(&engines, args.timeout.unwrap_or_default()),
        () = Signals::requested(&mut signals) => return ExitCode::SUCCESS,
    };
    let failed = engines
        .iter()
        .zip(synced)
        .find_map(|(engine, synced)| synced.err().map(|error| (engine.option, error)));
    if let Some((option, error)) = failed {
        drop(watches);
        for engine in &engines {
            engine.watcher.close().await;
        }
        return fail_engine(option, &error);
    }

    // The engines named are the fleet's first members (their watches run
    // here: the fleet follows them); discovery adds the rest.
    let fleet = Fleet::new();
    for engine in &engines {
        fleet
            .add(FleetMember::following(engine.watcher.clone()))
            .expect("a new fleet takes members");
    }
    let discovery = discover.then(|| Discovery::builder().fleet(fleet.clone()).build());
    if let Some(discovery) = &discovery {
        let scanned = tokio::select! {
            scanned = discovery.scan() => scanned,
            (option, ended) = watches.ended() => return fail_watch(option, ended),
            () = deadline() => {
                let timeout = args.timeout.unwrap_or_default();
                return fail("discover", &format!("the scan did not end within {timeout:?}"));
            }
            () = Signals::requested(&mut signals) => return ExitCode::SUCCESS,
        };
        let scan = match scanned {
            Ok(scan) => scan,
            Err(error) => return fail("discover", &whalewatcher::describe(&error)),
        };
        engines::tell_unreached(&scan);
        // Nothing to show, and nothing to wait for: unless asked to
        // discover while following, where engines that start later join.
        let waits_for_engines = args.discover && (args.follow || args.live);
        if engines.is_empty() && scan.engines.is_empty() && !waits_for_engines {
            return engines::fail_nothing_watched(&scan);
        }
    }
    // Engines that start or stop while following join or leave.
    let rescanning = match &discovery {
        Some(discovery) if args.follow || args.live => Some(discovery.spawn()),
        _ => None,
    };

    let code = show(&args, &fleet, engines.len(), &mut watches, &mut signals).await;
    if let Some(rescanning) = rescanning {
        let _ = rescanning.stop().await;
    }
    drop(watches);
    // Closes the watchers discovery made; the named ones are closed here,
    // each once its watch has ended.
    fleet.close().await;
    for engine in &engines {
        engine.watcher.close().await;
    }
    code
}

/// What the options ask to be shown of the fleet: its events as JSON
/// lines (`--follow`), a live screen (`--live`), or its containers once.
async fn show(
    args: &Args,
    fleet: &Fleet,
    named: usize,
    watches: &mut Watches,
    signals: &mut Option<Signals>,
) -> ExitCode {
    if args.follow {
        // Raced here, not inside: a write blocked on a full pipe must not
        // keep the signal waiting.
        tokio::select! {
            code = follow::follow(fleet, &args.filter, named, watches) => code,
            () = Signals::requested(signals) => ExitCode::SUCCESS,
        }
    } else if args.live {
        let until = async {
            tokio::select! {
                () = Signals::requested(signals) => None,
                ended = watches.ended() => Some(ended),
            }
        };
        match live::run(fleet, &args.filter, named, until).await {
            Ok(None | Some(None)) => ExitCode::SUCCESS,
            Ok(Some(Some((option, ended)))) => fail_watch(option, ended),
            Err(error) => exit_after_writing(Err(error)),
        }
    } else {
        print_once(args, fleet, named)
    }
}

/// The fleet's containers, once, in the format asked for.
fn print_once(args: &Args, fleet: &Fleet, named: usize) -> ExitCode {
    let format = match (&args.format, args.json) {
        (Some(format), _) => format.clone(),
        (None, true) => Format::Json,
        (None, false) => Format::Table,
    };
    let printing = Printing {
        format: &format,
        quiet: args.quiet,
        no_trunc: args.no_trunc,
        filters: &args.filter,
        named,
    };
    // Buffered: stdout alone writes each line with a system call of its
    // own, 9,970 of them for 500 containers as JSON.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let written = printing
        .print(&fleet.snapshot(), &mut out)
        .and_then(|()| std::io::Write::flush(&mut out));
    exit_after_writing(written)
}

pub(crate) fn fail(option: &str, message: &str) -> ExitCode {
    eprintln!("whalewatch: --{option}: {message}");
    ExitCode::FAILURE
}

/// An engine's error, and what to try.
fn fail_engine(option: &str, error: &EngineError) -> ExitCode {
    let message = whalewatcher::describe(error);
    fail(option, &format!("{message}{}", hint(option, error)))
}

pub(crate) fn fail_watch(option: &str, ended: Result<(), WatchError>) -> ExitCode {
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(WatchError::Unsupported(error) | WatchError::GaveUp { last: error, .. }) => {
            fail_engine(option, &error)
        }
        Err(error) => fail(option, &whalewatcher::describe(&error)),
    }
}

/// No first sync within `--timeout`: which engines, and why if known.
fn fail_timeout(engines: &[Watched], timeout: Duration) -> ExitCode {
    for engine in engines {
        let status = engine.watcher.status();
        if status.is_synced() {
            continue;
        }
        let why = status
            .last_error
            .map(|error| format!(": {}", whalewatcher::describe(&error)))
            .unwrap_or_default();
        eprintln!(
            "whalewatch: --{}: {} did not synchronize within {timeout:?}{why}",
            engine.option,
            engine.watcher.api()
        );
    }
    ExitCode::FAILURE
}

/// What to try, for the errors a newcomer meets first: by the kind of the
/// I/O error that caused it, else by the kind of engine error.
fn hint(option: &str, error: &EngineError) -> String {
    use std::io::ErrorKind;
    match (error.io_kind(), error) {
        (Some(ErrorKind::PermissionDenied), _) => {
            " (try as root, or as a member of the socket's group)".to_owned()
        }
        (Some(ErrorKind::NotFound | ErrorKind::ConnectionRefused), _) => {
            " (is the engine running? is that its socket?)".to_owned()
        }
        // Else an engine that says more (not a socket, not its API, a
        // certificate) needs no guess added.
        (None, EngineError::Unreachable { .. }) => format!(" (is it a {option} endpoint?)"),
        _ => String::new(),
    }
}

/// Ctrl-C (SIGINT) and SIGTERM (from `kill` or a service manager),
/// caught from when they are installed.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Completes when either signal came; never without signals.
    async fn requested(signals: &mut Option<Signals>) {
        match signals {
            Some(signals) => {
                tokio::select! {
                    _ = signals.interrupt.recv() => {}
                    _ = signals.terminate.recv() => {}
                }
            }
            None => futures::future::pending().await,
        }
    }
}

/// Success, unless the output could not be written: a closed pipe
/// (`| head`) is the reader's choice, not an error; a full disk is.
pub(crate) fn exit_after_writing(written: std::io::Result<()>) -> ExitCode {
    match written {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("whalewatch: cannot write the output: {error}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
