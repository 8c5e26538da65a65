#!/usr/bin/env bash
# Fault soak (issue 14, item 7): dashboard-like load on two chimney instances sharing one
# redis-server, in front of the testkit's fake GitHub, while Redis is paused, killed and
# restarted, GitHub answers slowly, with 5xx, with rate limits and breaks connections off, and
# clients hang up mid-request throughout. Run by hand; figures go in BENCHMARKS.md
# ("Fault soak").
#
# Usage: bash bench/soak.sh            (run as root so a missing redis-server can be installed)
# Knobs (env): DURATION=360 (seconds of load, >= 60; the phases scale with it)
#              DASHBOARDS=12 (virtual dashboards, each refreshing every card about once a second)
#              DISCONNECT_RATE=3 (clients hanging up mid-request, per second)
#              SLOW_MS=2500 (GitHub's answer time in the slow phase)
#              LIMIT_SECS=15 (the rate-limit reset / Retry-After in the rate-limit phases)
#              TTL=3s (the [[ttl]] of every proxied key, so entries expire during each fault)
#              OUT=target/soak (where the run's files and report are kept)
#              SKIP_BUILD=1 (use existing release binaries)
#
# Targets: 0 failed requests for keys with a cached entry, none slower than 1.2 s, each
# instance's RSS within 10% after the warm-up, no upstream request while an instance's
# rate-limit gate is closed. Exit status: 0 all met, 3 one missed, 1 setup failure.
# Loopback only; every process it starts is stopped by PID on exit.
set -euo pipefail

DURATION=${DURATION:-360}
DASHBOARDS=${DASHBOARDS:-12}
DISCONNECT_RATE=${DISCONNECT_RATE:-3}
SLOW_MS=${SLOW_MS:-2500}
LIMIT_SECS=${LIMIT_SECS:-15}
TTL=${TTL:-3s}
SKIP_BUILD=${SKIP_BUILD:-0}
((DURATION >= 60)) || { echo "DURATION must be at least 60 (seconds)" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
OUT=${OUT:-$TARGET_DIR/soak}
REPO=soak/dash
TOKENS=(soak-token-a soak-token-b)
NAMES=(a b)
DEPLOY_TOKEN=soak-deploy-token

need_tools redis-server:redis-server redis-cli:redis-tools curl:curl python3:python3

bench_workdir chimney-soak
REDIS_PID=''
# A paused redis-server would ignore the TERM of the cleanup until it is continued.
trap '[[ -n $REDIS_PID ]] && kill -CONT "$REDIS_PID" 2>/dev/null; cleanup' EXIT
rm -rf "$OUT"
mkdir -p "$OUT"

# --- build -------------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release -p chimney --bin chimney -p chimney-testkit --bin fake-github"
    cargo build --release -p chimney --bin chimney -p chimney-testkit --bin fake-github
fi
[[ -x $BIN/chimney && -x $BIN/fake-github ]] || die "release binaries missing under $BIN (run without SKIP_BUILD=1)"

# --- fake GitHub -------------------------------------------------------------------------
# GitHub-shaped lists for every repository, about as large as the real dashboard's.
fixture() {
    python3 - "$1" <<'EOF'
import json, sys
kind = sys.argv[1]
t = "2026-12-01T10:00:00Z"
def pr(n, state):
    return {"number": n, "title": f"soak pull request {n}", "state": state, "html_url": f"https://github.com/soak/dash/pull/{n}",
            "user": {"login": f"dev{n % 7}"}, "created_at": t, "updated_at": t, "draft": False, "labels": [],
            "merged_at": t if state == "closed" else None, "merge_commit_sha": f"{n:040x}" if state == "closed" else None,
            "body": "x" * 400}
def run(n):
    return {"id": 9000 + n, "name": "goose-build", "status": "completed", "conclusion": "success" if n % 5 else "failure",
            "created_at": t, "updated_at": t, "html_url": f"https://github.com/soak/dash/actions/runs/{9000 + n}",
            "head_sha": f"{n:040x}", "run_number": n, "event": "push", "head_branch": "main"}
if kind == "pulls":
    print(json.dumps([pr(n, "open") for n in range(1, 31)]))
elif kind == "issues":
    print(json.dumps([dict(pr(n, "open"), comments=n % 4) for n in range(100, 140)]))
elif kind == "runs":
    print(json.dumps({"total_count": 20, "workflow_runs": [run(n) for n in range(20)]}))
elif kind == "repo":
    print(json.dumps({"id": 4242, "name": "dash", "full_name": "soak/dash", "description": "soak",
                      "language": "Rust", "open_issues_count": 40, "updated_at": t,
                      "html_url": "https://github.com/soak/dash", "archived": False}))
EOF
}
start_announcing upstream "$BIN/fake-github" --addr 127.0.0.1:0 --no-recordings \
    --json '/repos/*/*' "$(fixture repo)" \
    --json '/repos/*/*/pulls' "$(fixture pulls)" \
    --json '/repos/*/*/issues' "$(fixture issues)" \
    --json '/repos/*/*/actions/runs' "$(fixture runs)" \
    --json '/repos/*/*/actions/workflows/*/runs' "$(fixture runs)"
# shellcheck disable=SC2153 # PORT is set by start_announcing (bench/lib.sh)
UP=http://127.0.0.1:$PORT
log "fake GitHub on $UP"
fault() { curl -fsS --max-time 5 -X POST -H 'Content-Type: application/json' -d "$1" "$UP/__faults"; }
no_faults() { curl -fsS --max-time 5 -X DELETE "$UP/__faults"; }

# --- redis-server (the shared tier) ------------------------------------------------------
RP=$(free_port)
mkdir -p "$WORK/redis"
start_redis() {
    redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$WORK/redis" --daemonize no >>"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 100); do
        redis-cli -p "$RP" ping >/dev/null 2>&1 && return 0
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    die "redis-server did not start: $(tail -n 5 "$OUT/redis.log")"
}
start_redis
log "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$RP (pid $REDIS_PID)"

