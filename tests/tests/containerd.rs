//! whalewatcher-containerd against the rig's containerd 1.7.
//!
//! The engine-restart test takes the engine exclusively; the others share
//! it and compare only the containers that carry their own test label.

use std::collections::BTreeMap;

use whalewatcher_containerd::ContainerdEngine;
use whalewatcher_core::{
    CancellationToken, Engine, EngineError, EventKind, EventSource, RetryPolicy, WatchError,
    Watcher, COMPOSE_PROJECT_LABEL,
};
use whalewatcher_tests::commands::output_within;
use whalewatcher_tests::containerd::{wait_for_event, ContainerdTest};
use whalewatcher_tests::eventually;
use whalewatcher_tests::http_proxy::{HttpProxy, Rules};
use whalewatcher_tests::rig::{self, Rig};
use whalewatcher_tests::scripted_grpc::{Answer, ScriptedGrpc};
use whalewatcher_tests::watching::Watching;

/// Shared by the tests that only use the engine; taken alone by the one
/// that restarts it.
static ENGINE_CONTAINERD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
static ENGINE_CONTAINERD2: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The lock of the rig's engine `cd`.
fn lock(cd: &rig::Engine) -> &'static tokio::sync::RwLock<()> {
    match cd.container() {
        c if c.ends_with("-containerd") => &ENGINE_CONTAINERD,
        c if c.ends_with("-containerd2") => &ENGINE_CONTAINERD2,
        other => panic!("no lock for the engine in {other}"),
    }
}

const NAMESPACE: &str = "whalewatcher-a";

fn engine(cd: &rig::Engine) -> ContainerdEngine {
    configured(cd).build().expect("engine")
}

/// A builder for the rig's engine, for more settings.
fn configured(cd: &rig::Engine) -> whalewatcher_containerd::ContainerdEngineBuilder {
    ContainerdEngine::builder().endpoint(cd.socket())
}

fn portfolio_view(w: &Watching, t: &ContainerdTest) -> BTreeMap<String, (u32, bool)> {
    w.mine(&t.label)
        .into_iter()
        .map(|(id, c)| (id, (c.pid(), c.is_paused())))
        .collect()
}

async fn wait_for_truth(w: &Watching, t: &ContainerdTest, namespaces: &[&str]) {
    eventually("the portfolio to equal containerd's truth", || async {
        portfolio_view(w, t) == t.truth(namespaces)
    })
    .await;
}

async fn namespaces_names_projects_and_pauses_equal_the_truth(cd: &rig::Engine) {
    let _shared = lock(cd).read().await;
    let t = ContainerdTest::connect(cd, "cd-sync").await;
    let project = format!("shop-{}", t.label);
    let (web, db, solo, hidden) = (
        format!("web-{}", t.label),
        format!("db-{}", t.label),
        format!("solo-{}", t.label),
        format!("hidden-{}", t.label),
    );
    t.run(
        NAMESPACE,
        &web,
        &[("nerdctl/name", "web"), (COMPOSE_PROJECT_LABEL, &project)],
    );
    t.run(
        NAMESPACE,
        &db,
        &[("nerdctl/name", "db"), (COMPOSE_PROJECT_LABEL, &project)],
    );
    t.run("default", &solo, &[]);
    t.ctr("default", &["tasks", "pause", &solo]);
    t.run("moby", &hidden, &[]); // ignored by default

    let w = Watching::synced(engine(cd)).await;
    assert_eq!(portfolio_view(&w, &t), t.truth(&[NAMESPACE, "default"]));
    let portfolio = w.watcher.portfolio();
    let web_c = portfolio
        .container(&format!("{NAMESPACE}/{web}"))
        .expect("namespaced id");
    // As the Go module names them: `namespace/name` outside `default`.
    let web_name = format!("{NAMESPACE}/web");
    assert_eq!(
        (web_c.name(), web_c.project()),
        (web_name.as_str(), project.as_str())
    );
    assert_eq!(portfolio.project(&project).map(|p| p.len()), Some(2));
    let solo_c = portfolio
        .container(&solo)
        .expect("default namespace: plain id");
    assert!(solo_c.is_paused());
    assert_eq!(solo_c.name(), solo, "no nerdctl name: the id");
    assert!(
        portfolio.containers().all(|c| !c.id().starts_with("moby/")),
        "the ignored namespace must be absent"
    );
    assert_eq!(w.watcher.engine_type(), "containerd.io");
    // As the Go module reports it: "<version> <revision>", as ctr says;
    // without a trailing space where there is no revision (containerd 2.1
    // of Debian unstable).
    let server = t.ctr("default", &["version"]);
    let field = |name: &str| {
        server
            .lines()
            .skip_while(|l| !l.starts_with("Server:"))
            .find_map(|l| l.trim().strip_prefix(name).map(str::trim))
            .unwrap_or_else(|| panic!("no {name} in {server}"))
            .to_owned()
    };
    let revision = field("Revision:");
    let expected = match revision.as_str() {
        "" => field("Version:"),
        revision => format!("{} {revision}", field("Version:")),
    };
    assert_eq!(w.watcher.version(), expected);
    assert!(w.watcher.version().starts_with(&cd.version));
    assert!(!w.watcher.id().is_empty());
    // containerd runs in a container of the rig: the PID it reports is of
    // its own PID namespace, not ours; unknown, as no PID was given.
    assert_eq!(w.watcher.engine_info().pid, None);
    w.stop().await;
}

