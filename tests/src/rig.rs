//! Where the rig's engines are, as `docker/setup` wrote it down.

use std::path::PathBuf;

use serde::Deserialize;

/// The directory of the rig's run-time state (`$RIG_RUN` of
/// `docker/lib.sh`).
fn run_dir() -> PathBuf {
    std::env::var_os("WHALEWATCHER_RIG_RUN")
        .map_or_else(|| "/run/whalewatcher-rig".into(), PathBuf::from)
}

/// The endpoints file `docker/setup` writes.
pub fn endpoints_file() -> PathBuf {
    run_dir().join("endpoints.json")
}

/// Where the host engines keep their run-time state: the host dockerd's
/// pidfile and exec root.
fn host_run_dir() -> PathBuf {
    run_dir().join("host")
}

/// The PID of the rig's host dockerd, from the pidfile it writes.
pub fn host_dockerd_pid() -> Result<u32, String> {
    let pid_file = host_run_dir().join("dockerd.pid");
    std::fs::read_to_string(&pid_file)
        .map_err(|e| format!("cannot read {}: {e}", pid_file.display()))?
        .trim()
        .parse()
        .map_err(|e| format!("no PID in {}: {e}", pid_file.display()))
}

/// One engine of the rig.
#[derive(Clone, Debug, Deserialize)]
pub struct Engine {
    /// Its API endpoint: `unix://…` for Docker APIs, a socket path for gRPC.
    pub endpoint: String,
    /// Its version, as it reported it.
    pub version: String,
    /// The host dockerd's container the engine runs in, if any.
    pub container: Option<String>,
    /// The host PID of that container's initial process (its init, whose
    /// one child is the engine), when the rig was set up.
    pub container_pid: Option<u32>,
    /// The workload image, as this engine names it.
    pub image: Option<String>,
    /// The CRI sandbox image (containerd only).
    pub pause_image: Option<String>,
    /// For a tcp relay, the unix endpoint of the engine it relays.
    pub relays: Option<String>,
    /// For a TLS endpoint, the client's certificates directory (`ca.pem`,
    /// `cert.pem`, `key.pem`, as in `DOCKER_CERT_PATH`).
    pub tls_certs: Option<String>,
}

impl Engine {
    /// The socket path of the endpoint; of the engine it relays, for a
    /// tcp relay.
    pub fn socket(&self) -> &str {
        let endpoint = self.relays.as_ref().unwrap_or(&self.endpoint);
        endpoint.strip_prefix("unix://").unwrap_or(endpoint)
    }

    /// The workload image; fails the test if the rig has none here.
    pub fn image(&self) -> &str {
        self.image
            .as_deref()
            .unwrap_or_else(|| panic!("the rig has no workload image for {}", self.endpoint))
    }

    /// The engine container's name; fails the test for host engines.
    pub fn container(&self) -> &str {
        self.container
            .as_deref()
            .unwrap_or_else(|| panic!("{} does not run in a container", self.endpoint))
    }
}

/// Client certificate directories (as in `DOCKER_CERT_PATH`) for the rig's
/// TLS relay.
#[derive(Clone, Debug, Deserialize)]
pub struct TlsDirs {
    /// The right CA and a client certificate it signed.
    pub client: String,
    /// The client certificate, but another CA's certificate as `ca.pem`.
    pub wrong_ca: String,
    /// The right `ca.pem`, and no client certificate.
    pub no_client_cert: String,
}

/// How the rig runs an engine in a container of the host dockerd: its
/// image (entrypoint `rig-entrypoint containerd|podman|dockerd`) and the
/// `docker run` arguments an engine needs there.
#[derive(Clone, Debug, Deserialize)]
pub struct EngineContainers {
    /// The engines image.
    pub image: String,
    /// `docker run` arguments (no network, capabilities, cgroups, a
    /// tmpfs `/run`), without storage volumes or a socket directory.
    pub run_args: Vec<String>,
}

/// All engines of the rig.
#[derive(Clone, Debug, Deserialize)]
pub struct Rig {
    /// The label on everything the rig made.
    pub label: String,
    /// How to start another engine in a container, as the rig does
    /// (Debian trixie's engines).
    pub engines: EngineContainers,
    /// The same with the engines users install today (Debian unstable's),
    /// and `systemd-socket-activate`.
    pub engines_current: EngineContainers,
    /// The host dockerd (Debian bookworm's 20.10).
    pub host_docker: Engine,
    /// The host dockerd relayed to a loopback port, plain tcp.
    pub host_docker_tcp: Engine,
    /// The host dockerd relayed to a loopback port over TLS that verifies
    /// the client's certificate.
    pub host_docker_tls: Engine,
    /// Client certificate directories for the TLS relay.
    pub tls: TlsDirs,
    /// The host containerd (Debian bookworm's 1.6) under the host dockerd.
    pub host_containerd: Engine,
    /// dockerd 26 (Debian trixie's) in a container.
    pub docker: Engine,
    /// podman 5.4 (Debian trixie's; Docker-compatible API) in a container.
    pub podman: Engine,
    /// containerd 1.7 with its CRI plugin in a container.
    pub containerd: Engine,
    /// dockerd 28.5 (Debian unstable's, with the containerd 2.1 it starts)
    /// in a container.
    pub docker28: Engine,
    /// podman 5.8 (Debian unstable's) in a container.
    pub podman58: Engine,
    /// containerd 2.1 (Debian unstable's) with its CRI plugin, in a
    /// container.
    pub containerd2: Engine,
}

