//! One shape for what a test runs on any engine of the rig and what the
//! engine says is alive, so that one scenario (restarts, cut streams) runs
//! on Docker, podman, containerd and CRI alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::containerd::ContainerdTest;
use crate::cri::CriTest;
use crate::docker::DockerTest;

/// What a test runs on an engine, and what the engine says is alive.
#[async_trait]
pub trait Workload: Send + Sync {
    /// This test's label value.
    fn label(&self) -> &str;
    /// Starts one unit named `name` (a container; on CRI a pod with one).
    async fn start(&self, name: &str);
    /// The engine's truth about this test's alive containers: id → PID.
    async fn truth(&self) -> BTreeMap<String, u32>;
    /// Whether the engine answers.
    async fn answers(&self) -> bool;
}

/// Containers on a Docker-API engine.
#[derive(Debug)]
pub struct MobyWorkload(pub DockerTest);

#[async_trait]
impl Workload for MobyWorkload {
    fn label(&self) -> &str {
        &self.0.label
    }
    async fn start(&self, name: &str) {
        self.0.run(name, &[]).await;
    }
    async fn truth(&self) -> BTreeMap<String, u32> {
        self.0.truth().await
    }
    async fn answers(&self) -> bool {
        self.0.docker.ping().await.is_ok()
    }
}

/// Containers in one namespace of containerd (run by `ctr`, which blocks:
/// on the blocking pool).
#[derive(Debug)]
pub struct ContainerdWorkload {
    test: Arc<ContainerdTest>,
    namespace: &'static str,
}

impl ContainerdWorkload {
    /// Containers of `test` in `namespace`.
    pub fn new(test: Arc<ContainerdTest>, namespace: &'static str) -> Self {
        ContainerdWorkload { test, namespace }
    }
}

#[async_trait]
impl Workload for ContainerdWorkload {
    fn label(&self) -> &str {
        &self.test.label
    }
    async fn start(&self, name: &str) {
        let (t, namespace) = (self.test.clone(), self.namespace);
        let id = format!("{name}-{}", t.label);
        tokio::task::spawn_blocking(move || t.run(namespace, &id, &[]))
            .await
            .unwrap();
    }
    async fn truth(&self) -> BTreeMap<String, u32> {
        let (t, namespace) = (self.test.clone(), self.namespace);
        tokio::task::spawn_blocking(move || t.truth(&[namespace]))
            .await
            .unwrap()
            .into_iter()
            .map(|(id, (pid, _))| (id, pid))
            .collect()
    }
    async fn answers(&self) -> bool {
        let t = self.test.clone();
        tokio::task::spawn_blocking(move || t.answers())
            .await
            .unwrap()
    }
}

/// Pods with one container each on a CRI runtime.
#[derive(Debug)]
pub struct CriWorkload(pub CriTest);

#[async_trait]
impl Workload for CriWorkload {
    fn label(&self) -> &str {
        &self.0.label
    }
    async fn start(&self, name: &str) {
        let pod = self.0.run_pod(name, "faults").await;
        self.0.run_container(&pod, "main").await;
    }
    async fn truth(&self) -> BTreeMap<String, u32> {
        self.0.truth().await
    }
    async fn answers(&self) -> bool {
        CriTest::answers(&self.0.engine).await
    }
}
