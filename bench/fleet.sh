#!/usr/bin/env bash
# Fleet single flight: upstream requests made by two chimney instances sharing one Redis
# database ("fleet"), beside two instances on separate databases ("apart", what each instance
# does on its own: per-instance coalescing only), in one run.
#
# All four sit in front of one fake GitHub (examples/bench_upstream.rs, which counts the
# requests it gets per path at /__count) and one private redis-server (the Dragonfly stand-in).
#   1. Stampede: STAMPEDE_N concurrent GETs of one cold key, half on each instance of a pair,
#      fired together (examples/bench_stampede.rs, two at once) -> upstream requests
#      (target: exactly 1 for the fleet).
#   2. Dashboard: wrk on both instances of a pair at once for DASH_SECS, each request one of
#      six keys with TTLs of 1, 2 and 3 s -> upstream requests per key per TTL window across
#      both instances (target: <= 1.0 for the fleet).
# See BENCHMARKS.md, "Fleet single flight".
#
# Usage: bash bench/fleet.sh      (run as root so missing wrk/redis-server can be installed)
# Knobs (env): STAMPEDE_N=200 DELAY_MS=100 DASH_SECS=12 DASH_CONNECTIONS=16 SKIP_BUILD=1
#              PROFILE=release (or debug: the counts do not depend on it, latencies do)
#
# Loopback only. Everything it writes lives in one temp dir, removed on exit with every
# process it started (by PID). Exit status: 0 when both pairs were measured, 1 on a setup
# failure.
set -euo pipefail

STAMPEDE_N=${STAMPEDE_N:-200}
DELAY_MS=${DELAY_MS:-100}
DASH_SECS=${DASH_SECS:-12}
DASH_CONNECTIONS=${DASH_CONNECTIONS:-16}
SKIP_BUILD=${SKIP_BUILD:-0}
PROFILE=${PROFILE:-release}
[[ $PROFILE == release || $PROFILE == debug ]] || { echo "PROFILE must be release or debug" >&2; exit 1; }

UPSTREAM_PREFIX='/repos/bench/repo'
# The dashboard's keys and their TTLs (seconds), matched by the [[ttl]] rules below.
DASH_KEYS=(/pulls /issues /actions/runs /releases /branches /tags)
DASH_TTLS=(1 1 2 2 3 3)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/$PROFILE

need_tools wrk:wrk redis-server:redis-server redis-cli:redis-tools curl:curl python3:python3

bench_workdir chimney-bench-fleet

upstream_reset() { curl -fsS -X POST --max-time 5 "http://127.0.0.1:$UP/__reset" >/dev/null; }

# Prints the upstream request count of one path-and-query (0 when absent).
upstream_count() {
    curl -fsS --max-time 5 "http://127.0.0.1:$UP/__count" |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$1"
}

dragonfly_state() {
    curl -fsS --max-time 2 "$1/healthz" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("dragonfly", ""))' 2>/dev/null || true
}

# --- build -------------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    flags=(--bin chimney --example bench_upstream --example bench_stampede)
    [[ $PROFILE == release ]] && flags=(--release "${flags[@]}")
    log "cargo build ${flags[*]}"
    cargo build "${flags[@]}"
fi
for b in chimney examples/bench_upstream examples/bench_stampede; do
    [[ -x $BIN/$b ]] || die "$BIN/$b missing (run without SKIP_BUILD=1)"
done

# --- fake upstream and redis-server ---------------------------------------------------------
start_announcing upstream "$BIN/examples/bench_upstream" --port 0 --delay-ms "$DELAY_MS"
UP=$PORT
log "fake upstream on 127.0.0.1:$UP (delay ${DELAY_MS} ms)"

RP=$(free_port)
mkdir -p "$WORK/redis"
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --databases 16 \
    --dir "$WORK/redis" --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do
    redis-cli -p "$RP" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$RP" ping >/dev/null 2>&1 || die "redis-server did not start: $(tail -n 5 "$WORK/redis.log")"
log "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$RP"

