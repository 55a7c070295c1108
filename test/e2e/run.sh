#!/usr/bin/env bash
# Runs the end-to-end suite: the built plugin against a real etcd,
# kube-apiserver, kube-proxy and kubelet (each node with its own containerd
# and runc) in network namespaces, checked by real packets, in kube-proxy's
# iptables, nftables and iptables-legacy modes, and in IPVS mode on a qemu VM
# node (TestIPVS, -ipvs).
#
#   test/e2e/run.sh            run it where it can run (root on Linux);
#                              elsewhere say plainly why it is skipped, exit 0
#   test/e2e/run.sh --require  the same, but a skip is a failure
#   E2E=0 test/e2e/run.sh      skip on purpose (said so)
#
# `make test` (the README's test command) calls the first form, `make e2e`
# the second. The first run builds etcd, kube-apiserver, kube-proxy and
# kubelet from the Go module proxy (build.sh, ~12 minutes on 2 cores) and
# installs the Debian packages the nodes need; later runs reuse them. Every
# namespace, cgroup and process the suite starts is removed when it ends,
# also when a test fails; those of an earlier run that was killed are swept
# when the next one starts.
set -euo pipefail
cd "$(dirname "$0")"

require=false
[[ ${1:-} == --require ]] && require=true

skip() {
	echo "e2e: SKIPPED — $*" >&2
	if $require; then exit 1; fi
	exit 0
}

[[ ${E2E:-} == 0 ]] && skip "E2E=0 was set."
[[ $(uname -s) == Linux ]] || skip "the end-to-end suite needs Linux (network namespaces, netfilter); this is $(uname -s)."
[[ $(id -u) -eq 0 ]] || skip "the end-to-end suite needs root (it creates network namespaces and netfilter rules); you are uid $(id -u). Run: sudo make e2e"
[[ -d /run/netns || -w /run ]] || skip "/run is not writable, so ip netns cannot work here."

begin=$(date +%s)
./build.sh
built=$(date +%s)
echo "e2e: cluster binaries ready in $((built - begin)) s"

log=$(mktemp -t tsvc-e2e-log.XXXXXX)
trap 'rm -f "$log"' EXIT
set +e
CGO_ENABLED=0 GOFLAGS=-mod=mod go test -count=1 -v -timeout 60m . -args -e2e -ipvs 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
end=$(date +%s)

echo
echo "e2e: results per test and kube-proxy mode:"
grep -E '^\s*--- (PASS|FAIL|SKIP): Test[A-Za-z]+/[a-z-]+ ' "$log" | sed 's/^\s*/  /' || true
# TestRecordDemo is a recorder, opt-in by design (-record-demo DIR): its
# skip is not a gap in the suite. Any other skip is, and --require fails it.
# go test -v prints a skip's reason on the line before "--- SKIP".
if grep -E -- '--- SKIP' "$log" | grep -qv 'TestRecordDemo'; then
	echo "e2e: some tests were skipped, and why:"
	grep -E -B1 -- '--- SKIP' "$log" | grep -vE -- '^(--$|\s*--- SKIP)' | grep -v 'record-demo' | sed 's/^\s*/  /' | sort -u
	if $require && [[ $rc -eq 0 ]]; then rc=1; fi
fi
if [[ $rc -ne 0 ]]; then
	# The whole log is long; say here, for each failed test that has no
	# failed subtest, the last things it printed before its clean-up's
	# log tails, so the reason is in the last screen of output.
	echo "e2e: why the failed tests failed (their last lines before clean-up):"
	awk '
		/^=== (RUN|NAME|CONT|PAUSE) / { cur = $3; intail[cur] = 0; next }
		/^[ \t]*--- (PASS|FAIL|SKIP): / {
			if ($2 == "FAIL:") { failed[$3] = 1; split($3, parts, "/"); p = parts[1]; for (i = 2; i < length(parts); i++) p = p "/" parts[i]; if (p != $3) hasfailedchild[p] = 1 }
			next
		}
		cur != "" {
			if ($0 ~ / log tail ---$/) intail[cur] = 1
			if (!intail[cur]) { n[cur]++; line[cur, n[cur]] = $0 }
		}
		END {
			for (t in failed) {
				if (t in hasfailedchild) continue
				print "  " t ":"
				from = n[t] > 25 ? n[t] - 24 : 1
				for (i = from; i <= n[t]; i++) print "  " line[t, i]
			}
		}' "$log" || true
fi
echo "e2e: suite took $((end - built)) s (plus $((built - begin)) s for the cluster binaries); exit $rc"
exit "$rc"
