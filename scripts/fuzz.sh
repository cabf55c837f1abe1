#!/usr/bin/env bash
# fuzz.sh: a short run of every fuzz target in the repository.
#
#   scripts/fuzz.sh [FUZZTIME]     (default 30s per target; make fuzz FUZZTIME=2m)
#
# Targets are discovered, not listed: every package with a func Fuzz... in
# its tests is asked for them with `go test -list`, so a new target runs
# without editing anything. Go fuzzes one target per run, so they run one
# after another. Go keeps new interesting inputs in its cache; an input
# that fails is written to the package's testdata/fuzz/<Target>/ (commit
# it: it becomes a regression test), and the first failure stops the run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FUZZTIME="${1:-${FUZZTIME:-30s}}"
GO="${GO:-go}"

targets=()
while read -r pkg dir; do
	# Compiling a test binary only to list nothing is slow: look first.
	grep -qs '^func Fuzz' "$dir"/*_test.go || continue
	while read -r name; do
		targets+=("$pkg $name")
	done < <("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
done < <("$GO" list -f '{{.ImportPath}} {{.Dir}}' ./...)

[ "${#targets[@]}" -gt 0 ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }
echo "fuzz: ${#targets[@]} targets, $FUZZTIME each" >&2
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz: $name ($pkg)" >&2
	"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"
done
echo "fuzz: all ${#targets[@]} targets ran for $FUZZTIME without a failure" >&2
