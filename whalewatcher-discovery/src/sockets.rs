//! The unix sockets an engine process listens on, and how to reach each
//! from here: a socket path means something in the engine's mount
//! namespace, which `/proc/PID/root` opens up — with its symbolic links
//! resolved inside that root, not ours.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::procfs::Procfs;

/// A listening socket of an engine process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ListeningSocket {
    /// The path as the engine bound it, in its mount namespace.
    pub(crate) bound: PathBuf,
    /// The same socket as reached from here.
    pub(crate) reachable: PathBuf,
}

/// The listening unix sockets of process `pid`: its open socket inodes
/// matched against the listening sockets of its network namespace.
/// `PermissionDenied` when its file descriptors cannot be read (another
/// user's process, and we are not root).
pub(crate) fn listening_sockets(procfs: &Procfs, pid: u32) -> io::Result<Vec<ListeningSocket>> {
    let inodes = procfs.socket_inodes(pid)?;
    let listening = procfs.listening_unix_sockets(pid)?;
    let same_files = procfs.shares_files_with_us(pid);
    let root = procfs.root_of(pid);
    let mut sockets: Vec<ListeningSocket> = listening
        .into_iter()
        .filter(|(inode, _)| inodes.contains(inode))
        .map(|(_, bound)| {
            let reachable = if same_files {
                bound.clone()
            } else {
                resolve_in_root(&root, &bound)
            };
            ListeningSocket { bound, reachable }
        })
        .collect();
    sockets.sort_by(|a, b| a.bound.cmp(&b.bound));
    Ok(sockets)
}

/// How many symbolic links a path may pass through, as Linux allows.
const MAX_LINKS: usize = 40;

/// `path` of the file system whose root is `root` (a `/proc/PID/root`),
/// with every symbolic link on the way resolved inside that root: an
/// absolute link target starts again at `root`, `..` never leaves it. A
/// link that cannot be read ends the resolution there (the path then
/// fails where it is used, with the reason).
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> PathBuf {
    // The components still to walk, last first.
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(component) = pending.pop() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&component);
        let on_disk = root.join(&candidate);
        match std::fs::symlink_metadata(&on_disk) {
            Ok(meta) if meta.file_type().is_symlink() && links < MAX_LINKS => {
                links += 1;
                let Ok(target) = std::fs::read_link(&on_disk) else {
                    resolved = candidate;
                    continue;
                };
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &target);
            }
            _ => resolved = candidate,
        }
    }
    root.join(resolved)
}

/// Pushes the normal and `..` components of `path`, last first, onto
/// `pending` (so that they pop in order).
fn push_components(pending: &mut Vec<std::ffi::OsString>, path: &Path) {
    let components: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    pending.extend(components.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_root_never_outside() {
        let root = std::env::temp_dir().join(format!("ww-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("run/docker")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        // Debian's /var/run -> /run, absolute: ours would be the host's /run.
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../run/docker", root.join("var/dockerlink")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("run/escape")).unwrap();
        let resolve = |path: &str| resolve_in_root(&root, Path::new(path));
        assert_eq!(
            resolve("/var/run/docker/docker.sock"),
            root.join("run/docker/docker.sock")
        );
        assert_eq!(
            resolve("/var/dockerlink/x.sock"),
            root.join("run/docker/x.sock")
        );
        assert_eq!(resolve("/run/escape/passwd"), root.join("etc/passwd"));
        assert_eq!(
            resolve("/rig-socket/podman.sock"),
            root.join("rig-socket/podman.sock")
        );
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve("/loop/x"), root.join("loop/x"), "a loop ends");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
