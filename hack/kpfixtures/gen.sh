#!/usr/bin/env bash
# Regenerates testdata/iptables/kube-proxy/<version>/ from real kube-proxy code.
#
#   hack/kpfixtures/gen.sh v1.29.6 v1.37.2              (needs root, Go, iptables, nfacct)
#   hack/kpfixtures/gen.sh --nftables v1.33.13 v1.37.2  (needs root, Go, nft)
#
# For each Kubernetes version it runs kube-proxy's own iptables proxier tests
# (k8s.io/kubernetes/pkg/proxy/iptables from the Go module proxy) with one file
# added (in a copy of the package in a scratch module): recorder_test.go.txt wraps the tests'
# runPacketFlowTests, so every packet-flow check records the rules kube-proxy
# wrote into its fake iptables, the node IPs and the expected outcome of each
# packet (flows.json). The tests themselves still run and must pass.
#
# Each recorded ruleset is then loaded with real iptables-restore into a fresh
# network namespace and dumped back with iptables-save, through both the
# nf_tables and the legacy backend, so the fixtures have exactly the format a
# live node prints:
#
#   <test>/fake.rules            what kube-proxy's fake iptables held
#   <test>/iptables-nft.save     iptables-nft-save (or ip6tables-) output
#   <test>/iptables-legacy.save  iptables-legacy-save output
#   <test>/flows.json            kube-proxy's packet-flow cases and expectations
#
# With --nftables it does the same for kube-proxy's nftables proxier tests
# (pkg/proxy/nftables, helpers_test.go's runPacketFlowTests): the recorded
# knftables ruleset goes through real `nft -f` and comes back as
# `nft list ruleset` and `nft -j list ruleset` under
# testdata/nftables/kube-proxy/<version>/<test>/{fake.nft,ruleset.nft,ruleset.json,flows.json}.
#
# Scratch modules live in ${KPFIXTURES_CACHE:-~/.cache/kubectl-trace-svc/kpfixtures}.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${KPFIXTURES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-trace-svc/kpfixtures}
out_root=${KPFIXTURES_DEST:-$repo/testdata/iptables/kube-proxy}
out_nft=${KPFIXTURES_NFT_DEST:-$repo/testdata/nftables/kube-proxy}
export CGO_ENABLED=0 GOFLAGS=-mod=mod

die() { echo "gen.sh: $*" >&2; exit 1; }
[ $# -gt 0 ] || die "usage: $0 vX.Y.Z... (Kubernetes versions)"
[ "$(id -u)" = 0 ] || die "needs root: fixtures are round-tripped through iptables-restore in a network namespace"
for tool in iptables-nft-restore iptables-nft-save iptables-legacy-restore iptables-legacy-save \
	ip6tables-nft-restore ip6tables-nft-save ip6tables-legacy-restore ip6tables-legacy-save nfacct ip python3; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install iptables nfacct iproute2 python3)"
done

