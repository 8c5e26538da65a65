# shellcheck shell=bash
# Shared by the bench/*.sh scripts (sourced, not run): logging, installing
# missing Debian tools, one temp dir whose processes are stopped by PID on
# exit, and small helpers for ports, HTTP polling and wrk's figures.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# need_tools COMMAND:PACKAGE ... installs the packages of missing commands.
need_tools() {
    local pair missing=()
    PATH=$PATH:/usr/sbin:/sbin
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (Debian packages)"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
}

# bench_workdir NAME creates $WORK and arranges for every PID appended to
# PIDS to be stopped (TERM, then KILL after 7 s) and $WORK removed on exit.
bench_workdir() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

cleanup() {
    local pid
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        for _ in $(seq 70); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts "$@" in the background with stdout to $WORK/$name.out and sets PORT to the port it
# announces (PORT=NNNN). Not run in a subshell, so PIDS keeps the process for cleanup.
start_announcing() {
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    PORT=''
    for _ in $(seq 100); do
        PORT=$(sed -n 's/^PORT=//p' "$WORK/$name.out" 2>/dev/null || true)
        [[ -n $PORT ]] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    die "$name did not start: $(cat "$WORK/$name.err")"
}

# wait_http URL [PID]: polls until URL answers 2xx (about 10 s at most);
# fails at once if PID has exited.
wait_http() {
    local url=$1 pid=${2:-}
    for _ in $(seq 100); do
        if [[ -n $pid ]]; then kill -0 "$pid" 2>/dev/null || return 1; fi
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Prints the X-Cache header of a GET (empty when absent or on failure).
x_cache_of() {
    curl -sS -o /dev/null -D - --max-time 5 "$1" 2>/dev/null |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" { print $2 }'
}

# Converts a wrk duration (e.g. 812.00us, 1.23ms, 2.00s, 1.00m) to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else printf "nan" }'
}

# median FORMAT NUMBER... prints the median with printf FORMAT.
median() {
    local fmt=$1
    shift
    printf '%s\n' "$@" | sort -g | awk -v fmt="$fmt" '{ v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf fmt, m }'
}

# cpu_ticks PID : prints the user + system CPU ticks one process has used so far.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# cpu_us_per_request TICKS REQUESTS : prints the CPU microseconds per request.
cpu_us_per_request() {
    awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }'
}