# --- chimneys: fleet-a/fleet-b on database 1; apart-a on 2, apart-b on 3 ----------------------
{
    for i in "${!DASH_KEYS[@]}"; do
        printf '[[ttl]]\npath = "%s"\nduration = "%ss"\n\n' "${DASH_KEYS[$i]}" "${DASH_TTLS[$i]}"
    done
} >"$WORK/chimney.toml"

wait_connected() { # base-url
    local state=''
    for _ in $(seq 100); do
        state=$(dragonfly_state "$1")
        [[ $state == connected ]] && return 0
        sleep 0.1
    done
    die "$1 reports dragonfly: ${state:-nothing}"
}

# Prints how often an instance stopped using Redis (a command overran 200 ms) so far.
outages() { grep -c 'Dragonfly unavailable' "$WORK/chimney-$1.log" || true; }

declare -A BASE
start_chimney() { # name database
    local name=$1 db=$2 port pid
    port=$(free_port)
    BASE[$name]="http://127.0.0.1:$port"
    RUST_LOG=warn OTEL_SDK_DISABLED=true "$BIN/chimney" --config "$WORK/chimney.toml" \
        --addr "127.0.0.1:$port" --github-api-url "http://127.0.0.1:$UP" \
        --redis "redis://127.0.0.1:$RP/$db" --repo bench/repo >"$WORK/chimney-$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "${BASE[$name]}/healthz" "$pid" ||
        die "chimney ($name) does not answer /healthz: $(tail -n 20 "$WORK/chimney-$name.log")"
    wait_connected "${BASE[$name]}"
    log "chimney ($name) on ${BASE[$name]}, Redis database $db"
}
start_chimney fleet-a 1
start_chimney fleet-b 1
start_chimney apart-a 2
start_chimney apart-b 3
# Both of a pair subscribed (the fleet's channel is per namespace, so four listeners hear it).
for _ in $(seq 100); do
    subs=$(redis-cli -p "$RP" pubsub numsub chimney:bench/repo:fetched | sed -n 2p)
    [[ ${subs:-0} -ge 4 ]] && break
    sleep 0.1
done

# --- 1. stampede -------------------------------------------------------------------------------
declare -A ST_UP ST_X ST_P99 ST_OUT
stampede() { # pair cold-rel
    local pair=$1 rel=$2 half=$((STAMPEDE_N / 2)) side pids=()
    # Opens each instance's Redis connections first (every request that misses memory reads
    # Redis), so the timed round does not measure connecting a cold pool on a busy machine;
    # an instance that overran the 200 ms Redis timeout meanwhile is waited for.
    for side in a b; do
        "$BIN/examples/bench_stampede" --requests 64 --url "${BASE[$pair-$side]}/api/github${rel}0" \
            --timeout-secs 30 >/dev/null || true
        wait_connected "${BASE[$pair-$side]}"
    done
    local before=$(($(outages "$pair-a") + $(outages "$pair-b")))
    upstream_reset
    log "stampede: $pair: $STAMPEDE_N concurrent GET /api/github$rel ($half on each instance, cold)"
    for side in a b; do
        "$BIN/examples/bench_stampede" --requests "$half" --url "${BASE[$pair-$side]}/api/github$rel" \
            --warm-url "${BASE[$pair-$side]}/healthz" --timeout-secs 30 >"$WORK/stampede-$pair-$side.txt" &
        pids+=("$!")
    done
    wait "${pids[@]}" || true
    cat "$WORK/stampede-$pair-a.txt" "$WORK/stampede-$pair-b.txt"
    ST_UP[$pair]=$(upstream_count "$UPSTREAM_PREFIX$rel")
    ST_OUT[$pair]=$(($(outages "$pair-a") + $(outages "$pair-b") - before))
    ST_X[$pair]=$(cat "$WORK/stampede-$pair-a.txt" "$WORK/stampede-$pair-b.txt" | sed -n 's/^X_CACHE //p' |
        tr ' ' '\n' | awk -F= 'NF == 2 { n[$1] += $2 } END { for (k in n) printf "%s=%d ", k, n[k] }')
    ST_P99[$pair]=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' "$WORK/stampede-$pair-a.txt" "$WORK/stampede-$pair-b.txt" |
        sort -g | tail -n 1)
}
# Keys the [[ttl]] rules above leave at the default 30 s: the whole stampede sees one entry.
stampede fleet /commits/fleet
stampede apart /commits/apart

