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

# stop_pid NAME PIDFILE: stops the process whose PID the file holds, if it
# still runs: SIGTERM, then SIGKILL after 20s.
stop_pid() {
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping $name (PID $pid)"
        kill -TERM "$pid"
        local deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
}

# host_docker ARGS...: the docker CLI against the rig's host dockerd.
host_docker() { docker -H "unix://$HOST_DOCKER_SOCK" "$@"; }
