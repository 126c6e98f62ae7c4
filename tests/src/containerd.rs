//! Containers and tasks on the rig's containerd 1.7: the native API for the
//! test's own calls, the `ctr` CLI inside the engine's container to make
//! and change containers (as a user of containerd would).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Request, Streaming};
use containerd_client::types::Envelope;
use containerd_client::with_namespace;
use futures::StreamExt;

use crate::{rig, run_command, test_label_value, within, TEST_LABEL};

/// One test's view of the rig's containerd; the containers it makes carry
/// its label and are removed when this is dropped.
#[derive(Debug)]
pub struct ContainerdTest {
    /// A channel to the native API (and the CRI API on the same socket).
    pub channel: Channel,
    /// The engine.
    pub engine: rig::Engine,
    /// This test's value of [`TEST_LABEL`].
    pub label: String,
    host_docker: String,
    namespaces: Mutex<BTreeSet<String>>,
}

impl ContainerdTest {
    /// Connects to `engine` (a containerd of the rig, running in a
    /// container of the host dockerd) for the test named `test`; fails the
    /// test with the reason when it does not answer.
    pub async fn connect(engine: &rig::Engine, test: &str) -> Self {
        let engine = engine.clone();
        let channel = containerd_client::connect(engine.socket())
            .await
            .unwrap_or_else(|e| panic!("containerd at {} does not answer: {e}", engine.endpoint));
        ContainerdTest {
            channel,
            engine,
            label: test_label_value(test),
            host_docker: rig::Rig::load().host_docker.endpoint,
            namespaces: Mutex::default(),
        }
    }

