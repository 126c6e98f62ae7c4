//! PIDs of an engine's PID namespace as PIDs of ours.
//!
//! An engine in a container reports the PIDs of its own PID namespace.
//! Each process's `NSpid` line (`/proc/PID/status`) lists its PIDs from
//! the namespace of our `/proc` down to its own, so the process the engine
//! calls `p` is the one whose `NSpid` has `p` at the engine's level. All
//! of those are descendants of the init process of the engine's namespace,
//! so a miss walks that subtree — never all of `/proc` — and indexes every
//! process in it; a hit is checked with one read of its `status`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use whalewatcher_core::PidTranslation;

use crate::procfs::Procfs;

/// Where a process sits among PID namespaces, as seen from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PidLevels {
    /// The process's PID here.
    pub local: u32,
    /// The process's PID in its own PID namespace.
    pub own: u32,
    /// How many PID namespaces below ours its own is (0: ours).
    pub depth: usize,
}

/// Translates the PIDs one engine reports into ours.
#[derive(Debug)]
pub struct PidTranslator {
    procfs: Procfs,
    /// The engine's namespace level (0: ours, nothing to translate).
    depth: usize,
    /// The init process of the engine's PID namespace, here.
    namespace_init: u32,
    /// Engine PID → our PID, from the last walk.
    index: Mutex<HashMap<u32, u32>>,
}

impl PidTranslator {
    /// The translator for the engine whose process is `engine` in our
    /// `/proc`, and where that process sits: for an engine found some
    /// other way than by a [`Discovery`](crate::Discovery) scan.
    pub fn of_engine(engine: u32) -> std::io::Result<(Self, PidLevels)> {
        Self::for_engine(&Procfs::new("/proc"), engine)
    }

    /// The translator for the engine whose process is `engine` here, and
    /// where that process sits; an error when `/proc` does not tell.
    pub(crate) fn for_engine(procfs: &Procfs, engine: u32) -> std::io::Result<(Self, PidLevels)> {
        let pids = procfs.nspids(engine)?.pids;
        let depth = pids.len() - 1;
        let levels = PidLevels {
            local: engine,
            own: pids[depth],
            depth,
        };
        // Up from the engine to the process that is PID 1 at its level
        // (or the topmost one of that namespace, for an engine that joined
        // it from outside).
        let mut namespace_init = engine;
        for _ in 0..64 {
            if depth == 0 {
                break;
            }
            let status = procfs.nspids(namespace_init)?;
            if status.pids.get(depth) == Some(&1) {
                break;
            }
            match procfs.nspids(status.ppid) {
                Ok(parent) if parent.pids.len() > depth => namespace_init = status.ppid,
                _ => break,
            }
        }
        let translator = PidTranslator {
            procfs: procfs.clone(),
            depth,
            namespace_init,
            index: Mutex::new(HashMap::new()),
        };
        Ok((translator, levels))
    }

    /// Whether `local` is, here, the process the engine calls `pid`.
    fn is(&self, local: u32, pid: u32) -> bool {
        self.procfs
            .nspids(local)
            .is_ok_and(|status| status.pids.get(self.depth) == Some(&pid))
    }

    /// Indexes the processes of the engine's namespace (and those nested
    /// in it) by their PIDs at the engine's level, newest first (the last
    /// child of each process, and what it started, before its elder
    /// siblings), until `wanted` is among them: a container that just
    /// started is found after a few reads, not a walk of everything.
    /// Returns what it saw and whether that is the whole namespace.
    fn walk(&self, wanted: u32) -> (HashMap<u32, u32>, bool) {
        let mut seen = HashMap::new();
        let mut pending = vec![self.namespace_init];
        while let Some(local) = pending.pop() {
            let Ok(status) = self.procfs.nspids(local) else {
                continue;
            };
            let Some(&theirs) = status.pids.get(self.depth) else {
                continue;
            };
            seen.insert(theirs, local);
            if theirs == wanted {
                return (seen, false);
            }
            if let Ok(children) = self.procfs.children(local) {
                pending.extend(children);
            }
        }
        (seen, true)
    }
}

/// Entries of a translator's index past which a partial walk starts it
/// afresh: stale entries are checked before use, this only bounds them.
const MAX_INDEXED: usize = 1 << 16;

impl PidTranslation for PidTranslator {
    fn local_pid(&self, pid: u32) -> Option<u32> {
        if self.depth == 0 || pid == 0 {
            return Some(pid).filter(|pid| *pid != 0);
        }
        let known = self
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&pid)
            .copied();
        if let Some(local) = known.filter(|local| self.is(*local, pid)) {
            return Some(local);
        }
        let (seen, whole) = self.walk(pid);
        let found = seen.get(&pid).copied();
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if whole || index.len() + seen.len() > MAX_INDEXED {
            *index = seen;
        } else {
            index.extend(seen);
        }
        found
    }
}
