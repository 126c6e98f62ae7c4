//! The `whalewatch` CLI as a user runs it, against the rig's host dockerd
//! and its CRI engine.

use std::process::{Command, Stdio};

use futures::StreamExt;
use serde_json::Value;
use whalewatcher_tests::commands::{output_within, wait_within};
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::rig::Rig;
use whalewatcher_tests::{within, TEST_LABEL};

const WHALEWATCH: &str = env!("CARGO_BIN_EXE_whalewatch");

/// Runs whalewatch to its end; (exit code, stdout, stderr).
fn whalewatch(args: &[&str]) -> (i32, String, String) {
    whalewatch_with(args, &[])
}

/// `whalewatch --docker ENDPOINT --follow`, running, and its output's lines.
fn follow(
    endpoint: &str,
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = tokio::process::Command::new(WHALEWATCH)
        .args(["--docker", endpoint, "--follow"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("whalewatch runs");
    let stdout = child.stdout.take().expect("piped");
    let lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    (child, lines)
}

/// The compose project `shop-<label>` with `web` in it, a standalone
/// `solo` and a paused `frozen`: (project, web, solo, frozen).
async fn shop(t: &DockerTest) -> (String, String, String, String) {
    let project = format!("shop-{}", t.label);
    let web = t
        .run("web", &[("com.docker.compose.project", &project)])
        .await;
    let solo = t.run("solo", &[]).await;
    let frozen = t.run("frozen", &[]).await;
    t.pause(&frozen).await;
    (project, web, solo, frozen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_groups_by_project_and_json_has_the_same_containers() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "cli-table").await;
    let (project, web, solo, frozen) = shop(&t).await;

    let (code, table, stderr) = whalewatch(&["--docker", &rig.host_docker.endpoint]);
    assert_eq!(code, 0, "{stderr}");
    let header = table.lines().next().expect("an engine line");
    assert!(header.starts_with("docker.com "), "{table}");
    // By the short id in the last column.
    let row = |id: &str| {
        table
            .lines()
            .find(|line| line.split_whitespace().nth(5) == Some(&id[..12]))
            .unwrap_or_else(|| panic!("no row for {id} in\n{table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(row(&web)[0], project);
    assert_eq!(row(&solo)[0], "-", "standalone");
    assert_eq!(row(&web)[2], rig.host_docker.image());
    assert!(row(&web)[3].parse::<u32>().unwrap() > 0, "a PID");
    assert_eq!(row(&web)[4], "running");

    let (code, json, stderr) = whalewatch(&["--docker", &rig.host_docker.endpoint, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json["schema"], 1);
    let engine = &json["engines"][0];
    assert_eq!(engine["engine"]["type"], "docker.com");
    let projects = engine["projects"].as_array().unwrap();
    let shop = projects
        .iter()
        .find(|p| p["name"] == project.as_str())
        .expect("the project");
    // Every container of this test, as the engine says: ids, PIDs,
    // projects, pause states.
    let listed: std::collections::BTreeMap<String, (u64, String, bool)> = projects
        .iter()
        .flat_map(|p| p["containers"].as_array().unwrap())
        .filter(|c| c["labels"][TEST_LABEL] == t.label.as_str())
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                (
                    c["pid"].as_u64().unwrap(),
                    c["project"].as_str().unwrap().to_owned(),
                    c["paused"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    let truth: std::collections::BTreeMap<String, (u64, String, bool)> = t
        .truth()
        .await
        .into_iter()
        .map(|(id, pid)| {
            let project = if id == web {
                project.clone()
            } else {
                String::new()
            };
            let paused = id == frozen;
            (id, (u64::from(pid), project, paused))
        })
        .collect();
    assert_eq!(listed, truth);
    assert_eq!(listed.len(), 3);
    let container = &shop["containers"][0];
    assert_eq!(container["id"], web.as_str());
    assert_eq!(container["image"], rig.host_docker.image());
    assert!(container["image_id"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(container["created"].as_u64().unwrap() <= container["started"].as_u64().unwrap());
    assert_eq!(container["restarts"], 0);
    assert!(container["pod"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_json_lines_and_ends_cleanly_on_sigint() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "cli-follow").await;
    let (mut child, mut lines) = follow(&rig.host_docker.endpoint);
    // The rig's own engine containers are alive from the start.
    let first: Value = serde_json::from_str(
        &within("a first line", lines.next_line())
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["kind"], "alive");

    let id = t.run("followed", &[]).await;
    within("the started line", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("output goes on");
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["kind"] == "started" && event["container"]["id"] == id.as_str() {
                assert_eq!(event["source"], "engine");
                assert_eq!(event["schema"], 1);
                assert_eq!(event["engine"]["api"], rig.host_docker.endpoint.as_str());
                assert_eq!(event["engine"]["type"], "docker.com");
                assert!(event["exit"].is_null());
                return;
            }
        }
    })
    .await;
    t.kill(&id).await;
    within("the exited line", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("output goes on");
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["kind"] == "exited" && event["container"]["id"] == id.as_str() {
                assert_eq!(
                    event["exit"],
                    serde_json::json!({"code": 137, "oom_killed": null})
                );
                return;
            }
        }
    })
    .await;

    let pid = child.id().expect("running");
    whalewatcher_tests::run_command("kill", &["-INT", &pid.to_string()]);
    let status = within("whalewatch to exit", child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
}

/// A unix socket server that answers every connection with a line of
/// text and closes it: reached, but no engine.
struct TextServer {
    socket: std::path::PathBuf,
}

impl TextServer {
    fn start(socket: std::path::PathBuf) -> Self {
        use std::io::{Read, Write};
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for mut connection in listener.incoming().flatten() {
                // Each in a thread of its own: a client that connects and
                // sends nothing must not hold up the next one.
                std::thread::spawn(move || {
                    let mut request = [0; 512];
                    let _ = connection.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                    let _ = connection.read(&mut request);
                    let _ = connection.write_all(b"hello, I am not an engine\n");
                });
            }
        });
        TextServer { socket }
    }
}

impl Drop for TextServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Tried as a new user would: every kind of wrong endpoint, given to each
/// engine option, is one line that says what is there, exit 1, within the
/// 10 s engine deadline.
#[test]
fn every_wrong_endpoint_for_every_engine_option_is_one_line_that_says_what_is_there() {
    let rig = Rig::load();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let dir = std::env::temp_dir().join(whalewatcher_tests::test_label_value("bad-endpoints"));
    std::fs::create_dir_all(dir.join("a-directory")).unwrap();
    std::fs::write(dir.join("a-file"), "not a socket").unwrap();
    // A socket whose server is gone: bound, then closed.
    drop(std::os::unix::net::UnixListener::bind(dir.join("stale.sock")).unwrap());
    let _text = TextServer::start(dir.join("text.sock"));
    let silent = whalewatcher_tests::silent::SilentSocket::start(&dir);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let fixtures = |option: &str| {
        let (other, speaks) = match option {
            "--docker" | "--podman" => (rig.host_containerd.socket(), "it speaks HTTP/2"),
            _ => (rig.host_docker.socket(), "it speaks HTTP/1.1"),
        };
        [
            (
                path("a-directory"),
                "is a directory, not a socket".to_owned(),
            ),
            (path("a-file"), "is a regular file, not a socket".to_owned()),
            (path("stale.sock"), "nothing listens on".to_owned()),
            (
                path("missing.sock"),
                format!("there is no {}", path("missing.sock")),
            ),
            (
                path("text.sock"),
                "it answered \"hello, I am not an engine\"".to_owned(),
            ),
            (
                silent.socket().to_str().unwrap().to_owned(),
                "did not answer subscribe within 10s".to_owned(),
            ),
            (other.to_owned(), speaks.to_owned()),
        ]
    };
    let runs: Vec<_> = ["--docker", "--podman", "--containerd", "--cri"]
        .into_iter()
        .flat_map(|option| fixtures(option).map(|(endpoint, says)| (option, endpoint, says)))
        .map(|(option, endpoint, says)| {
            std::thread::spawn(move || {
                let began = std::time::Instant::now();
                let outcome = whalewatch(&[option, &endpoint]);
                (option, endpoint, says, outcome, began.elapsed())
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for run in runs {
        let (option, endpoint, says, (code, _, stderr), took) = run.join().unwrap();
        let head = format!("whalewatch: {option}: ");
        let right = code == 1
            && stderr.lines().count() == 1
            && stderr.starts_with(&head)
            && stderr.contains(&says)
            && took < std::time::Duration::from_secs(12);
        if !right {
            wrong.push(format!(
                "{option} {endpoint}: exit {code} after {took:?}, wanted {says:?}: {stderr}"
            ));
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn bad_endpoints_get_one_line_errors_that_say_what_to_check() {
    let (code, _, stderr) = whalewatch(&["--docker", "unix:///run/whalewatcher-rig/nope.sock"]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("whalewatch: --docker: cannot reach the engine at unix:///run/whalewatcher-rig/nope.sock")
            && stderr.contains("there is no /run/whalewatcher-rig/nope.sock")
            && stderr.contains("is the engine running?"),
        "{stderr}"
    );

    for (option, bad) in [
        ("--docker", "ftp://x"),
        ("--containerd", "tcp://127.0.0.1:1"),
        ("--cri", "unix://"),
    ] {
        let (code, _, stderr) = whalewatch(&[option, bad]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("invalid engine endpoint \"{bad}\"")),
            "{stderr}"
        );
    }

    let rig = Rig::load();
    // An engine option without a value takes its default socket.
    for option in ["--containerd", "--cri"] {
        let (code, out, stderr) = whalewatch_with(
            &[option, "--timeout", "2"],
            &[("CONTAINER_RUNTIME_ENDPOINT", None)],
        );
        assert_ne!(code, 2, "{option} alone is no usage error: {stderr}");
        assert!(
            format!("{out}{stderr}").contains("unix:///run/containerd/containerd.sock"),
            "{option}: {out}{stderr}"
        );
    }
    // containerd 1.6: no CRI events.
    let (code, _, stderr) = whalewatch(&["--cri", rig.host_containerd.socket()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("does not support CRI container events"),
        "{stderr}"
    );
}

/// whalewatch as the user nobody, without supplementary groups.
fn as_nobody() -> Command {
    let mut command = Command::new("setpriv");
    command.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        WHALEWATCH,
    ]);
    command
}

#[test]
fn a_socket_the_user_may_not_open_says_permission_denied_and_what_to_try() {
    let rig = Rig::load();
    // The rig's sockets belong to root (group docker, mode 660); run
    // whalewatch as nobody, without supplementary groups.
    let output = output_within(as_nobody().args(["--docker", &rig.host_docker.endpoint]))
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("Permission denied") && stderr.contains("try as root"),
        "{stderr}"
    );
}

#[test]
fn a_full_disk_fails_and_a_closed_pipe_does_not() {
    let rig = Rig::load();
    for json in [false, true] {
        let mut args = vec!["--docker", rig.host_docker.endpoint.as_str()];
        if json {
            args.push("--json");
        }
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let child = Command::new(WHALEWATCH)
            .args(&args)
            .stdout(full)
            .stderr(Stdio::piped())
            .spawn()
            .expect("whalewatch runs");
        let output = wait_within("whalewatch > /dev/full", child).expect("whalewatch ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "json {json}: {stderr}");
        assert!(
            stderr.starts_with("whalewatch: cannot write the output: No space left on device"),
            "json {json}: {stderr}"
        );

        // The reader is gone before the first byte: `| true`.
        let mut child = Command::new(WHALEWATCH)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("whalewatch runs");
        drop(child.stdout.take());
        let output = wait_within("whalewatch | true", child).expect("whalewatch ends");
        assert_eq!(
            output.status.code(),
            Some(0),
            "json {json}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stderr.is_empty(),
            "json {json}: nothing to complain about"
        );
    }
}

/// Runs whalewatch with `env` set (a `None` value removes the variable).
fn whalewatch_with(args: &[&str], env: &[(&str, Option<&str>)]) -> (i32, String, String) {
    let mut command = Command::new(WHALEWATCH);
    command.args(args);
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let output = output_within(&mut command).expect("whalewatch runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The lines of a successful run of whalewatch.
fn lines_of(args: &[&str]) -> Vec<String> {
    let (code, out, err) = whalewatch(args);
    assert_eq!(code, 0, "whalewatch {args:?}: {err}");
    out.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_filters_and_fields_pick_what_docker_ps_picks() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "cli-filter").await;
    let (project, web, solo, frozen) = shop(&t).await;
    let endpoint = rig.host_docker.endpoint.as_str();
    let mine = format!("label={TEST_LABEL}={}", t.label);
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let docker_ps = |filters: &[&str]| {
        let mut args = vec!["-H", endpoint, "ps", "-q", "--no-trunc"];
        for filter in filters {
            args.extend(["--filter", filter]);
        }
        sorted(
            whalewatcher_tests::run_command("docker", &args)
                .lines()
                .map(str::to_owned)
                .collect(),
        )
    };

    // whalewatch -q --no-trunc with these filters, sorted.
    let ids = |filters: &[&str]| {
        let mut args = vec!["--docker", endpoint, "-q", "--no-trunc"];
        for filter in filters {
            args.extend(["--filter", filter]);
        }
        sorted(lines_of(&args))
    };

    let all = ids(&[&mine]);
    assert_eq!(all, sorted(vec![web.clone(), solo.clone(), frozen.clone()]));
    assert_eq!(all, docker_ps(&[&mine]));
    // Without --no-trunc, docker's 12 characters.
    let short = lines_of(&["--docker", endpoint, "-q", "--filter", &mine]);
    assert!(short.iter().all(|id| id.len() == 12), "{short:?}");

    // One key twice: either; two keys: both.
    let either = [mine.as_str(), "name=solo", "name=frozen"];
    assert_eq!(ids(&either), sorted(vec![solo.clone(), frozen.clone()]));
    assert_eq!(ids(&either), docker_ps(&either));
    let in_project = format!("project={project}");
    let only_web = ids(&[&mine, &in_project]);
    assert_eq!(only_web, std::slice::from_ref(&web));
    let compose_label = format!("label=com.docker.compose.project={project}");
    assert_eq!(only_web, docker_ps(&[&mine, &compose_label]));

    // Chosen fields, tab-separated, by project then name.
    let rows = lines_of(&[
        "--docker",
        endpoint,
        "--no-trunc",
        "--filter",
        &mine,
        "--format",
        "id,name,project,state",
    ]);
    let name = |n: &str| format!("{n}-{}", t.label);
    assert_eq!(
        rows,
        [
            format!("{frozen}\t{}\t-\tpaused", name("frozen")),
            format!("{solo}\t{}\t-\trunning", name("solo")),
            format!("{web}\t{}\t{project}\trunning", name("web")),
        ]
    );

    // The table says how many it shows of how many.
    let table = lines_of(&["--docker", endpoint, "--filter", &in_project]);
    assert!(table[0].ends_with(", 1 shown"), "{table:?}");
    assert_eq!(table.len(), 3, "engine line, header, web: {table:?}");

    usage_error(
        &["--filter", "colour=red"],
        "unknown filter key \"colour\" (keys: label, name, project, pod, engine)",
    );
    usage_error(&["--format", "id,size"], "unknown format or field \"size\"");
}

/// The record's limits, privilege and mounts as `--format` fields, as
/// docker run took them (dockerd 28: the rig's host dockerd cannot run a
/// privileged container).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_say_privilege_limits_and_mounts_as_docker_run_took_them() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.docker28, "cli-resources").await;
    let limited = whalewatcher_tests::docker::HostConfig {
        privileged: Some(true),
        memory: Some(64 << 20),
        nano_cpus: Some(500_000_000),
        binds: Some(vec!["/tmp:/data:ro".into()]),
        ..Default::default()
    };
    t.run_with("limited", &[], limited).await;
    t.run("plain", &[]).await;
    let rows = lines_of(&[
        "--docker",
        &rig.docker28.endpoint,
        "--filter",
        &format!("label={TEST_LABEL}={}", t.label),
        "--format",
        "name,privileged,memory,cpus,mounts,network,cgroup",
    ]);
    let name = |n: &str| format!("{n}-{}", t.label);
    assert_eq!(
        rows,
        [
            format!("{}\tyes\t64MiB\t0.5\t/tmp:/data:ro\t-\t-", name("limited")),
            format!("{}\tno\t-\t-\t-\t-\t-", name("plain")),
        ]
    );
}

/// Asserts whalewatch refuses `args` as a usage error (exit 2), saying
/// `message`.
fn usage_error(args: &[&str], message: &str) {
    let (code, _, stderr) = whalewatch(args);
    assert_eq!(code, 2, "{args:?} is a usage error: {stderr}");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
}

#[test]
fn a_timeout_ends_the_wait_for_a_silent_engine() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let silent = whalewatcher_tests::silent::SilentSocket::start(&std::env::temp_dir());
    let endpoint = format!("unix://{}", silent.socket().display());
    let began = std::time::Instant::now();
    let (code, _, stderr) = whalewatch(&["--docker", &endpoint, "--timeout", "0.5"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "whalewatch: --docker: {endpoint} did not synchronize within 500ms"
        )),
        "{stderr}"
    );
    // The engine deadlines are 10 s; the timeout came first.
    assert!(began.elapsed() < std::time::Duration::from_secs(8));
    usage_error(
        &["--timeout", "soon"],
        "\"soon\" is not a number of seconds",
    );
}

/// The endpoint the library's watcher of `kind` (docker, podman, cri)
/// finds when none is named, with the environment `env`: this test binary
/// run again as a child, in [`LIBRARY_ENDPOINT`] mode.
fn library_endpoint(kind: &str, env: &[(&str, Option<&str>)]) -> String {
    let mut command = Command::new(std::env::current_exe().expect("this test binary"));
    command
        .args([
            "--exact",
            "the_endpoint_variables_of_podman_crictl_and_docker_contexts_are_honoured",
            "--nocapture",
        ])
        .env(LIBRARY_ENDPOINT, kind);
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let output = output_within(&mut command).expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("library endpoint: "))
        .unwrap_or_else(|| panic!("no endpoint from the child: {stdout}"))
        .to_owned()
}

/// Set for a child run of the endpoint test: it prints the endpoint of
/// the library's watcher of this kind, and nothing else.
const LIBRARY_ENDPOINT: &str = "WW_TEST_LIBRARY_ENDPOINT";

#[test]
fn the_endpoint_variables_of_podman_crictl_and_docker_contexts_are_honoured() {
    if let Ok(kind) = std::env::var(LIBRARY_ENDPOINT) {
        let retry = whalewatcher::RetryPolicy::default;
        let watcher = match kind.as_str() {
            "docker" => whalewatcher::docker_watcher(None, retry()),
            "podman" => whalewatcher::podman_watcher(None, retry()),
            _ => whalewatcher::cri_watcher(None, retry()),
        }
        .expect("a watcher");
        println!("library endpoint: {}", watcher.api());
        return;
    }
    let rig = Rig::load();
    // The first engine line of whalewatch; the library's watcher of the
    // same kind reaches the same endpoint under the same rule.
    let engine_line = |args: &[&str], env: &[(&str, Option<&str>)]| {
        let (code, out, err) = whalewatch_with(args, env);
        assert_eq!(code, 0, "whalewatch {args:?} {env:?}: {err}");
        let line = out.lines().next().unwrap_or_default().to_owned();
        let kind = args.first().map_or("docker", |option| &option[2..]);
        let library = library_endpoint(kind, env);
        assert!(
            line.contains(&format!(" at {library} ")),
            "the library's {kind} watcher reaches {library}, whalewatch {args:?} {env:?}: {line}"
        );
        line
    };
    let podman = rig.podman.endpoint.as_str();
    let line = engine_line(&["--podman"], &[("CONTAINER_HOST", Some(podman))]);
    assert!(
        line.starts_with("podman.io ") && line.contains(&format!(" at {podman} ")),
        "{line}"
    );

    // crictl's form: a unix:// URL.
    let cri = format!("unix://{}", rig.containerd.socket());
    let line = engine_line(&["--cri"], &[("CONTAINER_RUNTIME_ENDPOINT", Some(&cri))]);
    assert!(
        line.starts_with("k8s.io/cri-api ") && line.contains(&format!(" at {cri} ")),
        "{line}"
    );

    // A docker context "rig" pointing at the rig's dockerd 26, current by
    // the config file, and by DOCKER_CONTEXT over a config naming another.
    let config = std::env::temp_dir().join(whalewatcher_tests::test_label_value("docker-config"));
    let digest = whalewatcher_tests::run_command("sh", &["-c", "printf %s rig | sha256sum"]);
    let meta = config.join("contexts/meta").join(&digest[..64]);
    std::fs::create_dir_all(&meta).unwrap();
    let docker = rig.docker.endpoint.as_str();
    std::fs::write(
        meta.join("meta.json"),
        serde_json::json!({"Name": "rig", "Metadata": {}, "Endpoints": {"docker": {"Host": docker, "SkipTLSVerify": false}}}).to_string(),
    )
    .unwrap();
    let config_dir = config.to_str().unwrap();
    std::fs::write(config.join("config.json"), r#"{"currentContext": "rig"}"#).unwrap();
    let env = [
        ("DOCKER_CONFIG", Some(config_dir)),
        ("DOCKER_HOST", None),
        ("DOCKER_CONTEXT", None),
    ];
    let line = engine_line(&[], &env);
    assert!(
        line.contains(&format!(" at {docker} ")),
        "by currentContext: {line}"
    );
    std::fs::write(
        config.join("config.json"),
        r#"{"currentContext": "elsewhere"}"#,
    )
    .unwrap();
    let env = [
        ("DOCKER_CONFIG", Some(config_dir)),
        ("DOCKER_HOST", None),
        ("DOCKER_CONTEXT", Some("rig")),
    ];
    let line = engine_line(&[], &env);
    assert!(
        line.contains(&format!(" at {docker} ")),
        "by DOCKER_CONTEXT: {line}"
    );
    // DOCKER_HOST wins over any context, as with the docker CLI.
    let host = rig.host_docker.endpoint.as_str();
    let env = [
        ("DOCKER_CONFIG", Some(config_dir)),
        ("DOCKER_HOST", Some(host)),
        ("DOCKER_CONTEXT", Some("rig")),
    ];
    let line = engine_line(&[], &env);
    assert!(
        line.contains(&format!(" at {host} ")),
        "by DOCKER_HOST: {line}"
    );
    // A context that does not exist is a one-line error.
    let env = [
        ("DOCKER_CONFIG", Some(config_dir)),
        ("DOCKER_HOST", None),
        ("DOCKER_CONTEXT", Some("nowhere")),
    ];
    let (code, _, stderr) = whalewatch_with(&[], &env);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "whalewatch: --docker: invalid engine endpoint \"docker context nowhere\": not found"
        ),
        "{stderr}"
    );
    std::fs::remove_dir_all(&config).unwrap();
}

#[test]
fn completions_and_the_man_page_come_from_the_same_options() {
    let (code, bash, stderr) = whalewatch(&["--completions", "bash"]);
    assert_eq!(code, 0, "{stderr}");
    for option in [
        "--docker",
        "--filter",
        "--format",
        "--no-trunc",
        "--timeout",
        "--follow",
    ] {
        assert!(bash.contains(option), "bash completion lacks {option}");
    }
    // bash itself reads it, and completes an option.
    let script = std::env::temp_dir().join(whalewatcher_tests::test_label_value("completion"));
    std::fs::write(&script, &bash).unwrap();
    let completed = whalewatcher_tests::run_command(
        "bash",
        &[
            "-c",
            &format!(
                "source {}; COMP_WORDS=(whalewatch --no-t); COMP_CWORD=1; \
                 _whalewatch whalewatch --no-t whalewatch; echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ),
        ],
    );
    std::fs::remove_file(&script).unwrap();
    assert_eq!(completed.trim(), "--no-trunc");

    let (code, man, stderr) = whalewatch(&["--man"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        man.starts_with(".ie"),
        "roff: {}",
        &man[..man.len().min(80)]
    );
    assert!(man.contains(".TH whalewatch 1"), "a section 1 page");
    assert!(man.contains("\\-\\-filter"), "the options are in it");

    usage_error(&["--man", "--json"], "cannot be used with");
}

/// A tmux server of this test's own (`tmux -L`), running one command in a
/// terminal of 200 × 50; killed when dropped.
struct Terminal {
    server: String,
}

impl Terminal {
    fn start(server: &str, command: &str) -> Terminal {
        Self::sized(server, command, 200, 50)
    }

    /// A terminal of `width` × `height`.
    fn sized(server: &str, command: &str, width: u16, height: u16) -> Terminal {
        let (width, height) = (width.to_string(), height.to_string());
        whalewatcher_tests::run_command(
            "tmux",
            &[
                "-L",
                server,
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                &width,
                "-y",
                &height,
                command,
            ],
        );
        Terminal {
            server: server.to_owned(),
        }
    }

    /// What the terminal shows now; empty once its command has ended.
    fn screen(&self) -> String {
        output_within(Command::new("tmux").args([
            "-L",
            &self.server,
            "capture-pane",
            "-p",
            "-t",
            "t",
        ]))
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
    }

    /// Waits until the screen shows what `condition` looks for.
    async fn shows(&self, what: &str, condition: impl Fn(&str) -> bool) {
        let last = std::sync::Mutex::new(String::new());
        let found = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            loop {
                let screen = self.screen();
                if condition(&screen) {
                    return;
                }
                *last.lock().unwrap() = screen;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await;
        if found.is_err() {
            panic!(
                "the terminal never showed {what}; it shows:\n{}",
                last.lock().unwrap()
            );
        }
    }

    fn resize(&self, width: u16, height: u16) {
        whalewatcher_tests::run_command(
            "tmux",
            &[
                "-L",
                &self.server,
                "resize-window",
                "-t",
                "t",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ],
        );
    }

    /// Sends `key` to `whalewatch --live` (run as `…; echo $? > FILE`),
    /// and checks it exits 0 with the terminal back from the alternate
    /// screen.
    async fn quits_with(&self, key: &str, exit_file: &std::path::Path) {
        self.keys(key);
        // The shell creates the file, then writes the code and its newline.
        let code = within(&format!("whalewatch to end on {key}"), async {
            loop {
                match std::fs::read_to_string(exit_file) {
                    Ok(code) if code.ends_with('\n') => return code,
                    _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        })
        .await;
        std::fs::remove_file(exit_file).unwrap();
        assert_eq!(code.trim(), "0", "exit code");
        self.shows("the normal screen", |s| !s.contains("whalewatch --live:"))
            .await;
    }

    fn keys(&self, keys: &str) {
        whalewatcher_tests::run_command(
            "tmux",
            &["-L", &self.server, "send-keys", "-t", "t", keys],
        );
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = output_within(Command::new("tmux").args(["-L", &self.server, "kill-server"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_fits_80_by_24_and_40_by_12_with_300_containers_and_shows_a_record() {
    let rig = Rig::load();
    // On Docker 28, which users run today: CI once hung for an hour in
    // this test and another beside it, both on the host dockerd 20.10.
    let t = DockerTest::connect(&rig.docker28, "cli-live-fit").await;
    let names: Vec<String> = (0..300).map(|n| format!("c{n:03}")).collect();
    futures::stream::iter(names.iter().map(|name| t.run(name, &[])))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let mine = format!("label={TEST_LABEL}={}", t.label);
    let exit_file = std::env::temp_dir().join(format!("{}.exit", t.label));
    let terminal = Terminal::sized(
        &t.label,
        &format!(
            "{WHALEWATCH} --live --docker {} --filter {mine}; echo $? > {}; sleep 60",
            rig.docker28.endpoint,
            exit_file.display()
        ),
        80,
        24,
    );
    let fits = |width: usize| {
        move |screen: &str| {
            let lines: Vec<&str> = screen.lines().collect();
            lines
                .first()
                .is_some_and(|l| l.starts_with("whalewatch --live:"))
                && lines
                    .iter()
                    .any(|l| l.contains("CONTAINER") && l.contains("STATE"))
                && lines.iter().all(|l| l.chars().count() <= width)
        }
    };
    terminal
        .shows("the title, the header, 300 shown", |s| {
            fits(80)(s) && s.contains("300 shown") && s.contains(" of 301 ")
        })
        .await;
    let last = format!("c299-{}", t.label);
    terminal.keys("End");
    terminal
        .shows("the last container, at the end", |s| s.contains(&last))
        .await;
    terminal.keys("Enter");
    terminal
        .shows("its record, with its labels", |s| {
            s.contains("labels") && s.contains(&format!("{TEST_LABEL}={}", t.label))
        })
        .await;
    terminal.keys("Escape");
    terminal.resize(40, 12);
    terminal
        .shows("the screen redrawn to 40 columns", |s| {
            fits(40)(s) && !s.contains("IMAGE")
        })
        .await;
    terminal.quits_with("q", &exit_file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_shows_starts_pauses_exits_and_a_lost_engine_in_a_terminal() {
    use whalewatcher_tests::http_proxy::{HttpProxy, Rules};
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "cli-live").await;
    let proxy = HttpProxy::docker(&rig.host_docker, Rules::default());
    let mine = format!("label={TEST_LABEL}={}", t.label);
    let exit_file = std::env::temp_dir().join(format!("{}.exit", t.label));
    let terminal = Terminal::start(
        &t.label,
        &format!(
            "{WHALEWATCH} --live --docker {} --filter {mine}; echo $? > {}; sleep 60",
            proxy.endpoint(),
            exit_file.display()
        ),
    );
    terminal
        .shows("the engine, nothing of this test yet", |s| {
            s.contains("docker.com ") && s.contains(", 0 shown · synced")
        })
        .await;

    let id = t.run("live", &[]).await;
    let name = format!("live-{}", t.label);
    let row = |state: &'static str| {
        let (name, short) = (name.clone(), id[..12].to_owned());
        move |screen: &str| {
            screen.lines().any(|line| {
                line.contains(&name)
                    && line.contains(&short)
                    && line.contains(&format!(" {state} "))
            })
        }
    };
    terminal
        .shows("the started container", row("running"))
        .await;
    terminal
        .shows("one shown", |s| s.contains(", 1 shown · synced"))
        .await;
    t.pause(&id).await;
    terminal.shows("the paused container", row("paused")).await;
    t.unpause(&id).await;
    t.kill(&id).await;
    terminal
        .shows("the exit, marked", row("exited (137)"))
        .await;
    terminal
        .shows("the exited container gone after its mark", |s| {
            !s.contains(&name) && s.contains(", 0 shown")
        })
        .await;

    proxy.cut_and_hold();
    terminal
        .shows("the engine lost", |s| s.contains("· LOST, retrying"))
        .await;
    proxy.restore();
    terminal
        .shows("the engine back", |s| s.contains(", 0 shown · synced"))
        .await;

    terminal.quits_with("C-c", &exit_file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_says_when_an_engine_is_lost_and_when_it_is_back() {
    use whalewatcher_tests::http_proxy::{HttpProxy, Rules};
    let rig = Rig::load();
    let proxy = HttpProxy::docker(&rig.host_docker, Rules::default());
    let (mut child, mut lines) = follow(&proxy.endpoint());
    let mut next_kind = async || {
        let line = lines.next_line().await.unwrap().expect("output goes on");
        let line: Value = serde_json::from_str(&line).unwrap();
        (line["kind"].as_str().unwrap().to_owned(), line)
    };
    // The rig's own engine containers are alive from the start.
    within("a first line", async {
        assert_eq!(next_kind().await.0, "alive")
    })
    .await;

    proxy.cut_and_hold();
    let lost = within("the engine-lost line", async {
        loop {
            let (kind, line) = next_kind().await;
            if kind == "engine-lost" {
                return line;
            }
        }
    })
    .await;
    assert_eq!(lost["schema"], 1);
    assert_eq!(lost["engine"]["api"], proxy.endpoint().as_str());
    assert!(
        lost["error"]
            .as_str()
            .is_some_and(|e| e.contains("the engine at")),
        "{lost}"
    );
    proxy.restore();
    // Other tests' containers may come and go meanwhile: their events may
    // come first, but no second loss.
    let back = within("the engine-back line", async {
        loop {
            let (kind, line) = next_kind().await;
            assert_ne!(kind, "engine-lost", "lost twice: {line}");
            if kind == "engine-back" {
                return line;
            }
        }
    })
    .await;
    assert!(back["error"].is_null());

    let pid = child.id().expect("running");
    whalewatcher_tests::run_command("kill", &["-TERM", &pid.to_string()]);
    let status = within("whalewatch to exit", child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
}

/// Whether a thread of process `pid` waits to write into a full pipe
/// (`pipe_write`, `anon_pipe_write`, `pipe_wait_writable`, by kernel).
fn blocked_on_a_pipe(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks.flatten().any(|task| {
                std::fs::read_to_string(task.path().join("wchan"))
                    .is_ok_and(|wchan| wchan.contains("pipe_w"))
            })
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sigterm_stops_follow_while_nobody_reads_its_output() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "cli-full-pipe").await;
    // 8 alive lines of over 16 KiB each: more than a pipe holds.
    let big = "x".repeat(16 * 1024);
    for n in 0..8 {
        t.run(&format!("big{n}"), &[("ww.big", &big)]).await;
    }
    let mine = format!("label={TEST_LABEL}={}", t.label);
    let mut child = tokio::process::Command::new(WHALEWATCH)
        .args([
            "--docker",
            &rig.host_docker.endpoint,
            "--follow",
            "--filter",
            &mine,
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("whalewatch runs");
    let pid = child.id().expect("running");
    whalewatcher_tests::eventually("whalewatch blocked on its full pipe", || async move {
        blocked_on_a_pipe(pid)
    })
    .await;
    let signalled = std::time::Instant::now();
    whalewatcher_tests::run_command("kill", &["-TERM", &pid.to_string()]);
    let status = within("whalewatch to exit on one SIGTERM", child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
}

#[test]
fn the_docker_clis_tls_variables_reach_a_tls_engine_and_wrong_certificates_say_which() {
    let rig = Rig::load();
    let (tls, tcp) = (&rig.host_docker_tls.endpoint, &rig.host_docker_tcp.endpoint);
    let run = |host: &str, verify: Option<&str>, certs: Option<&str>| {
        whalewatch_with(
            &[],
            &[
                ("DOCKER_HOST", Some(host)),
                ("DOCKER_TLS_VERIFY", verify),
                ("DOCKER_CERT_PATH", certs),
                ("DOCKER_CONTEXT", None),
            ],
        )
    };
    let (code, out, err) = run(tls, Some("1"), Some(&rig.tls.client));
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(first.contains(&format!(" at {tls} ")), "{first}");
    let (code, out, err) = run(tcp, None, None);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(first.contains(&format!(" at {tcp} ")), "{first}");

    for (certs, names) in [
        (
            &rig.tls.wrong_ca,
            format!("not signed by the CA in {}/ca.pem", rig.tls.wrong_ca),
        ),
        (
            &rig.tls.no_client_cert,
            format!(
                "wants a client certificate, and {} has no cert.pem and key.pem",
                rig.tls.no_client_cert
            ),
        ),
    ] {
        let (code, _, stderr) = run(tls, Some("1"), Some(certs));
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "whalewatch: --docker: cannot reach the engine at {tls}: TLS: "
            )) && stderr.contains(&names),
            "{stderr}"
        );
    }
    // A docker context with TLS: its certificates are filed under the
    // SHA-256 of its name, as `docker context create --docker
    // host=…,ca=…,cert=…,key=…` files them.
    let config = std::env::temp_dir().join(whalewatcher_tests::test_label_value("tls-context"));
    let digest = whalewatcher_tests::run_command("sh", &["-c", "printf %s rig-tls | sha256sum"]);
    let meta = config.join("contexts/meta").join(&digest[..64]);
    let certs = config
        .join("contexts/tls")
        .join(&digest[..64])
        .join("docker");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::create_dir_all(&certs).unwrap();
    for file in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(
            std::path::Path::new(&rig.tls.client).join(file),
            certs.join(file),
        )
        .unwrap();
    }
    std::fs::write(
        meta.join("meta.json"),
        serde_json::json!({"Name": "rig-tls", "Metadata": {}, "Endpoints": {"docker": {"Host": tls, "SkipTLSVerify": false}}}).to_string(),
    )
    .unwrap();
    let (code, out, err) = whalewatch_with(
        &[],
        &[
            ("DOCKER_CONFIG", Some(config.to_str().unwrap())),
            ("DOCKER_HOST", None),
            ("DOCKER_CONTEXT", Some("rig-tls")),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(first.contains(&format!(" at {tls} ")), "{first}");
    std::fs::remove_dir_all(&config).unwrap();
}

/// The environment of a user with no Docker of their own: no
/// `DOCKER_HOST`, no docker context (an empty config directory).
fn no_docker_named(config: &std::path::Path) -> Vec<(&'static str, Option<String>)> {
    std::fs::create_dir_all(config).unwrap();
    vec![
        ("DOCKER_HOST", None),
        ("DOCKER_CONTEXT", None),
        ("DOCKER_CONFIG", Some(config.to_str().unwrap().to_owned())),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, Option<String>)]) -> Vec<(&'static str, Option<&'a str>)> {
    env.iter().map(|(k, v)| (*k, v.as_deref())).collect()
}

/// The PIDs of a process in each PID namespace, ours first (`NSpid`).
fn ns_pids(pid: u64) -> Vec<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))
        .expect("an NSpid line")
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_engine_named_every_engine_shows_nested_under_its_container_with_pids_here() {
    let rig = Rig::load();
    let podman = DockerTest::connect(&rig.podman, "cli-discover").await;
    let id = podman.run("nested", &[]).await;
    let config = std::env::temp_dir().join(whalewatcher_tests::test_label_value("no-docker"));
    let env = no_docker_named(&config);

    let (code, json, stderr) = whalewatch_with(&["--json"], &env_refs(&env));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("whalewatch: --discover: not watched: containerd cri (PID "),
        "the host containerd's CRI, which has no events: {stderr}"
    );
    let json: Value = serde_json::from_str(&json).expect("JSON");
    let engines = json["engines"].as_array().unwrap();
    let types: Vec<&str> = engines
        .iter()
        .map(|e| e["engine"]["type"].as_str().unwrap())
        .collect();
    for wanted in ["docker.com", "containerd.io", "podman.io", "k8s.io/cri-api"] {
        assert!(types.contains(&wanted), "{wanted} among {types:?}");
    }
    let host = engines
        .iter()
        .find(|e| e["engine"]["type"] == "docker.com" && e["engine"]["parent"].is_null())
        .expect("the host dockerd");
    // The rig's podman 5.4 (podman 5.8 runs beside it), under its container.
    let podman_engine = engines
        .iter()
        .find(|e| {
            e["engine"]["type"] == "podman.io"
                && e["engine"]["parent"]["name"] == rig.podman.container()
        })
        .expect("podman 5.4, nested under its container");
    let parent = &podman_engine["engine"]["parent"];
    assert_eq!(parent["engine"], host["engine"]["api"]);
    let container = podman_engine["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["containers"].as_array().unwrap())
        .find(|c| c["id"] == id.as_str())
        .expect("the container on podman");
    let (pid, here) = (
        container["pid"].as_u64().unwrap(),
        container["local_pid"].as_u64().expect("a PID here"),
    );
    assert_ne!(pid, here);
    assert_eq!(
        ns_pids(here).get(1),
        Some(&pid),
        "podman's PID, one level down"
    );

    // The table: podman's heading and rows indented under the host's,
    // its PID column the PID here.
    let (code, table, stderr) = whalewatch_with(&[], &env_refs(&env));
    assert_eq!(code, 0, "{stderr}");
    let in_container = format!(" in container {}: ", rig.podman.container());
    let heading = table
        .lines()
        .find(|line| line.contains("podman.io ") && line.contains(&in_container))
        .unwrap_or_else(|| panic!("no heading of podman 5.4 in\n{table}"));
    assert!(heading.starts_with("  podman.io "), "{heading}");
    let row = table
        .lines()
        .find(|line| line.ends_with(&id[..12]))
        .unwrap_or_else(|| panic!("no row for {id} in\n{table}"));
    assert!(row.starts_with("  "), "{row}");
    assert_eq!(
        row.split_whitespace().nth(3),
        Some(here.to_string().as_str()),
        "{row}"
    );
    std::fs::remove_dir_all(&config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_with_discovery_merges_every_engines_events_each_line_naming_its_engine() {
    let rig = Rig::load();
    let podman = DockerTest::connect(&rig.podman, "cli-discover-follow").await;
    let docker = DockerTest::connect(&rig.docker, "cli-discover-follow").await;
    let config = std::env::temp_dir().join(whalewatcher_tests::test_label_value("no-docker"));
    let env = no_docker_named(&config);
    let mut command = tokio::process::Command::new(WHALEWATCH);
    command.arg("--follow");
    for (name, value) in &env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("whalewatch runs");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    within("a first line", lines.next_line()).await.unwrap();

    let on_podman = podman.run("followed", &[]).await;
    let on_docker = docker.run("followed", &[]).await;
    // Started, or alive when it started before following began.
    let mut seen: std::collections::BTreeMap<String, Value> = Default::default();
    within("both containers in the output", async {
        while seen.len() < 2 {
            let line = lines.next_line().await.unwrap().expect("output goes on");
            let line: Value = serde_json::from_str(&line).unwrap();
            let id = line["container"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let kind = line["kind"].as_str().unwrap_or_default();
            if (id == on_podman || id == on_docker) && (kind == "started" || kind == "alive") {
                seen.insert(id, line);
            }
        }
    })
    .await;
    for (id, engine_type, container) in [
        (&on_podman, "podman.io", rig.podman.container()),
        (&on_docker, "docker.com", rig.docker.container()),
    ] {
        let line = &seen[id];
        assert_eq!(line["schema"], 1);
        assert_eq!(line["engine"]["type"], engine_type, "{line}");
        assert_eq!(line["engine"]["parent"]["name"], container, "{line}");
        let (pid, here) = (
            line["container"]["pid"].as_u64().unwrap(),
            line["container"]["local_pid"].as_u64().expect("a PID here"),
        );
        assert_eq!(ns_pids(here).get(1), Some(&pid), "{line}");
    }
    let pid = child.id().expect("running");
    whalewatcher_tests::run_command("kill", &["-INT", &pid.to_string()]);
    let status = within("whalewatch to exit", child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&config).unwrap();
}

/// The GID of the group `name`, from /etc/group.
fn group_id(name: &str) -> u32 {
    let groups = std::fs::read_to_string("/etc/group").expect("/etc/group");
    groups
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| fields.get(2)?.parse().ok())
        .unwrap_or_else(|| panic!("no group {name} (the rig's Docker package makes it)"))
}

/// whalewatch with `args` as the user nobody in the group `docker`, as a
/// user who may run `docker ps` would, in a mount namespace of its own:
/// a fresh `/run` (so none of the host's engine sockets), where the
/// default Docker socket `/run/docker.sock` (`/var/run/docker.sock`) is
/// the rig's host dockerd when `default_socket`; HOME a directory of its
/// own without docker config; no XDG_RUNTIME_DIR. (exit code, stdout,
/// stderr)
fn as_docker_group_user(rig: &Rig, default_socket: bool, args: &[&str]) -> (i32, String, String) {
    let home = std::env::temp_dir().join(whalewatcher_tests::test_label_value("docker-user"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // The rig's socket, bound where the fresh /run cannot hide it.
    let socket = home.join("docker.sock");
    std::fs::write(&socket, "").unwrap();
    let script = r#"set -e
mount --make-rprivate /
mount --bind "$RIG_SOCKET" "$HOME/docker.sock"
mount -t tmpfs tmpfs /run
if [ "$DEFAULT_SOCKET" = yes ]; then
    touch /run/docker.sock
    mount --bind "$HOME/docker.sock" /run/docker.sock
fi
cd "$HOME"
exec setpriv --reuid=65534 --regid=65534 --groups="$DOCKER_GID" "$@""#;
    let output = output_within(
        Command::new("unshare")
            .args(["--mount", "bash", "-c", script, "bash", WHALEWATCH])
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_CONFIG")
            .env_remove("XDG_RUNTIME_DIR")
            .env("HOME", &home)
            .env("RIG_SOCKET", rig.host_docker.socket())
            .env("DEFAULT_SOCKET", if default_socket { "yes" } else { "no" })
            .env("DOCKER_GID", group_id("docker").to_string()),
    )
    .expect("unshare runs");
    std::fs::remove_dir_all(&home).unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_in_the_docker_group_sees_the_docker_of_the_default_socket_without_options() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "cli-docker-user").await;
    let solo = t.run("solo", &[]).await;
    let dockerd = whalewatcher_tests::measure::host_dockerd_pid();

    let (code, table, stderr) = as_docker_group_user(&rig, true, &[]);
    assert_eq!(code, 0, "{stderr}");
    let heading = table.lines().next().expect("a heading");
    assert!(
        heading.starts_with("docker.com ")
            && heading.contains(" at unix:///var/run/docker.sock ")
            && heading.contains(&format!("PID {dockerd}, found at a well-known socket")),
        "{table}"
    );
    assert!(table.contains(&solo[..12]), "{table}");
    // The root engines it cannot look into are said, each with why; the
    // dockerd it reached at its socket is not among them.
    assert!(
        stderr.contains("cannot see its sockets: Permission denied")
            && stderr.contains("looking into other users' engines takes root"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("(PID {dockerd})")),
        "the dockerd reached is said to be unreached: {stderr}"
    );

    // The JSON says how it was found, with the PID of the dockerd that
    // listens there; the container's PID is one here.
    let (code, json, stderr) = as_docker_group_user(&rig, true, &["--json"]);
    assert_eq!(code, 0, "{stderr}");
    let json: Value = serde_json::from_str(&json).expect("JSON");
    let engines = json["engines"].as_array().expect("engines");
    assert_eq!(engines.len(), 1, "{json:#}");
    assert_eq!(
        engines[0]["engine"]["found"],
        serde_json::json!({"by": "socket", "path": "/var/run/docker.sock", "pid": dockerd}),
        "{json:#}"
    );
    let container = engines[0]["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|project| project["containers"].as_array().into_iter().flatten())
        .find(|c| c["id"] == solo.as_str())
        .unwrap_or_else(|| panic!("{solo} listed: {json:#}"));
    assert_eq!(container["local_pid"], container["pid"], "{container:#}");
}

#[test]
fn a_user_who_can_reach_no_engine_is_told_so_and_whalewatch_fails() {
    let rig = Rig::load();
    let (code, stdout, stderr) = as_docker_group_user(&rig, false, &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(stdout, "");
    // Every engine process of the rig, each with why, then the verdict.
    for process in ["dockerd", "containerd", "podman"] {
        assert!(
            stderr.lines().any(|line| line.starts_with(&format!(
                "whalewatch: --discover: not watched: {process} (PID "
            )) && line
                .ends_with("cannot see its sockets: Permission denied (os error 13)")),
            "{process}: {stderr}"
        );
    }
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("whalewatch: no engine to watch among ")
            && last.contains("could be watched (name one with --docker"),
        "{stderr}"
    );
}
