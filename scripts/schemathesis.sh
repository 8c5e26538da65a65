#!/usr/bin/env bash
# schemathesis against a running chimney: every operation of the OpenAPI
# document it serves (/api/openapi.json), generated requests checked against
# what the document promises (statuses, content types, headers, schemas, no
# 5xx). Run twice: with the bearer token and without. Part of
# ./scripts/test.sh; runs alone too.
#
# chimney is the debug binary, memory tier only, in front of the testkit's
# fake GitHub, on free loopback ports; both are stopped by PID. DEPLOY_TOKEN
# and INVALIDATE_TOKEN are one value here so one Authorization header
# authenticates every protected operation (schemathesis sends one header to
# all of them). GITHUB_WEBHOOK_SECRET is set so the webhook answers as it
# does in production (401 to an unsigned delivery) rather than 503
# (disabled), which schemathesis rightly counts as a server error.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: checks and their strictness change between releases.
SCHEMATHESIS_VERSION=4.32.5
# Bounded: examples per operation and seconds per run.
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-60}
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-120}

log() { printf '\n==> %s\n' "$*"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

venv=target/schemathesis-venv
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

pids=()
work=$(mktemp -d)
cleanup() {
  local pid
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

log "building target/debug/chimney and target/debug/fake-github"
cargo build --quiet --bin chimney
cargo build --quiet -p chimney-testkit --bin fake-github

target/debug/fake-github --addr 127.0.0.1:0 >"$work/upstream.out" 2>"$work/upstream.err" &
pids+=("$!")
upstream_port=
for _ in $(seq 1 100); do
  upstream_port=$(sed -n 's/^PORT=//p' "$work/upstream.out")
  [ -n "$upstream_port" ] && break
  sleep 0.1
done
[ -n "$upstream_port" ] || { echo "fake-github did not start: $(cat "$work/upstream.err")" >&2; exit 1; }

app_port=$(free_port)
token="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
log "chimney on 127.0.0.1:$app_port (memory tier, fake GitHub on :$upstream_port)"
env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
  CHIMNEY_ADDR="127.0.0.1:$app_port" \
  CHIMNEY_REDIS= CHIMNEY_REPO=octokit-fixture-org/hello-world \
  CHIMNEY_GITHUB_API_URL="http://127.0.0.1:$upstream_port" \
  GITHUB_TOKEN=schemathesis-github-token \
  DEPLOY_TOKEN="$token" INVALIDATE_TOKEN="$token" \
  GITHUB_WEBHOOK_SECRET="$token" \
  target/debug/chimney >"$work/chimney.log" 2>&1 &
chimney_pid=$!
pids+=("$chimney_pid")
ready=0
for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:$app_port/healthz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$chimney_pid" 2>/dev/null || break
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  echo "chimney did not start:" >&2
  tail -n 40 "$work/chimney.log" >&2
  exit 1
fi

run() { # run LABEL [schemathesis options...]
  local label=$1
  shift
  log "schemathesis ($label): every operation, $MAX_EXAMPLES examples each, at most ${MAX_TIME}s"
  # Checks: the document's promises and no server errors. Not `all`: see
  # README (Testing) for the ones left out and why.
  "$venv/bin/schemathesis" run "http://127.0.0.1:$app_port/api/openapi.json" \
    --url "http://127.0.0.1:$app_port" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" \
    --seed 20261205 --workers 2 --request-timeout 10 \
    --warnings off \
    --report junit --report-junit-path "target/schemathesis-$label.xml" \
    "$@" || {
    echo "schemathesis ($label) failed; chimney's log:" >&2
    tail -n 40 "$work/chimney.log" >&2
    return 1
  }
}

run with-token --header "Authorization: Bearer $token"
run without-token

kill -0 "$chimney_pid" 2>/dev/null || { echo "chimney died during the run" >&2; exit 1; }
echo "schemathesis passed"
