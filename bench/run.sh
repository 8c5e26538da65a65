#!/usr/bin/env bash
# Hit-path throughput / p99 latency and a stampede probe: chimney vs nginx proxy_cache.
#
# Both proxies sit in front of the same fake GitHub (examples/bench_upstream.rs) and map
# /api/github/{path} to /repos/bench/repo/{path}. wrk measures a warm key on each, in
# alternating order; examples/bench_stampede.rs fires 200 concurrent requests at one cold key
# on each and the fake upstream counts how many requests reached it. See BENCHMARKS.md.
#
# Usage: bash bench/run.sh            (run as root so missing wrk/nginx can be installed)
# Knobs (env): THREADS=2 CONNECTIONS=64 DURATION=10s WARMUP=2s ROUNDS=3 DELAY_MS=50
#              STAMPEDE_N=200 SKIP_BUILD=1 (use existing release binaries)
#              LOGS=on: both log every request to a file in the temp dir (chimney its JSON request
#              log at its default level, nginx its default unbuffered access log); LOGS=off:
#              neither does (chimney with RUST_LOG=warn, nginx with access_log off).
#
# Everything it writes lives in one temp dir, removed on exit with every process it started.
# Exit status: 0 when both proxies were measured, 1 on a setup failure, 2 when chimney could
# not be measured (the nginx half is still run and printed).
set -euo pipefail

THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
DELAY_MS=${DELAY_MS:-50}
STAMPEDE_N=${STAMPEDE_N:-200}
SKIP_BUILD=${SKIP_BUILD:-0}
LOGS=${LOGS:-on}
[[ $LOGS == on || $LOGS == off ]] || { echo "LOGS must be on or off" >&2; exit 1; }

HOT_PATH='/api/github/pulls?state=open'
UPSTREAM_PREFIX='/repos/bench/repo'

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release

need_tools wrk:wrk nginx:nginx curl:curl python3:python3

bench_workdir chimney-bench

