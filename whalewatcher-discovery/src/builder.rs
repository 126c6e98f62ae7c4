//! How a [`Discovery`] is configured.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use whalewatcher_core::{Deadlines, Fleet, RetryPolicy};

use crate::probe::WatchSettings;
use crate::procfs::Procfs;
use crate::reach::Sockets;
use crate::{Discovery, Inner, DEFAULT_FIRST_SYNC_WAIT, DEFAULT_PROBE_DEADLINE, DEFAULT_RESCAN};

/// Configures a [`Discovery`].
#[derive(Debug)]
pub struct DiscoveryBuilder {
    proc_root: PathBuf,
    rescan: Duration,
    first_sync_wait: Duration,
    settings: WatchSettings,
    fleet: Option<Fleet>,
    well_known_sockets: bool,
}

impl Default for DiscoveryBuilder {
    fn default() -> Self {
        DiscoveryBuilder {
            proc_root: PathBuf::from("/proc"),
            rescan: DEFAULT_RESCAN,
            first_sync_wait: DEFAULT_FIRST_SYNC_WAIT,
            settings: WatchSettings {
                retry: RetryPolicy::default(),
                deadlines: Deadlines::default(),
                probe_deadline: DEFAULT_PROBE_DEADLINE,
                ignore_namespaces: None,
            },
            fleet: None,
            well_known_sockets: true,
        }
    }
}

impl DiscoveryBuilder {
    /// Where the process list is (default `/proc`): a host's `/proc`
    /// mounted elsewhere works as well, as long as its PIDs are ours.
    pub fn proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    /// How often [`Discovery::run`] scans (default 5 s; at least 100 ms).
    pub fn rescan(mut self, period: Duration) -> Self {
        self.rescan = period.max(Duration::from_millis(100));
        self
    }

    /// How long a socket may take to describe itself (default 2 s).
    pub fn probe_deadline(mut self, deadline: Duration) -> Self {
        self.settings.probe_deadline = deadline;
        self
    }

    /// How long a scan waits for new engines' first syncs (default 5 s).
    pub fn first_sync_wait(mut self, wait: Duration) -> Self {
        self.first_sync_wait = wait;
        self
    }

    /// The retry policy of the watchers (default: forever).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.settings.retry = retry;
        self
    }

    /// The deadlines of the watchers' engine calls.
    pub fn deadlines(mut self, deadlines: Deadlines) -> Self {
        self.settings.deadlines = deadlines;
        self
    }

    /// The containerd namespaces not watched through containerd's native
    /// API (default: `moby`, whose containers dockerd reports, and
    /// `k8s.io`, CRI's).
    pub fn ignore_namespaces<S: Into<String>>(
        mut self,
        namespaces: impl IntoIterator<Item = S>,
    ) -> Self {
        self.settings.ignore_namespaces = Some(namespaces.into_iter().map(Into::into).collect());
        self
    }

    /// Whether to watch, besides the engines found by their processes,
    /// the engines at the sockets where each kind listens by default
    /// (default: yes) — the Docker sockets
    /// ([`docker_sockets`](whalewatcher_moby::docker_sockets)), podman's
    /// ([`podman_sockets`](whalewatcher_moby::podman_sockets)),
    /// containerd's (natively and as CRI) and cri-o's — when this process
    /// may connect to them: a user in the `docker` group reaches root's
    /// dockerd there without seeing into its process. Each engine is
    /// watched once: a socket whose engine is watched already (the same
    /// file, or the same engine type and id) is not asked.
    pub fn well_known_sockets(mut self, on: bool) -> Self {
        self.well_known_sockets = on;
        self
    }

    /// The fleet the engines found join (default: a fleet of its own), so
    /// that engines named by hand and found ones are one fleet.
    pub fn fleet(mut self, fleet: Fleet) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// The discovery; it looks at nothing until [`Discovery::scan`] or
    /// [`Discovery::run`].
    pub fn build(self) -> Discovery {
        Discovery {
            inner: Arc::new(Inner {
                procfs: Procfs::new(self.proc_root),
                rescan: self.rescan,
                first_sync_wait: self.first_sync_wait,
                settings: self.settings,
                fleet: self.fleet.unwrap_or_default(),
                well_known_sockets: self.well_known_sockets,
                tracked: tokio::sync::Mutex::new(HashMap::new()),
                sockets: tokio::sync::Mutex::new(Sockets::default()),
                last: Mutex::new(None),
            }),
        }
    }
}