scratch_module() { # version: a module in $cache/$version that requires k8s.io/kubernetes@version
	local ver=$1 mod=$cache/$1
	local staging_ver=v0.${ver#v1.}
	mkdir -p "$mod"
	if [ ! -f "$mod/go.mod" ]; then
		# k8s.io/kubernetes points its staging modules at ./staging; a module
		# that requires it must pin them to the published v0.X.Y instead.
		local replaces="" s staging
		staging=$(cd / && GOFLAGS= go mod download -json "k8s.io/kubernetes@$ver" |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' |
			xargs sed -n 's|^\s*k8s.io/\([^ ]*\) => ./staging/.*|\1|p')
		for s in $staging; do
			# only modules published at this version; the others are not needed
			if (cd / && GOFLAGS= go list -m "k8s.io/$s@$staging_ver" >/dev/null 2>&1); then
				replaces+="	k8s.io/$s => k8s.io/$s $staging_ver"$'\n'
			fi
		done
		(
			cd "$mod"
			go mod init kpfixtures.local/scratch >/dev/null 2>&1
			printf 'require k8s.io/kubernetes %s\n\nreplace (\n%s)\n' "$ver" "$replaces" >>go.mod
			printf 'package scratch\n\nimport _ "k8s.io/kubernetes/pkg/proxy/iptables"\n' >scratch.go
			go mod tidy >/dev/null
		)
	fi
}

record() { # version -> writes $cache/$version/recorded/<test>/{fake.rules,flows.json}
	local ver=$1 mod=$cache/$1
	scratch_module "$ver"
	local pkgdir
	pkgdir=$(cd "$mod" && go list -f '{{.Dir}}' k8s.io/kubernetes/pkg/proxy/iptables)
	# A copy of kube-proxy's package (same package name, no internal imports)
	# in the scratch module, with runPacketFlowTests renamed and our recorder
	# added; the module cache itself is read-only.
	rm -rf "$mod/kptest"
	mkdir -p "$mod/kptest"
	cp "$pkgdir"/*.go "$mod/kptest/"
	chmod u+w "$mod/kptest"/*.go
	if grep -q '^func runPacketFlowTests(' "$mod/kptest/proxier_test.go"; then
		sed -i 's/^func runPacketFlowTests(/func runPacketFlowTestsKubeProxy(/' "$mod/kptest/proxier_test.go"
		cp "$repo/hack/kpfixtures/recorder_test.go.txt" "$mod/kptest/kpfixtures_recorder_test.go"
	else
		# ≤1.23 has no packet-flow tests: drive the proxier over our own
		# Services; the expected outcomes come from kp122-flows.json.
		cp "$repo/hack/kpfixtures/kp122_test.go.txt" "$mod/kptest/kpfixtures_kp122_test.go"
	fi
	rm -rf "$mod/recorded"
	mkdir -p "$mod/recorded"
	echo "== $ver: running kube-proxy's iptables proxier tests with the recorder"
	# Test dependencies of the kube-proxy package are added on demand (-mod=mod).
	(cd "$mod" && KPFIXTURES_OUT="$mod/recorded" KPFIXTURES_VERSION="$ver" \
		go test -vet=off -count=1 ./kptest) |
		tail -n 3
}

# fix_comments quotes multi-word --comment values that kube-proxy's static test
# rules leave unquoted (iptables-restore would split them into arguments).
fix_comments() {
	python3 -c '
import re, sys
pat = re.compile(r"--comment (?!\")(.+?)(?= -[-a-zA-Z!]| ! |$)")
def q(m):
    v = m.group(1)
    return "--comment " + (("\"" + v + "\"") if " " in v else v)
for line in sys.stdin:
    line = line.rstrip("\n")
    if line.startswith("-A "):
        line = pat.sub(q, line)
    print(line)
'
}

# backend_bin nft|legacy: a directory where iptables, iptables-save, ... are
# the given backend's tools, as the alternatives system sets them up on a node.
backend_bin() {
	local bin tool
	bin=$(mktemp -d)
	for tool in iptables iptables-restore iptables-save ip6tables ip6tables-restore ip6tables-save; do
		ln -s "$(command -v "${tool/tables/tables-$1}")" "$bin/$tool"
	done
	echo "$bin"
}

# replay_122 recorded-dir dest-dir netns: what a 1.22 node does — kubelet's
# rules, then kube-proxy's EnsureChain/EnsureRule calls, then its
# iptables-restore --noflush — with real iptables, once per backend.
replay_122() {
	local rec=$1 dest=$2 ns=$3 backend bin
	cp "$rec/restore.rules" "$rec/ops.sh" "$dest/"
	cp "$repo/hack/kpfixtures/kp122-flows.json" "$dest/flows.json"
	for backend in nft legacy; do
		bin=$(backend_bin "$backend")
		ip netns del "$ns" 2>/dev/null || true
		ip netns add "$ns"
		ip netns exec "$ns" env PATH="$bin:$PATH" bash -euo pipefail -c '
			. "$1/hack/kpfixtures/kubelet122.sh"
			. "$2/ops.sh"
			iptables-restore --noflush --counters <"$2/restore.rules"
			iptables-save' _ "$repo" "$dest" >"$dest/iptables-$backend.save" ||
			die "$dest: replaying kube-proxy 1.22 with iptables-$backend failed"
		rm -rf "$bin"
	done
}

roundtrip() { # version
	local ver=$1 rec=$cache/$1/recorded dest=$out_root/$1 bin
	rm -rf "$dest"
	mkdir -p "$dest"
	local ns=tsvc-fx-$$
	trap 'ip netns del '"$ns"' 2>/dev/null || true' EXIT
	local n=0
	for dir in "$rec"/*/; do
		local name
		name=$(basename "$dir")
		local v6=
		grep -qs '"ipv6": true' "$dir/flows.json" && v6=6
		mkdir -p "$dest/$name"
		if [ -f "$dir/restore.rules" ]; then
			replay_122 "$dir" "$dest/$name" "$ns"
			n=$((n + 1))
			continue
		fi
		fix_comments <"$dir/fake.rules" >"$dest/$name/fake.rules"
		cp "$dir/flows.json" "$dest/$name/flows.json"
		for backend in nft legacy; do
			ip netns del "$ns" 2>/dev/null || true
			ip netns add "$ns"
			# kube-proxy ≥1.30 counts packets with nfacct objects that must exist first.
			for acct in $(grep -o -- '--nfacct-name [^ ]*' "$dest/$name/fake.rules" | awk '{print $2}' | sort -u); do
				ip netns exec "$ns" nfacct add "$acct" >/dev/null
			done
			# Run the tools under the names a node uses (its alternatives
			# symlinks): the header then reads "iptables-save v1.8.9 (nf_tables)".
			bin=$(backend_bin "$backend")
			ip netns exec "$ns" env PATH="$bin:$PATH" "ip${v6}tables-restore" <"$dest/$name/fake.rules" ||
				die "$ver/$name: ip${v6}tables-restore ($backend) rejected the rules"
			ip netns exec "$ns" env PATH="$bin:$PATH" "ip${v6}tables-save" >"$dest/$name/iptables-$backend.save"
			rm -rf "$bin"
		done
		n=$((n + 1))
	done
	ip netns del "$ns" 2>/dev/null || true
	trap - EXIT
	echo "== $ver: $n rulesets round-tripped into $dest"
}

record_nft() { # version -> $cache/$version/recorded-nft/<test>/{fake.nft,flows.json}
	local ver=$1 mod=$cache/$1 pkgdir
	scratch_module "$ver"
	pkgdir=$(cd "$mod" && go list -mod=mod -f '{{.Dir}}' k8s.io/kubernetes/pkg/proxy/nftables)
	rm -rf "$mod/kptest-nft" "$mod/recorded-nft"
	mkdir -p "$mod/kptest-nft" "$mod/recorded-nft"
	cp "$pkgdir"/*.go "$mod/kptest-nft/"
	chmod u+w "$mod/kptest-nft"/*.go
	grep -q '^func runPacketFlowTests(' "$mod/kptest-nft/helpers_test.go" ||
		die "$ver: runPacketFlowTests not found in $pkgdir/helpers_test.go"
	sed -i 's/^func runPacketFlowTests(/func runPacketFlowTestsKubeProxy(/' "$mod/kptest-nft/helpers_test.go"
	cp "$repo/hack/kpfixtures/nftrecorder_test.go.txt" "$mod/kptest-nft/kpfixtures_recorder_test.go"
	echo "== $ver: running kube-proxy's nftables proxier tests with the recorder"
	(cd "$mod" && KPFIXTURES_OUT="$mod/recorded-nft" KPFIXTURES_VERSION="$ver" \
		go test -vet=off -count=1 ./kptest-nft) |
		tail -n 3
}

# roundtrip_nft version: each recorded ruleset through `nft -f` and back with
# `nft list ruleset` (text) and `nft -j list ruleset` (JSON) in a fresh netns.
roundtrip_nft() {
	local ver=$1 rec=$cache/$1/recorded-nft dest=$out_nft/$1 dir name n=0
	local ns=tsvc-fx-nft-$$
	rm -rf "$dest"
	mkdir -p "$dest"
	trap 'ip netns del '"$ns"' 2>/dev/null || true' EXIT
	for dir in "$rec"/*/; do
		name=$(basename "$dir")
		mkdir -p "$dest/$name"
		cp "$dir/fake.nft" "$dir/flows.json" "$dest/$name/"
		ip netns del "$ns" 2>/dev/null || true
		ip netns add "$ns"
		ip netns exec "$ns" nft -f "$dest/$name/fake.nft" || die "$ver/$name: nft -f rejected the ruleset"
		ip netns exec "$ns" nft list ruleset >"$dest/$name/ruleset.nft"
		ip netns exec "$ns" nft -j list ruleset >"$dest/$name/ruleset.json"
		n=$((n + 1))
	done
	ip netns del "$ns" 2>/dev/null || true
	trap - EXIT
	echo "== $ver: $n nftables rulesets round-tripped into $dest"
}

mode=iptables
if [ "${1:-}" = --nftables ]; then
	mode=nftables
	shift
	command -v nft >/dev/null || die "nft is missing (apt-get install nftables)"
fi
for ver in "$@"; do
	if [ "$mode" = nftables ]; then
		record_nft "$ver"
		roundtrip_nft "$ver"
	else
		record "$ver"
		roundtrip "$ver"
	fi
done
