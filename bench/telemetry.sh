#!/usr/bin/env bash
# Telemetry overhead on the hit path: the same chimney release binary with OTLP export on
# (to examples/otlp_sink.rs, a local sink that accepts and drops OTLP/HTTP) and off
# (OTEL_SDK_DISABLED=true), measured with wrk in the same run, alternating, ROUNDS times each.
# Both serve a warm key from the memory tier in front of examples/bench_upstream.rs; both write
# their JSON request log to a file, as in production. Loopback only; every wrk run is bounded
# by DURATION. Target: telemetry costs at most 10% of hit-path throughput.
#
# Usage: bash bench/telemetry.sh        (run as root so a missing wrk can be installed)
# Knobs (env): THREADS=1 CONNECTIONS=32 DURATION=10s WARMUP=2s ROUNDS=5 SKIP_BUILD=1
#              ON_ENV="K=V ..." extra environment for the telemetry-on instances, e.g.
#              ON_ENV="RUST_LOG=warn" or ON_ENV="OTEL_EXPORTER_OTLP_COMPRESSION=gzip"
#              COMPARE_SDK=1 adds a third instance, export on with each request's span and
#              log record sent through the SDK and opentelemetry-otlp instead of chimney's
#              request exporter (CHIMNEY_BENCH_REQUEST_EXPORT=sdk), measured in the same
#              rounds: what the request exporter saves.
#
# Prints a Markdown table (requests/s, p99 and the server's CPU per request, per round;
# medians; overhead) on stdout. The pass/fail gate is throughput; CPU per request is the
# steadier figure on a noisy machine (it does not depend on what else gets the cores).
# Everything it writes lives in one temp dir, removed on exit with every process it started.
set -euo pipefail

THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-5}
SKIP_BUILD=${SKIP_BUILD:-0}
ON_ENV=${ON_ENV:-}
COMPARE_SDK=${COMPARE_SDK:-0}
HOT_PATH='/api/github/pulls?state=open'

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

need_tools wrk:wrk curl:curl python3:python3

bench_workdir chimney-telemetry-bench

if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release --bin chimney --example bench_upstream --example otlp_sink"
    cargo build --release --bin chimney --example bench_upstream --example otlp_sink
fi
for tool in "$BIN/chimney" "$BIN/examples/bench_upstream" "$BIN/examples/otlp_sink"; do
    [[ -x $tool ]] || die "missing $tool"
done

start_announcing upstream "$BIN/examples/bench_upstream" --port 0 --delay-ms 0
UP=$PORT
start_announcing sink "$BIN/examples/otlp_sink" --port 0
SINK=$PORT
log "fake upstream on :$UP, OTLP sink on :$SINK"
if [[ $COMPARE_SDK == 1 ]]; then
    start_announcing sdk-sink "$BIN/examples/otlp_sink" --port 0
    SDK_SINK=$PORT
    log "OTLP sink of the SDK-path instance on :$SDK_SINK"
fi

# start_chimney NAME ENV... : starts chimney with extra environment; sets URL to its base URL
# and PID to its process id.
start_chimney() {
    local name=$1
    shift
    local port
    port=$(free_port)
    env "$@" "$BIN/chimney" --addr "127.0.0.1:$port" --github-api-url "http://127.0.0.1:$UP" \
        --redis "" --repo bench/repo >"$WORK/$name.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_http "http://127.0.0.1:$port/healthz" || die "chimney ($name) did not start: $(tail -n 5 "$WORK/$name.log")"
    curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$port$HOT_PATH" || die "chimney ($name) cannot serve $HOT_PATH"
    URL="http://127.0.0.1:$port"
}

start_chimney off OTEL_SDK_DISABLED=true
OFF=$URL OFF_PID=$PID
# shellcheck disable=SC2086 # ON_ENV is a list of K=V words, split on purpose.
start_chimney on OTEL_SDK_DISABLED=false "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK" \
    OTEL_SERVICE_NAME=chimney-bench $ON_ENV
