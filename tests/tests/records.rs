//! The container record beyond the Go module's — image, image id, times,
//! restarts, pod — and how an exit ended (code, OOM kill), on every real
//! engine of the rig, against what the engine's own CLI or API reports.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::HostConfig;
use k8s_cri::v1::ContainerStatusRequest;
use whalewatcher_containerd::ContainerdEngine;
use whalewatcher_core::{
    Container, Event, EventKind, EventSource, Exit, Health, HostNamespaces, Mount, Resources,
};
use whalewatcher_cri::CriEngine;
use whalewatcher_moby::MobyEngine;
use whalewatcher_tests::containerd::ContainerdTest;
use whalewatcher_tests::cri::CriTest;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::rig::{self, Rig};
use whalewatcher_tests::watching::Watching;
use whalewatcher_tests::{run_command, within};

/// Waits in the container until `/tmp/go` exists, then exits with 3.
/// (The workload image has `sh` and `sleep`, not `touch`: see [`GO`].)
const EXIT_3_ON_GO: [&str; 3] = [
    "sh",
    "-c",
    "while [ ! -e /tmp/go ]; do sleep 1; done; exit 3",
];

/// Makes `/tmp/go` with the shell alone.
const GO: [&str; 3] = ["sh", "-c", ": > /tmp/go"];

fn rfc3339(text: &str) -> SystemTime {
    let parsed =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("not RFC 3339: {text:?}: {e}"));
    UNIX_EPOCH + Duration::from_nanos(parsed.unix_timestamp_nanos() as u64)
}

fn nanos(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos as u64)
}

/// Reads events until container `id` exited; returns how.
async fn exit_of(w: &mut Watching, id: &str) -> Exit {
    w.events_of(id, "its exit", |kinds| kinds.contains(&EventKind::Exited))
        .await;
    w.seen
        .iter()
        .rev()
        .find(|e| e.container.id() == id && e.kind == EventKind::Exited)
        .and_then(|e| e.exit)
        .unwrap_or_else(|| panic!("the exit of {id} tells nothing"))
}

// ---- Docker and podman ----

