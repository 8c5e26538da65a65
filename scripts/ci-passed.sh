#!/usr/bin/env bash
# Exits 0 when the tests passed for a commit: the `ci` workflow
# (.github/workflows/ci.yml) has a successful run of a push or a manual
# dispatch whose head is exactly that commit. A pull request's run does
# not count: it tested a merge commit, not this one.
#
#   scripts/ci-passed.sh SHA
#
# Called by chimney-build before it pushes an image and by chimney-deploy
# before it deploys one, so that no image of an untested commit is built
# for deploying or deployed, whichever way the workflow was started.
#
# Environment: GH_TOKEN (a token that may read the repository's Actions
# runs), GITHUB_REPOSITORY (owner/name; set by GitHub Actions). Exit
# status 1 when no such run exists (with the runs it found), 2 for bad
# usage.
set -euo pipefail

die() {
  printf 'ci-passed: %s\n' "$*" >&2
  exit 2
}

[ $# -eq 1 ] || die "usage: $0 SHA"
sha=$1
[[ "$sha" =~ ^[0-9a-f]{40}$ ]] || die "SHA must be a full 40-digit commit id, not '$sha'"
repo=${GITHUB_REPOSITORY:-}
[ -n "$repo" ] || die "GITHUB_REPOSITORY is not set"
workflow=ci.yml

# The runs of ci.yml for this head commit, one line each: event conclusion url.
runs=$(gh api -X GET "repos/$repo/actions/workflows/$workflow/runs" \
  -f head_sha="$sha" -f per_page=100 \
  --jq '.workflow_runs[] | "\(.event) \(.conclusion // .status) \(.html_url)"')

if grep -Eq '^(push|workflow_dispatch) success ' <<<"$runs"; then
  echo "ci passed for $sha: $(grep -E '^(push|workflow_dispatch) success ' <<<"$runs" | head -n 1)"
  exit 0
fi
echo "ci has not passed for $sha (.github/workflows/$workflow runs of a push or dispatch on this commit):" >&2
if [ -n "$runs" ]; then
  mapfile -t lines <<<"$runs"
  printf '  %s\n' "${lines[@]}" >&2
else
  echo "  none" >&2
fi
exit 1