async fn pause_resume_and_kill_are_followed_in_order(cd: &rig::Engine) {
    let _shared = lock(cd).read().await;
    let t = ContainerdTest::connect(cd, "cd-life").await;
    let mut w = Watching::synced(engine(cd)).await;

    let id = format!("life-{}", t.label);
    let display = format!("{NAMESPACE}/{id}");
    t.run(NAMESPACE, &id, &[]);
    w.events_of(&display, "started", |k| k.contains(&EventKind::Started))
        .await;
    t.ctr(NAMESPACE, &["tasks", "pause", &id]);
    w.events_of(&display, "paused", |k| k.contains(&EventKind::Paused))
        .await;
    assert!(w
        .watcher
        .portfolio()
        .container(&display)
        .unwrap()
        .is_paused());
    t.ctr(NAMESPACE, &["tasks", "resume", &id]);
    w.events_of(&display, "resumed", |k| k.contains(&EventKind::Unpaused))
        .await;
    t.kill(NAMESPACE, &id);
    let kinds = w
        .events_of(&display, "exited", |k| k.contains(&EventKind::Exited))
        .await;
    assert_eq!(
        kinds,
        [
            EventKind::Started,
            EventKind::Paused,
            EventKind::Unpaused,
            EventKind::Exited
        ]
    );
    assert!(w.watcher.portfolio().container(&display).is_none());
    w.stop().await;
}

/// An exec'd process that ends sends a `/tasks/exit` with its exec id; the
/// container stays. containerd's own stream shows the exit was sent, and
/// a pause of the same container — published by the same shim after it —
/// fences it: once the watcher saw the pause, it has taken in the exit.
async fn an_exec_that_ends_does_not_remove_its_container(cd: &rig::Engine) {
    let _shared = lock(cd).read().await;
    let t = ContainerdTest::connect(cd, "cd-exec").await;
    let mut w = Watching::synced(engine(cd)).await;

    let id = format!("exec-{}", t.label);
    t.run("default", &id, &[]);
    w.events_of(&id, "started", |k| k.contains(&EventKind::Started))
        .await;
    let mut raw = t.subscribe(&["topic==\"/tasks/exit\""]).await;
    t.ctr(
        "default",
        &["tasks", "exec", "--exec-id", "probe", &id, "true"],
    );
    wait_for_event(&mut raw, "the exec's exit", |envelope| {
        let exit = envelope.event.as_ref().and_then(|any| {
            <containerd_client::events::TaskExit as prost::Message>::decode(any.value.as_slice())
                .ok()
        });
        exit.is_some_and(|exit| exit.container_id == id && exit.id == "probe")
    })
    .await;
    t.ctr("default", &["tasks", "pause", &id]);
    let kinds = w
        .events_of(&id, "the pause after the exec's exit", |k| {
            k.contains(&EventKind::Paused)
        })
        .await;
    assert_eq!(
        kinds,
        [EventKind::Started, EventKind::Paused],
        "the exec's exit must not be an exit of the container"
    );
    assert!(w.watcher.portfolio().container(&id).is_some());
    w.stop().await;
}

