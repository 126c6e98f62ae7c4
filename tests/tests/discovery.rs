//! Discovery on the rig, the host it was made for: host dockerd 20.10 and
//! containerd 1.6, and dockerd 26 and 28, podman 5.4 and 5.8 and containerd 1.7 and 2.1 in
//! containers of the host dockerd. Found by process, reached through
//! /proc, nested under their containers, with PIDs translated to ours.
//!
//! The tests that restart or add engines hold [`RIG`], so the others
//! always see the rig's eight engines.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::Mutex;
use whalewatcher_core::{
    EventKind, Fleet, FleetChange, FleetEngine, FleetEvent, FleetEvents, FoundBy, MemberId,
};
use whalewatcher_discovery::{Api, Discovery, FoundEngine, Scan};
use whalewatcher_tests::commands::output_within;
use whalewatcher_tests::containerd::ContainerdTest;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::rig::{self, Rig};
use whalewatcher_tests::{eventually, run_command, test_label_value, within, TEST_LABEL};

/// Held by the tests that change which engines run.
static RIG: Mutex<()> = Mutex::const_new(());

/// A socket file's identity: the same through /proc/PID/root and through
/// the rig's bind mount on the host.
fn file_id(path: &str) -> (u64, u64) {
    let path = path.strip_prefix("unix://").unwrap_or(path);
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("cannot stat {path}: {e}"));
    (meta.dev(), meta.ino())
}

/// An engine API at a socket file.
type At = (Api, (u64, u64));

/// The rig's engines by what the scan should find: (API, socket file) →
/// (name, engine container).
fn expected(rig: &Rig) -> BTreeMap<At, (&'static str, Option<String>)> {
    let at = |engine: &rig::Engine| file_id(&engine.endpoint);
    BTreeMap::from([
        ((Api::Docker, at(&rig.host_docker)), ("host dockerd", None)),
        (
            (Api::Containerd, at(&rig.host_containerd)),
            ("host containerd", None),
        ),
        (
            (Api::Docker, at(&rig.docker)),
            ("dockerd 26", rig.docker.container.clone()),
        ),
        (
            (Api::Podman, at(&rig.podman)),
            ("podman 5", rig.podman.container.clone()),
        ),
        (
            (Api::Containerd, at(&rig.containerd)),
            ("containerd 1.7", rig.containerd.container.clone()),
        ),
        (
            (Api::Cri, at(&rig.containerd)),
            ("containerd 1.7 CRI", rig.containerd.container.clone()),
        ),
        (
            (Api::Docker, at(&rig.docker28)),
            ("dockerd 28", rig.docker28.container.clone()),
        ),
        (
            (Api::Podman, at(&rig.podman58)),
            ("podman 5.8", rig.podman58.container.clone()),
        ),
        (
            (Api::Containerd, at(&rig.containerd2)),
            ("containerd 2.1", rig.containerd2.container.clone()),
        ),
        (
            (Api::Cri, at(&rig.containerd2)),
            ("containerd 2.1 CRI", rig.containerd2.container.clone()),
        ),
    ])
}

async fn scan(discovery: &Discovery) -> Arc<Scan> {
    within("a discovery scan", discovery.scan())
        .await
        .expect("the processes can be read")
}

/// The found engine at the rig engine's socket, for `api`.
fn found<'s>(scan: &'s Scan, api: Api, engine: &rig::Engine) -> &'s FoundEngine {
    let socket = file_id(&engine.endpoint);
    scan.engines
        .iter()
        .find(|f| f.api == api && file_id(&f.endpoint) == socket)
        .unwrap_or_else(|| panic!("{api} at {} not found: {scan:#?}", engine.endpoint))
}

