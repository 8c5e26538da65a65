#!/usr/bin/env bash
# Hit-path throughput and p99 with the Dragonfly tier on, beside memory only, in one run.
#
# Two chimney instances sit in front of the same fake GitHub (examples/bench_upstream.rs):
# one with `--redis ""` (memory only), one with `--redis redis://…` pointing at a private
# redis-server (the Dragonfly stand-in). A warm key is served by the memory tier in both, so
# the Dragonfly instance should stay within 10% of the memory-only throughput. wrk runs on
# each in alternation, same settings. See BENCHMARKS.md, "Dragonfly tier".
#
# Usage: bash bench/dragonfly.sh      (run as root so missing wrk/redis-server can be installed)
# Knobs (env): THREADS=2 CONNECTIONS=64 DURATION=10s WARMUP=2s ROUNDS=3 DELAY_MS=50
#              SKIP_BUILD=1 (use existing release binaries)
#
# Loopback only. Everything it writes lives in one temp dir, removed on exit with every
# process it started (by PID). Exit status: 0 when both were measured, 1 on a setup failure.
set -euo pipefail

THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
DELAY_MS=${DELAY_MS:-50}
SKIP_BUILD=${SKIP_BUILD:-0}

HOT_PATH='/api/github/pulls?state=open'
# Entries are namespaced by the served repository (--repo bench/repo below).
HOT_KEY='chimney:bench/repo:/pulls?state=open'
TARGET_RATIO=0.90

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release

need_tools wrk:wrk redis-server:redis-server redis-cli:redis-tools curl:curl python3:python3

bench_workdir chimney-bench-dragonfly

# Prints the `dragonfly` field of a chimney's /healthz (empty on failure).
dragonfly_state() {
    curl -fsS --max-time 2 "$1/healthz" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("dragonfly", ""))' 2>/dev/null || true
}


ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.3f", a / b }'; }

# --- build -------------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release --bin chimney --example bench_upstream"
    cargo build --release --bin chimney --example bench_upstream
fi
[[ -x $BIN/chimney && -x $BIN/examples/bench_upstream ]] ||
    die "release binaries missing under $BIN (run without SKIP_BUILD=1)"

# --- fake upstream -----------------------------------------------------------------------
start_announcing upstream "$BIN/examples/bench_upstream" --port 0 --delay-ms "$DELAY_MS"
UP=$PORT
log "fake upstream on 127.0.0.1:$UP (delay ${DELAY_MS} ms)"

# --- redis-server (the Dragonfly stand-in) ---------------------------------------------------
RP=$(free_port)
mkdir -p "$WORK/redis"
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK/redis" --daemonize no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 100); do
    redis-cli -p "$RP" ping >/dev/null 2>&1 && break
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
done
redis-cli -p "$RP" ping >/dev/null 2>&1 || die "redis-server did not start: $(tail -n 5 "$WORK/redis.log")"
log "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$RP"

# --- the two chimneys ------------------------------------------------------------------------
declare -A BASE PID
start_chimney() { # name redis-url
    local name=$1 redis=$2 port
    port=$(free_port)
    BASE[$name]="http://127.0.0.1:$port"
    OTEL_SDK_DISABLED=true "$BIN/chimney" --addr "127.0.0.1:$port" \
        --github-api-url "http://127.0.0.1:$UP" --redis "$redis" --repo bench/repo \
        >"$WORK/chimney-$name.log" 2>&1 &
    PID[$name]=$!
    PIDS+=("${PID[$name]}")
    wait_http "${BASE[$name]}/healthz" "${PID[$name]}" ||
        die "chimney ($name) does not answer /healthz: $(tail -n 20 "$WORK/chimney-$name.log")"
    log "chimney ($name) on ${BASE[$name]}"
}
start_chimney memory ""
start_chimney dragonfly "redis://127.0.0.1:$RP"

state=''
for _ in $(seq 100); do
    state=$(dragonfly_state "${BASE[dragonfly]}")
    [[ $state == connected ]] && break
    sleep 0.1
done
[[ $state == connected ]] || die "chimney (dragonfly) reports dragonfly: ${state:-nothing} after 10 s"
[[ $(dragonfly_state "${BASE[memory]}") == disabled ]] || die "chimney (memory) does not report dragonfly: disabled"
log "chimney (dragonfly) reports dragonfly: connected"

# --- warm the hot key ----------------------------------------------------------------------
TARGETS=(memory dragonfly)
for t in "${TARGETS[@]}"; do
    url="${BASE[$t]}$HOT_PATH"
    state=''
    for _ in $(seq 20); do
        curl -fsS -o /dev/null --max-time 5 "$url" || true
        state=$(x_cache_of "$url")
        [[ $state == HIT ]] && break
        sleep 0.1
    done
    [[ $state == HIT ]] || die "$t: warm key $HOT_PATH answers X-Cache: ${state:-none}, not HIT"
    log "$t: warm key $HOT_PATH answers X-Cache: HIT"
