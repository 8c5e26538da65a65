#!/usr/bin/env bash
# Memory footprint: chimney's RSS at rest and after filling its memory tier with N distinct keys.
#
# For each capacity in CAPACITIES, starts a fresh chimney (memory tier only, telemetry off,
# its JSON request log on, to a file) in front of the fake GitHub (examples/bench_upstream.rs
# serving a BODY_BYTES JSON body for every path, no delay), reads its RSS at rest, then GETs
# KEYS distinct keys once each (/api/github/issues/{n}, examples/bench_fill.rs over
# CONCURRENCY keep-alive connections) and reads its RSS again, its peak RSS (VmHWM), the
# entries kept and their weight (GET /api/cache/stats), and the fill rate. RSS is VmRSS from
# /proc/PID/status (anonymous and file-backed pages), read after SETTLE seconds of idling.
# See BENCHMARKS.md, Footprint.
#
# Usage: bash bench/memory.sh
# Knobs (env): KEYS=100000 BODY_BYTES=8192 CAPACITIES="67108864 536870912" CONCURRENCY=32
#              SETTLE=3 SKIP_BUILD=1 (use existing release binaries)
#              CHIMNEY_ENV="NAME=value ..." extra environment for chimney (e.g. MIMALLOC_* options)
# Exit status: 0 when every capacity was measured and every key answered 200, 1 otherwise.
set -euo pipefail

KEYS=${KEYS:-100000}
BODY_BYTES=${BODY_BYTES:-8192}
CAPACITIES=${CAPACITIES:-67108864 536870912}
CONCURRENCY=${CONCURRENCY:-32}
SETTLE=${SETTLE:-3}
SKIP_BUILD=${SKIP_BUILD:-0}
CHIMNEY_ENV=${CHIMNEY_ENV:-}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release

need_tools curl:curl python3:python3
bench_workdir chimney-memory

if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release --bin chimney --example bench_upstream --example bench_fill"
    cargo build --release --bin chimney --example bench_upstream --example bench_fill
fi
for b in chimney examples/bench_upstream examples/bench_fill; do
    [[ -x $BIN/$b ]] || die "missing $BIN/$b"
done

# status_kib PID FIELD : prints a /proc/PID/status field (VmRSS, VmHWM, RssAnon, RssFile) in KiB.
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }

start_announcing upstream "$BIN/examples/bench_upstream" --port 0 --delay-ms 0 --body-bytes "$BODY_BYTES"
UP=$PORT
log "fake upstream on 127.0.0.1:$UP serving $BODY_BYTES-byte bodies"

RESULTS=()
STATUS=0
for capacity in $CAPACITIES; do
    port=$(free_port)
    base="http://127.0.0.1:$port"
    # CHIMNEY_ENV is a list of NAME=value words: split on purpose.
    # shellcheck disable=SC2086
    env OTEL_SDK_DISABLED=true CHIMNEY_MEMORY_CAPACITY_BYTES="$capacity" $CHIMNEY_ENV \
        "$BIN/chimney" --addr "127.0.0.1:$port" --github-api-url "http://127.0.0.1:$UP" \
        --redis "" --repo bench/repo >"$WORK/chimney-$capacity.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "$base/healthz" "$pid" || die "chimney did not start: $(tail -n 20 "$WORK/chimney-$capacity.log")"
    sleep "$SETTLE"
    rest=$(status_kib "$pid" VmRSS)
    rest_anon=$(status_kib "$pid" RssAnon)
    rest_file=$(status_kib "$pid" RssFile)
    log "capacity $capacity: at rest VmRSS $(mib "$rest") MiB (anon $(mib "$rest_anon"), file $(mib "$rest_file"))"
    log "capacity $capacity: bench_fill --keys $KEYS --concurrency $CONCURRENCY $base/api/github/issues/"
    fill=$("$BIN/examples/bench_fill" --url "$base/api/github/issues/" --keys "$KEYS" \
        --concurrency "$CONCURRENCY") || STATUS=1
    echo "$fill"
    sleep "$SETTLE"
    rss=$(status_kib "$pid" VmRSS)
    hwm=$(status_kib "$pid" VmHWM)
    anon=$(status_kib "$pid" RssAnon)
    stats=$(curl -fsS --max-time 10 "$base/api/cache/stats?limit=1")
    read -r entries weight < <(python3 -c 'import json, sys
m = json.load(sys.stdin)["memory"]
print(m["entries"], m["bytes"])' <<<"$stats")
    cap_kib=$((capacity / 1024))
    rate=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' <<<"$fill")
    RESULTS+=("$(printf '%-11s %9s %9s %9s %9s %12s %12s %9s %11s %7s' "$(mib "$cap_kib")" \
        "$(mib "$rest")" "$(mib "$rss")" "$(mib "$hwm")" "$(mib "$anon")" \
        "$(mib $((rss - cap_kib)))" "$(mib $((hwm - cap_kib)))" "$entries" "$(mib $((weight / 1024)))" \
        "${rate:-n/a}")")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
echo
echo "== Machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $MEM_GIB GiB; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $KEYS distinct keys, $BODY_BYTES-byte bodies, $CONCURRENCY connections; MiB throughout${CHIMNEY_ENV:+; env $CHIMNEY_ENV}"
printf '%-11s %9s %9s %9s %9s %12s %12s %9s %11s %7s\n' capacity rest RSS peak anon 'RSS-cap' 'peak-cap' \
    entries 'weight' 'keys/s'
printf '%s\n' "${RESULTS[@]}"
echo "targets: rest <= 16 MiB; RSS - capacity <= 24 MiB"
exit "$STATUS"