    /// Runs `ctr -n namespace args…` in the engine's container.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> String {
        self.try_ctr(namespace, args)
            .unwrap_or_else(|error| panic!("ctr -n {namespace} {} failed: {error}", args.join(" ")))
    }

    /// Imports the workload image into `namespace` unless it is there.
    pub fn ensure_image(&self, namespace: &str) {
        let image = self.engine.image();
        if !self
            .ctr(namespace, &["images", "ls", "-q"])
            .lines()
            .any(|l| l == image)
        {
            self.ctr(namespace, &["images", "import", "/rig-images/busybox.tar"]);
        }
    }

    /// Creates a container `id` in `namespace` with the test label and
    /// `labels` and starts its task (sleeping, in a network namespace of its
    /// own with only loopback).
    pub fn run(&self, namespace: &str, id: &str, labels: &[(&str, &str)]) {
        self.run_command(namespace, id, labels, &["sleep", "2147483647"]);
    }

    /// Like [`run`](Self::run), running `command` instead of sleeping.
    pub fn run_command(
        &self,
        namespace: &str,
        id: &str,
        labels: &[(&str, &str)],
        command: &[&str],
    ) {
        self.ensure_image(namespace);
        self.namespaces.lock().unwrap().insert(namespace.to_owned());
        let mut args = vec!["run".to_owned(), "-d".to_owned()];
        let test_label = format!("{TEST_LABEL}={}", self.label);
        for label in
            std::iter::once(test_label).chain(labels.iter().map(|(k, v)| format!("{k}={v}")))
        {
            args.extend(["--label".to_owned(), label]);
        }
        args.extend([self.engine.image().to_owned(), id.to_owned()]);
        args.extend(command.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for attempt in 1..=rig::RUNC_START_ATTEMPTS {
            match self.try_ctr(namespace, &args) {
                Ok(_) => return,
                Err(error) if attempt < rig::RUNC_START_ATTEMPTS && rig::runc_init_died(&error) => {
                    eprintln!("ctr run {id} failed, trying again: {error}");
                    let _ = self.try_ctr(namespace, &["containers", "rm", id]);
                }
                Err(error) => panic!("ctr -n {namespace} {} failed: {error}", args.join(" ")),
            }
        }
    }

    /// Creates `count` containers (no task) named `prefix-N` in `namespace`,
    /// each with the test label and 40 labels of 4,000 bytes (containerd
    /// takes up to 4,096 per label): records of about 160 KB, to make a
    /// list large in bytes with few containers.
    pub fn create_heavy(&self, namespace: &str, prefix: &str, count: usize) {
        self.ensure_image(namespace);
        self.namespaces.lock().unwrap().insert(namespace.to_owned());
        let script = format!(
            "v=$(printf '%04000d' 0); labels=''; \
             for l in $(seq 40); do labels=\"$labels --label heavy$l=$v\"; done; \
             for i in $(seq {count}); do \
               ctr -n {namespace} containers create --label {TEST_LABEL}={label} $labels \
                 {image} {prefix}-$i >/dev/null || exit 1; done",
            label = self.label,
            image = self.engine.image(),
        );
        self.sh(&script);
    }

    /// Runs the shell `script` in the engine's container; fails the test
    /// if it fails.
    fn sh(&self, script: &str) {
        run_command(
            "docker",
            &[
                "-H",
                &self.host_docker,
                "exec",
                self.engine.container(),
                "sh",
                "-c",
                script,
            ],
        );
    }

    /// Runs `ctr -n namespace args…` in the engine's container: its output,
    /// or its error output when it fails.
    fn try_ctr(&self, namespace: &str, args: &[&str]) -> Result<String, String> {
        let output = crate::commands::output_within(
            std::process::Command::new("docker")
                .args(["-H", &self.host_docker, "exec", self.engine.container()])
                .args(["ctr", "-n", namespace])
                .args(args),
        )
        .map_err(|e| format!("cannot run docker: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// What containerd itself says (through ctr) of this test's alive
    /// containers in `namespaces`: display id → (PID, paused).
    pub fn truth(&self, namespaces: &[&str]) -> BTreeMap<String, (u32, bool)> {
        let mut truth = BTreeMap::new();
        for namespace in namespaces {
            let filter = format!("labels.\"{TEST_LABEL}\"==\"{}\"", self.label);
            let mine: Vec<String> = self
                .ctr(namespace, &["containers", "ls", "-q", &filter])
                .lines()
                .map(str::to_owned)
                .collect();
            for line in self.ctr(namespace, &["tasks", "ls"]).lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let [id, pid, status] = fields[..] else {
                    continue;
                };
                let alive = matches!(status, "RUNNING" | "PAUSED" | "PAUSING");
                if !alive || !mine.iter().any(|m| m == id) {
                    continue;
                }
                let display = if *namespace == "default" {
                    id.to_owned()
                } else {
                    format!("{namespace}/{id}")
                };
                truth.insert(display, (pid.parse().unwrap(), status != "RUNNING"));
            }
        }
        truth
    }

    /// Whether containerd answers `ctr version`.
    pub fn answers(&self) -> bool {
        self.try_ctr("default", &["version"]).is_ok()
    }

    /// Kills the task of container `id` with SIGKILL.
    pub fn kill(&self, namespace: &str, id: &str) {
        self.ctr(namespace, &["tasks", "kill", "-s", "SIGKILL", id]);
    }

    /// Subscribes to events matching `filters` (containerd filter syntax)
    /// and returns once the subscription is live, with the engine crate's
    /// own barrier.
    pub async fn subscribe(&self, filters: &[&str]) -> Streaming<Envelope> {
        within(
            "containerd's event subscription to go live",
            whalewatcher_containerd::live_subscription(&self.channel, filters),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot subscribe to containerd's events: {e}"))
    }
}

impl Drop for ContainerdTest {
    /// Removes this test's containers and tasks in every namespace it used.
    fn drop(&mut self) {
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for namespace in namespaces {
            let filter = format!("labels.\"{TEST_LABEL}\"==\"{}\"", self.label);
            let script = format!(
                "for c in $(ctr -n {namespace} containers ls -q '{filter}'); do \
                   ctr -n {namespace} tasks rm -f $c >/dev/null 2>&1; \
                   ctr -n {namespace} containers rm $c; done"
            );
            self.sh(&script);
        }
    }
}

/// Reads events until one on `topic` satisfies `wanted`; fails the test
/// after the deadline.
pub async fn wait_for_event(
    events: &mut Streaming<Envelope>,
    what: &str,
    wanted: impl Fn(&Envelope) -> bool,
) -> Envelope {
    within(what, async {
        loop {
            let envelope = events
                .next()
                .await
                .unwrap_or_else(|| panic!("event stream ended waiting for {what}"))
                .unwrap_or_else(|e| panic!("event stream broke waiting for {what}: {e}"));
            if wanted(&envelope) {
                return envelope;
            }
        }
    })
    .await
}

/// Makes a `Request` for a namespaced call.
pub fn namespaced<T>(message: T, namespace: &str) -> Request<T> {
    with_namespace!(message, namespace)
}
