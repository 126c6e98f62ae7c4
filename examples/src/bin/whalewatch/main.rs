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

mod filter;
mod live;
mod output;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use whalewatcher::discovery::{Discovery, Scan};
use whalewatcher::{
    CancellationToken, EngineError, Fleet, FleetChange, FleetMember, MemberId, RetryPolicy,
    SyncState, SyncStatus, WatchError, Watcher,
};

use filter::Filter;
use output::{ContainerJson, EventJson, Format, Printing, What};

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
    /// (id, name, project, pod, pid, state, health, image, engine) printed
    /// tab-separated.
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
struct Watched {
    /// Which option asked for it, for messages: `docker`, `cri`, ...
    option: &'static str,
    watcher: Watcher,
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

async fn run() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(shell) = args.completions {
        let mut command = Args::command();
        clap_complete::generate(shell, &mut command, "whalewatch", &mut std::io::stdout());
        return exit_after_writing(std::io::Write::flush(&mut std::io::stdout()));
    }
    if args.man {
        let mut out = std::io::stdout().lock();
        let written = clap_mangen::Man::new(Args::command())
            .render(&mut out)
            .and_then(|()| std::io::Write::flush(&mut out));
        return exit_after_writing(written);
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
    let (engines, discover) = match engines(&args) {
        Ok(engines) => engines,
        Err((option, message)) => return fail(option, &message),
    };
    let began = tokio::time::Instant::now();

    let cancel = CancellationToken::new();
    let mut watches: FuturesUnordered<_> = engines
        .iter()
        .map(|engine| {
            let (watcher, cancel, option) = (engine.watcher.clone(), cancel.clone(), engine.option);
            async move { (option, watcher.watch(cancel).await) }
        })
        .collect();
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
        Some((option, ended)) = watches.next() => {
            cancel.cancel();
            return fail_watch(option, ended);
        }
        () = deadline() => {
            cancel.cancel();
            return fail_timeout(&engines, args.timeout.unwrap_or_default());
        }
        () = Signals::requested(&mut signals) => {
            cancel.cancel();
            return ExitCode::SUCCESS;
        }
    };
    let failed = engines
        .iter()
        .zip(synced)
        .find_map(|(engine, synced)| synced.err().map(|error| (engine.option, error)));
    if let Some((option, error)) = failed {
        cancel.cancel();
        while watches.next().await.is_some() {}
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
            Some((option, ended)) = watches.next() => {
                cancel.cancel();
                return fail_watch(option, ended);
            }
            () = deadline() => {
                cancel.cancel();
                let timeout = args.timeout.unwrap_or_default();
                return fail("discover", &format!("the scan did not end within {timeout:?}"));
            }
            () = Signals::requested(&mut signals) => {
                cancel.cancel();
                return ExitCode::SUCCESS;
            }
        };
        let scan = match scanned {
            Ok(scan) => scan,
            Err(error) => {
                cancel.cancel();
                return fail("discover", &whalewatcher::describe(&error));
            }
        };
        tell_unreached(&scan);
        // Nothing to show, and nothing to wait for: unless asked to
        // discover while following, where engines that start later join.
        let waits_for_engines = args.discover && (args.follow || args.live);
        if engines.is_empty() && scan.engines.is_empty() && !waits_for_engines {
            cancel.cancel();
            return fail_nothing_watched(&scan);
        }
    }
    // Engines that start or stop while following join or leave.
    let rescanning = match &discovery {
        Some(discovery) if args.follow || args.live => Some(discovery.spawn()),
        _ => None,
    };

    let code = if args.follow {
        // Raced here, not inside: a write blocked on a full pipe must not
        // keep the signal waiting.
        tokio::select! {
            code = follow(&fleet, &args.filter, engines.len(), &mut watches) => code,
            () = Signals::requested(&mut signals) => ExitCode::SUCCESS,
        }
    } else if args.live {
        let until = async {
            tokio::select! {
                () = Signals::requested(&mut signals) => None,
                Some(ended) = watches.next() => Some(ended),
            }
        };
        match live::run(&fleet, &args.filter, engines.len(), until).await {
            Ok(None | Some(None)) => ExitCode::SUCCESS,
            Ok(Some(Some((option, ended)))) => fail_watch(option, ended),
            Err(error) => exit_after_writing(Err(error)),
        }
    } else {
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
            named: engines.len(),
        };
        // Buffered: stdout alone writes each line with a system call of
        // its own, 9,970 of them for 500 containers as JSON.
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        let written = printing
            .print(&fleet.snapshot(), &mut out)
            .and_then(|()| std::io::Write::flush(&mut out));
        exit_after_writing(written)
    };
    if let Some(rescanning) = rescanning {
        let _ = rescanning.stop().await;
    }
    cancel.cancel();
    while watches.next().await.is_some() {}
    // Closes the watchers discovery made; the named ones are closed here.
    fleet.close().await;
    for engine in &engines {
        engine.watcher.close().await;
    }
    code
}

