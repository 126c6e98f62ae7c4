//! Which engines to watch: the ones the options name, by the endpoint
//! rules of each engine crate, or discovery's; and what to say when
//! discovery could not watch one, or any.

use std::process::ExitCode;

use whalewatcher::discovery::Scan;
use whalewatcher::{EngineError, RetryPolicy};

use crate::{Args, Watched};

/// The watchers the options ask for, and whether to discover engines:
/// asked for, or no engine option and no Docker named by DOCKER_HOST or a
/// docker context. Each engine crate finds an endpoint not named by the
/// rules of its tools (the docker CLI's, podman's, crictl's).
pub fn engines(args: &Args) -> Result<(Vec<Watched>, bool), (&'static str, String)> {
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
pub fn tell_unreached(scan: &Scan) {
    for unreached in &scan.unreached {
        eprintln!("whalewatch: --discover: not watched: {unreached}");
    }
    for unreached in &scan.unreached_sockets {
        eprintln!("whalewatch: --discover: not watched: {unreached}");
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
pub fn fail_nothing_watched(scan: &Scan) -> ExitCode {
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
