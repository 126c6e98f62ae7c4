//! Pods and containers on the rig's containerd CRI plugin, through the CRI
//! API (no crictl on the rig's machines).
//!
//! containerd 1.7's CRI container events are one shared queue, not a
//! broadcast: two event streams on one engine split the events. Tests that
//! read them must not run at the same time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use containerd_client::tonic::transport::Channel;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, ListContainersRequest, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxState,
    PodSandboxStatusRequest, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};

use crate::{rig, test_label_value, TEST_LABEL};

/// The annotation key every pod and container the tests make carries:
/// `pod NAME` or `container NAME`.
pub const ANNOTATION: &str = "whalewatcher-rig.test/annotation";

/// One test's view of the CRI API; its pods carry its label and are
/// removed when this is dropped.
#[derive(Debug)]
pub struct CriTest {
    /// The CRI runtime service.
    pub client: RuntimeServiceClient<Channel>,
    /// The engine.
    pub engine: rig::Engine,
    /// This test's value of [`TEST_LABEL`].
    pub label: String,
    pods: Mutex<Vec<String>>,
}

/// A pod sandbox the test made, and the configuration its containers need.
#[derive(Clone, Debug)]
pub struct Pod {
    /// The sandbox id.
    pub id: String,
    /// Its configuration.
    pub config: PodSandboxConfig,
}

impl CriTest {
    /// Connects to the CRI runtime `engine` for the test `test`.
    pub async fn connect(engine: &rig::Engine, test: &str) -> Self {
        let engine = engine.clone();
        let channel = containerd_client::connect(engine.socket())
            .await
            .unwrap_or_else(|e| panic!("CRI at {} does not answer: {e}", engine.endpoint));
        CriTest {
            // Lists and statuses as large as the engine sends them.
            client: RuntimeServiceClient::new(channel).max_decoding_message_size(usize::MAX),
            engine,
            label: test_label_value(test),
            pods: Mutex::default(),
        }
    }

    /// Whether the CRI runtime `engine` answers a version request.
    pub async fn answers(engine: &rig::Engine) -> bool {
        let Ok(channel) = containerd_client::connect(engine.socket()).await else {
            return false;
        };
        RuntimeServiceClient::new(channel)
            .version(k8s_cri::v1::VersionRequest::default())
            .await
            .is_ok()
    }

    /// Runs a pod sandbox `name` in Kubernetes namespace `namespace`, in
    /// the host network namespace (the engine container's: loopback only)
    /// and without a hostname, so no CNI is needed.
    pub async fn run_pod(&self, name: &str, namespace: &str) -> Pod {
        self.run_pod_with(name, namespace, |_| {}).await
    }

