#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time (default 30s).
# `make test` already runs each target's seed corpus; this searches further.
# Crashers land in the package's testdata/fuzz/<Target>/ as regression seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-30s}
failed=()
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    echo "== $pkg $target ($fuzztime)"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"; then
      failed+=("$pkg $target")
    fi
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzzing found failures in:\n'; printf '  %s\n' "${failed[@]}"
  exit 1
fi
echo "fuzz: no failures"
