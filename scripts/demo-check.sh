#!/usr/bin/env bash
# demo-check.sh [RUNS]: what a new user does, RUNS times (default 10):
# clone the repository into a temporary directory and run
# `DEMO_SECONDS=1 make demo` there, again and again in the same clone.
# Every run must succeed; a failed run prints its output. The ports come
# from DRM_DEMO_PORT and CLIENTPROXY_LISTEN (defaults 8080, 127.0.0.1:8765).
#
# It clones what is committed: uncommitted changes are not in the clone.
set -euo pipefail
runs=${1:-10}
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/drm-demo-check.XXXXXX")
trap 'rm -rf "$dir"' EXIT

git clone -q "$repo" "$dir/caddy-drm"
cd "$dir/caddy-drm"
failed=0
for i in $(seq "$runs"); do
	start=$SECONDS
	if DEMO_SECONDS=1 make -s demo >"$dir/run-$i.log" 2>&1; then
		echo "demo-check: run $i of $runs: ok ($((SECONDS - start)) s)"
	else
		failed=$((failed + 1))
		echo "demo-check: run $i of $runs: FAILED ($((SECONDS - start)) s); its output:"
		tail -n 40 "$dir/run-$i.log" | sed 's/^/    /'
	fi
done
if ((failed > 0)); then
	echo "demo-check: $failed of $runs runs failed" >&2
	exit 1
fi
echo "demo-check: all $runs runs succeeded"