/// The watchers the options ask for, and whether to discover engines:
/// asked for, or no engine option and no Docker named by DOCKER_HOST or a
/// docker context. Each engine crate finds an endpoint not named by the
/// rules of its tools (the docker CLI's, podman's, crictl's).
fn engines(args: &Args) -> Result<(Vec<Watched>, bool), (&'static str, String)> {
    let retry = RetryPolicy::default;
    let endpoint = |url: &String| Some(url.clone()).filter(|url| !url.is_empty());
    let describe =
        |option: &'static str| move |e: EngineError| (option, whalewatcher::describe(&e));
    let no_engine_option = args.docker.is_empty()
        && args.podman.is_empty()
        && args.containerd.is_empty()
        && args.cri.is_empty();
    let mut engines = Vec::new();
    let mut discover = args.discover;
    if no_engine_option && !args.discover {
        // The Docker the docker CLI would use, when DOCKER_HOST or a
        // context other than the default names one; else discovery.
        let configured = whalewatcher::moby::configured_endpoint().map_err(describe("docker"))?;
        if configured.is_some() {
            let watcher =
                whalewatcher::docker_watcher(None, retry()).map_err(describe("docker"))?;
            engines.push(Watched {
                option: "docker",
                watcher,
            });
        } else {
            discover = true;
        }
    }
    for url in &args.docker {
        let watcher = whalewatcher::docker_watcher(endpoint(url).as_deref(), retry())
            .map_err(describe("docker"))?;
        engines.push(Watched {
            option: "docker",
            watcher,
        });
    }
    for url in &args.podman {
        let watcher = whalewatcher::podman_watcher(endpoint(url).as_deref(), retry())
            .map_err(describe("podman"))?;
        engines.push(Watched {
            option: "podman",
            watcher,
        });
    }
    for socket in &args.containerd {
        let watcher = whalewatcher::containerd_watcher(path(socket), retry())
            .map_err(describe("containerd"))?;
        engines.push(Watched {
            option: "containerd",
            watcher,
        });
    }
    for socket in &args.cri {
        let watcher = whalewatcher::cri_watcher(path(socket), retry()).map_err(describe("cri"))?;
        engines.push(Watched {
            option: "cri",
            watcher,
        });
    }
    Ok((engines, discover))
}

/// A socket path option's value; `None` when empty (the option without a
/// value).
fn path(path: &str) -> Option<&std::path::Path> {
    Some(std::path::Path::new(path)).filter(|path| !path.as_os_str().is_empty())
}

/// Says on stderr which engine processes (or APIs of one), and which
/// well-known sockets, discovery could not watch, and why.
fn tell_unreached(scan: &Scan) {
    for unreached in &scan.unreached {
        let api = unreached
            .api
            .map(|api| format!(" {api}"))
            .unwrap_or_default();
        eprintln!(
            "whalewatch: --discover: not watched: {}{api} (PID {}): {}",
            unreached.process, unreached.pid, unreached.reason
        );
    }
    for unreached in &scan.unreached_sockets {
        eprintln!(
            "whalewatch: --discover: not watched: {} at {}: {}",
            unreached.api,
            unreached.socket.display(),
            unreached.reason
        );
    }
    if scan
        .unreached
        .iter()
        .any(|unreached| unreached.reason.contains("Permission denied"))
    {
        eprintln!("whalewatch: --discover: looking into other users' engines takes root");
    }
}

/// No engine found by process, none at a well-known socket, none named:
/// says what was looked at, and fails.
fn fail_nothing_watched(scan: &Scan) -> ExitCode {
    let unreached = scan.unreached.len() + scan.unreached_sockets.len();
    let why = if unreached == 0 {
        "no engine process runs here, and no engine listens at a well-known socket".to_owned()
    } else {
        format!("none of the {unreached} engines and sockets above could be watched")
    };
    eprintln!(
        "whalewatch: no engine to watch among {} processes: {why} \
         (name one with --docker, --podman, --containerd or --cri)",
        scan.processes
    );
    ExitCode::FAILURE
}

fn fail(option: &str, message: &str) -> ExitCode {
    eprintln!("whalewatch: --{option}: {message}");
    ExitCode::FAILURE
}

