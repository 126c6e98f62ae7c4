//! The parse floor of a sync: what the client receives from each kind of
//! engine, deserialized into just the fields a record keeps, and nothing
//! else. Fields the record does not keep are skipped by the decoders
//! (serde's `IgnoredAny`, prost's unknown tags), as cheaply as they can
//! be.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;

use crate::loopback::Kind;

/// The fields of a Docker inspect body that the record keeps.
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerInspect {
    id: String,
    name: String,
    image: String,
    created: String,
    restart_count: i64,
    state: DockerState,
    config: DockerConfig,
    host_config: DockerHostConfig,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerState {
    running: bool,
    paused: bool,
    pid: i64,
    started_at: String,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerConfig {
    image: String,
    labels: HashMap<String, String>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerHostConfig {
    privileged: bool,
}

/// A containerd container record: id, labels, image, creation time.
#[derive(Clone, PartialEq, prost::Message)]
struct ContainerdRecord {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(map = "string, string", tag = "2")]
    labels: HashMap<String, String>,
    #[prost(string, tag = "3")]
    image: String,
    #[prost(message, optional, tag = "8")]
    created_at: Option<prost_types::Timestamp>,
}

/// One message of containerd's record stream.
#[derive(Clone, PartialEq, prost::Message)]
struct ContainerdRecordMessage {
    #[prost(message, optional, tag = "1")]
    container: Option<ContainerdRecord>,
}

/// A containerd task: whose, its PID and state.
#[derive(Clone, PartialEq, prost::Message)]
struct ContainerdTask {
    #[prost(string, tag = "1")]
    container_id: String,
    #[prost(string, tag = "2")]
    id: String,
    #[prost(uint32, tag = "3")]
    pid: u32,
    #[prost(int32, tag = "4")]
    status: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ContainerdTasks {
    #[prost(message, repeated, tag = "1")]
    tasks: Vec<ContainerdTask>,
}

/// A sandbox's name, uid, namespace and attempt.
#[derive(Clone, PartialEq, prost::Message)]
struct CriMetadata {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    uid: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(uint32, tag = "4")]
    attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CriImage {
    #[prost(string, tag = "1")]
    image: String,
}

/// A container's name and attempt.
#[derive(Clone, PartialEq, prost::Message)]
struct CriContainerMetadata {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    attempt: u32,
}

/// What a container's status keeps.
#[derive(Clone, PartialEq, prost::Message)]
struct CriContainerStatus {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(message, optional, tag = "2")]
    metadata: Option<CriContainerMetadata>,
    #[prost(int32, tag = "3")]
    state: i32,
    #[prost(int64, tag = "4")]
    created_at: i64,
    #[prost(int64, tag = "5")]
    started_at: i64,
    #[prost(message, optional, tag = "8")]
    image: Option<CriImage>,
    #[prost(string, tag = "9")]
    image_ref: String,
    #[prost(map = "string, string", tag = "12")]
    labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "13")]
    annotations: HashMap<String, String>,
    #[prost(string, tag = "17")]
    image_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CriSandboxStatus {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(message, optional, tag = "2")]
    metadata: Option<CriMetadata>,
    #[prost(int32, tag = "3")]
    state: i32,
    #[prost(int64, tag = "4")]
    created_at: i64,
    #[prost(map = "string, string", tag = "7")]
    labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "8")]
    annotations: HashMap<String, String>,
}

/// A container's verbose status: the status, and the info whose JSON
/// carries the PID.
#[derive(Clone, PartialEq, prost::Message)]
struct CriContainerVerbose {
    #[prost(message, optional, tag = "1")]
    status: Option<CriContainerStatus>,
    #[prost(map = "string, string", tag = "2")]
    info: HashMap<String, String>,
}

/// A sandbox's verbose status.
#[derive(Clone, PartialEq, prost::Message)]
struct CriSandboxVerbose {
    #[prost(message, optional, tag = "1")]
    status: Option<CriSandboxStatus>,
    #[prost(map = "string, string", tag = "2")]
    info: HashMap<String, String>,
}