fn pid_namespace(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .unwrap_or_else(|e| panic!("cannot read the PID namespace of {pid}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// The `NSpid` line of a process: its PID in each namespace, ours first.
fn ns_pids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .expect("an NSpid line")
        .split_whitespace()
        .map(|n| n.parse().expect("a PID"))
        .collect()
}

fn parent_pid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse().ok())
        .expect("a PPid line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_every_engine_of_the_rig_names_the_containers_of_the_nested_ones_and_nothing_twice(
) {
    let _rig = RIG.lock().await;
    let rig = Rig::load();
    let discovery = Discovery::new();
    let scan = scan(&discovery).await;

    let mut seen: BTreeMap<At, &FoundEngine> = BTreeMap::new();
    for engine in &scan.engines {
        let key = (engine.api, file_id(&engine.endpoint));
        if let Some(before) = seen.insert(key, engine) {
            panic!("found twice: {before:?} and {engine:?}");
        }
    }
    let expected = expected(&rig);
    let as_found: Vec<_> = seen.keys().collect();
    let wanted: Vec<_> = expected.keys().collect();
    assert_eq!(as_found, wanted, "the rig's engines, as found: {scan:#?}");

    // containerd 1.6's CRI has no container events: said, not watched.
    let host_cri: Vec<_> = scan
        .unreached
        .iter()
        .filter(|u| u.api == Some(Api::Cri))
        .collect();
    assert_eq!(host_cri.len(), 1, "{:#?}", scan.unreached);
    assert!(
        host_cri[0]
            .reason
            .contains("does not support CRI container events"),
        "{}",
        host_cri[0].reason
    );
    assert!(
        scan.watched_already.is_empty(),
        "{:#?}",
        scan.watched_already
    );

    let snapshot = discovery.fleet().snapshot();
    let ours = pid_namespace(std::process::id());
    let host_docker = found(&scan, Api::Docker, &rig.host_docker).member;
    for ((api, _), engine) in &seen {
        let (name, container) = &expected[&(*api, file_id(&engine.endpoint))];
        let member = snapshot
            .engine(engine.member)
            .unwrap_or_else(|| panic!("{name} is no member"));
        let pid = engine.pid.unwrap_or_else(|| panic!("{name} has no PIDs"));
        assert_eq!(member.local_pid(), Some(pid.local), "{name}");
        // Found by its process, and says so.
        assert!(
            matches!(member.found_by(), FoundBy::Process { pid: found, .. } if *found == pid.local),
            "{name}: {:?}",
            member.found_by()
        );
        let namespace = engine.pid_namespace.clone().expect("root reads namespaces");
        match container {
            None => {
                assert!(member.parent().is_none(), "{name}: {:?}", member.parent());
                assert_eq!(namespace, ours, "{name} shares ours");
                assert_eq!(pid.depth, 0, "{name}");
            }
            Some(container) => {
                let parent = member
                    .parent()
                    .unwrap_or_else(|| panic!("{name} has no parent container"));
                assert_eq!(&*parent.name, container.as_str(), "{name}");
                assert_eq!(parent.engine, host_docker, "{name}: the host dockerd's");
                assert_ne!(namespace, ours, "{name} has its own");
                assert_eq!(pid.depth, 1, "{name}");
                assert_ne!(pid.own, pid.local, "{name}");
                let rig_engine = [
                    &rig.docker,
                    &rig.podman,
                    &rig.containerd,
                    &rig.docker28,
                    &rig.podman58,
                    &rig.containerd2,
                ]
                .into_iter()
                .find(|e| e.container.as_deref() == Some(container.as_str()))
                .expect("a rig engine");
                assert_eq!(pid.local, rig.engine_pid(rig_engine), "{name}");
                assert_eq!(pid_namespace(pid.local), namespace, "{name}");
            }
        }
    }
    discovery.close().await;
}

/// One container on an engine: its id as the fleet has it.
struct Placed {
    engine: &'static str,
    member: MemberId,
    id: String,
}

/// The fleet's container of `member` that carries `label`, once it has it.
async fn placed(fleet: &Fleet, engine: &'static str, member: MemberId, label: &str) -> Placed {
    let id = Arc::new(std::sync::Mutex::new(None));
    eventually(&format!("the container on {engine} in the fleet"), || {
        let id = id.clone();
        async move {
            let snapshot = fleet.snapshot();
            let Some(engine) = snapshot.engine(member) else {
                return false;
            };
            let found = engine
                .containers()
                .find(|c| c.container().label(TEST_LABEL) == Some(label))
                .filter(|c| c.local_pid().is_some())
                .map(|c| c.container().id().to_owned());
            let done = found.is_some();
            *id.lock().unwrap() = found;
            done
        }
    })
    .await;
    let id = id.lock().unwrap().take().expect("found");
    Placed { engine, member, id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_on_each_nested_engine_has_a_pid_here_in_the_engines_pid_namespace() {
    let _rig = RIG.lock().await;
    let rig = Rig::load();
    let docker = DockerTest::connect(&rig.docker, "discovery-pids").await;
    let podman = DockerTest::connect(&rig.podman, "discovery-pids").await;
    let containerd = ContainerdTest::connect(&rig.containerd, "discovery-pids").await;
    let on_host = DockerTest::connect(&rig.host_docker, "discovery-pids").await;
    docker.run("pids", &[]).await;
    podman.run("pids", &[]).await;
    containerd.run("default", &test_label_value("pids"), &[]);
    on_host.run("pids", &[]).await;

    let discovery = Discovery::new();
    let scan = scan(&discovery).await;
    let fleet = discovery.fleet();
    let member = |api, engine| found(&scan, api, engine).member;
    let containers = [
        placed(
            fleet,
            "dockerd 26",
            member(Api::Docker, &rig.docker),
            &docker.label,
        )
        .await,
        placed(
            fleet,
            "podman 5",
            member(Api::Podman, &rig.podman),
            &podman.label,
        )
        .await,
        placed(
            fleet,
            "containerd 1.7",
            member(Api::Containerd, &rig.containerd),
            &containerd.label,
        )
        .await,
    ];
    let snapshot = fleet.snapshot();
    for placed in &containers {
        let engine = snapshot.engine(placed.member).expect("a member");
        let container = engine.container(&placed.id).expect("the container");
        let reported = container.container().pid();
        let here = container.local_pid().expect("a PID here");
        let found = scan
            .engines
            .iter()
            .find(|f| f.member == placed.member)
            .expect("found");
        let depth = found.pid.expect("PIDs").depth;
        let levels = ns_pids(here);
        assert_eq!(levels[0], here, "{}: NSpid starts with ours", placed.engine);
        assert_eq!(
            levels.get(depth),
            Some(&reported),
            "{}: NSpid {levels:?} has the engine's PID {reported} at the engine's level {depth}",
            placed.engine,
        );
        assert_ne!(here, reported, "{}: another number here", placed.engine);
        // Its parent (the shim, or conmon) lives in the engine's namespace.
        assert_eq!(
            Some(pid_namespace(parent_pid(here))),
            found.pid_namespace,
            "{}: the parent of {here}",
            placed.engine
        );
        let names: Vec<String> = std::fs::read_dir(format!("/proc/{here}/ns"))
            .unwrap_or_else(|e| panic!("{}: ls /proc/{here}/ns: {e}", placed.engine))
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into()
            })
            .collect();
        for ns in ["mnt", "net", "pid"] {
            assert!(
                names.iter().any(|n| n == ns),
                "{}: {names:?}",
                placed.engine
            );
        }
    }
    // On the host engine, the two PIDs are one.
    let host = placed(
        fleet,
        "host dockerd",
        member(Api::Docker, &rig.host_docker),
        &on_host.label,
    )
    .await;
    let snapshot = fleet.snapshot();
    let container = snapshot
        .engine(host.member)
        .and_then(|e| e.container(&host.id))
        .expect("the host container");
    assert_eq!(container.local_pid(), Some(container.container().pid()));
    discovery.close().await;
}

/// A fleet subscription and every change it delivered.
struct Changes {
    events: FleetEvents,
    seen: Vec<FleetEvent>,
}

impl Changes {
    fn of(fleet: &Fleet) -> Self {
        Changes {
            events: fleet.subscribe().1,
            seen: Vec::new(),
        }
    }

    /// Reads until a change since `from` fits `wanted`; returns its index.
    async fn until(
        &mut self,
        what: &str,
        from: usize,
        wanted: impl Fn(&FleetEvent) -> bool,
    ) -> usize {
        within(what, async {
            loop {
                if let Some(at) = self.seen[from..].iter().position(&wanted) {
                    return from + at;
                }
                let change = self.events.next().await.expect("open").expect("no lag");
                self.seen.push(change);
            }
        })
        .await
    }
}

fn is_api_at(engine: &FleetEngine, socket: (u64, u64), engine_type: &str) -> bool {
    engine.info().engine_type == engine_type && file_id(&engine.info().api) == socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_container_restarted_leaves_the_fleet_with_its_containers_and_joins_again() {
    let _rig = RIG.lock().await;
    let rig = Rig::load();
    let podman = DockerTest::connect(&rig.podman, "discovery-restart").await;
    let id = podman.run("restarted", &[]).await;
    let discovery = Discovery::builder()
        .rescan(Duration::from_millis(500))
        .build();
    let scan = scan(&discovery).await;
    let fleet = discovery.fleet().clone();
    let before = found(&scan, Api::Podman, &rig.podman).clone();
    placed(&fleet, "podman 5", before.member, &podman.label).await;
    let mut changes = Changes::of(&fleet);
    let rescanning = discovery.spawn();

    rig.restart(&rig.podman, 2);
    let exited = changes
        .until("the container's exit", 0, |c| {
            c.engine.member() == before.member
                && matches!(&c.change, FleetChange::Container { event, .. }
                    if event.kind == EventKind::Exited && event.container.id() == id)
        })
        .await;
    let left = changes
        .until("podman leaving", exited, |c| {
            c.engine.member() == before.member && matches!(c.change, FleetChange::Left { .. })
        })
        .await;
    // The restarted podman makes its socket anew (another inode), and
    // maybe only after the old one left: seen in a run from a rig just
    // brought up.
    let path = rig.podman.socket().to_owned();
    eventually("the restarted podman's socket", || {
        let path = path.clone();
        async move { Path::new(&path).exists() }
    })
    .await;
    let socket = file_id(&rig.podman.endpoint);
    let joined = changes
        .until("podman joining again", left, |c| {
            matches!(c.change, FleetChange::Joined)
                && is_api_at(&c.engine, socket, whalewatcher_moby::PODMAN_TYPE)
        })
        .await;
    let again = changes.seen[joined].engine.member();
    assert_ne!(again, before.member, "a new member");
    assert_eq!(
        changes.seen[joined].engine.local_pid(),
        Some(rig.engine_pid(&rig.podman)),
        "the new podman process"
    );
    // Nothing of the old one after it left, and one podman in the fleet.
    assert!(changes.seen[left + 1..]
        .iter()
        .all(|c| c.engine.member() != before.member));
    eventually("the new podman with its parent container", || async {
        let snapshot = fleet.snapshot();
        let podmans: Vec<_> = snapshot
            .engines()
            .filter(|e| is_api_at(e, socket, whalewatcher_moby::PODMAN_TYPE))
            .collect();
        podmans.len() == 1
            && podmans[0].member() == again
            && podmans[0].parent().map(|p| &*p.name) == rig.podman.container.as_deref()
    })
    .await;
    rescanning.stop().await.expect("the rescans ran");
    discovery.close().await;
}

/// A containerd of the rig's engines image, in a container of the host
/// dockerd that this test made (and removes).
struct ExtraEngine {
    host: String,
    name: String,
}

impl ExtraEngine {
    /// An engine container of `image`, its entrypoint run with `engine`
    /// (see `docker/engines/entrypoint`), its storage in a volume at
    /// `storage`.
    fn start(rig: &Rig, image: &rig::EngineContainers, engine: &str, storage: &str) -> Self {
        let label = test_label_value("discovery-extra");
        let name = format!("whalewatcher-test-{label}");
        let mut args = vec![
            "-H".to_owned(),
            rig.host_docker.endpoint.clone(),
            "run".to_owned(),
            "-d".to_owned(),
            "--name".to_owned(),
            name.clone(),
            "--label".to_owned(),
            format!("{TEST_LABEL}={label}"),
        ];
        args.extend(image.run_args.iter().cloned());
        args.extend([
            "-v".to_owned(),
            storage.to_owned(),
            image.image.clone(),
            engine.to_owned(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_command("docker", &args);
        ExtraEngine {
            host: rig.host_docker.endpoint.clone(),
            name,
        }
    }

    /// The engine process, once the container's init started it.
    async fn pid(&self) -> u32 {
        let init = self.init();
        eventually("the container's init to start the engine", || async {
            rig::first_child(init).is_some()
        })
        .await;
        rig::first_child(init).expect("a child")
    }

    fn init(&self) -> u32 {
        let init = run_command(
            "docker",
            &[
                "-H",
                &self.host,
                "inspect",
                "-f",
                "{{.State.Pid}}",
                &self.name,
            ],
        );
        init.trim().parse().expect("a PID")
    }

    fn remove(&self) {
        run_command("docker", &["-H", &self.host, "rm", "-f", "-v", &self.name]);
    }
}

impl Drop for ExtraEngine {
    fn drop(&mut self) {
        let _ = output_within(
            std::process::Command::new("docker")
                .args(["-H", &self.host, "rm", "-f", "-v", &self.name]),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_started_in_a_new_container_is_found_within_one_rescan_and_goes_when_removed()
{
    let _rig = RIG.lock().await;
    let rig = Rig::load();
    let rescan = Duration::from_secs(2);
    let discovery = Discovery::builder().rescan(rescan).build();
    scan(&discovery).await;
    let fleet = discovery.fleet().clone();
    let mut changes = Changes::of(&fleet);
    let rescanning = discovery.spawn();

    let extra = ExtraEngine::start(&rig, &rig.engines, "containerd", "/var/lib/containerd");
    let pid = extra.pid().await;
    // From when its API socket is there to the fleet's join: one rescan
    // period, and the probe's and first sync's time.
    let socket = format!("/proc/{pid}/root/rig-socket/containerd.sock");
    eventually("the new containerd's socket", || async {
        Path::new(&socket).exists()
    })
    .await;
    let listening = tokio::time::Instant::now();
    let joined = changes
        .until("the new containerd joining", 0, |c| {
            matches!(c.change, FleetChange::Joined)
                && c.engine.local_pid() == Some(pid)
                && c.engine.info().engine_type == whalewatcher_containerd::CONTAINERD_TYPE
        })
        .await;
    let took = listening.elapsed();
    assert!(
        took <= rescan + Duration::from_secs(3),
        "joined {took:?} after its socket appeared; the rescan period is {rescan:?}"
    );
    let member = changes.seen[joined].engine.member();
    // Where it runs, from its first line on: the join itself says it.
    assert_eq!(
        changes.seen[joined]
            .engine
            .parent()
            .map(|p| p.name.to_string())
            .as_deref(),
        Some(extra.name.as_str()),
        "the join carries its parent container"
    );

    extra.remove();
    changes
        .until("the new containerd leaving", joined, |c| {
            c.engine.member() == member && matches!(c.change, FleetChange::Left { .. })
        })
        .await;
    // Its CRI API too, which leaves in the same rescan.
    eventually("every API of the new containerd gone", || async {
        fleet
            .snapshot()
            .engines()
            .all(|e| e.local_pid() != Some(pid))
    })
    .await;
    rescanning.stop().await.expect("the rescans ran");
    discovery.close().await;
}

/// The command name of process `pid`.
fn command_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_else(|e| panic!("cannot read the command name of {pid}: {e}"))
        .trim_end()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_podman_whose_socket_an_activator_holds_is_started_by_the_scan_and_watched() {
    let _rig = RIG.lock().await;
    let rig = Rig::load();
    // As systemd's podman.socket: systemd-socket-activate holds podman's
    // socket and starts podman in its own process on the first connection.
    let extra = ExtraEngine::start(
        &rig,
        &rig.engines_current,
        "podman-activated",
        "/var/lib/containers",
    );
    let pid = extra.pid().await;
    let socket = format!("/proc/{pid}/root/run/podman/podman.sock");
    eventually("the activator's socket", || async {
        Path::new(&socket).exists()
    })
    .await;
    assert_eq!(
        command_name(pid),
        "systemd-socket-",
        "podman is not started yet"
    );

    let discovery = Discovery::new();
    let scan = scan(&discovery).await;
    assert_eq!(command_name(pid), "podman", "the scan started podman");
    let found = scan
        .engines
        .iter()
        .find(|f| f.pid.map(|p| p.local) == Some(pid))
        .unwrap_or_else(|| panic!("the activated podman (PID {pid}) not found: {scan:#?}"));
    assert_eq!(found.api, Api::Podman);
    assert_eq!(found.socket, Path::new("/run/podman/podman.sock"));
    assert_eq!(
        found.found_by,
        FoundBy::Process {
            command: "podman".into(),
            pid
        }
    );
    assert!(
        scan.unreached_sockets.is_empty(),
        "{:#?}",
        scan.unreached_sockets
    );
    // Watched like any other: synced, nested under its container, once.
    let fleet = discovery.fleet();
    eventually("the activated podman synced", || async {
        fleet
            .snapshot()
            .engine(found.member)
            .is_some_and(|engine| engine.status().is_synced())
    })
    .await;
    let snapshot = fleet.snapshot();
    let engine = snapshot.engine(found.member).expect("a member");
    assert_eq!(
        engine.info().engine_type,
        whalewatcher_moby::PODMAN_TYPE,
        "{:?}",
        engine.info()
    );
    assert_eq!(
        engine.parent().map(|p| p.name.to_string()).as_deref(),
        Some(extra.name.as_str())
    );
    let at_that_socket = snapshot
        .engines()
        .filter(|e| e.local_pid() == Some(pid))
        .count();
    assert_eq!(at_that_socket, 1, "watched once");
    discovery.close().await;
    extra.remove();
}

/// The container events of one member, as (kind, id, watcher revision).
fn of_member(seen: &[FleetEvent], member: MemberId, label: &str) -> Vec<(EventKind, String, u64)> {
    seen.iter()
        .filter(|c| c.engine.member() == member)
        .filter_map(|c| match &c.change {
            FleetChange::Container { event, .. }
                if event.container.label(TEST_LABEL) == Some(label) =>
            {
                Some((event.kind, event.container.id().to_owned(), event.revision))
            }
            _ => None,
        })
        .collect()
}

/// The same, from a watcher's own subscription, until `n` events.
async fn watcher_events(
    events: &mut whalewatcher_core::EventStream,
    label: &str,
    n: usize,
) -> Vec<(EventKind, String, u64)> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(whalewatcher_tests::DEADLINE, async {
        while seen.len() < n {
            let event = events.next().await.expect("open").expect("no lag");
            if event.container.label(TEST_LABEL) == Some(label) {
                seen.push((event.kind, event.container.id().to_owned(), event.revision));
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "{n} events of {label} from the watcher, seen {}: {seen:?}",
        seen.len()
    );
    seen
}

/// Starts `each` containers on `t`, then kills them; their ids.
async fn burst(t: &DockerTest, each: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..each {
        ids.push(t.run(&format!("burst{n}"), &[]).await);
    }
    for id in &ids {
        t.kill(id).await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_merges_a_burst_on_two_engines_every_event_once_in_each_engines_order() {
    const EACH: usize = 12;
    let _rig = RIG.lock().await;
    let rig = Rig::load();
    let docker = DockerTest::connect(&rig.docker, "discovery-burst").await;
    let podman = DockerTest::connect(&rig.podman, "discovery-burst").await;
    let discovery = Discovery::new();
    let scan = scan(&discovery).await;
    let fleet = discovery.fleet().clone();
    let members = [
        found(&scan, Api::Docker, &rig.docker).member,
        found(&scan, Api::Podman, &rig.podman).member,
    ];
    // Each watcher's own subscription, taken before the fleet's: the
    // fleet must pass on exactly what each watcher tells.
    let mut own: Vec<_> = members
        .iter()
        .map(|m| {
            let snapshot = fleet.snapshot();
            let engine = snapshot.engine(*m).expect("a member");
            engine.watcher().subscribe().1
        })
        .collect();
    let mut changes = Changes::of(&fleet);

    let (docker_ids, podman_ids) = tokio::join!(burst(&docker, EACH), burst(&podman, EACH));
    let bursts = [(&docker, docker_ids), (&podman, podman_ids)];
    let mut told = Vec::new();
    for ((t, ids), own) in bursts.iter().zip(own.iter_mut()) {
        told.push(watcher_events(own, &t.label, 2 * ids.len()).await);
    }
    // Until the fleet passed on as many, then everything it published up
    // to then: a duplicate would be among them.
    within("the bursts in the fleet", async {
        for (((member, (t, _)), told), _) in members.iter().zip(&bursts).zip(&told).zip(0..) {
            while of_member(&changes.seen, *member, &t.label).len() < told.len() {
                let change = changes.events.next().await.expect("open").expect("no lag");
                changes.seen.push(change);
            }
        }
    })
    .await;
    let revision = fleet.snapshot().revision();
    changes
        .until("the fleet's revisions up to now", 0, |c| {
            c.revision == revision
        })
        .await;
    within("the rest of that revision", async {
        while changes.events.next().now_or_never().flatten().is_some() {}
    })
    .await;
    for (((member, (t, ids)), told), name) in members
        .iter()
        .zip(&bursts)
        .zip(&told)
        .zip(["dockerd 26", "podman 5"])
    {
        let passed_on = of_member(&changes.seen, *member, &t.label);
        assert_eq!(
            &passed_on, told,
            "{name}: the watcher's events, in its order"
        );
        for id in ids {
            let kinds: Vec<EventKind> = passed_on
                .iter()
                .filter(|(_, of, _)| of == id)
                .map(|(kind, _, _)| *kind)
                .collect();
            assert_eq!(
                kinds,
                [EventKind::Started, EventKind::Exited],
                "{name}: {id}"
            );
        }
        let revisions: Vec<u64> = passed_on.iter().map(|(_, _, r)| *r).collect();
        assert!(revisions.is_sorted(), "{name}: {revisions:?}");
    }
    discovery.close().await;
}