# --- 2. dashboard over both instances ------------------------------------------------------------
cat >"$WORK/dash.lua" <<EOF
local keys = { $(printf '"/api/github%s",' "${DASH_KEYS[@]}") }
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", keys[(n % #keys) + 1])
end
EOF
declare -A DASH_RATIO DASH_DETAIL DASH_WALL
dashboard() { # pair
    local pair=$1 started ended side i up windows pids=()
    upstream_reset
    log "dashboard: $pair: wrk -t1 -c$DASH_CONNECTIONS -d${DASH_SECS}s on each instance at once, six keys, TTLs ${DASH_TTLS[*]} s"
    started=$(date +%s.%N)
    for side in a b; do
        wrk -t1 -c"$DASH_CONNECTIONS" -d"${DASH_SECS}s" -s "$WORK/dash.lua" "${BASE[$pair-$side]}" \
            >"$WORK/wrk-$pair-$side.txt" 2>&1 &
        pids+=("$!")
    done
    wait "${pids[@]}" || true
    ended=$(date +%s.%N)
    DASH_WALL[$pair]=$(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.1f", b - a }')
    DASH_DETAIL[$pair]=''
    local sum=0 total_windows=0 worst=0
    for i in "${!DASH_KEYS[@]}"; do
        up=$(upstream_count "$UPSTREAM_PREFIX${DASH_KEYS[$i]}")
        # TTL windows the run spanned: a key asked for all along is stale once per window.
        windows=$(awk -v w="${DASH_WALL[$pair]}" -v t="${DASH_TTLS[$i]}" 'BEGIN { x = w / t; print (x == int(x)) ? x : int(x) + 1 }')
        DASH_DETAIL[$pair]+="${DASH_KEYS[$i]}(${DASH_TTLS[$i]}s)=$up/$windows "
        sum=$((sum + up))
        total_windows=$((total_windows + windows))
        worst=$(awk -v a="$worst" -v u="$up" -v w="$windows" 'BEGIN { r = u / w; print (r > a) ? r : a }')
    done
    DASH_RATIO[$pair]=$(awk -v s="$sum" -v w="$total_windows" -v m="$worst" 'BEGIN { printf "%.2f (worst key %.2f)", s / w, m }')
    grep -h -E 'requests in|Requests/sec|Non-2xx|Socket errors' "$WORK/wrk-$pair-a.txt" "$WORK/wrk-$pair-b.txt" |
        sed 's/^/   /' >&2 || true
}
dashboard fleet
dashboard apart

# --- summary ---------------------------------------------------------------------------------
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo
echo "== Machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}; load average now $(cut -d' ' -f1-3 /proc/loadavg); $PROFILE build"
echo "== Stampede: $STAMPEDE_N concurrent GETs of one cold key, half on each instance, upstream ${DELAY_MS} ms"
for pair in fleet apart; do
    printf '   %-6s upstream requests: %s   X-Cache: %s  worst p99 %s ms; Redis outages during it: %s\n' \
        "$pair" "${ST_UP[$pair]}" "${ST_X[$pair]}" "${ST_P99[$pair]:-n/a}" "${ST_OUT[$pair]}"
done
echo "== Dashboard: both instances under wrk for ${DASH_SECS} s; upstream requests per key per TTL window"
for pair in fleet apart; do
    printf '   %-6s %s over %s s: %s\n' "$pair" "${DASH_RATIO[$pair]}" "${DASH_WALL[$pair]}" "${DASH_DETAIL[$pair]}"
done
echo "   (fleet: both instances on one Redis database; apart: each on its own, so each coalesces alone)"
echo "== Redis outages seen (a command over 200 ms; the instance then coalesces alone until a ping answers):"
for name in fleet-a fleet-b apart-a apart-b; do printf '   %s: %s' "$name" "$(outages "$name")"; done
echo
