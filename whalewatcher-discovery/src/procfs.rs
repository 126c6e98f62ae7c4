//! What discovery reads of `/proc`: the processes (name, parent, start
//! time), a process's PIDs in its PID namespaces (`NSpid`), its children,
//! its open sockets, and the listening unix sockets of its network
//! namespace.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

/// One process, as `/proc/PID/stat` tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    /// The command name (`comm`, at most 15 bytes).
    pub(crate) name: String,
    /// When it started, in clock ticks after boot: with the PID, it tells
    /// a process from a later one that got the same PID.
    pub(crate) started: u64,
}

/// The processes of a `/proc`, by PID.
pub(crate) type ProcessTable = HashMap<u32, Process>;

/// A `/proc` mount: the host's, or another for tests.
#[derive(Clone, Debug)]
pub(crate) struct Procfs {
    root: PathBuf,
}

impl Procfs {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Procfs { root: root.into() }
    }

    /// Where this `/proc` is.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of process `pid`.
    pub(crate) fn dir(&self, pid: u32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    /// Every process there is; processes that end while being read are
    /// left out.
    pub(crate) fn processes(&self) -> io::Result<ProcessTable> {
        let mut table = HashMap::new();
        for entry in std::fs::read_dir(&self.root)? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Ok(process) = self.process(pid) {
                table.insert(pid, process);
            }
        }
        Ok(table)
    }

    /// One process, from its `stat`.
    pub(crate) fn process(&self, pid: u32) -> io::Result<Process> {
        let stat = std::fs::read_to_string(self.dir(pid).join("stat"))?;
        parse_stat(pid, &stat).ok_or_else(|| invalid(format!("unexpected /proc/{pid}/stat")))
    }

    /// The command line's arguments.
    pub(crate) fn cmdline(&self, pid: u32) -> io::Result<Vec<String>> {
        let raw = std::fs::read(self.dir(pid).join("cmdline"))?;
        Ok(raw
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect())
    }

    /// The process's PIDs from the PID namespace of this `/proc` down to
    /// its own (the `NSpid` line of its `status`), and its parent's PID.
    pub(crate) fn nspids(&self, pid: u32) -> io::Result<NsPids> {
        let status = std::fs::read_to_string(self.dir(pid).join("status"))?;
        parse_status(&status).ok_or_else(|| invalid(format!("no NSpid in /proc/{pid}/status")))
    }

    /// The children of every thread of the process.
    pub(crate) fn children(&self, pid: u32) -> io::Result<Vec<u32>> {
        let tasks = self.dir(pid).join("task");
        let mut children = Vec::new();
        for task in std::fs::read_dir(&tasks)? {
            let Ok(task) = task else { continue };
            let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            children.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        Ok(children)
    }

    /// The inodes of the sockets the process has open.
    pub(crate) fn socket_inodes(&self, pid: u32) -> io::Result<HashSet<u64>> {
        let fds = self.dir(pid).join("fd");
        let mut inodes = HashSet::new();
        for fd in std::fs::read_dir(&fds)? {
            let Ok(fd) = fd else { continue };
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inode| inode.parse().ok())
            {
                inodes.insert(inode);
            }
        }
        Ok(inodes)
    }

    /// The listening stream unix sockets with a path in the network
    /// namespace of the process, by inode.
    pub(crate) fn listening_unix_sockets(&self, pid: u32) -> io::Result<HashMap<u64, PathBuf>> {
        let text = std::fs::read_to_string(self.dir(pid).join("net/unix"))?;
        Ok(parse_net_unix(&text))
    }

    /// A namespace of the process, as the link `/proc/PID/ns/KIND` names
    /// it (`pid:[4026531836]`).
    pub(crate) fn namespace(&self, pid: u32, kind: &str) -> io::Result<String> {
        let link = std::fs::read_link(self.dir(pid).join("ns").join(kind))?;
        Ok(link.to_string_lossy().into_owned())
    }

    /// The process's root directory here, through which paths of its mount
    /// namespace are reached (`/proc/PID/root`).
    pub(crate) fn root_of(&self, pid: u32) -> PathBuf {
        self.dir(pid).join("root")
    }

    /// Whether the process sees the same file system as this one: the same
    /// mount namespace and root.
    pub(crate) fn shares_files_with_us(&self, pid: u32) -> bool {
        let ours = self.namespace_of_self("mnt");
        let root = std::fs::read_link(self.root_of(pid));
        matches!((self.namespace(pid, "mnt"), ours), (Ok(theirs), Some(ours)) if theirs == ours)
            && root.is_ok_and(|root| root == Path::new("/"))
    }

    fn namespace_of_self(&self, kind: &str) -> Option<String> {
        let link = std::fs::read_link(self.root.join("self/ns").join(kind)).ok()?;
        Some(link.to_string_lossy().into_owned())
    }
}