/// 30 tasks started and 15 of them killed while the watcher's list is in
/// flight: a proxy holds containerd's task-list answer (as taken when
/// asked) until the churn's 45 events have passed on to the watcher.
async fn thirty_tasks_churned_during_the_initial_sync_end_in_the_truth(cd: &rig::Engine) {
    let _shared = lock(cd).read().await;
    let t = std::sync::Arc::new(ContainerdTest::connect(cd, "cd-churn").await);
    t.run(NAMESPACE, &format!("before-{}", t.label), &[]);
    let proxy = HttpProxy::grpc(cd, Rules::default());
    proxy.hold_answers(&["/containerd.services.tasks.v1.Tasks/List"]);
    let w = Watching::start(ContainerdEngine::new(proxy.socket()).expect("engine"));
    let churn = tokio::task::spawn_blocking({
        let t = t.clone();
        move || {
            for i in 0..30 {
                let id = format!("churn{i}-{}", t.label);
                t.run(NAMESPACE, &id, &[]);
                if i % 2 == 0 {
                    t.kill(NAMESPACE, &id);
                }
            }
        }
    });
    let (churned, passed) = proxy.overlap(churn, 45).await;
    churned.expect("churn");
    println!("containerd: {passed} events passed while the list waited");
    w.watcher.ready().await.expect("synced");
    wait_for_truth(&w, &t, &[NAMESPACE]).await;
    assert_eq!(w.mine(&t.label).len(), 16);
    w.stop().await;
}

async fn an_engine_restart_is_resynchronized_and_subscribers_see_the_difference(cd: &rig::Engine) {
    let _alone = lock(cd).write().await;
    let rig = Rig::load();
    let t = ContainerdTest::connect(cd, "cd-restart").await;
    let before = format!("before-{}", t.label);
    t.run("default", &before, &[]);
    let mut w = Watching::synced(engine(cd)).await;
    w.events_of(&before, "the initial start", |k| {
        k.contains(&EventKind::Started)
    })
    .await;

    // All tasks die with the engine's container; containerd comes back.
    rig.restart(cd, 5);
    eventually("containerd to answer again", || async {
        output_within(std::process::Command::new("docker").args([
            "-H",
            &rig.host_docker.endpoint,
            "exec",
            cd.container(),
            "ctr",
            "version",
        ]))
        .is_ok_and(|o| o.status.success())
    })
    .await;
    let after = format!("after-{}", t.label);
    t.run("default", &after, &[]);

    let vanished = w
        .events_of(&before, "the vanished one's exit", |k| {
            k.contains(&EventKind::Exited)
        })
        .await;
    assert_eq!(vanished, [EventKind::Started, EventKind::Exited]);
    let exit = w
        .seen
        .iter()
        .find(|e| e.container.id() == before && e.kind == EventKind::Exited)
        .unwrap();
    assert_eq!(
        exit.source,
        EventSource::Sync,
        "reported by the resync's difference"
    );
    w.events_of(&after, "the new one's start", |k| {
        k.contains(&EventKind::Started)
    })
    .await;
    wait_for_truth(&w, &t, &["default"]).await;
    assert_eq!(w.mine(&t.label).keys().collect::<Vec<_>>(), [&after]);
    w.stop().await;
}

/// tonic refuses a message above 4 MiB unless told otherwise, and
/// containerd sends a namespace's records in one message unless asked for
/// a stream: 32 records of about 160 KB (few containers with large
/// labels, or a few thousand with ordinary specs) made the sync fail with
/// "decoded message length too large".
async fn records_larger_than_4_mib_in_all_sync(cd: &rig::Engine) {
    // Alone: every list of this engine is that large while they exist.
    let _alone = lock(cd).write().await;
    let t = ContainerdTest::connect(cd, "cd-heavy").await;
    let namespace = "whalewatcher-heavy";
    t.create_heavy(namespace, &format!("heavy-{}", t.label), 32);
    let light = format!("light-{}", t.label);
    t.run(namespace, &light, &[]);

    let w = Watching::synced(engine(cd)).await;
    assert_eq!(portfolio_view(&w, &t), t.truth(&[namespace]));
    assert!(w
        .watcher
        .portfolio()
        .container(&format!("{namespace}/{light}"))
        .is_some());
    w.stop().await;
}

