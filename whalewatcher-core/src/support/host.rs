//! What this host tells of an engine's processes: who listens on a
//! socket, whether the engine's PIDs are ours, a process's cgroup.

use std::path::Path;

/// The PID here of the process listening on the unix socket at `path`
/// (`SO_PEERCRED`); `None` when it cannot be told: the socket does not
/// answer, or the listener is in a PID namespace this process cannot see.
pub async fn listener_pid(path: &Path) -> std::io::Result<Option<u32>> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    let pid = stream.peer_cred().ok().and_then(|cred| cred.pid());
    Ok(pid
        .and_then(|pid| u32::try_from(pid).ok())
        .filter(|pid| *pid > 0))
}

/// Whether the engine listening at `path` runs in this process's PID
/// namespace, so that the PIDs it reports are this host's: its process
/// can be read in `/proc` as it is. `Some(false)` for a listener this
/// process cannot see or look at; `None` when nothing answers (ask again
/// later).
pub async fn serves_our_pid_namespace(path: &Path) -> Option<bool> {
    let pid = listener_pid(path).await.ok()?;
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let ours = namespace("self");
    Some(pid.is_some_and(|pid| ours.is_some() && namespace(&pid.to_string()) == ours))
}

/// The cgroup of process `pid` of this host, as `/proc/PID/cgroup` names
/// it (relative to this process's cgroup namespace); `None` when it cannot
/// be read. On a cgroup v2 host that is the unified hierarchy's path; on
/// a v1 or hybrid host, the `memory` controller's (where limits and OOM
/// kills are accounted), else `name=systemd`'s.
pub fn cgroup_of(pid: u32) -> Option<Box<str>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cgroup_in(&text).map(Into::into)
}

/// The cgroup path in the text of a `/proc/PID/cgroup`: the unified
/// hierarchy's (`0::/path`) on a cgroup v2 host; on a v1 or hybrid host,
/// the `memory` controller's (where limits and OOM kills are accounted),
/// else `name=systemd`'s, else the first line's.
pub(crate) fn cgroup_in(text: &str) -> Option<&str> {
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(':')?;
            rest.split_once(':')
        })
        .collect();
    let path_of = |wanted: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .find(|(controllers, _)| wanted(controllers))
            .map(|(_, path)| *path)
    };
    let path = match lines.as_slice() {
        [("", path)] => Some(*path),
        _ => path_of(&|c| c.split(',').any(|c| c == "memory"))
            .or_else(|| path_of(&|c| c == "name=systemd"))
            .or_else(|| lines.first().map(|(_, path)| *path)),
    };
    path.filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_is_the_unified_one_on_v2_and_memorys_on_v1() {
        assert_eq!(
            cgroup_in("0::/system.slice/docker-abc.scope\n"),
            Some("/system.slice/docker-abc.scope")
        );
        let hybrid = "9:name=systemd:/docker/abc\n4:memory:/docker/abc-mem\n\
                      2:cpu,cpuacct:/docker/abc\n0::/\n";
        assert_eq!(cgroup_in(hybrid), Some("/docker/abc-mem"));
        let no_memory = "9:name=systemd:/docker/abc\n2:cpu,cpuacct:/x\n";
        assert_eq!(cgroup_in(no_memory), Some("/docker/abc"));
        assert_eq!(cgroup_in(""), None);
        assert_eq!(cgroup_in("garbage"), None);
    }

    #[tokio::test]
    async fn a_socket_of_our_own_is_served_in_our_pid_namespace() {
        let dir = std::env::temp_dir().join(format!("ww-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("own.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        assert_eq!(listener_pid(&path).await.unwrap(), Some(std::process::id()));
        assert_eq!(serves_our_pid_namespace(&path).await, Some(true));
        assert_eq!(
            serves_our_pid_namespace(&dir.join("none.sock")).await,
            None,
            "nothing answers: not known yet"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn our_own_cgroup_is_read() {
        assert!(cgroup_of(std::process::id()).is_some());
        assert_eq!(cgroup_of(u32::MAX), None);
    }
}
