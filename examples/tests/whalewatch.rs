//! The `whalewatch` CLI as a user runs it, against the rig's host dockerd
//! and its CRI engine.

use std::process::{Command, Stdio};

use serde_json::Value;
use whalewatcher_tests::docker::DockerTest;
use whalewatcher_tests::rig::Rig;
use whalewatcher_tests::{within, TEST_LABEL};

const WHALEWATCH: &str = env!("CARGO_BIN_EXE_whalewatch");

/// Runs whalewatch to its end; (exit code, stdout, stderr).
fn whalewatch(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(WHALEWATCH)
        .args(args)
        .output()
        .expect("whalewatch runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_groups_by_project_and_json_has_the_same_containers() {
    let rig = Rig::load();
    let t = DockerTest::connect(&rig.host_docker, "cli-table").await;
    let project = format!("shop-{}", t.label);
    let web = t
        .run("web", &[("com.docker.compose.project", &project)])
        .await;
    let solo = t.run("solo", &[]).await;
    let frozen = t.run("frozen", &[]).await;
    t.pause(&frozen).await;

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
    assert_eq!(json[0]["engine"]["type"], "docker.com");
    let projects = json[0]["projects"].as_array().unwrap();
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
        .alive()
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
    let mut child = tokio::process::Command::new(WHALEWATCH)
        .args(["--docker", &rig.host_docker.endpoint, "--follow"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("whalewatch runs");
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
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
                assert_eq!(event["engine"], rig.host_docker.endpoint.as_str());
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

#[test]
fn bad_endpoints_get_one_line_errors_that_say_what_to_check() {
    let (code, _, stderr) = whalewatch(&["--docker", "unix:///run/whalewatcher-rig/nope.sock"]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("whalewatch: --docker: cannot reach the engine at unix:///run/whalewatcher-rig/nope.sock")
            && stderr.contains("No such file or directory")
            && stderr.contains("is the engine running?"),
        "{stderr}"
    );

    let (code, _, stderr) = whalewatch(&["--docker", "ftp://x"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("invalid engine endpoint \"ftp://x\""),
        "{stderr}"
    );

    let rig = Rig::load();
    // A Docker socket is no containerd.
    let (code, _, stderr) = whalewatch(&["--containerd", rig.host_docker.socket()]);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("(is it a containerd endpoint?)"),
        "{stderr}"
    );

    // containerd 1.6: no CRI events.
    let (code, _, stderr) = whalewatch(&["--cri", rig.host_containerd.socket()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("does not support CRI container events"),
        "{stderr}"
    );
}

#[test]
fn a_socket_the_user_may_not_open_says_permission_denied_and_what_to_try() {
    let rig = Rig::load();
    // The rig's sockets belong to root (group docker, mode 660); run
    // whalewatch as nobody, without supplementary groups.
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            WHALEWATCH,
        ])
        .args(["--docker", &rig.host_docker.endpoint])
        .output()
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("Permission denied") && stderr.contains("try as root"),
        "{stderr}"
    );
}