/// An engine without the record stream (`Unimplemented`) is asked for
/// the one-message list, and its records are not lost.
#[tokio::test]
async fn an_engine_without_the_record_stream_is_listed_in_one_message() {
    use containerd_client::services::v1::{
        Container, ListContainersResponse, ListNamespacesResponse, ListTasksResponse, Namespace,
    };
    use containerd_client::types::v1::{Process, Status};
    let record = Container {
        id: "old".to_owned(),
        ..Default::default()
    };
    let task = Process {
        id: "old".to_owned(),
        pid: 4242,
        status: Status::Running as i32,
        ..Default::default()
    };
    let stream = "/containerd.services.containers.v1.Containers/ListStream";
    let engine = ScriptedGrpc::start(
        &std::env::temp_dir(),
        [
            (
                "/containerd.services.namespaces.v1.Namespaces/List",
                Answer::message(&ListNamespacesResponse {
                    namespaces: vec![Namespace {
                        name: "default".to_owned(),
                        ..Default::default()
                    }],
                }),
            ),
            (
                "/containerd.services.containers.v1.Containers/List",
                Answer::message(&ListContainersResponse {
                    containers: vec![record],
                }),
            ),
            (
                "/containerd.services.tasks.v1.Tasks/List",
                Answer::message(&ListTasksResponse { tasks: vec![task] }),
            ),
        ],
    );
    let listed = ContainerdEngine::new(engine.socket())
        .expect("engine")
        .list()
        .await
        .expect("the list");
    assert_eq!(engine.calls(stream), 1, "the stream was asked for first");
    let pids: Vec<_> = listed.iter().map(|c| (c.id(), c.pid())).collect();
    assert_eq!(pids, [("old", 4242)]);
}

/// A namespace whose list fails is left out and said, as the Go module
/// skips it, not the whole list failed; when every namespace fails, the
/// list does. (No real containerd refuses one namespace's list alone:
/// the scripted endpoint does.)
#[tokio::test]
async fn a_namespace_that_cannot_be_listed_is_left_out_and_said() {
    use containerd_client::services::v1::{
        Container, ListContainersResponse, ListNamespacesResponse, ListTasksResponse, Namespace,
    };
    use containerd_client::types::v1::{Process, Status};
    const PERMISSION_DENIED: u32 = 7;
    let namespaces = Answer::message(&ListNamespacesResponse {
        namespaces: ["good", "bad"]
            .map(|name| Namespace {
                name: name.to_owned(),
                ..Default::default()
            })
            .to_vec(),
    });
    let good = [
        (
            "/containerd.services.containers.v1.Containers/List@good",
            Answer::message(&ListContainersResponse {
                containers: vec![Container {
                    id: "web".to_owned(),
                    ..Default::default()
                }],
            }),
        ),
        (
            "/containerd.services.tasks.v1.Tasks/List@good",
            Answer::message(&ListTasksResponse {
                tasks: vec![Process {
                    id: "web".to_owned(),
                    pid: 4242,
                    status: Status::Running as i32,
                    ..Default::default()
                }],
            }),
        ),
    ];
    let refused = "/containerd.services.tasks.v1.Tasks/List";
    let script = good.clone().into_iter().chain([
        (
            "/containerd.services.namespaces.v1.Namespaces/List",
            namespaces.clone(),
        ),
        (refused, Answer::status(PERMISSION_DENIED)),
    ]);
    let endpoint = ScriptedGrpc::start(&std::env::temp_dir(), script);
    let engine = ContainerdEngine::new(endpoint.socket()).expect("engine");
    let listing = engine.list_with_omissions().await.expect("a list");
    let ids: Vec<&str> = listing.containers.iter().map(|c| c.id()).collect();
    assert_eq!(ids, ["good/web"]);
    let omitted: Vec<&str> = listing.omitted.iter().map(|o| o.part.as_str()).collect();
    assert_eq!(omitted, ["namespace \"bad\""]);
    assert!(!listing.omitted[0].reason.is_empty());
    assert_eq!(engine.list().await.expect("a list").len(), 1);

    let all_refused = ScriptedGrpc::start(
        &std::env::temp_dir(),
        [
            (
                "/containerd.services.namespaces.v1.Namespaces/List",
                namespaces,
            ),
            (refused, Answer::status(PERMISSION_DENIED)),
        ],
    );
    let engine = ContainerdEngine::new(all_refused.socket()).expect("engine");
    assert!(
        engine.list_with_omissions().await.is_err(),
        "nothing listed is no list"
    );
}

