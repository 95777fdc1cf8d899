#!/usr/bin/env bash
# Run the whole suite N times (default 3) while a busy loop runs on every core at normal
# priority: the tests must not depend on how fast a tick or a run is (CI machines are
# shared). Usage: bash stack/busy-test.sh [N]   (or: make test-busy)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
busy=()
for _ in $(seq "$(nproc)"); do
  bash -c 'while :; do :; done' &
  busy+=($!)
done
trap 'kill "${busy[@]}" 2>/dev/null || true' EXIT
echo "[busy-test] ${#busy[@]} busy loop(s) running: ${busy[*]}"
for round in $(seq "$rounds"); do
  start=$(date +%s)
  make test
  echo "[busy-test] round $round of $rounds passed in $(( $(date +%s) - start )) s"
done