# Prints the status code of a GET.
status_of() { curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$1" 2>/dev/null || true; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "n/a" || b == "n/a") print "n/a"; else printf "%.2f", a / b }'; }

upstream_reset() { curl -fsS -X POST --max-time 5 "http://127.0.0.1:$UP/__reset" >/dev/null; }

# Prints the upstream request count for one upstream path-and-query (0 when absent).
upstream_count() {
    curl -fsS --max-time 5 "http://127.0.0.1:$UP/__count" |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$1"
}

upstream_total() {
    curl -fsS --max-time 5 "http://127.0.0.1:$UP/__count" |
        python3 -c 'import json, sys; print(sum(json.load(sys.stdin).values()))'
}

# --- build -------------------------------------------------------------------------------
CHIMNEY_OK=1
if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release --bin chimney --example bench_upstream --example bench_stampede"
    if ! cargo build --release --bin chimney --example bench_upstream --example bench_stampede; then
        log "chimney did not build; building the benchmark tools alone for the nginx half"
        CHIMNEY_OK=0
        cargo build --release --example bench_upstream --example bench_stampede
    fi
fi
[[ -x $BIN/examples/bench_upstream && -x $BIN/examples/bench_stampede ]] ||
    die "benchmark tools missing under $BIN/examples"
if ((CHIMNEY_OK)) && [[ ! -x $BIN/chimney ]]; then
    log "no chimney binary at $BIN/chimney"
    CHIMNEY_OK=0
fi

# --- fake upstream -----------------------------------------------------------------------
start_announcing upstream "$BIN/examples/bench_upstream" --port 0 --delay-ms "$DELAY_MS"
UP=$PORT
log "fake upstream on 127.0.0.1:$UP (delay ${DELAY_MS} ms)"

# --- chimney -----------------------------------------------------------------------------
CP=$(free_port)
CHIMNEY="http://127.0.0.1:$CP"
if ((CHIMNEY_OK)); then
    chimney_env=(OTEL_SDK_DISABLED=true)
    [[ $LOGS == off ]] && chimney_env+=(RUST_LOG=warn)
    env "${chimney_env[@]}" "$BIN/chimney" --addr "127.0.0.1:$CP" \
        --github-api-url "http://127.0.0.1:$UP" --redis "" --repo bench/repo \
        >"$WORK/chimney.log" 2>&1 &
    CHIMNEY_PID=$!
    PIDS+=("$CHIMNEY_PID")
    if ! wait_http "$CHIMNEY/healthz" "$CHIMNEY_PID"; then
        log "chimney does not answer /healthz; its log ends with:"
        tail -n 20 "$WORK/chimney.log" >&2 || true
        CHIMNEY_OK=0
    elif [[ $(status_of "$CHIMNEY$HOT_PATH") != 200 ]]; then
        log "chimney answers /healthz but not GET $HOT_PATH with 200; its log ends with:"
        tail -n 20 "$WORK/chimney.log" >&2 || true
        CHIMNEY_OK=0
    else
        log "chimney on $CHIMNEY"
    fi
fi

# --- nginx -------------------------------------------------------------------------------
NP=$(free_port)
NGINX="http://127.0.0.1:$NP"
mkdir -p "$WORK/nginx/cache" "$WORK/nginx/temp"
NGINX_USER=''
NGINX_ACCESS_LOG="access_log $WORK/nginx/access.log combined;"
[[ $LOGS == off ]] && NGINX_ACCESS_LOG='access_log off;'
[[ $EUID -eq 0 ]] && NGINX_USER='user root;'
cat >"$WORK/nginx/nginx.conf" <<EOF
# Generated by bench/run.sh: nginx proxy_cache as a user would set it up for the GitHub API.
$NGINX_USER
daemon off;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    $NGINX_ACCESS_LOG
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/temp/client;
    proxy_temp_path $WORK/nginx/temp/proxy;
    fastcgi_temp_path $WORK/nginx/temp/fastcgi;
    uwsgi_temp_path $WORK/nginx/temp/uwsgi;
    scgi_temp_path $WORK/nginx/temp/scgi;
    proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=github:10m max_size=256m inactive=10m use_temp_path=off;
    upstream github { server 127.0.0.1:$UP; keepalive 64; }
    server {
        listen 127.0.0.1:$NP;
        location /api/github/ {
            proxy_pass http://github$UPSTREAM_PREFIX/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache github;
            proxy_cache_valid 200 30s;
            proxy_cache_revalidate on;
            proxy_cache_lock on;
            proxy_cache_use_stale error timeout updating http_500 http_502 http_503 http_504;
            # GitHub marks every response "private"; without this nginx would cache nothing.
            proxy_ignore_headers Cache-Control Expires;
            add_header X-Cache \$upstream_cache_status always;
        }
    }
}
EOF
nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -t 2>"$WORK/nginx/test.log" ||
    die "nginx rejected its config: $(cat "$WORK/nginx/test.log")"
nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http "$NGINX$HOT_PATH" "$NGINX_PID" || die "nginx did not start: $(cat "$WORK/nginx/error.log")"
log "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') on $NGINX"

# --- warm the hot key ----------------------------------------------------------------------
TARGETS=(nginx)
((CHIMNEY_OK)) && TARGETS=(chimney nginx)
base_of() { if [[ $1 == chimney ]]; then echo "$CHIMNEY"; else echo "$NGINX"; fi; }
for t in "${TARGETS[@]}"; do
    url="$(base_of "$t")$HOT_PATH"
    state=''
    for _ in $(seq 20); do
        curl -fsS -o /dev/null --max-time 5 "$url" || true
        state=$(x_cache_of "$url")
        [[ $state == HIT ]] && break
        sleep 0.1
    done
    log "$t: warm key $HOT_PATH answers X-Cache: ${state:-none}"
    [[ $state == HIT ]] || log "warning: $t does not report a cache hit on the warm key"
done

# --- throughput and p99 on the warm key ------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    log "warning: load average $LOAD_BEFORE on $(nproc) CPUs before measuring: other work will skew the figures"
fi
CLK_TCK=$(getconf CLK_TCK)
# Prints the user + system CPU ticks used so far by the given processes.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
    done
    echo "$total"
}
# Prints the PIDs of a proxy's server processes (nginx: master and workers).
server_pids() {
    if [[ $1 == chimney ]]; then
        echo "$CHIMNEY_PID"
    else
        echo "$NGINX_PID"
        pgrep -P "$NGINX_PID" || true
    fi
}
declare -A RPS_LIST P99_LIST CPU_LIST UPREQ_SUM
for t in "${TARGETS[@]}"; do
    RPS_LIST[$t]='' P99_LIST[$t]='' CPU_LIST[$t]='' UPREQ_SUM[$t]=0
    log "$t: warm-up wrk -t$THREADS -c$CONNECTIONS -d$WARMUP"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$(base_of "$t")$HOT_PATH" >/dev/null