/// An engine's error, and what to try.
fn fail_engine(option: &str, error: &EngineError) -> ExitCode {
    let message = whalewatcher::describe(error);
    fail(option, &format!("{message}{}", hint(option, error)))
}

fn fail_watch(option: &str, ended: Result<(), WatchError>) -> ExitCode {
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

/// Prints the alive containers that pass the filters, then each of
/// their events, until Ctrl-C (or SIGTERM) or a watch ends for good.
async fn follow(
    fleet: &Fleet,
    filters: &[Filter],
    named: usize,
    watches: &mut FuturesUnordered<
        impl std::future::Future<Output = (&'static str, Result<(), WatchError>)>,
    >,
) -> ExitCode {
    let (snapshot, mut changes) = fleet.subscribe();
    // The alive containers in one write, not a write per line.
    let mut alive = Vec::new();
    for picture in output::in_tree_order(&snapshot, named) {
        let engine = &picture.engine;
        for container in filter::shown(filters, engine.info(), engine.portfolio()) {
            let what = What::Alive {
                kind: "alive",
                container: ContainerJson::of(engine, container),
            };
            if let Err(error) = output::push_line(engine, &snapshot, what, &mut alive) {
                return exit_after_writing(Err(error));
            }
        }
    }
    if let Err(error) = output::write_out(&alive).await {
        return exit_after_writing(Err(error));
    }
    let mut connections: HashMap<MemberId, Connection> = snapshot
        .engines()
        .map(|engine| (engine.member(), Connection::new(engine.status())))
        .collect();
    loop {
        let change = tokio::select! {
            Some((option, ended)) = watches.next() => return fail_watch(option, ended),
            change = changes.next() => change,
        };
        let change = match change {
            Some(Ok(change)) => change,
            Some(Err(lagged)) => {
                eprintln!("whalewatch: {lagged}");
                continue;
            }
            // The fleet closed.
            None => return ExitCode::SUCCESS,
        };
        let engine = &change.engine;
        let member = engine.member();
        let lines: Vec<What<'_>> = match &change.change {
            FleetChange::Joined => {
                connections.insert(member, Connection::new(engine.status()));
                vec![What::Connection {
                    kind: "engine-joined",
                    error: None,
                }]
            }
            FleetChange::Left { error } => {
                connections.remove(&member);
                vec![What::Connection {
                    kind: "engine-left",
                    error: error.as_ref().map(|e| whalewatcher::describe(e)),
                }]
            }
            FleetChange::Container { event, local_pid } => {
                if filter::passes(filters, engine.info(), &event.container) {
                    vec![What::Event(EventJson::of(event, *local_pid))]
                } else {
                    Vec::new()
                }
            }
            FleetChange::Status => connections
                .get_mut(&member)
                .map(|connection| connection.changes(engine.status()))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let now = fleet.snapshot();
        let mut bytes = Vec::new();
        let pushed = lines
            .into_iter()
            .try_for_each(|what| output::push_line(engine, &now, what, &mut bytes));
        if let Err(error) = pushed {
            return exit_after_writing(Err(error));
        }
        if let Err(error) = output::write_out(&bytes).await {
            return exit_after_writing(Err(error));
        }
    }
}

/// Whether an engine followed by `--follow` is connected, from its status:
/// so that a follower can tell a quiet engine from a lost one.
struct Connection {
    lost: bool,
    /// The attempts count of the last synchronized status seen: a new one
    /// means a resync happened, even if the statuses between were missed.
    synced_attempts: u64,
}

impl Connection {
    fn new(status: &SyncStatus) -> Self {
        Connection {
            lost: false,
            synced_attempts: status.attempts,
        }
    }

    /// The lines a new status calls for: `engine-lost` when the engine is
    /// gone, `engine-back` once it is synchronized again.
    fn changes(&mut self, status: &SyncStatus) -> Vec<What<'static>> {
        let mut lines = Vec::new();
        let resynced = status.state == SyncState::Synced && status.attempts != self.synced_attempts;
        if !self.lost && (status.state != SyncState::Synced || resynced) {
            self.lost = true;
            lines.push(What::Connection {
                kind: "engine-lost",
                error: status
                    .last_error
                    .as_ref()
                    .map(|e| whalewatcher::describe(e)),
            });
        }
        if self.lost && status.state == SyncState::Synced {
            self.lost = false;
            self.synced_attempts = status.attempts;
            lines.push(What::Connection {
                kind: "engine-back",
                error: None,
            });
        }
        lines
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
fn exit_after_writing(written: std::io::Result<()>) -> ExitCode {
    match written {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("whalewatch: cannot write the output: {error}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
