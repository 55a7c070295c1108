#!/usr/bin/env bash
# Runs every fuzz target of the given packages for FUZZTIME each.
#
# A target fails the run when the fuzzer finds something: a failing input
# (written to testdata/fuzz/TARGET/), a panic, a t.Fatal. Go before 1.27 has
# a race in its fuzzing coordinator (go.dev/issue/75804): when -fuzztime
# ends while a worker is busy, which on a loaded machine happens, it reports
# a bare "context deadline exceeded" and exits 1 having found nothing. Such a
# run is not a finding: the target's corpus (committed seeds and what this
# run added to the cache) is then replayed without fuzzing, deterministically,
# and only a failure there fails the run.
set -uo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in "$@"; do
	for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
		echo "fuzz $pkg $target"
		if $GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
			tail -n 3 "$log"
			continue
		fi
		cat "$log"
		if grep -q 'context deadline exceeded' "$log" &&
			! grep -qE 'Failing input written|panic:|fuzz_test\.go:[0-9]+:|_test\.go:[0-9]+:' "$log"; then
			echo "fuzz $pkg $target: the fuzzer stopped with a bare 'context deadline exceeded' and no failing input (go.dev/issue/75804); replaying the target's corpus"
			$GO test -count=1 -run "^$target\$" "$pkg" || exit 1
			continue
		fi
		exit 1
	done
done