done
for round in $(seq "$ROUNDS"); do
    order=("${TARGETS[@]}")
    if ((round % 2 == 0)) && ((${#TARGETS[@]} == 2)); then order=(nginx chimney); fi
    for t in "${order[@]}"; do
        out="$WORK/wrk-$t-$round.txt"
        upstream_reset
        log "round $round: $t: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency $(base_of "$t")$HOT_PATH"
        mapfile -t pids < <(server_pids "$t")
        ticks_before=$(cpu_ticks "${pids[@]}")
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$(base_of "$t")$HOT_PATH" >"$out"
        ticks=$(($(cpu_ticks "${pids[@]}") - ticks_before))
        total=$(awk '/ requests in / { print $1 }' "$out")
        cpu_us=$(awk -v t="$ticks" -v hz="$CLK_TCK" -v n="$total" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
        rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
        p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
        transfer=$(awk '/^Transfer\/sec:/ { print $2 }' "$out")
        upreq=$(upstream_total)
        bad=$(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | paste -sd';' - || true)
        printf '%-8s round %s: %10.0f req/s  %10s/s  p99 %8.3f ms  server CPU %6s us/req  upstream requests %s%s\n' \
            "$t" "$round" "$rps" "$transfer" "$p99" "$cpu_us" "$upreq" "${bad:+  ($bad)}"
        RPS_LIST[$t]+="$rps "
        CPU_LIST[$t]+="$cpu_us "
        P99_LIST[$t]+="$p99 "
        UPREQ_SUM[$t]=$((UPREQ_SUM[$t] + upreq))
    done
done
declare -A RPS P99 CPU UPREQ
for t in chimney nginx; do RPS[$t]=n/a P99[$t]=n/a CPU[$t]=n/a UPREQ[$t]=n/a; done
for t in "${TARGETS[@]}"; do
    # The lists are space-separated numbers: split them on purpose.
    # shellcheck disable=SC2086
    RPS[$t]=$(median "%.0f" ${RPS_LIST[$t]})
    # shellcheck disable=SC2086
    P99[$t]=$(median "%.3f" ${P99_LIST[$t]})
    # shellcheck disable=SC2086
    CPU[$t]=$(median "%.1f" ${CPU_LIST[$t]})
    UPREQ[$t]=${UPREQ_SUM[$t]}
done

# --- stampede: N concurrent requests on one cold key ----------------------------------------
declare -A ST_UP ST_LINE ST_XCACHE
# Args: name, base URL, cold path, its upstream path-and-query, an already warm path used to
# open the connections before the timed round.
stampede() {
    local name=$1 base=$2 path=$3 up_path=$4 warm_path=$5 out="$WORK/stampede-$1.txt"
    upstream_reset
    log "stampede: $name: $STAMPEDE_N concurrent GET $base$path (cold)"
    "$BIN/examples/bench_stampede" --requests "$STAMPEDE_N" --url "$base$path" \
        --warm-url "$base$warm_path" --timeout-secs 30 >"$out" || true
    cat "$out"
    ST_UP[$name]=$(upstream_count "$up_path")
    ST_LINE[$name]=$(grep '^STAMPEDE ' "$out" || echo 'STAMPEDE')
    ST_XCACHE[$name]=$(grep '^X_CACHE ' "$out" | sed 's/^X_CACHE //' || true)
    printf '%-8s stampede: upstream requests for %s: %s\n' "$name" "$up_path" "${ST_UP[$name]}"
}
field() { # stampede-name key
    local v
    v=$(tr ' ' '\n' <<<"${ST_LINE[$1]:-}" | sed -n "s/^$2=//p")
    echo "${v:-n/a}"
}
for t in chimney nginx; do ST_LINE[$t]='' ST_UP[$t]=n/a ST_XCACHE[$t]=''; done
# Reference: the fake upstream itself, no proxy (the floor for waiter latency on this machine).
stampede direct "http://127.0.0.1:$UP" "$UPSTREAM_PREFIX/issues/100" "$UPSTREAM_PREFIX/issues/100" "/__count"
((CHIMNEY_OK)) && stampede chimney "$CHIMNEY" /api/github/issues/101 "$UPSTREAM_PREFIX/issues/101" "$HOT_PATH"
stampede nginx "$NGINX" /api/github/issues/102 "$UPSTREAM_PREFIX/issues/102" "$HOT_PATH"

# --- summary -------------------------------------------------------------------------------
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
verdict() { awk -v v="$1" -v op="$2" -v lim="$3" 'BEGIN {
    if (v == "n/a" || v == "") { print "n/a"; exit }
    ok = (op == ">=") ? (v + 0 >= lim + 0) : (op == "<=") ? (v + 0 <= lim + 0) : (v + 0 == lim + 0)
    print ok ? "met" : "MISSED" }'; }
echo
echo "== Machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $MEM_GIB GiB; $(nginx -v 2>&1); $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
echo "   load average before the wrk runs: $LOAD_BEFORE; after the stampedes: $LOAD_AFTER"
echo "   request logs: $LOGS (LOGS=on: chimney's JSON request log and nginx's access log, each to a file)"
echo "== Summary: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS round(s) each (median), warm key $HOT_PATH"
for t in chimney nginx; do
    printf '   per round, %-8s %sreq/s; p99 %sms; server CPU %sus/req\n' "$t:" "${RPS_LIST[$t]:-n/a }" \
        "${P99_LIST[$t]:-n/a }" "${CPU_LIST[$t]:-n/a }"
done
printf '%-34s %14s %14s %14s %10s\n' metric chimney nginx chimney/nginx target
RPS_RATIO=$(ratio "${RPS[chimney]}" "${RPS[nginx]}")
P99_RATIO=$(ratio "${P99[chimney]}" "${P99[nginx]}")
printf '%-34s %14s %14s %14s %10s\n' 'hit throughput (req/s, median)' "${RPS[chimney]}" "${RPS[nginx]}" "$RPS_RATIO" \
    "$(verdict "$RPS_RATIO" '>=' 1)"
printf '%-34s %14s %14s %14s %10s\n' 'hit p99 latency (ms, median)' "${P99[chimney]}" "${P99[nginx]}" "$P99_RATIO" \
    "$(verdict "$P99_RATIO" '<=' 1)"
printf '%-34s %14s %14s %14s %10s\n' 'server CPU per hit (us, median)' "${CPU[chimney]}" "${CPU[nginx]}" \
    "$(ratio "${CPU[chimney]}" "${CPU[nginx]}")" ''
printf '%-34s %14s %14s %14s %10s\n' 'upstream requests during wrk' "${UPREQ[chimney]}" "${UPREQ[nginx]}" '' ''
echo
echo "== Stampede: $STAMPEDE_N concurrent GETs on one cold key, upstream latency $DELAY_MS ms"
LIMIT_MS=$(awk -v d="$DELAY_MS" 'BEGIN { printf "%.1f", d * 1.2 }')
printf '%-34s %14s %14s %14s %10s\n' metric chimney nginx direct target
printf '%-34s %14s %14s %14s %10s\n' 'upstream requests' "${ST_UP[chimney]}" "${ST_UP[nginx]}" "${ST_UP[direct]}" \
    "$(verdict "${ST_UP[chimney]}" '==' 1)"
for k in min p50 p99 max; do
    printf '%-34s %14s %14s %14s %10s\n' "waiter latency $k (ms)" "$(field chimney "${k}_ms")" \
        "$(field nginx "${k}_ms")" "$(field direct "${k}_ms")" ''
done
MAX_C=$(field chimney max_ms)
printf '%-34s %14s %14s %14s %10s\n' "waiter max / ${DELAY_MS} ms" "$(ratio "$MAX_C" "$DELAY_MS")" \
    "$(ratio "$(field nginx max_ms)" "$DELAY_MS")" "$(ratio "$(field direct max_ms)" "$DELAY_MS")" \
    "$(verdict "$MAX_C" '<=' "$LIMIT_MS")"
printf '%-34s %14s %14s %14s\n' 'errors' "$(field chimney errors)" "$(field nginx errors)" "$(field direct errors)"
echo "X-Cache chimney: ${ST_XCACHE[chimney]:-n/a}"
echo "X-Cache nginx:   ${ST_XCACHE[nginx]:-n/a}"
echo "targets: throughput ratio >= 1.00, p99 ratio <= 1.00, exactly 1 upstream request, waiter max <= $LIMIT_MS ms"

if ((!CHIMNEY_OK)); then
    echo "chimney was not measured (see the log lines above); only the nginx half ran." >&2
    exit 2
fi
