#!/usr/bin/env bash
# The whole test suite, as CI runs it: lints, unit tests, and the black-box
# integration suite twice — once with the memory tier only and once with a
# real Redis server standing in for Dragonfly. Installs what it needs and
# starts its own servers on free loopback ports, stopping them by PID. The
# Redis pass includes Dragonfly over TLS (tests/dragonfly_tls.rs), whose
# tests start TLS-only redis-servers of their own from the binary named by
# CHIMNEY_TEST_REDIS_SERVER (Debian's is built with TLS).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

apt_updated=0
need_deb() { # need_deb COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pids=()
workdir=$(mktemp -d)
cleanup() {
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$workdir"
}
trap cleanup EXIT

need_deb redis-server redis-server

log "cargo fmt --check"
cargo fmt --check

log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "layering: domain, ports, adapters, service, http, bootstrap (scripts/check-layers.py)"
python3 scripts/check-layers.py src

log "no tracked file refers to files outside the repository"
# A fresh clone has nothing beside it. The pattern is built from two pieces
# so that this line does not match itself. The output is tested, not the
# status: xargs reports failure when any batch of files has no match.
outside="../""shared"
matches=$(git ls-files -z | xargs -0 grep -nIF -e "$outside" -- || true)
if [ -n "$matches" ]; then
  printf '%s\n' "$matches" >&2
  echo "tracked files refer to $outside, outside the repository" >&2
  exit 1
fi

log "openapi/openapi.json is a valid OpenAPI document (openapi-spec-validator)"
# A venv under target/ so nothing is installed system-wide; only the first
# run needs PyPI. The integration test openapi_spec checks the file matches
# the code (regenerate: UPDATE_OPENAPI=1 cargo test --test api openapi_spec).
validator_venv=target/openapi-venv
if [ ! -x "$validator_venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$validator_venv"
  "$validator_venv/bin/pip" install --quiet --disable-pip-version-check openapi-spec-validator
fi
"$validator_venv/bin/openapi-spec-validator" openapi/openapi.json

log "the deploy hook script passes shellcheck (when installed)"
if command -v shellcheck >/dev/null 2>&1; then
  shellcheck scripts/post-deploy-event.sh
else
  echo "shellcheck not installed; skipped"
fi

log "unit and integration tests, memory tier only"
cargo test --workspace --all-targets

if [ -n "${CHIMNEY_CI_REDIS_URL:-}" ]; then
  # A Redis the caller started with --databases 10000 (CI's service
  # container, .github/workflows/ci.yml).
  log "using the Redis at $CHIMNEY_CI_REDIS_URL (Dragonfly stand-in)"
  redis_url=$CHIMNEY_CI_REDIS_URL
else
  redis_port=$(free_port)
  log "starting redis-server on 127.0.0.1:$redis_port (Dragonfly stand-in)"
  # One database per test app (tests/api/helpers.rs), database 0 for the rest.
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --databases 10000 --dir "$workdir" --daemonize no >"$workdir/redis.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$redis_port" ping >/dev/null
  redis_url="redis://127.0.0.1:$redis_port"
fi

log "integration tests again, memory + Redis tier, and rediss:// against TLS redis-servers"
CHIMNEY_TEST_DRAGONFLY_URL="$redis_url" \
CHIMNEY_TEST_REDIS_SERVER="$(command -v redis-server)" \
  cargo test --workspace --tests

log "schemathesis against the running binary's OpenAPI document (scripts/schemathesis.sh)"
./scripts/schemathesis.sh

log "dashboard in headless Chromium (e2e/dashboard.test.mjs)"
need_deb chromium chromium
need_deb node nodejs
need_deb npm npm
cargo build --quiet --example dashboard_fixture
(cd e2e && npm ci --no-audit --no-fund --loglevel=error)
DASHBOARD_FIXTURE="$PWD/target/debug/examples/dashboard_fixture" \
CHROMIUM_PATH="$(command -v chromium)" ARTIFACTS_DIR="$PWD/target/artifacts" \
  timeout 600 node --test --test-reporter=spec e2e/dashboard.test.mjs
echo "screenshots: target/artifacts/dashboard.png, dashboard-phone.png, dashboard-degraded.png, dashboard-live.png"

log "ship checks: workflows, Dockerfile, compose file, the binary in a compose slot's environment"
./scripts/check-ship.sh

log "all tests passed"
