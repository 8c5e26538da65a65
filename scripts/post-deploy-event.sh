#!/usr/bin/env bash
# Reports a finished deploy to chimney: POST /api/deploy/events (CONTRACT 5).
# Called by .github/workflows/chimney-deploy.yml after the smoke test passes
# (OUTCOME=success) and from its `if: failure()` step (OUTCOME=failure).
#
# Everything comes from the environment; flags override it:
#
#   CHIMNEY_URL   base URL, e.g. https://chimney.beerpub.dev   (--url)
#   DEPLOY_TOKEN  bearer token; environment only, never a flag, so it
#                 never shows in `ps` output or shell history
#   SHA           commit deployed (default: GITHUB_SHA)        (--sha)
#   OUTCOME       success | failure                            (--outcome)
#   SLOT          active slot after the deploy, blue | green   (--slot)
#   DURATION_S    whole seconds the deploy took                (--duration-s)
#   PR_NUMBER     pull request deployed                        (--pr-number)
#   PR_TITLE      its title, any text                          (--pr-title)
#   ORIGIN_IPS    comma-separated origin IPs                   (--origin-ips)
#   DEPLOYED_AT   RFC 3339 finish time (default: now, UTC)     (--deployed-at)
#   EVENT_ID      idempotency id, at most 128 characters       (--id)
#                 (default in GitHub Actions: run id, attempt and
#                 outcome, so a retried post is stored once)
#   POST_DEPLOY_JSON_TOOL  python3 | jq: force one JSON builder (tests)
#
# The JSON body is built by python3 (or jq) from the environment, never by
# pasting values into a string, so a PR title holding quotes, `$(…)` or
# newlines arrives verbatim. The token goes to curl on stdin, not on its
# command line, and is never printed. On success the stored event is
# printed; the exit status is non-zero when the event was not accepted
# (2: bad arguments, otherwise curl's status).
set -euo pipefail

usage() {
  sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  printf 'post-deploy-event: %s\n' "$*" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --url) CHIMNEY_URL=${2-}; shift 2 ;;
    --sha) SHA=${2-}; shift 2 ;;
    --outcome) OUTCOME=${2-}; shift 2 ;;
    --slot) SLOT=${2-}; shift 2 ;;
    --duration-s) DURATION_S=${2-}; shift 2 ;;
    --pr-number) PR_NUMBER=${2-}; shift 2 ;;
    --pr-title) PR_TITLE=${2-}; shift 2 ;;
    --origin-ips) ORIGIN_IPS=${2-}; shift 2 ;;
    --deployed-at) DEPLOYED_AT=${2-}; shift 2 ;;
    --id) EVENT_ID=${2-}; shift 2 ;;
    -h | --help) usage ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

CHIMNEY_URL=${CHIMNEY_URL:-}
SHA=${SHA:-${GITHUB_SHA:-}}
OUTCOME=${OUTCOME:-}
[ -n "$CHIMNEY_URL" ] || die "CHIMNEY_URL is not set"
[ -n "${DEPLOY_TOKEN:-}" ] || die "DEPLOY_TOKEN is not set"
[ -n "$SHA" ] || die "SHA (or GITHUB_SHA) is not set"
case "$OUTCOME" in
  success | failure) ;;
  *) die "OUTCOME must be success or failure" ;;
esac
for name in DURATION_S PR_NUMBER; do
  value=${!name:-}
  if [ -n "$value" ] && ! [[ "$value" =~ ^[0-9]+$ ]]; then
    die "$name must be a whole number"
  fi
done
DEPLOYED_AT=${DEPLOYED_AT:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
# One id per run attempt and outcome: curl's retries and a re-run of the
# notify step land on the same event, a re-run of the job on a new one.
if [ -z "${EVENT_ID:-}" ] && [ -n "${GITHUB_RUN_ID:-}" ]; then
  EVENT_ID="${GITHUB_RUN_ID}.${GITHUB_RUN_ATTEMPT:-1}.${OUTCOME}"
fi
EVENT_ID=${EVENT_ID:-}
[ "${#EVENT_ID}" -le 128 ] || die "EVENT_ID must be at most 128 characters"

export SHA OUTCOME DEPLOYED_AT EVENT_ID
export SLOT=${SLOT:-} DURATION_S=${DURATION_S:-} PR_NUMBER=${PR_NUMBER:-}
export PR_TITLE=${PR_TITLE:-} ORIGIN_IPS=${ORIGIN_IPS:-}

build_with_python() {
  python3 -c '
import json, os, sys
env = os.environ
body = {"sha": env["SHA"], "outcome": env["OUTCOME"], "deployed_at": env["DEPLOYED_AT"]}
if env.get("EVENT_ID"):
    body["id"] = env["EVENT_ID"]
if env.get("SLOT"):
    body["slot"] = env["SLOT"]
if env.get("DURATION_S"):
    body["duration_s"] = int(env["DURATION_S"])
if env.get("PR_NUMBER"):
    body["pr_number"] = int(env["PR_NUMBER"])
if env.get("PR_TITLE"):
    body["pr_title"] = env["PR_TITLE"]
ips = [ip.strip() for ip in env.get("ORIGIN_IPS", "").split(",") if ip.strip()]
if ips:
    body["origin_ips"] = ips
json.dump(body, sys.stdout)
'
}

build_with_jq() {
  jq -cn '
    env as $e
    | {sha: $e.SHA, outcome: $e.OUTCOME, deployed_at: $e.DEPLOYED_AT}
    + (if $e.EVENT_ID != "" then {id: $e.EVENT_ID} else {} end)
    + (if $e.SLOT != "" then {slot: $e.SLOT} else {} end)
    + (if $e.DURATION_S != "" then {duration_s: ($e.DURATION_S | tonumber)} else {} end)
    + (if $e.PR_NUMBER != "" then {pr_number: ($e.PR_NUMBER | tonumber)} else {} end)
    + (if $e.PR_TITLE != "" then {pr_title: $e.PR_TITLE} else {} end)
    + ([$e.ORIGIN_IPS | split(",")[] | gsub("^\\s+|\\s+$"; "") | select(. != "")]
       | if length > 0 then {origin_ips: .} else {} end)'
}

tool=${POST_DEPLOY_JSON_TOOL:-}
if [ -z "$tool" ]; then
  if command -v python3 >/dev/null 2>&1; then tool=python3
  elif command -v jq >/dev/null 2>&1; then tool=jq
  else die "python3 or jq is needed to build the JSON body"
  fi
fi

body=$(mktemp)
trap 'rm -f "$body"' EXIT
case "$tool" in
  python3) build_with_python >"$body" ;;
  jq) build_with_jq >"$body" ;;
  *) die "POST_DEPLOY_JSON_TOOL must be python3 or jq" ;;
esac

# curl reads its Authorization header from a config on stdin; `"` and `\`
# are escaped for curl's config syntax.
token=${DEPLOY_TOKEN//\\/\\\\}
token=${token//\"/\\\"}
printf 'header = "Authorization: Bearer %s"\n' "$token" |
  curl -sSf --max-time 10 --retry 3 --retry-connrefused \
    --config - \
    -H 'Content-Type: application/json' \
    --data-binary "@$body" \
    "${CHIMNEY_URL%/}/api/deploy/events"
echo
