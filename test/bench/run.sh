#!/usr/bin/env bash
# `make bench`: runs each area's benchmark script (test/bench/*/run.sh), each
# of which measures Rackstrap against the standard peer in the same run and
# prints a markdown table. Results are also kept in test/bench/results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p test/bench/results
status=0
for script in test/bench/*/run.sh; do
  area=$(basename "$(dirname "$script")")
  echo "## $area"
  if bash "$script" | tee "test/bench/results/$area.md"; then :; else
    echo "bench $area failed (exit $?)" >&2; status=1
  fi
  echo
done
exit $status