# --- two chimneys ------------------------------------------------------------------------
cat >"$WORK/chimney.toml" <<EOF
# Short TTLs so entries expire, and are revalidated, during every fault.
[[ttl]]
path = "/"
duration = "$TTL"
EOF
BASES=() CPIDS=()
for i in 0 1; do
    port=$(free_port)
    GITHUB_TOKEN=${TOKENS[$i]} DEPLOY_TOKEN=$DEPLOY_TOKEN OTEL_SDK_DISABLED=true \
        "$BIN/chimney" --config "$WORK/chimney.toml" --addr "127.0.0.1:$port" \
        --github-api-url "$UP" --redis "redis://127.0.0.1:$RP" --repo "$REPO" --docs "$ROOT/docs" \
        >"$OUT/chimney-${NAMES[$i]}.log" 2>&1 &
    CPIDS+=("$!")
    PIDS+=("$!")
    BASES+=("http://127.0.0.1:$port")
    wait_http "${BASES[$i]}/healthz" "${CPIDS[$i]}" ||
        die "chimney ${NAMES[$i]} does not answer /healthz: $(tail -n 20 "$OUT/chimney-${NAMES[$i]}.log")"
    log "chimney ${NAMES[$i]} on ${BASES[$i]} (pid ${CPIDS[$i]})"
done
curl -fsS --max-time 5 -o /dev/null -H "Authorization: Bearer $DEPLOY_TOKEN" -H 'Content-Type: application/json' \
    -d '{"sha":"0123456789abcdef","outcome":"success","slot":"blue","duration_s":42}' \
    "${BASES[0]}/api/deploy/events" || die "the deploy event was refused"

# --- warm-up: every dashboard key cached on both instances -------------------------------
BASE_LIST=$(IFS=,; echo "${BASES[*]}")
python3 bench/soak_load.py warm --bases "$BASE_LIST" --timeout 30 || die "warm-up failed"
log "every dashboard key answers 2xx on both instances"

# --- the phases --------------------------------------------------------------------------
# name:seconds at DURATION=360; scaled to DURATION. Each fault is followed by a recovery.
SCHEDULE=(baseline:45 redis-paused:20 recover-1:15 redis-killed:30 recover-2:15 github-slow:30
    recover-3:15 github-5xx:30 recover-4:15 github-403-limit:25 recover-5:15 github-429-limit:25
    recover-6:15 github-drops:30 tail:35)