/// A process's PIDs, outermost first, and its parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NsPids {
    pub(crate) ppid: u32,
    /// From the PID namespace of the `/proc` read to the process's own.
    pub(crate) pids: Vec<u32>,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// `pid (comm) state ppid ...`: the name may hold spaces and parentheses,
/// so it ends at the last `)`; the start time is the 22nd field.
fn parse_stat(pid: u32, stat: &str) -> Option<Process> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let ppid = fields.get(1)?.parse().ok()?;
    let started = fields.get(19)?.parse().ok()?;
    Some(Process {
        pid,
        ppid,
        name,
        started,
    })
}

fn parse_status(status: &str) -> Option<NsPids> {
    let mut ppid = None;
    let mut pids = None;
    for line in status.lines() {
        if let Some(value) = line.strip_prefix("PPid:") {
            ppid = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("NSpid:") {
            pids = value
                .split_whitespace()
                .map(|pid| pid.parse().ok())
                .collect::<Option<Vec<u32>>>();
        }
    }
    let pids = pids.filter(|pids| !pids.is_empty())?;
    Some(NsPids { ppid: ppid?, pids })
}

/// Linux's socket flag of a listening socket (`__SO_ACCEPTCON`).
const LISTENING: u32 = 1 << 16;
/// `SOCK_STREAM`.
const STREAM: u32 = 1;

/// The lines of `/proc/net/unix`: `Num RefCount Protocol Flags Type St
/// Inode Path`, hexadecimal but the inode; sockets in the abstract
/// namespace (`@…`) and without a path are of no use here.
fn parse_net_unix(text: &str) -> HashMap<u64, PathBuf> {
    let mut sockets = HashMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(flags), Some(kind), Some(inode), Some(path)) =
            (fields.get(3), fields.get(4), fields.get(6), fields.get(7))
        else {
            continue;
        };
        let (Ok(flags), Ok(kind), Ok(inode)) = (
            u32::from_str_radix(flags, 16),
            u32::from_str_radix(kind, 16),
            inode.parse::<u64>(),
        ) else {
            continue;
        };
        if flags == LISTENING && kind == STREAM && path.starts_with('/') {
            sockets.insert(inode, PathBuf::from(path));
        }
    }
    sockets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_may_hold_spaces_and_parentheses() {
        let stat = "11146 (a (weird) name) S 11124 11146 11146 0 -1 4194560 7350 3231 0 0 169 144 2 2 20 0 9 0 294499 1917714432";
        assert_eq!(
            parse_stat(11146, stat),
            Some(Process {
                pid: 11146,
                ppid: 11124,
                name: "a (weird) name".into(),
                started: 294499
            })
        );
        assert_eq!(parse_stat(1, "1 (truncated"), None);
    }

    #[test]
    fn status_gives_the_pids_of_every_namespace_level_and_the_parent() {
        let status = "Name:\tcontainerd\nPPid:\t11124\nNSpid:\t11146\t1\nNSpgid:\t11146\t1\n";
        assert_eq!(
            parse_status(status),
            Some(NsPids {
                ppid: 11124,
                pids: vec![11146, 1]
            })
        );
        assert_eq!(
            parse_status("Name:\tx\nPPid:\t1\n"),
            None,
            "a kernel without NSpid"
        );
    }

    #[test]
    fn only_listening_stream_sockets_with_a_path_count() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path
00000000f4f59c47: 00000002 00000000 00010000 0001 01 15958 /rig-socket/containerd.sock.ttrpc
00000000c1cda93f: 00000002 00000000 00010000 0001 01 15961 /rig-socket/containerd.sock
0000000000000000: 00000003 00000000 00000000 0001 03 16000 /rig-socket/containerd.sock
0000000000000000: 00000002 00000000 00010000 0002 01 16001 /dgram.sock
0000000000000000: 00000002 00000000 00010000 0001 01 16002 @abstract
0000000000000000: 00000002 00000000 00010000 0001 01 16003
";
        let sockets = parse_net_unix(text);
        assert_eq!(sockets.len(), 2, "{sockets:?}");
        assert_eq!(
            sockets[&15961],
            PathBuf::from("/rig-socket/containerd.sock")
        );
    }
}