impl Rig {
    /// Reads the endpoints file; fails the test, saying how to bring the
    /// rig up, when it is missing.
    pub fn load() -> Rig {
        let path = endpoints_file();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the engine rig is not up ({}: {e}); bring it up with `docker/setup` \
                 (or run the README's test command, scripts/test)",
                path.display()
            )
        });
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not what docker/setup writes: {e}", path.display()))
    }

    /// The docker CLI arguments that reach the host dockerd.
    pub fn host_docker_args(&self) -> [&str; 2] {
        ["-H", &self.host_docker.endpoint]
    }

    /// The host PID of the engine process in its container, now: the
    /// first child of the container's init (`container_pid` is stale after
    /// a restart).
    pub fn engine_pid(&self, engine: &Engine) -> u32 {
        let init = self.container_init_pid(engine);
        first_child(init)
            .unwrap_or_else(|| panic!("the init {init} of {} has no child", engine.container()))
    }

    /// The host PID of the initial process of the container `engine`
    /// runs in, now.
    pub fn container_init_pid(&self, engine: &Engine) -> u32 {
        let pid = crate::run_command(
            "docker",
            &[
                "-H",
                &self.host_docker.endpoint,
                "inspect",
                "-f",
                "{{.State.Pid}}",
                engine.container(),
            ],
        );
        pid.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no PID for {}: {pid:?}", engine.container()))
    }

    /// Restarts the container `engine` runs in, giving it `grace` seconds
    /// to stop: every container of that engine dies with it, and the
    /// engine comes back on the same socket.
    pub fn restart(&self, engine: &Engine, grace: u32) {
        crate::run_command(
            "docker",
            &[
                "-H",
                &self.host_docker.endpoint,
                "restart",
                "-t",
                &grace.to_string(),
                engine.container(),
            ],
        );
    }
}