/// What the verbose info's JSON gives a record.
#[allow(dead_code)]
#[derive(Deserialize)]
struct CriInfo {
    #[serde(default)]
    pid: u32,
    #[serde(rename = "sandboxID", default)]
    sandbox_id: Option<String>,
}

/// An entry of a CRI list: the id is all the sync takes from it.
#[derive(Clone, PartialEq, prost::Message)]
struct CriListed {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CriList {
    #[prost(message, repeated, tag = "1")]
    items: Vec<CriListed>,
}

/// Decodes one message a sync receives from an engine of `kind` — `what`
/// says which (see [`crate::loopback_grpc::sync_messages`]) — into the
/// fields kept.
pub fn parse(kind: Kind, what: &str, message: &Bytes) {
    use prost::Message;
    fn info(info: &HashMap<String, String>) -> CriInfo {
        serde_json::from_str(info.get("info").expect("info")).expect("info JSON")
    }
    match (kind, what) {
        (Kind::Docker, _) => {
            let kept: DockerInspect = serde_json::from_slice(message).expect("a body");
            std::hint::black_box(kept);
        }
        (Kind::Containerd, "record") => {
            std::hint::black_box(
                ContainerdRecordMessage::decode(message.as_ref()).expect("a record"),
            );
        }
        (Kind::Containerd, "tasks") => {
            std::hint::black_box(ContainerdTasks::decode(message.as_ref()).expect("tasks"));
        }
        (Kind::Cri, "sandboxes" | "containers") => {
            std::hint::black_box(CriList::decode(message.as_ref()).expect("a list"));
        }
        (Kind::Cri, "container") => {
            let verbose = CriContainerVerbose::decode(message.as_ref()).expect("a status");
            std::hint::black_box(info(&verbose.info));
            std::hint::black_box(verbose);
        }
        (Kind::Cri, "sandbox") => {
            let verbose = CriSandboxVerbose::decode(message.as_ref()).expect("a status");
            std::hint::black_box(info(&verbose.info));
            std::hint::black_box(verbose);
        }
        _ => panic!("no floor for {kind:?} {what}"),
    }
}

/// Decodes one message as [`parse`] does, into the full model the engine
/// crates' dependencies define (bollard's inspect, containerd-client's
/// record and tasks, k8s-cri's statuses): what the decode costs when
/// nothing is skipped.
pub fn parse_full(kind: Kind, what: &str, message: &Bytes) {
    use prost::Message;
    match (kind, what) {
        (Kind::Docker, _) => {
            let full: bollard::models::ContainerInspectResponse =
                serde_json::from_slice(message).expect("a body");
            std::hint::black_box(full);
        }
        (Kind::Containerd, "record") => {
            let full =
                containerd_client::services::v1::ListContainerMessage::decode(message.as_ref());
            std::hint::black_box(full.expect("a record"));
        }
        (Kind::Containerd, "tasks") => {
            let full = containerd_client::services::v1::ListTasksResponse::decode(message.as_ref());
            std::hint::black_box(full.expect("tasks"));
        }
        (Kind::Cri, "sandboxes") => {
            let full = k8s_cri::v1::ListPodSandboxResponse::decode(message.as_ref());
            std::hint::black_box(full.expect("a list"));
        }
        (Kind::Cri, "containers") => {
            let full = k8s_cri::v1::ListContainersResponse::decode(message.as_ref());
            std::hint::black_box(full.expect("a list"));
        }
        (Kind::Cri, "container") => {
            let full =
                k8s_cri::v1::ContainerStatusResponse::decode(message.as_ref()).expect("a status");
            let info: serde_json::Value =
                serde_json::from_str(&full.info["info"]).expect("info JSON");
            std::hint::black_box((full, info));
        }
        (Kind::Cri, "sandbox") => {
            let full =
                k8s_cri::v1::PodSandboxStatusResponse::decode(message.as_ref()).expect("a status");
            let info: serde_json::Value =
                serde_json::from_str(&full.info["info"]).expect("info JSON");
            std::hint::black_box((full, info));
        }
        _ => panic!("no full model for {kind:?} {what}"),
    }
}