/// A channel of the caller's is used as it is: the engine syncs over it
/// although its endpoint names a socket where nothing listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_channel_is_talked_over() {
    let rig = Rig::load();
    let t = ContainerdTest::connect(&rig.containerd, "cd-given-channel").await;
    let namespace = "whalewatcher-given";
    let name = format!("given-{}", t.label);
    t.run(namespace, &name, &[]);
    let engine = ContainerdEngine::builder()
        .endpoint("/run/whalewatcher-rig/no-such-containerd.sock")
        .channel(t.channel.clone())
        .build()
        .expect("engine");
    let w = Watching::synced(engine).await;
    assert!(w
        .watcher
        .portfolio()
        .container(&format!("{namespace}/{name}"))
        .is_some());
    w.stop().await;
}

#[tokio::test]
async fn a_missing_socket_is_unreachable() {
    let engine =
        ContainerdEngine::new("/run/whalewatcher-rig/no-such-containerd.sock").expect("engine");
    let watcher = Watcher::new(engine, RetryPolicy::none());
    let ended = watcher.watch(CancellationToken::new()).await;
    assert!(
        matches!(
            ended,
            Err(WatchError::GaveUp {
                last: EngineError::Unreachable { .. },
                ..
            })
        ),
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_socket_that_is_not_containerd_is_a_typed_error() {
    let rig = Rig::load();
    let engine = ContainerdEngine::new(rig.host_docker.socket()).expect("engine"); // speaks HTTP/1.1, not gRPC
    let err = engine.info().await.unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Unreachable { .. } | EngineError::Protocol { .. }
        ),
        "{err:?}"
    );
    let err = engine.inspect("bad namespace!/x").await.unwrap_err();
    assert!(matches!(err, EngineError::Protocol { .. }), "{err:?}");
}

async fn the_packer_sees_the_record_and_the_engines_channel_is_reachable(cd: &rig::Engine) {
    let _shared = lock(cd).read().await;
    let t = ContainerdTest::connect(cd, "cd-packer").await;
    let id = format!("packed-{}", t.label);
    t.run(NAMESPACE, &id, &[]);
    let packed = configured(cd)
        .packer(|container, inspection| {
            let seen = (
                inspection.namespace.to_owned(),
                inspection.record.image.clone(),
            );
            container.with_rucksack(std::sync::Arc::new(seen))
        })
        .build()
        .expect("engine");
    let w = Watching::synced(packed).await;
    let portfolio = w.watcher.portfolio();
    let container = portfolio
        .container(&format!("{NAMESPACE}/{id}"))
        .expect("the packed container");
    assert_eq!(
        container.rucksack::<(String, String)>(),
        Some(&(NAMESPACE.to_owned(), t.engine.image().to_owned()))
    );
    let channel = w
        .watcher
        .engine_as::<ContainerdEngine>()
        .expect("a containerd engine")
        .channel()
        .await
        .expect("connected");
    let version = containerd_client::services::v1::version_client::VersionClient::new(channel)
        .version(())
        .await
        .expect("the engine's own channel answers")
        .into_inner();
    assert!(w.watcher.version().starts_with(&version.version));
    w.stop().await;
}

// ---- on each containerd of the rig ----

macro_rules! on_every_containerd {
    ($($engine:ident),*) => {$(
        mod $engine {
            use super::*;

            fn engine() -> rig::Engine {
                Rig::load().$engine
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn namespaces_names_projects_and_pauses_equal_the_truth() {
                super::namespaces_names_projects_and_pauses_equal_the_truth(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pause_resume_and_kill_are_followed_in_order() {
                super::pause_resume_and_kill_are_followed_in_order(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_exec_that_ends_does_not_remove_its_container() {
                super::an_exec_that_ends_does_not_remove_its_container(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn thirty_tasks_churned_during_the_initial_sync_end_in_the_truth() {
                super::thirty_tasks_churned_during_the_initial_sync_end_in_the_truth(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_engine_restart_is_resynchronized_and_subscribers_see_the_difference() {
                super::an_engine_restart_is_resynchronized_and_subscribers_see_the_difference(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn records_larger_than_4_mib_in_all_sync() {
                super::records_larger_than_4_mib_in_all_sync(&engine()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_packer_sees_the_record_and_the_engines_channel_is_reachable() {
                super::the_packer_sees_the_record_and_the_engines_channel_is_reachable(&engine()).await;
            }
        }
    )*};
}

// containerd 1.7 (Debian trixie's) and 2.1 (unstable's).
on_every_containerd!(containerd, containerd2);
