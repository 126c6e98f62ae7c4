//! Containers on the Docker-API engines — host dockerd, dockerd 26 and
//! podman — through bollard.

use std::collections::{BTreeMap, HashMap};

/// The host configuration of a container to run, as bollard models it.
pub use bollard::models::HostConfig;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::{Docker, API_DEFAULT_VERSION};

use crate::{rig, test_label_value, TEST_LABEL};

/// One test's view of a Docker-API engine: a client, and a label on every
/// container the test makes, which are removed when this is dropped.
#[derive(Debug)]
pub struct DockerTest {
    /// The client, for the test's own calls.
    pub docker: Docker,
    /// The engine.
    pub engine: rig::Engine,
    /// This test's value of [`TEST_LABEL`].
    pub label: String,
}

impl DockerTest {
    /// Connects to `engine` for the test named `test`; fails the test with
    /// the reason when the engine does not answer.
    pub async fn connect(engine: &rig::Engine, test: &str) -> Self {
        let docker = Docker::connect_with_unix(engine.socket(), 30, API_DEFAULT_VERSION)
            .unwrap_or_else(|e| panic!("bad endpoint {}: {e}", engine.endpoint))
            .negotiate_version()
            .await
            .unwrap_or_else(|e| panic!("the engine at {} does not answer: {e}", engine.endpoint));
        DockerTest {
            docker,
            engine: engine.clone(),
            label: test_label_value(test),
        }
    }

    /// A filter that selects this test's containers, for list and events.
    pub fn label_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_owned(),
            vec![format!("{TEST_LABEL}={}", self.label)],
        )])
    }

    /// Creates and starts a container named `name` (made unique) that
    /// sleeps, without network, with the test label and `labels`; returns
    /// its id.
    pub async fn run(&self, name: &str, labels: &[(&str, &str)]) -> String {
        self.run_with(name, labels, HostConfig::default()).await
    }

    /// Like [`run`](Self::run), with a host configuration (for example
    /// `privileged`); the network is always none.
    pub async fn run_with(&self, name: &str, labels: &[(&str, &str)], host: HostConfig) -> String {
        let id = self.create(name, labels, host).await;
        rig::start_past_runc_init_deaths(name, || self.docker.start_container(&id, None))
            .await
            .unwrap_or_else(|e| panic!("cannot start {name} on {}: {e}", self.engine.endpoint));
        id
    }

    /// Like [`run_with`](Self::run_with), running `command` instead of
    /// sleeping.
    pub async fn run_command(&self, name: &str, command: &[&str], host: HostConfig) -> String {
        let id = self.create_running(name, &[], host, command).await;
        rig::start_past_runc_init_deaths(name, || self.docker.start_container(&id, None))
            .await
            .unwrap_or_else(|e| panic!("cannot start {name} on {}: {e}", self.engine.endpoint));
        id
    }

    /// Creates (but does not start) a container like [`run`](Self::run).
    pub async fn create(&self, name: &str, labels: &[(&str, &str)], host: HostConfig) -> String {
        self.create_running(name, labels, host, &["sleep", "2147483647"])
            .await
    }

    async fn create_running(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        host: HostConfig,
        command: &[&str],
    ) -> String {
        let mut all: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.insert(TEST_LABEL.to_owned(), self.label.clone());
        let body = ContainerCreateBody {
            image: Some(self.engine.image().to_owned()),
            cmd: Some(command.iter().map(|arg| (*arg).to_owned()).collect()),
            labels: Some(all),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..host
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&format!("{name}-{}", self.label))
            .build();
        self.docker
            .create_container(Some(options), body)
            .await
            .unwrap_or_else(|e| panic!("cannot create {name} on {}: {e}", self.engine.endpoint))
            .id
    }

    /// What the engine says of this test's alive (running or paused)
    /// containers: id → PID. All are inspected: podman's list without
    /// `all` leaves out paused ones.
    pub async fn truth(&self) -> BTreeMap<String, u32> {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&self.label_filter())
            .build();
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .unwrap_or_else(|e| panic!("cannot list on {}: {e}", self.engine.endpoint));
        let mut alive = BTreeMap::new();
        for id in listed.into_iter().filter_map(|c| c.id) {
            let Some(inspected) = self.inspect_if_present(&id).await else {
                continue;
            };
            let state = inspected.state.unwrap_or_default();
            if state.running == Some(true) || state.paused == Some(true) {
                alive.insert(id, u32::try_from(state.pid.unwrap_or(0)).unwrap_or(0));
            }
        }
        alive
    }

    /// The engine's inspect of `id`; `None` when the engine no longer
    /// knows it (removed since it was listed). Any other error fails the
    /// test: the truth must not quietly lose a container.
    pub async fn inspect_if_present(&self, id: &str) -> Option<ContainerInspectResponse> {
        match self.docker.inspect_container(id, None).await {
            Ok(inspected) => Some(inspected),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => None,
            // podman's answer to an inspect that lost the race to a removal.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message,
            }) if message.ends_with("no such container") => None,
            Err(error) => panic!("cannot inspect {id} on {}: {error}", self.engine.endpoint),
        }
    }

    /// Pauses a container.
    pub async fn pause(&self, id: &str) {
        self.docker
            .pause_container(id)
            .await
            .unwrap_or_else(|e| panic!("cannot pause {id}: {e}"));
    }

    /// Unpauses a container.
    pub async fn unpause(&self, id: &str) {
        self.docker
            .unpause_container(id)
            .await
            .unwrap_or_else(|e| panic!("cannot unpause {id}: {e}"));
    }

    /// Kills a container with SIGKILL.
    pub async fn kill(&self, id: &str) {
        let options = KillContainerOptionsBuilder::new().signal("KILL").build();
        self.docker
            .kill_container(id, Some(options))
            .await
            .unwrap_or_else(|e| panic!("cannot kill {id}: {e}"));
    }

    /// Removes a container, killing it if need be.
    pub async fn remove(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        self.docker
            .remove_container(id, Some(options))
            .await
            .unwrap_or_else(|e| panic!("cannot remove {id}: {e}"));
    }
}