/// The record equals `docker inspect` (the CLI, against the engine's
/// socket); an exit with 3 and a SIGKILL say 3 and 137.
async fn moby_records_and_exits(engine: &rig::Engine) {
    let t = DockerTest::connect(engine, "records").await;
    let mut w = Watching::synced(MobyEngine::new(&engine.endpoint).unwrap()).await;
    let three = t
        .run_command("three", &EXIT_3_ON_GO, HostConfig::default())
        .await;
    let killed = t.run("killed", &[]).await;
    for id in [&three, &killed] {
        w.events_of(id, "its start", |k| k.contains(&EventKind::Started))
            .await;
        let container: Container = (**w.watcher.portfolio().container(id).unwrap()).clone();
        let inspect = |format: &str| {
            run_command(
                "docker",
                &["-H", &engine.endpoint, "inspect", "-f", format, id],
            )
            .trim()
            .to_owned()
        };
        assert_eq!(
            container.image(),
            Some(inspect("{{.Config.Image}}").as_str())
        );
        assert_eq!(container.image_id(), Some(inspect("{{.Image}}").as_str()));
        assert_eq!(container.created(), Some(rfc3339(&inspect("{{.Created}}"))));
        assert_eq!(
            container.started(),
            Some(rfc3339(&inspect("{{.State.StartedAt}}")))
        );
        assert_eq!(
            container.restarts().map(|n| n.to_string()),
            Some(inspect("{{.RestartCount}}"))
        );
    }
    run_command(
        "docker",
        &[&["-H", &engine.endpoint, "exec", &three][..], &GO].concat(),
    );
    assert_eq!(exit_of(&mut w, &three).await.code, Some(3));
    t.kill(&killed).await;
    assert_eq!(exit_of(&mut w, &killed).await.code, Some(137));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_dockerd_records_and_exits_equal_what_it_tells() {
    moby_records_and_exits(&Rig::load().host_docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerd_26_records_and_exits_equal_what_it_tells() {
    moby_records_and_exits(&Rig::load().docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_records_and_exits_equal_what_it_tells() {
    moby_records_and_exits(&Rig::load().podman).await;
}

/// A container killed for memory exits with 137 and `oom_killed`, as the
/// engine's inspect tells.
async fn an_oom_kill_is_told_with_the_exit(engine: &rig::Engine) {
    let t = DockerTest::connect(engine, "records-oom").await;
    let mut w = Watching::synced(MobyEngine::new(&engine.endpoint).unwrap()).await;
    let limit = HostConfig {
        memory: Some(16 << 20),
        memory_swap: Some(16 << 20),
        ..Default::default()
    };
    let hog =
        "while [ ! -e /tmp/go ]; do sleep 1; done; x=$(head -c 100000000 /dev/zero | tr '\\0' a)";
    let hungry = t.run_command("hungry", &["sh", "-c", hog], limit).await;
    w.events_of(&hungry, "its start", |k| k.contains(&EventKind::Started))
        .await;
    let endpoint = &engine.endpoint;
    run_command(
        "docker",
        &[&["-H", endpoint, "exec", &hungry][..], &GO].concat(),
    );
    let exit = exit_of(&mut w, &hungry).await;
    let told = run_command(
        "docker",
        &[
            "-H",
            endpoint,
            "inspect",
            "-f",
            "{{.State.OOMKilled}}",
            &hungry,
        ],
    );
    assert_eq!(told.trim(), "true", "the engine says it was OOM-killed");
    assert_eq!(
        exit,
        Exit {
            code: Some(137),
            oom_killed: Some(true)
        }
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_on_dockerd_is_told_with_the_exit() {
    an_oom_kill_is_told_with_the_exit(&Rig::load().host_docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_on_dockerd_28_is_told_with_the_exit() {
    an_oom_kill_is_told_with_the_exit(&Rig::load().docker28).await;
}

// podman sends no `oom` event (create, init, start, die, cleanup), but its
// inspect says OOMKilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_on_podman_is_told_with_the_exit() {
    an_oom_kill_is_told_with_the_exit(&Rig::load().podman).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_on_podman_58_is_told_with_the_exit() {
    an_oom_kill_is_told_with_the_exit(&Rig::load().podman58).await;
}

/// A container with a health check (on Docker, whose dockerd runs the
/// checks; podman needs systemd's timers for them, which the rig's podman
/// does not have) becomes healthy, and a rename shows at once: each an
/// `Updated` event from the engine's report, the record inspected again.
async fn health_and_renames_are_kept_current(engine: &rig::Engine, health: bool) {
    let t = DockerTest::connect(engine, "records-health").await;
    let mut w = Watching::synced(MobyEngine::new(&engine.endpoint).unwrap()).await;
    let name = format!("checked-{}", t.label);
    let label = format!("{}={}", whalewatcher_tests::TEST_LABEL, t.label);
    let mut args = vec![
        "-H",
        &engine.endpoint,
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        &label,
        "--name",
        &name,
    ];
    if health {
        args.extend(["--health-cmd", "true", "--health-interval", "1s"]);
    }
    args.extend([engine.image(), "sleep", "1d"]);
    let id = run_command("docker", &args).trim().to_owned();
    w.events_of(&id, "its start", |k| k.contains(&EventKind::Started))
        .await;
    if health {
        let healthy = updated(&mut w, &id, "the update to healthy", |c| {
            c.health() == Some(Health::Healthy)
        })
        .await;
        assert_eq!(healthy.source, EventSource::Engine);
    }
    let renamed = format!("renamed-{}", t.label);
    run_command(
        "docker",
        &["-H", &engine.endpoint, "rename", &name, &renamed],
    );
    let event = updated(&mut w, &id, "the update to the new name", |c| {
        c.name() == renamed
    })
    .await;
    assert_eq!(
        event.container.health(),
        health.then_some(Health::Healthy),
        "the rest of the record as it was"
    );
    w.stop().await;
}

/// Reads events until one of `id` is an `Updated` whose container passes
/// `holds`; returns it.
async fn updated(
    w: &mut Watching,
    id: &str,
    what: &str,
    holds: impl Fn(&Container) -> bool,
) -> Event {
    let from = w.seen.len();
    let found = |seen: &[Event]| {
        seen.iter()
            .find(|e| e.kind == EventKind::Updated && e.container.id() == id && holds(&e.container))
            .cloned()
    };
    within(what, async {
        loop {
            if let Some(event) = found(&w.seen[from..]) {
                return event;
            }
            let seen = w.seen.len();
            let id_events = w.seen.iter().filter(|e| e.container.id() == id).count();
            w.events_of(id, what, |kinds| kinds.len() > id_events).await;
            assert!(w.seen.len() > seen);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_renames_on_dockerd_are_kept_current() {
    health_and_renames_are_kept_current(&Rig::load().host_docker, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_renames_on_dockerd_28_are_kept_current() {
    health_and_renames_are_kept_current(&Rig::load().docker28, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_on_podman_58_are_kept_current() {
    health_and_renames_are_kept_current(&Rig::load().podman58, false).await;
}

/// A container on a network of its own (internal, in a /24 of
/// 198.18.0.0/15, outside the private ranges the rig keeps away from)
/// shows the network mode and its address as the engine's inspect does;
/// one with `--network none` has no network identity.
async fn network_identity_equals_the_inspect(engine: &rig::Engine, subnet: &str, podman: bool) {
    let t = DockerTest::connect(engine, "records-net").await;
    let mut w = Watching::synced(MobyEngine::new(&engine.endpoint).unwrap()).await;
    let network = format!("ww-net-{}", t.label);
    let label = format!("{}={}", whalewatcher_tests::TEST_LABEL, t.label);
    let socket = format!("unix://{}", engine.socket());
    let docker =
        |args: &[&str]| run_command("docker", &[&["-H", socket.as_str()][..], args].concat());
    // What an earlier run that did not end cleanly left holds the subnet.
    for stale in docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        "name=ww-net-records-net-",
    ])
    .lines()
    {
        for id in docker(&["ps", "-aq", "--filter", &format!("network={stale}")]).lines() {
            docker(&["rm", "-f", id]);
        }
        docker(&["network", "rm", stale]);
    }
    if podman {
        podman_network_without_dns(engine, &network, subnet);
    } else {
        docker(&[
            "network",
            "create",
            "--internal",
            "--subnet",
            subnet,
            "--label",
            &label,
            &network,
        ]);
    }
    let on_net = docker(&[
        "run",
        "-d",
        "--label",
        &label,
        "--network",
        &network,
        engine.image(),
        "sleep",
        "1d",
    ])
    .trim()
    .to_owned();
    let no_net = t.run("no-net", &[]).await;
    for id in [&on_net, &no_net] {
        w.events_of(id, "its start", |k| k.contains(&EventKind::Started))
            .await;
    }
    let told = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{.HostConfig.NetworkMode}}}} {{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"
        ),
        &on_net,
    ]);
    let (told_mode, told_ip) = told.trim().split_once(' ').expect("mode and address");
    let portfolio = w.watcher.portfolio();
    let identity = portfolio
        .container(&on_net)
        .and_then(|c| c.network().cloned())
        .expect("a network identity");
    assert_eq!(&*identity.mode, told_mode);
    let addresses: Vec<(&str, &str)> = identity
        .addresses
        .iter()
        .map(|a| (&*a.network, &*a.ip))
        .collect();
    assert_eq!(addresses, [(network.as_str(), told_ip)]);
    let prefix = subnet.trim_end_matches("0/24");
    assert!(told_ip.starts_with(prefix), "{told_ip} in {subnet}");
    assert!(portfolio.container(&no_net).unwrap().network().is_none());
    w.stop().await;
    // Killed first: podman's forced remove would wait out the stop timeout.
    t.kill(&on_net).await;
    t.remove(&on_net).await;
    docker(&["network", "rm", &network]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containers_network_identity_on_dockerd_equals_its_inspect() {
    network_identity_equals_the_inspect(&Rig::load().host_docker, "198.18.0.0/24", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containers_network_identity_on_dockerd_28_equals_its_inspect() {
    network_identity_equals_the_inspect(&Rig::load().docker28, "198.18.2.0/24", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containers_network_identity_on_podman_equals_its_inspect() {
    network_identity_equals_the_inspect(&Rig::load().podman, "198.18.3.0/24", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containers_network_identity_on_podman_58_equals_its_inspect() {
    network_identity_equals_the_inspect(&Rig::load().podman58, "198.18.1.0/24", true).await;
}

/// An internal network on podman, made through its own API: the Docker
/// API's makes one with DNS, whose removal then fails in the rig (netavark
/// finds no aardvark-dns entries to remove).
fn podman_network_without_dns(engine: &rig::Engine, name: &str, subnet: &str) {
    use std::io::{Read, Write};
    let body = serde_json::json!({
        "name": name, "internal": true, "dns_enabled": false,
        "subnets": [{"subnet": subnet}],
    })
    .to_string();
    let mut stream = std::os::unix::net::UnixStream::connect(engine.socket()).expect("podman");
    write!(
        stream,
        "POST /v5.0.0/libpod/networks/create HTTP/1.0\r\nHost: podman\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("a request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
}

// ---- containerd ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_records_names_and_exits_equal_what_ctr_tells() {
    let rig = Rig::load();
    let t = ContainerdTest::connect(&rig.containerd, "records-cd").await;
    let namespace = "whalewatcher-records";
    let mut w =
        Watching::synced(ContainerdEngine::new(rig.containerd.socket()).expect("engine")).await;
    let (three, killed) = (format!("three-{}", t.label), format!("killed-{}", t.label));
    t.run_command(
        namespace,
        &three,
        &[("nerdctl/name", "three")],
        &EXIT_3_ON_GO,
    );
    // As containerd's restart monitor counts restarts.
    t.run(namespace, &killed, &[("containerd.io/restart.count", "2")]);
    let (three_id, killed_id) = (
        format!("{namespace}/{three}"),
        format!("{namespace}/{killed}"),
    );
    for (id, raw) in [(&three_id, &three), (&killed_id, &killed)] {
        w.events_of(id, "its start", |k| k.contains(&EventKind::Started))
            .await;
        let container: Container = (**w.watcher.portfolio().container(id).unwrap()).clone();
        let info: serde_json::Value =
            serde_json::from_str(&t.ctr(namespace, &["containers", "info", raw]))
                .expect("ctr's JSON");
        assert_eq!(container.image(), info["Image"].as_str());
        assert_eq!(
            container.created(),
            Some(rfc3339(info["CreatedAt"].as_str().expect("CreatedAt")))
        );
        let restarts = (id == &killed_id).then_some(2);
        assert_eq!(
            (container.image_id(), container.restarts()),
            (None, restarts)
        );
    }
    // The Go module's names: namespace/name outside default.
    let portfolio = w.watcher.portfolio();
    assert_eq!(
        portfolio.container(&three_id).map(|c| c.name().to_owned()),
        Some(format!("{namespace}/three"))
    );
    assert_eq!(
        portfolio.container(&killed_id).map(|c| c.name().to_owned()),
        Some(killed_id.clone())
    );
    t.ctr(
        namespace,
        &[&["tasks", "exec", "--exec-id", "go", &three][..], &GO].concat(),
    );
    assert_eq!(exit_of(&mut w, &three_id).await.code, Some(3));
    t.ctr(namespace, &["tasks", "kill", "-s", "SIGKILL", &killed]);
    assert_eq!(exit_of(&mut w, &killed_id).await.code, Some(137));
    w.stop().await;
}

/// Where containerd runs in our PID namespace (the host's, under the
/// host dockerd), a container's cgroup is read from `/proc/PID/cgroup`;
/// where it does not (the rig's containerd, in a container), its PIDs are
/// not ours and no cgroup is said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_says_the_cgroup_where_its_pids_are_ours() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "records-cgroup").await;
    let id = t.run("cgrouped", &[]).await;
    let host_containerd = ContainerdEngine::builder()
        .endpoint(rig.host_containerd.socket())
        .ignore_namespaces(Vec::<String>::new())
        .build()
        .expect("engine");
    let w = Watching::synced(host_containerd).await;
    let portfolio = w.watcher.portfolio();
    let record = portfolio
        .container(&format!("moby/{id}"))
        .expect("dockerd's container, in containerd's namespace moby");
    let told = std::fs::read_to_string(format!("/proc/{}/cgroup", record.pid())).expect("readable");
    let cgroup = record.cgroup().expect("a cgroup");
    assert!(
        told.lines()
            .any(|line| line.ends_with(&format!(":{cgroup}"))),
        "{cgroup} in\n{told}"
    );
    assert!(cgroup.contains(&id), "{cgroup} names the container");
    w.stop().await;

    let ct = ContainerdTest::connect(&rig.containerd, "records-no-cgroup").await;
    let namespace = "whalewatcher-records";
    let name = format!("nocgroup-{}", ct.label);
    ct.run(namespace, &name, &[]);
    let w = Watching::synced(ContainerdEngine::new(rig.containerd.socket()).expect("engine")).await;
    let portfolio = w.watcher.portfolio();
    let record = portfolio
        .container(&format!("{namespace}/{name}"))
        .expect("listed");
    assert_eq!(record.cgroup(), None, "its PID is not ours to read");
    w.stop().await;
}

// ---- CRI ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_records_pods_and_exits_equal_the_cri_status() {
    let rig = Rig::load();
    let t = CriTest::connect(&rig.containerd, "records-cri").await;
    let pod = t.run_pod("records", "recording").await;
    let three = t.run_container_command(&pod, "three", &EXIT_3_ON_GO).await;
    let killed = t.run_container(&pod, "killed").await;
    let mut w = Watching::synced(CriEngine::new(rig.containerd.socket()).expect("engine")).await;
    let portfolio = w.watcher.portfolio();
    for id in [&three, &killed] {
        let container = portfolio.container(id).expect("listed");
        let status = t
            .client
            .clone()
            .container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .expect("status")
            .into_inner()
            .status
            .expect("a status");
        assert_eq!(
            container.image(),
            status.image.as_ref().map(|i| i.image.as_str())
        );
        assert_eq!(container.image_id(), Some(status.image_ref.as_str()));
        assert_eq!(container.created(), Some(nanos(status.created_at)));
        assert_eq!(container.started(), Some(nanos(status.started_at)));
        assert_eq!(
            container.restarts(),
            status.metadata.as_ref().map(|m| m.attempt)
        );
    }
    // The pod: one, holding the sandbox and both containers.
    let listed = portfolio
        .pods()
        .find(|p| p.info().name.as_ref() == "records")
        .expect("the pod");
    assert_eq!(listed.info().namespace.as_ref(), "recording");
    let mut members: Vec<&str> = listed.containers().map(|c| c.id()).collect();
    members.sort_unstable();
    let mut expected = vec![pod.id.as_str(), three.as_str(), killed.as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected);
    let sandbox = portfolio.container(&pod.id).expect("the sandbox");
    assert!(sandbox.created().is_some());

    t.exec(&three, &GO).await;
    assert_eq!(
        exit_of(&mut w, &three).await,
        Exit {
            code: Some(3),
            oom_killed: Some(false)
        }
    );
    t.stop_container(&killed).await; // no grace: SIGKILL
    assert_eq!(exit_of(&mut w, &killed).await.code, Some(137));
    w.stop().await;
}

/// A pod in the host network whose container runs privileged, limited
/// and with a read-only mount: the records say each, for the container
/// listed at the sync and for the one started after it (its pod from the
/// event), and equal what the CRI status tells.
async fn cri_records_carry_pod_metadata_network_resources_and_mounts(engine: &rig::Engine) {
    use k8s_cri::v1::{LinuxContainerResources, Mount as CriMount};
    let t = CriTest::connect(engine, "records-cri-details").await;
    let pod = t
        .run_pod_with("detailed", "details", |config| {
            let linux = config.linux.get_or_insert_with(Default::default);
            let context = linux.security_context.get_or_insert_with(Default::default);
            context.privileged = true;
        })
        .await;
    let limited = |config: &mut k8s_cri::v1::ContainerConfig| {
        config.mounts.push(CriMount {
            container_path: "/data".into(),
            host_path: "/tmp".into(),
            readonly: true,
            ..Default::default()
        });
        let linux = config.linux.get_or_insert_with(Default::default);
        linux.resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            cpu_shares: 512,
            cpuset_cpus: "0".into(),
            ..Default::default()
        });
        let context = linux.security_context.get_or_insert_with(Default::default);
        context.privileged = true;
    };
    let before = t.run_container_changed(&pod, "before", limited).await;
    let plain = t.run_container(&pod, "plain").await;
    let mut w = Watching::synced(CriEngine::new(engine.socket()).expect("engine")).await;
    let after = t.run_container_changed(&pod, "after", limited).await;
    w.events_of(
        &after,
        "the start of the container started after the sync",
        |kinds| kinds.contains(&EventKind::Started),
    )
    .await;
    let portfolio = w.watcher.portfolio();
    let sandbox = portfolio.container(&pod.id).expect("the sandbox");
    for id in [&before, &after, &plain, &pod.id] {
        let container = portfolio.container(id).expect("listed");
        let info = container.pod().expect("in its pod");
        assert_eq!(&*info.sandbox_id, pod.id.as_str(), "{id}");
        assert_eq!(
            info.labels.get(whalewatcher_tests::TEST_LABEL),
            Some(t.label.as_str())
        );
        assert_eq!(
            info.annotations.get("whalewatcher-rig.test/annotation"),
            Some("pod detailed")
        );
        assert_eq!(
            info.host_namespaces,
            HostNamespaces {
                network: true,
                pid: false,
                ipc: false
            }
        );
        let network = container.network().expect("a network identity");
        assert_eq!((&*network.mode, network.addresses.len()), ("host", 0));
        assert!(
            std::sync::Arc::ptr_eq(container.pod().unwrap(), sandbox.pod().unwrap()),
            "one pod record, shared"
        );
    }
    for id in [&before, &after] {
        let container = portfolio.container(id).expect("listed");
        assert_eq!(container.privileged(), Some(true), "{id}");
        assert_eq!(container.cgroup(), Some(format!("/k8s.io/{id}").as_str()));
        let resources = container.resources().expect("resources");
        assert_eq!(
            **resources,
            Resources {
                cgroup_parent: None,
                memory_limit: Some(64 << 20),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                cpu_shares: Some(512),
                cpuset_cpus: Some("0".into()),
                cpuset_mems: None,
            }
        );
        assert_eq!(
            container.mounts(),
            &[Mount {
                destination: "/data".into(),
                source: "/tmp".into(),
                kind: "bind".into(),
                read_only: true
            }]
        );
    }
    let plain = portfolio.container(&plain).expect("listed");
    assert_eq!(plain.privileged(), Some(false));
    assert_eq!(plain.mounts(), &[]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_records_on_containerd_carry_pod_metadata_network_resources_and_mounts() {
    cri_records_carry_pod_metadata_network_resources_and_mounts(&Rig::load().containerd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_records_on_containerd_21_carry_pod_metadata_network_resources_and_mounts() {
    cri_records_carry_pod_metadata_network_resources_and_mounts(&Rig::load().containerd2).await;
}
