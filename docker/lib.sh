# shellcheck shell=bash disable=SC2034  # settings used by the scripts that source this
# Shared settings and helpers of the test rig scripts; sourced, not run.
# Everything the rig makes carries the label below and lives under these
# directories, so teardown finds all of it and nothing else.

RIG_LABEL=whalewatcher-rig
RIG_RUN=${WHALEWATCHER_RIG_RUN:-/run/whalewatcher-rig}          # sockets, pidfiles, endpoints
RIG_DATA=${WHALEWATCHER_RIG_DATA:-/var/lib/whalewatcher-rig}     # host engines' storage
RIG_CACHE=${WHALEWATCHER_RIG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/whalewatcher-rig}
RIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# The host engines (Debian bookworm's) and the engine containers (trixie's)
# each have a directory of their own: an engine container's socket
# directory is bind-mounted, and the engine inside replaces whatever socket
# of the same name it finds there.
HOST_RUN=$RIG_RUN/host
ENGINES_RUN=$RIG_RUN/engines
HOST_DOCKER_SOCK=$HOST_RUN/docker.sock
HOST_CONTAINERD_SOCK=$HOST_RUN/containerd.sock
# The host dockerd relayed to loopback ports, over plain tcp and over TLS,
# with the certificates under TLS_DIR.
TCP_PORT=${WHALEWATCHER_RIG_TCP_PORT:-23750}
TLS_PORT=${WHALEWATCHER_RIG_TLS_PORT:-23760}
TLS_DIR=$RIG_RUN/tls

say() { printf '[rig] %s\n' "$*" >&2; }
die() { printf '[rig] ERROR: %s\n' "$*" >&2; exit 1; }

# wait_for NAME SECONDS COMMAND...: runs COMMAND until it succeeds, failing
# with a message naming NAME when SECONDS pass first.
wait_for() {
    local name=$1 seconds=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "$name did not come up within ${seconds}s (tried: $*)"
        fi
        sleep 0.2
    done
}

# stop_pid NAME PIDFILE MARK: stops the process whose PID the file holds —
# only if its command line contains MARK (the rig's own socket path), so a
# PID reused by another process, or a zombie, is never signalled. SIGTERM,
# then SIGKILL after 20s.
stop_pid() {
    local name=$1 pidfile=$2 mark=$3 pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    rm -f "$pidfile"
    is_ours() { [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"$mark"* ]]; }
    is_ours || return 0
    say "stopping $name (PID $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 20))
    while is_ours && ((SECONDS < deadline)); do sleep 0.2; done
    if is_ours; then kill -KILL "$pid"; fi
}

# unmount_leftovers: unmounts what dead engines left mounted under the
# rig's directories (overlays, network namespaces), deepest first.
unmount_leftovers() {
    local dir
    for dir in "$RIG_RUN" "$RIG_DATA"; do
        awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r |
            while read -r mountpoint; do umount -l "$mountpoint" 2>/dev/null || true; done
    done
}

# host_docker ARGS...: the docker CLI against the rig's host dockerd.
host_docker() { docker -H "unix://$HOST_DOCKER_SOCK" "$@"; }
