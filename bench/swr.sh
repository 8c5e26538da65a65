#!/usr/bin/env bash
# Stale-while-revalidate: client p99 latency across expiries, SWR on vs off, against the p99
# of pure cache hits, in one run.
#
# One fake GitHub (examples/bench_upstream.rs, DELAY_MS of latency on every request) and
# three chimney processes in front of it, memory tier only:
#   hit  - TTL 1 h: after warming, every request is a cache hit (the reference);
#   swr  - TTL TTL_SECS with the default 60 s stale-while-revalidate window;
#   off  - TTL TTL_SECS with CHIMNEY_STALE_WHILE_REVALIDATE=0s (clients wait for GitHub).
# wrk drives a dashboard-like workload (a handful of list endpoints, round robin) at each for
# DURATION, so every key expires several times during a swr/off run. Rounds alternate the
# order; the medians are printed, with the ratios to the hit p99 and the upstream requests
# each run caused. See BENCHMARKS.md, "Stale-while-revalidate (bench/swr.sh)".
#
# Usage: bash bench/swr.sh     (run as root so a missing wrk can be installed)
# Knobs (env): THREADS=2 CONNECTIONS=16 DURATION=12s ROUNDS=3 DELAY_MS=100 TTL_SECS=2
#              SKIP_BUILD=1 (use existing binaries) PROFILE=release (or debug)
set -euo pipefail

THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-16}
DURATION=${DURATION:-12s}
ROUNDS=${ROUNDS:-3}
DELAY_MS=${DELAY_MS:-100}
TTL_SECS=${TTL_SECS:-2}
SKIP_BUILD=${SKIP_BUILD:-0}
PROFILE=${PROFILE:-release}

# What the dashboard polls.
PATHS=(
    '/api/github/pulls?state=open'
    '/api/github/pulls?state=closed'
    '/api/github/issues'
    '/api/github/actions/runs'
    '/api/github/commits'
    '/api/github/releases'
    '/api/github/branches'
    '/api/github/tags'
)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/$PROFILE
profile_flag=()
[[ $PROFILE == release ]] && profile_flag=(--release)

need_tools wrk:wrk curl:curl python3:python3
bench_workdir chimney-swr

if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build ${profile_flag[*]} --bin chimney --example bench_upstream"
    cargo build "${profile_flag[@]}" --bin chimney --example bench_upstream
fi
[[ -x $BIN/chimney && -x $BIN/examples/bench_upstream ]] || die "binaries missing under $BIN"

start_announcing upstream "$BIN/examples/bench_upstream" --port 0 --delay-ms "$DELAY_MS"
UP=$PORT
log "fake upstream on 127.0.0.1:$UP (delay ${DELAY_MS} ms)"

upstream_reset() { curl -fsS -X POST --max-time 5 "http://127.0.0.1:$UP/__reset" >/dev/null; }
upstream_total() {
    curl -fsS --max-time 5 "http://127.0.0.1:$UP/__count" |
        python3 -c 'import json, sys; print(sum(json.load(sys.stdin).values()))'
}

# start_chimney NAME TTL SWR : starts a chimney with one [[ttl]] rule for every path and the
# given stale-while-revalidate window, and sets URL_<NAME>.
start_chimney() {
    local name=$1 ttl=$2 swr=$3 port
    port=$(free_port)
    printf '[[ttl]]\npath = "/"\nduration = "%s"\n' "$ttl" >"$WORK/$name.toml"
    env OTEL_SDK_DISABLED=true RUST_LOG=warn CHIMNEY_STALE_WHILE_REVALIDATE="$swr" \
        "$BIN/chimney" --config "$WORK/$name.toml" --addr "127.0.0.1:$port" \
        --github-api-url "http://127.0.0.1:$UP" --redis "" --repo bench/repo \
        >"$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/healthz" "$pid" ||
        die "chimney ($name) does not start: $(tail -n 20 "$WORK/$name.log")"
    printf -v "URL_$name" '%s' "http://127.0.0.1:$port"
}

start_chimney hit 1h 0s
start_chimney swr "${TTL_SECS}s" 60s
start_chimney off "${TTL_SECS}s" 0s

{
    printf 'local paths = {'
    printf '"%s",' "${PATHS[@]}"
    printf '}\nlocal i = 0\n'
    printf 'request = function()\n  i = i %% #paths + 1\n  return wrk.format("GET", paths[i])\nend\n'
} >"$WORK/dashboard.lua"

warm() {
    local path
    for path in "${PATHS[@]}"; do curl -fsS -o /dev/null --max-time 5 "$1$path"; done
}

# measure NAME : runs wrk at that chimney and prints "p50_ms p99_ms requests upstream".
measure() {
    local url_var="URL_$1" out p50 p99 requests
    warm "${!url_var}"
    upstream_reset
    out=$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency \
        -s "$WORK/dashboard.lua" "${!url_var}")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    echo "$p50 $p99 $requests $(upstream_total)"
}

declare -A P50 P99 REQS UPS
for round in $(seq "$ROUNDS"); do
    order=(hit swr off)
    ((round % 2 == 0)) && order=(off swr hit)
    for name in "${order[@]}"; do
        read -r p50 p99 requests ups < <(measure "$name")
        log "round $round $name: p50 ${p50} ms, p99 ${p99} ms, $requests requests, $ups upstream"
        P50[$name]+="$p50 "
        P99[$name]+="$p99 "
        REQS[$name]+="$requests "
        UPS[$name]+="$ups "
    done
done

# shellcheck disable=SC2086
med() { median "$1" $2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

hit99=$(med '%.3f' "${P99[hit]}")
swr99=$(med '%.3f' "${P99[swr]}")
off99=$(med '%.3f' "${P99[off]}")
echo
echo "stale-while-revalidate, $ROUNDS rounds (medians): wrk -t$THREADS -c$CONNECTIONS -d$DURATION," \
    "${#PATHS[@]} dashboard keys, TTL ${TTL_SECS}s, upstream delay ${DELAY_MS} ms"
printf '%-34s %10s %10s %10s %12s\n' run 'p50 ms' 'p99 ms' requests 'upstream'
for name in hit swr off; do
    case $name in
        hit) label='hits only (TTL 1h)' ;;
        swr) label="SWR 60s, TTL ${TTL_SECS}s" ;;
        off) label="SWR off (0s), TTL ${TTL_SECS}s" ;;
    esac
    printf '%-34s %10s %10s %10s %12s\n' "$label" "$(med '%.3f' "${P50[$name]}")" \
        "$(med '%.3f' "${P99[$name]}")" "$(med '%.0f' "${REQS[$name]}")" "$(med '%.0f' "${UPS[$name]}")"
done
echo
echo "p99 with SWR / hit p99:    $(ratio "$swr99" "$hit99")  (target <= 1.5)"
echo "p99 without SWR / hit p99: $(ratio "$off99" "$hit99")"