done
[[ $(redis-cli -p "$RP" exists "$HOT_KEY") == 1 ]] || die "the warm key is not in Redis ($HOT_KEY)"
log "Redis holds $HOT_KEY (the shared tier is written)"

# --- throughput and p99 on the warm key ------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    log "warning: load average $LOAD_BEFORE on $(nproc) CPUs before measuring: other work will skew the figures"
fi
declare -A RPS_LIST P99_LIST CPU_LIST
for t in "${TARGETS[@]}"; do
    RPS_LIST[$t]='' P99_LIST[$t]='' CPU_LIST[$t]=''
    log "$t: warm-up wrk -t$THREADS -c$CONNECTIONS -d$WARMUP"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "${BASE[$t]}$HOT_PATH" >/dev/null
done
for round in $(seq "$ROUNDS"); do
    order=(memory dragonfly)
    ((round % 2 == 0)) && order=(dragonfly memory)
    for t in "${order[@]}"; do
        out="$WORK/wrk-$t-$round.txt"
        log "round $round: $t: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency ${BASE[$t]}$HOT_PATH"
        ticks_before=$(cpu_ticks "${PID[$t]}")
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${BASE[$t]}$HOT_PATH" >"$out"
        ticks=$(($(cpu_ticks "${PID[$t]}") - ticks_before))
        total=$(awk '/ requests in / { print $1 }' "$out")
        cpu_us=$(cpu_us_per_request "$ticks" "$total")
        rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
        p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
        bad=$(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | paste -sd';' - || true)
        printf '%-10s round %s: %10.0f req/s  p99 %8.3f ms  server CPU %6s us/req%s\n' \
            "$t" "$round" "$rps" "$p99" "$cpu_us" "${bad:+  ($bad)}"
        RPS_LIST[$t]+="$rps "
        P99_LIST[$t]+="$p99 "
        CPU_LIST[$t]+="$cpu_us "
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
state=$(dragonfly_state "${BASE[dragonfly]}")

# --- summary -------------------------------------------------------------------------------
declare -A RPS P99 CPU
for t in "${TARGETS[@]}"; do
    # The lists are space-separated numbers: split them on purpose.
    # shellcheck disable=SC2086
    RPS[$t]=$(median "%.0f" ${RPS_LIST[$t]})
    # shellcheck disable=SC2086
    P99[$t]=$(median "%.3f" ${P99_LIST[$t]})
    # shellcheck disable=SC2086
    CPU[$t]=$(median "%.1f" ${CPU_LIST[$t]})
done
RPS_RATIO=$(ratio "${RPS[dragonfly]}" "${RPS[memory]}")
P99_RATIO=$(ratio "${P99[dragonfly]}" "${P99[memory]}")
VERDICT=$(awk -v r="$RPS_RATIO" -v t="$TARGET_RATIO" 'BEGIN { print (r != "n/a" && r + 0 >= t + 0) ? "met" : "MISSED" }')
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
echo
echo "== Machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $MEM_GIB GiB; $(redis-server --version | cut -d' ' -f1-3); $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
echo "   load average before the wrk runs: $LOAD_BEFORE; after: $LOAD_AFTER; dragonfly after the runs: ${state:-unknown}"
echo "== Summary: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS round(s) each (median), warm key $HOT_PATH"
for t in "${TARGETS[@]}"; do
    printf '   per round, %-10s %sreq/s; p99 %sms; server CPU %sus/req\n' "$t:" "${RPS_LIST[$t]}" \
        "${P99_LIST[$t]}" "${CPU_LIST[$t]}"
done
printf '%-32s %12s %12s %18s %8s\n' metric memory dragonfly dragonfly/memory target
printf '%-32s %12s %12s %18s %8s\n' 'hit throughput (req/s, median)' "${RPS[memory]}" "${RPS[dragonfly]}" \
    "$RPS_RATIO" "$VERDICT"
printf '%-32s %12s %12s %18s %8s\n' 'hit p99 latency (ms, median)' "${P99[memory]}" "${P99[dragonfly]}" \
    "$P99_RATIO" ''
printf '%-32s %12s %12s %18s %8s\n' 'server CPU per hit (us, median)' "${CPU[memory]}" "${CPU[dragonfly]}" \
    "$(ratio "${CPU[dragonfly]}" "${CPU[memory]}")" ''
echo "target: dragonfly/memory throughput >= $TARGET_RATIO"