    /// Like [`run_pod`](Self::run_pod), with the configuration changed by
    /// `change` first.
    pub async fn run_pod_with(
        &self,
        name: &str,
        namespace: &str,
        change: impl FnOnce(&mut PodSandboxConfig),
    ) -> Pod {
        let mut config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                uid: format!("{name}-{}", self.label),
                namespace: namespace.to_owned(),
                attempt: 0,
            }),
            labels: HashMap::from([(TEST_LABEL.to_owned(), self.label.clone())]),
            annotations: HashMap::from([(ANNOTATION.to_owned(), format!("pod {name}"))]),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        change(&mut config);
        let id = rig::start_past_runc_init_deaths(name, || async {
            let mut client = self.client.clone();
            client
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: String::new(),
                })
                .await
        })
        .await
        .unwrap_or_else(|e| panic!("cannot run pod {name}: {e}"))
        .into_inner()
        .pod_sandbox_id;
        self.pods.lock().unwrap().push(id.clone());
        Pod { id, config }
    }

    /// Creates and starts a sleeping container `name` in `pod`; returns its
    /// id.
    pub async fn run_container(&self, pod: &Pod, name: &str) -> String {
        self.run_container_command(pod, name, &["sleep", "2147483647"])
            .await
    }

    /// Like [`run_container`](Self::run_container), running `command`
    /// instead of sleeping.
    pub async fn run_container_command(&self, pod: &Pod, name: &str, command: &[&str]) -> String {
        self.run_container_with(pod, name, command, HashMap::new(), |_| {})
            .await
    }

    /// Like [`run_container`](Self::run_container), with the configuration
    /// changed by `change` first.
    pub async fn run_container_changed(
        &self,
        pod: &Pod,
        name: &str,
        change: impl FnOnce(&mut ContainerConfig),
    ) -> String {
        self.run_container_with(pod, name, &["sleep", "2147483647"], HashMap::new(), change)
            .await
    }

    /// Like [`run_container`](Self::run_container), with `annotations`
    /// besides the test's own.
    pub async fn run_annotated_container(
        &self,
        pod: &Pod,
        name: &str,
        annotations: HashMap<String, String>,
    ) -> String {
        self.run_container_with(pod, name, &["sleep", "2147483647"], annotations, |_| {})
            .await
    }

    async fn run_container_with(
        &self,
        pod: &Pod,
        name: &str,
        command: &[&str],
        mut annotations: HashMap<String, String>,
        change: impl FnOnce(&mut ContainerConfig),
    ) -> String {
        annotations.insert(ANNOTATION.to_owned(), format!("container {name}"));
        let mut config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_owned(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.engine.image().to_owned(),
                ..Default::default()
            }),
            command: command.iter().map(|arg| (*arg).to_owned()).collect(),
            labels: HashMap::from([(TEST_LABEL.to_owned(), self.label.clone())]),
            annotations,
            ..Default::default()
        };
        change(&mut config);
        let create_and_start = || async {
            let mut client = self.client.clone();
            let id = client
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: pod.id.clone(),
                    config: Some(config.clone()),
                    sandbox_config: Some(pod.config.clone()),
                })
                .await
                .unwrap_or_else(|e| panic!("cannot create container {name}: {e}"))
                .into_inner()
                .container_id;
            let started = client
                .start_container(StartContainerRequest {
                    container_id: id.clone(),
                })
                .await;
            if started.is_err() {
                let _ = client
                    .remove_container(RemoveContainerRequest {
                        container_id: id.clone(),
                    })
                    .await;
            }
            started.map(|_| id)
        };
        rig::start_past_runc_init_deaths(name, create_and_start)
            .await
            .unwrap_or_else(|e| panic!("cannot start container {name}: {e}"))
    }

    /// Stops a container.
    pub async fn stop_container(&self, id: &str) {
        self.client
            .clone()
            .stop_container(StopContainerRequest {
                container_id: id.to_owned(),
                timeout: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("cannot stop container {id}: {e}"));
    }

    /// Runs `command` in container `id` and waits for it to end.
    pub async fn exec(&self, id: &str, command: &[&str]) {
        let answer = self
            .client
            .clone()
            .exec_sync(ExecSyncRequest {
                container_id: id.to_owned(),
                cmd: command.iter().map(|arg| (*arg).to_owned()).collect(),
                timeout: 10,
            })
            .await
            .unwrap_or_else(|e| panic!("cannot exec in {id}: {e}"))
            .into_inner();
        assert_eq!(answer.exit_code, 0, "{command:?} in {id} failed");
    }

    /// Stops a pod sandbox and its containers.
    pub async fn stop_pod(&self, pod: &Pod) {
        self.client
            .clone()
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("cannot stop pod {}: {e}", pod.id));
    }

    /// What the engine itself says of this test's alive sandboxes and
    /// containers: id → PID (from the verbose status).
    pub async fn truth(&self) -> BTreeMap<String, u32> {
        let mut client = self.client.clone();
        let mine = HashMap::from([(TEST_LABEL.to_owned(), self.label.clone())]);
        let pods = client
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    label_selector: mine.clone(),
                    ..Default::default()
                }),
            })
            .await
            .expect("list pods")
            .into_inner()
            .items;
        let containers = client
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    label_selector: mine,
                    ..Default::default()
                }),
            })
            .await
            .expect("list containers")
            .into_inner()
            .containers;
        let mut truth = BTreeMap::new();
        for pod in pods {
            if pod.state != PodSandboxState::SandboxReady as i32 {
                continue;
            }
            let status = client
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: pod.id.clone(),
                    verbose: true,
                })
                .await;
            let Some(status) = present(status, &pod.id) else {
                continue;
            };
            let ready = status.status.as_ref().map(|s| s.state)
                == Some(PodSandboxState::SandboxReady as i32);
            if ready {
                truth.insert(pod.id, alive_pid(&status.info, "sandbox"));
            }
        }
        for container in containers {
            if container.state != ContainerState::ContainerRunning as i32 {
                continue;
            }
            let status = client
                .container_status(ContainerStatusRequest {
                    container_id: container.id.clone(),
                    verbose: true,
                })
                .await;
            let Some(status) = present(status, &container.id) else {
                continue;
            };
            let running = status.status.as_ref().map(|s| s.state)
                == Some(ContainerState::ContainerRunning as i32);
            if running {
                truth.insert(container.id, alive_pid(&status.info, "container"));
            }
        }
        truth
    }

    async fn remove_pods(socket: String, label: String) {
        let Ok(channel) = containerd_client::connect(socket).await else {
            return;
        };
        let mut client = RuntimeServiceClient::new(channel);
        let filter = PodSandboxFilter {
            label_selector: HashMap::from([(TEST_LABEL.to_owned(), label)]),
            ..Default::default()
        };
        let Ok(pods) = client
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await
        else {
            return;
        };
        for pod in pods.into_inner().items {
            let id = pod.id;
            let _ = client
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            let _ = client
                .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await;
        }
    }
}

/// The PID in a verbose status's `info` JSON.
/// A status answer, or `None` when the engine no longer knows `id`
/// (removed since it was listed). Any other error fails the test: the
/// truth must not quietly lose a container.
fn present<T>(
    answer: Result<containerd_client::tonic::Response<T>, containerd_client::tonic::Status>,
    id: &str,
) -> Option<T> {
    match answer {
        Ok(answer) => Some(answer.into_inner()),
        Err(status) if status.code() == containerd_client::tonic::Code::NotFound => None,
        Err(status) => panic!("cannot read the status of {id}: {status}"),
    }
}

/// The PID in the verbose info of an alive sandbox or container; one
/// without is a broken engine, not a gone container.
fn alive_pid(info: &HashMap<String, String>, what: &str) -> u32 {
    let parsed: Option<serde_json::Value> = info
        .get("info")
        .and_then(|info| serde_json::from_str(info).ok());
    parsed
        .and_then(|info| info["pid"].as_u64())
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or_else(|| panic!("an alive {what} without a PID in its info: {info:?}"))
}

impl Drop for CriTest {
    /// Removes this test's pods (and so their containers), also after a
    /// failure: on a runtime and connection of its own, as this may run in
    /// a panic, or block the runtime the test's own connection lives on.
    fn drop(&mut self) {
        if self.pods.lock().map(|p| p.is_empty()).unwrap_or(false) {
            return;
        }
        let (socket, label) = (self.engine.socket().to_owned(), self.label.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup")
                .block_on(CriTest::remove_pods(socket, label));
        })
        .join();
    }
}
