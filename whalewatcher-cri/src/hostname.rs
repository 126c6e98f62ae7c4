//! The host name a CRI engine sees, as its id: CRI has no engine id.

use std::fs::File;

use nix::sched::{setns, CloneFlags};

/// The host name in the UTS namespace of process `pid`, else its
/// `/etc/hostname`; without a PID, or when neither can be read (it takes
/// `CAP_SYS_ADMIN` and access to the process), this host's name.
pub(crate) fn engine_hostname(pid: Option<u32>) -> String {
    pid.and_then(|pid| uts_hostname(pid).or_else(|| etc_hostname(pid)))
        .or_else(own_hostname)
        .unwrap_or_default()
}

/// Joins the UTS namespace on a thread of its own, which then ends: no
/// other code ever runs in the foreign namespace.
fn uts_hostname(pid: u32) -> Option<String> {
    let namespace = File::open(format!("/proc/{pid}/ns/uts")).ok()?;
    std::thread::spawn(move || {
        setns(namespace, CloneFlags::CLONE_NEWUTS).ok()?;
        own_hostname()
    })
    .join()
    .ok()
    .flatten()
}

fn etc_hostname(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/root/etc/hostname")).ok()?;
    let name = text.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn own_hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()?
        .into_string()
        .ok()
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_pid_it_is_this_hosts_name() {
        let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(engine_hostname(None), expected.trim());
    }

    #[test]
    fn our_own_pid_names_our_own_uts_namespace() {
        let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(engine_hostname(Some(std::process::id())), expected.trim());
    }

    #[test]
    fn a_pid_that_does_not_exist_falls_back_to_this_host() {
        let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(engine_hostname(Some(u32::MAX)), expected.trim());
    }
}
