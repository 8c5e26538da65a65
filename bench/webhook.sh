#!/usr/bin/env bash
# Webhook freshness (BENCHMARKS.md, "Webhook freshness (bench/webhook.sh)"):
# how soon a change announced by a signed GitHub webhook is visible to a
# client of a running chimney, and what it costs upstream, against the same
# client without the webhook (the change shows once the entry's TTL expires).
#
# Both runs use examples/bench_webhook.rs: the testkit's fake GitHub in
# process, a chimney binary in front of it (memory-only), a client polling
# GET /api/github/pulls every POLL_MS. The webhook run keeps a long TTL
# (TTL_WEBHOOK s, as a deployment with webhooks would); the baseline uses
# TTL_BASELINE s.
#
#   bench/webhook.sh            ROUNDS=200 BASELINE_ROUNDS=6 PROFILE=debug|release
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

ROUNDS=${ROUNDS:-200}
BASELINE_ROUNDS=${BASELINE_ROUNDS:-6}
TTL_WEBHOOK=${TTL_WEBHOOK:-600}
TTL_BASELINE=${TTL_BASELINE:-5}
POLL_MS=${POLL_MS:-10}
PROFILE=${PROFILE:-debug}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

flag=()
[[ $PROFILE == release ]] && flag=(--release)
log "cargo build ${flag[*]} --bin chimney --example bench_webhook"
cargo build "${flag[@]}" --quiet --bin chimney --example bench_webhook
BIN=$TARGET_DIR/$PROFILE

log "with the webhook: $ROUNDS rounds, TTL ${TTL_WEBHOOK}s, polling every ${POLL_MS} ms"
webhook=$("$BIN/examples/bench_webhook" --chimney "$BIN/chimney" --mode webhook \
    --rounds "$ROUNDS" --ttl-secs "$TTL_WEBHOOK" --poll-ms "$POLL_MS")
echo "$webhook"
log "without it: $BASELINE_ROUNDS rounds, TTL ${TTL_BASELINE}s"
baseline=$("$BIN/examples/bench_webhook" --chimney "$BIN/chimney" --mode ttl \
    --rounds "$BASELINE_ROUNDS" --ttl-secs "$TTL_BASELINE" --poll-ms "$POLL_MS")
echo "$baseline"

python3 - "$webhook" "$baseline" <<'PY'
import json, sys
w, b = (json.loads(a) for a in sys.argv[1:3])
print()
print(f"{'':28}{'webhook':>12}{'TTL only':>12}{'ratio':>10}")
for key in ("p50", "p90", "p99", "max"):
    wv, bv = w["visible_ms"][key], b["visible_ms"][key]
    print(f"visible after, {key} (ms){'':5}{wv:>12.1f}{bv:>12.1f}{bv / wv:>9.0f}x")
for name, run in (("webhook", w), ("TTL only", b)):
    u = run["upstream"]
    print(f"{name}: {u['requests']} upstream requests for {u['versions']} versions "
          f"({u['full_200']} full, {u['not_modified_304']} 304), "
          f"{u['full_per_version']:.2f} full responses per version, {run['client_polls']} client polls")
ok = w["visible_ms"]["p99"] < 1000 and w["upstream"]["full_per_version"] <= 1.0 \
    and w["upstream"]["requests"] == w["upstream"]["full_200"]
print("target (p99 < 1 s, one full response per version, nothing else upstream):", "met" if ok else "NOT met")
PY