/// How many containers a test's cleanup removes with one command.
const CLEANUP_BATCH: usize = 20;

impl Drop for DockerTest {
    /// Removes this test's containers, also when the test failed: through
    /// the docker CLI, which needs no runtime (this may run in a panic).
    fn drop(&mut self) {
        let filter = format!("label={TEST_LABEL}={}", self.label);
        // The unix socket, also behind a relay: the docker CLI reaches the
        // TLS relay only with certificates it is not given here.
        let socket = format!("unix://{}", self.engine.socket());
        let host = ["-H", socket.as_str()];
        let docker = |args: &[&str]| {
            crate::commands::output_within(
                std::process::Command::new("docker").args([&host[..], args].concat()),
            )
            .map_err(|e| eprintln!("cleanup of {}: {e}", self.label))
            .ok()
            .filter(|output| output.status.success())
        };
        // Never panics: this may run while a failed test unwinds, perhaps
        // with the engine down.
        let Some(listed) = docker(&["ps", "-aq", "--filter", &filter]) else {
            eprintln!("cannot list the containers of {} for cleanup", self.label);
            return;
        };
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let ids: Vec<&str> = listed.split_whitespace().collect();
        // In small batches: the docker CLI works on 50 at once, and the
        // rig's dockerd 20.10 was seen to deadlock removing 200 at once.
        for batch in ids.chunks(CLEANUP_BATCH) {
            // Kill first: podman's forced remove otherwise waits out the
            // stop timeout, as `sleep` (PID 1) ignores SIGTERM. Stopped
            // ones make kill fail, which is fine.
            docker(&[&["kill"], batch].concat());
            if docker(&[&["rm", "-f", "-v"], batch].concat()).is_none() {
                eprintln!("cannot remove the containers of {}", self.label);
            }
        }
    }
}
