//! The scan's decisions on a process table: which engine processes are
//! new, which tracked ones are gone (ended, or their PID reused).

use std::collections::HashSet;

use crate::procfs::{self, ProcessTable};
use crate::EngineProcess;

/// What a new look at the processes changes in what is tracked.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Tracked processes gone, or whose PID another process has now.
    pub(crate) gone: Vec<(u32, u64)>,
    /// Engine processes not tracked yet, and their kind.
    pub(crate) new: Vec<((u32, u64), EngineProcess)>,
}

impl Plan {
    /// The plan for `table`, given the `tracked` processes (by PID and
    /// start time) and what kind of engine a process is (`classify`).
    pub(crate) fn of(
        tracked: impl IntoIterator<Item = (u32, u64)>,
        table: &ProcessTable,
        classify: impl Fn(&procfs::Process) -> Option<EngineProcess>,
    ) -> Plan {
        let tracked: HashSet<(u32, u64)> = tracked.into_iter().collect();
        let mut gone: Vec<(u32, u64)> = tracked
            .iter()
            .filter(|(pid, started)| table.get(pid).is_none_or(|p| p.started != *started))
            .copied()
            .collect();
        let mut new: Vec<((u32, u64), EngineProcess)> = table
            .values()
            .filter(|process| !tracked.contains(&(process.pid, process.started)))
            .filter_map(|process| Some(((process.pid, process.started), classify(process)?)))
            .collect();
        gone.sort_unstable();
        new.sort_unstable();
        Plan { gone, new }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::{Process, Procfs};

    fn table(processes: &[(u32, u32, &str, u64)]) -> ProcessTable {
        processes
            .iter()
            .map(|(pid, ppid, name, started)| {
                let process = Process {
                    pid: *pid,
                    ppid: *ppid,
                    name: (*name).to_owned(),
                    started: *started,
                };
                (*pid, process)
            })
            .collect()
    }

    /// Classifies as discovery does, without `/proc` (podman's command
    /// line is the only read, and no podman is here).
    fn plan(tracked: &[(u32, u64)], table: &ProcessTable) -> Plan {
        let procfs = Procfs::new("/nonexistent");
        Plan::of(tracked.iter().copied(), table, |process| {
            EngineProcess::of(&procfs, process, table)
        })
    }

    #[test]
    fn a_new_engine_process_is_planned_and_a_tracked_one_is_not_again() {
        let now = table(&[
            (1, 0, "init", 1),
            (10, 1, "dockerd", 5),
            (11, 10, "containerd", 6),
            (20, 1, "containerd", 7),
            (30, 1, "crio", 8),
            (40, 1, "bash", 9),
        ]);
        let first = plan(&[], &now);
        assert_eq!(
            first.new,
            [
                ((10, 5), EngineProcess::Dockerd),
                // Not 11: the containerd a dockerd runs for itself.
                ((20, 7), EngineProcess::Containerd),
                ((30, 8), EngineProcess::Crio),
            ]
        );
        assert!(first.gone.is_empty());
        let tracked: Vec<(u32, u64)> = first.new.iter().map(|(key, _)| *key).collect();
        assert_eq!(
            plan(&tracked, &now),
            Plan::default(),
            "nothing new, nothing gone"
        );
    }

    #[test]
    fn a_process_gone_goes_and_a_reused_pid_is_a_new_process() {
        let tracked = [(10, 5), (20, 7)];
        // 10 ended; 20 ended and another dockerd got its PID.
        let now = table(&[(1, 0, "init", 1), (20, 1, "dockerd", 99)]);
        let planned = plan(&tracked, &now);
        assert_eq!(planned.gone, [(10, 5), (20, 7)]);
        assert_eq!(planned.new, [((20, 99), EngineProcess::Dockerd)]);
    }
}