/// The goroutines of the rig's host dockerd that have waited on a lock
/// for a minute or more, each stack once with how many share it; empty
/// when none. Asks dockerd for a dump (`SIGUSR1`), which it writes to its
/// exec root.
pub fn host_dockerd_stuck_goroutines() -> Result<String, String> {
    let pid = host_dockerd_pid()?;
    let exec_root = host_run_dir().join("docker-exec");
    // Each dump with when it was written: a dump names its second, so one
    // taken in the same second as the last replaces it.
    let dumps = || -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
        std::fs::read_dir(&exec_root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("goroutine-stacks-")
            })
            .map(|entry| {
                (
                    entry.path(),
                    entry.metadata().and_then(|m| m.modified()).ok(),
                )
            })
            .collect()
    };
    let before = dumps();
    let pid = i32::try_from(pid).map_err(|e| format!("PID {pid}: {e}"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .map_err(|e| format!("cannot signal dockerd {pid}: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let dump = loop {
        if let Some((new, _)) = dumps().into_iter().find(|d| !before.contains(d)) {
            break new;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "dockerd {pid} wrote no dump to {}",
                exec_root.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // dockerd writes the file in one go; wait for a final newline.
    let text = loop {
        let text =
            std::fs::read_to_string(&dump).map_err(|e| format!("{}: {e}", dump.display()))?;
        if text.ends_with('\n') || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    Ok(stuck_goroutines(&text))
}

/// From a Go goroutine dump: the goroutines blocked on a lock for minutes
/// (`[semacquire, 5 minutes]`, `[sync.Mutex.Lock, 2 minutes]`), each stack
/// (its functions, not their lines, innermost first) once, with how many
/// goroutines share it.
fn stuck_goroutines(dump: &str) -> String {
    let mut stacks: Vec<(String, usize)> = Vec::new();
    for block in dump.split("\n\n") {
        let mut lines = block.lines();
        let Some(header) = lines.next() else { continue };
        let state = header
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .map_or("", |(state, _)| state);
        let on_lock = state.starts_with("semacquire")
            || state.starts_with("sync.Mutex")
            || state.starts_with("sync.RWMutex");
        if !(on_lock && state.contains("minute")) {
            continue;
        }
        let frames: Vec<&str> = lines
            .filter(|line| !line.starts_with('\t'))
            .map(|line| line.rsplit_once('(').map_or(line, |(function, _)| function))
            .filter(|function| !function.starts_with("runtime.") && !function.starts_with("sync."))
            .take(8)
            .collect();
        let kind = state.split(',').next().unwrap_or(state);
        let stack = format!("[{kind}] {}", frames.join(" < "));
        match stacks.iter_mut().find(|(known, _)| *known == stack) {
            Some((_, count)) => *count += 1,
            None => stacks.push((stack, 1)),
        }
    }
    stacks
        .iter()
        .take(30)
        .map(|(stack, count)| format!("  {count}× {stack}\n"))
        .collect()
}

/// The first child of process `init` (an engine container's init: the
/// engine, which it started; the shims and conmons that the engine's
/// containers left to the init come later); `None` before it started one.
pub fn first_child(init: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .unwrap_or_else(|e| panic!("cannot read the children of {init}: {e}"));
    children
        .split_whitespace()
        .filter_map(|pid| pid.parse::<u32>().ok())
        .filter_map(|pid| Some((started(pid)?, pid)))
        .min()
        .map(|(_, pid)| pid)
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat`).
fn started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command in parentheses, which may hold spaces: field 22.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// How often a test helper starts a container when runc's init dies
/// before it starts.
pub const RUNC_START_ATTEMPTS: u32 = 3;

/// Whether an engine's start error says runc's init process died before
/// its first handshake ("read init-p: connection reset by peer").
///
/// runc in the rig's engine containers does this now and then, seen in CI
/// on containerd 1.7 and dockerd 26 after an engine restart and never
/// reproduced on demand (80 starts after restarts, under CPU load): it is
/// the engine's failure, not the watcher's, so the test helpers start
/// again, from a clean slate, up to [`RUNC_START_ATTEMPTS`] times.
pub fn runc_init_died(error: &str) -> bool {
    error.contains("failed to create shim task") && error.contains("init-p")
}

/// Runs `start` (which starts `what` from a clean slate) until it does not
/// fail with [`runc_init_died`], at most [`RUNC_START_ATTEMPTS`] times.
pub async fn start_past_runc_init_deaths<T, E, F, Fut>(what: &str, mut start: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match start().await {
            Err(error) if attempt < RUNC_START_ATTEMPTS && runc_init_died(&error.to_string()) => {
                eprintln!("starting {what} failed, trying again: {error}");
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_gives_the_goroutines_blocked_on_a_lock_for_minutes_once_per_stack() {
        let dump = "goroutine 1 [chan receive, 10 minutes]:\nmain.main()\n\t/x.go:1\n\n\
            goroutine 7 [semacquire, 3 minutes]:\nsync.runtime_SemacquireMutex(0x1)\n\t/s.go:1\n\
            sync.(*Mutex).Lock(...)\n\t/m.go:2\ngithub.com/docker/libnetwork.(*sandbox).delete(0xc)\n\t/n.go:3\n\n\
            goroutine 8 [semacquire, 4 minutes]:\nsync.runtime_SemacquireMutex(0x1)\n\t/s.go:1\n\
            sync.(*Mutex).Lock(...)\n\t/m.go:2\ngithub.com/docker/libnetwork.(*sandbox).delete(0xc)\n\t/n.go:3\n\n\
            goroutine 9 [semacquire]:\nsync.runtime_SemacquireMutex(0x1)\n\t/s.go:1\n";
        assert_eq!(
            stuck_goroutines(dump),
            "  2× [semacquire] github.com/docker/libnetwork.(*sandbox).delete\n"
        );
    }

    /// Docker's words for it, from a CI run.
    const SEEN_IN_CI: &str = "Docker responded with status code 500: failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: waiting for init preliminary setup: read init-p: connection reset by peer: unknown";

    #[tokio::test]
    async fn a_start_is_repeated_only_while_runc_init_dies() {
        let mut calls = 0;
        let result: Result<(), String> = start_past_runc_init_deaths("x", || {
            calls += 1;
            async { Err(SEEN_IN_CI.to_owned()) }
        })
        .await;
        assert_eq!((result.is_err(), calls), (true, RUNC_START_ATTEMPTS));

        let mut calls = 0;
        let result: Result<(), String> = start_past_runc_init_deaths("x", || {
            calls += 1;
            async { Err("No such image".to_owned()) }
        })
        .await;
        assert_eq!((result.is_err(), calls), (true, 1));

        let mut calls = 0;
        let result = start_past_runc_init_deaths("x", || {
            calls += 1;
            let outcome = if calls == 1 {
                Err(SEEN_IN_CI)
            } else {
                Ok(calls)
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result, Ok(2));
    }
}