scaled() { awk -v s="$1" -v d="$DURATION" 'BEGIN { v = int(s * d / 360 + 0.5); print (v < 3 ? 3 : v) }'; }
begin_fault() {
    case $1 in
        redis-paused) kill -STOP "$REDIS_PID" ;;
        redis-killed) kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true ;;
        github-slow) fault "{\"fault\":\"delay\",\"ms\":$SLOW_MS}" ;;
        github-5xx) fault '{"fault":"status","status":502}' ;;
        github-403-limit) fault "{\"fault\":\"rate_limit\",\"reset_in_secs\":$LIMIT_SECS}" ;;
        github-429-limit) fault "{\"fault\":\"too_many_requests\",\"retry_after_secs\":$LIMIT_SECS}" ;;
        github-drops) fault '{"fault":"break_connection"}' ;;
    esac
}
end_fault() {
    case $1 in
        redis-paused) kill -CONT "$REDIS_PID" ;;
        redis-killed) start_redis; log "redis-server restarted, empty (pid $REDIS_PID)" ;;
        github-*) no_faults ;;
    esac
}

RSS_EVERY=2
python3 bench/soak_load.py run --bases "$BASE_LIST" --duration "$DURATION" --dashboards "$DASHBOARDS" \
    --disconnect-rate "$DISCONNECT_RATE" --pids "$(IFS=,; echo "${CPIDS[*]}")" --rss-every "$RSS_EVERY" \
    --out "$OUT/requests.csv" --rss "$OUT/rss.csv" --lag "$OUT/lag.csv" >"$OUT/load.json" 2>"$OUT/load.err" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
START=$(date +%s.%N)
: >"$OUT/phases.tsv"
elapsed=0
WARMUP_END=''
for entry in "${SCHEDULE[@]}"; do
    name=${entry%%:*}
    secs=$(scaled "${entry#*:}")
    [[ $name == tail ]] && secs=$((DURATION - elapsed))
    ((secs > 0)) || continue
    t0=$(date +%s.%N)
    log "phase $name (${secs} s)"
    begin_fault "$name"
    sleep "$secs"
    end_fault "$name"
    printf '%s\t%s\t%s\n' "$name" "$t0" "$(date +%s.%N)" >>"$OUT/phases.tsv"
    [[ -z $WARMUP_END ]] && WARMUP_END=$(date +%s.%N)
    elapsed=$((elapsed + secs))
done
# The load stops at START + DURATION; requests still out end within the client's 10 s timeout.
for _ in $(seq 300); do kill -0 "$LOAD_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$LOAD_PID" 2>/dev/null && die "the load generator is still running 30 s after the end"
wait "$LOAD_PID" || die "the load generator failed: $(tail -n 5 "$OUT/load.err")"

# --- collect and report ------------------------------------------------------------------
curl -fsS --max-time 30 "$UP/__requests" >"$OUT/upstream.json"
for i in 0 1; do
    kill -0 "${CPIDS[$i]}" 2>/dev/null || log "warning: chimney ${NAMES[$i]} is no longer running"
done
python3 -c 'import json, sys; print(json.dumps({"tokens": sys.argv[1].split(","), "names": sys.argv[2].split(","),
    "warmup_end": float(sys.argv[3]), "start": float(sys.argv[4])}))' \
    "$(IFS=,; echo "${TOKENS[*]}")" "$(IFS=,; echo "${NAMES[*]}")" "$WARMUP_END" "$START" >"$OUT/meta.json"
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
{
    echo "== fault soak: DURATION=$DURATION s, $DASHBOARDS dashboards, $DISCONNECT_RATE hang-ups/s, TTL $TTL," \
        "slow $SLOW_MS ms, limits $LIMIT_SECS s; chimney a/b share redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')"
    echo "   machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "   hang-ups sent: $(cat "$OUT/load.json")"
    for i in 0 1; do
        printf '   chimney %s after the run: /healthz dragonfly: %s\n' "${NAMES[$i]}" "$(curl -fsS --max-time 2 \
            "${BASES[$i]}/healthz" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("dragonfly"))' || echo '?')"
    done
    echo "   keys in the restarted Redis: $(redis-cli -p "$RP" dbsize 2>/dev/null || echo '?')"
    echo
} >"$OUT/report.txt"
status=0
python3 bench/soak_report.py "$OUT" >>"$OUT/report.txt" || status=$?
cat "$OUT/report.txt"
log "files kept in $OUT"
exit "$status"
