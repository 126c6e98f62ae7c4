//! Which container of the fleet an engine runs in: the nearest ancestor of
//! the engine's process that is a container's initial process — or, where
//! an engine runs beside the initial process (a child of the container's
//! shim), the shim of exactly one container.

use std::collections::HashMap;

use whalewatcher_core::{FleetSnapshot, MemberId, ParentContainer};

use crate::procfs::ProcessTable;

/// How far up the process tree an engine's container is looked for.
const MAX_ANCESTORS: usize = 64;

/// The containers of `snapshot` by the PIDs here of their initial
/// processes and, where only one container has it, of their shims.
pub(crate) struct ContainerPids {
    by_init: HashMap<u32, ParentContainer>,
    by_shim: HashMap<u32, Option<ParentContainer>>,
}

impl ContainerPids {
    pub(crate) fn of(snapshot: &FleetSnapshot, table: &ProcessTable) -> Self {
        let mut by_init = HashMap::new();
        let mut by_shim: HashMap<u32, Option<ParentContainer>> = HashMap::new();
        for container in snapshot.containers() {
            let Some(pid) = container.local_pid() else {
                continue;
            };
            let parent = ParentContainer {
                engine: container.engine().member(),
                id: container.container().id().into(),
                name: container.container().name().into(),
            };
            if let Some(shim) = table.get(&pid).map(|p| p.ppid) {
                by_shim
                    .entry(shim)
                    .and_modify(|shared| *shared = None)
                    .or_insert_with(|| Some(parent.clone()));
            }
            by_init.insert(pid, parent);
        }
        ContainerPids { by_init, by_shim }
    }

    /// The container that the engine process `pid` (here) runs in, of a
    /// member other than `own` (the members of that very process).
    pub(crate) fn parent_of(
        &self,
        pid: u32,
        own: &[MemberId],
        table: &ProcessTable,
    ) -> Option<ParentContainer> {
        let others = |found: Option<&ParentContainer>| {
            found
                .filter(|parent| !own.contains(&parent.engine))
                .cloned()
        };
        let ancestors = ancestors(pid, table);
        ancestors
            .iter()
            .find_map(|pid| others(self.by_init.get(pid)))
            .or_else(|| {
                ancestors
                    .iter()
                    .find_map(|pid| others(self.by_shim.get(pid).and_then(Option::as_ref)))
            })
    }
}

/// The process itself, its parent, its parent's parent, … (not PID 0).
fn ancestors(pid: u32, table: &ProcessTable) -> Vec<u32> {
    let mut chain = vec![pid];
    let mut current = pid;
    while chain.len() < MAX_ANCESTORS {
        match table.get(&current).map(|p| p.ppid) {
            Some(parent) if parent != 0 && !chain.contains(&parent) => {
                chain.push(parent);
                current = parent;
            }
            _ => break,
        }
    }
    chain
}
