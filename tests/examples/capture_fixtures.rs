//! Captures the gRPC records the loopback containerd and CRI endpoints
//! (`whalewatcher_tests::loopback_grpc`) serve, from the rig's containerd
//! 1.7: a running pod with one sleeping container through the CRI API,
//! and a running container through the native API. Everything it makes
//! carries the test label and is removed again.
//!
//! Run with the rig up (`docker/setup`):
//! `cargo run -p whalewatcher-tests --example capture_fixtures`; it writes
//! `tests/fixtures/cri-*-containerd-1.7.json` (the verbose status
//! responses, as JSON) and `tests/fixtures/containerd-1.7-*.pb` (the
//! container record and its task, protobuf-encoded: containerd's types
//! have no JSON form here).

use std::path::PathBuf;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{GetContainerRequest, GetRequest};
use k8s_cri::v1::{ContainerStatusRequest, PodSandboxStatusRequest};
use prost::Message;
use whalewatcher_tests::containerd::{namespaced, ContainerdTest};
use whalewatcher_tests::cri::CriTest;
use whalewatcher_tests::rig::Rig;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn write(name: &str, bytes: &[u8]) {
    std::fs::write(fixture(name), bytes).unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
    println!("wrote tests/fixtures/{name} ({} bytes)", bytes.len());
}

#[tokio::main]
async fn main() {
    let rig = Rig::load();

    let cri = CriTest::connect(&rig.containerd, "capture").await;
    let pod = cri.run_pod("capture", "default").await;
    let id = cri.run_container(&pod, "sleeper").await;
    let mut client = cri.client.clone();
    let container = client
        .container_status(ContainerStatusRequest {
            container_id: id,
            verbose: true,
        })
        .await
        .expect("the container's verbose status")
        .into_inner();
    let sandbox = client
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: true,
        })
        .await
        .expect("the sandbox's verbose status")
        .into_inner();
    write(
        "cri-container-status-containerd-1.7.json",
        &pretty(&container),
    );
    write("cri-sandbox-status-containerd-1.7.json", &pretty(&sandbox));
    cri.stop_pod(&pod).await;

    let native = ContainerdTest::connect(&rig.containerd, "capture").await;
    let namespace = "capture";
    native.run(
        namespace,
        "capture-sleeper",
        &[("com.example.team", "capture")],
    );
    let record = ContainersClient::new(native.channel.clone())
        .get(namespaced(
            GetContainerRequest {
                id: "capture-sleeper".to_owned(),
            },
            namespace,
        ))
        .await
        .expect("the container record")
        .into_inner()
        .container
        .expect("a container");
    let task = TasksClient::new(native.channel.clone())
        .get(namespaced(
            GetRequest {
                container_id: "capture-sleeper".to_owned(),
                exec_id: String::new(),
            },
            namespace,
        ))
        .await
        .expect("the task")
        .into_inner()
        .process
        .expect("a process");
    write("containerd-1.7-container.pb", &record.encode_to_vec());
    write("containerd-1.7-task.pb", &task.encode_to_vec());
}

fn pretty(response: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(response).expect("JSON")
}