ON=$URL ON_PID=$PID
[[ $(curl -sS -o /dev/null -D - "$ON$HOT_PATH" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}') == HIT ]] ||
    die "the hot path is not a cache hit"
if [[ $COMPARE_SDK == 1 ]]; then
    # shellcheck disable=SC2086 # as above.
    start_chimney sdk OTEL_SDK_DISABLED=false "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SDK_SINK" \
        OTEL_SERVICE_NAME=chimney-bench CHIMNEY_BENCH_REQUEST_EXPORT=sdk $ON_ENV
    SDK=$URL SDK_PID=$PID
fi

# run_wrk URL PID : prints "rps p99_ms cpu_us_per_request".
run_wrk() {
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$1$HOT_PATH" >/dev/null
    local out ticks_before ticks
    ticks_before=$(cpu_ticks "$2")
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$1$HOT_PATH")
    ticks=$(($(cpu_ticks "$2") - ticks_before))
    local rps p99 total
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    total=$(awk '/ requests in / { print $1 }' <<<"$out")
    echo "$rps $(to_ms "$p99") $(cpu_us_per_request "$ticks" "$total")"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -a RPS_OFF RPS_ON CPU_OFF CPU_ON RPS_SDK CPU_SDK
if [[ $COMPARE_SDK == 1 ]]; then
    echo "| round | telemetry off (req/s, p99 ms, CPU us/req) | telemetry on (req/s, p99 ms, CPU us/req) | on, requests through the SDK (req/s, p99 ms, CPU us/req) |"
    echo "|---|---|---|---|"
else
    echo "| round | telemetry off (req/s, p99 ms, CPU us/req) | telemetry on (req/s, p99 ms, CPU us/req) |"
    echo "|---|---|---|"
fi
for round in $(seq "$ROUNDS"); do
    # Each instance goes first, second (and third) in turn.
    order=(off on)
    [[ $COMPARE_SDK == 1 ]] && order+=(sdk)
    shift_by=$(((round - 1) % ${#order[@]}))
    order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
    for which in "${order[@]}"; do
        case $which in
        off) read -r off_rps off_p99 off_cpu < <(run_wrk "$OFF" "$OFF_PID") ;;
        on) read -r on_rps on_p99 on_cpu < <(run_wrk "$ON" "$ON_PID") ;;
        sdk) read -r sdk_rps sdk_p99 sdk_cpu < <(run_wrk "$SDK" "$SDK_PID") ;;
        esac
    done
    RPS_OFF+=("$off_rps")
    RPS_ON+=("$on_rps")
    CPU_OFF+=("$off_cpu")
    CPU_ON+=("$on_cpu")
    if [[ $COMPARE_SDK == 1 ]]; then
        RPS_SDK+=("$sdk_rps")
        CPU_SDK+=("$sdk_cpu")
        echo "| $round | $off_rps, $off_p99, $off_cpu | $on_rps, $on_p99, $on_cpu | $sdk_rps, $sdk_p99, $sdk_cpu |"
    else
        echo "| $round | $off_rps, $off_p99, $off_cpu | $on_rps, $on_p99, $on_cpu |"
    fi
done

med_off=$(median "%.0f" "${RPS_OFF[@]}")
med_on=$(median "%.0f" "${RPS_ON[@]}")
cpu_off=$(median "%.1f" "${CPU_OFF[@]}")
cpu_on=$(median "%.1f" "${CPU_ON[@]}")
overhead=$(awk -v off="$med_off" -v on="$med_on" 'BEGIN { printf "%.1f", (off - on) / off * 100 }')
# Each round's two measurements are adjacent in time, so their ratio is less exposed to the
# machine's slow swings than the two medians are.
declare -a PAIRED
for i in "${!RPS_OFF[@]}"; do
    PAIRED+=("$(awk -v off="${RPS_OFF[$i]}" -v on="${RPS_ON[$i]}" 'BEGIN { printf "%.1f", (off - on) / off * 100 }')")
done
paired=$(median "%.1f" "${PAIRED[@]}")
cpu_overhead=$(awk -v off="$cpu_off" -v on="$cpu_on" 'BEGIN { printf "%.1f", (on - off) / off * 100 }')
sleep 3
exported=$(curl -fsS --max-time 5 "http://127.0.0.1:$SINK/__count")
echo
echo "median req/s: off $med_off, on $med_on; telemetry overhead ${overhead}% (target <= 10%)"
echo "per-round overheads: ${PAIRED[*]} (%); their median ${paired}%"
echo "median server CPU per request: off $cpu_off us, on $cpu_on us (+${cpu_overhead}%)"
echo "exported to the sink during the run: $exported"
if [[ $COMPARE_SDK == 1 ]]; then
    med_sdk=$(median "%.0f" "${RPS_SDK[@]}")
    cpu_sdk=$(median "%.1f" "${CPU_SDK[@]}")
    sdk_overhead=$(awk -v off="$med_off" -v on="$med_sdk" 'BEGIN { printf "%.1f", (off - on) / off * 100 }')
    declare -a SDK_PAIRED
    for i in "${!RPS_OFF[@]}"; do
        SDK_PAIRED+=("$(awk -v off="${RPS_OFF[$i]}" -v on="${RPS_SDK[$i]}" 'BEGIN { printf "%.1f", (off - on) / off * 100 }')")
    done
    sdk_paired=$(median "%.1f" "${SDK_PAIRED[@]}")
    sdk_cpu_overhead=$(awk -v off="$cpu_off" -v on="$cpu_sdk" 'BEGIN { printf "%.1f", (on - off) / off * 100 }')
    echo "requests through the SDK: median $med_sdk req/s, overhead ${sdk_overhead}% (per-round median ${sdk_paired}%), CPU $cpu_sdk us per request (+${sdk_cpu_overhead}%)"
    echo "exported to its sink: $(curl -fsS --max-time 5 "http://127.0.0.1:$SDK_SINK/__count")"
fi
[[ -n $ON_ENV ]] && echo "telemetry-on instance also had: $ON_ENV"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS alternating rounds, GET $HOT_PATH (memory-tier hit)"
echo "load average before the run: $LOAD_BEFORE"
awk -v o="$overhead" 'BEGIN { exit !(o <= 10) }' || { log "overhead above 10%"; exit 3; }
