#!/usr/bin/env bash
# Regenerates testdata/ipvs/kube-proxy/<version>/ from kube-proxy's own IPVS
# proxier tests (k8s.io/kubernetes/pkg/proxy/ipvs from the Go module proxy).
#
#   hack/kpfixtures/ipvs.sh v1.29.6 v1.33.13 v1.37.2   (needs root, Go, ipset, iptables)
#
# For each version it copies the package into a scratch module, adds
# ipvsrecorder_test.go.txt and rewrites the tests' calls to go through it
# (see that file), then runs the tests, which must still pass. After every
# syncProxyRules the recorder writes the fake IPVS, ipset and iptables state
# and the expectations the test asserts after that sync. Each recorded
# state is then made real in a fresh network namespace:
#
#   <test>/fake.json          kube-proxy's fake state: virtual servers with
#                             real servers, ipsets with entries, node and
#                             kube-ipvs0 addresses
#   <test>/expectations.json  every IPVS / ipset / iptables expectation the
#                             test asserted after that sync, with its line
#   <test>/ipset.save         the sets through real `ipset restore` / `ipset save`
#   <test>/iptables-nft.save  the rules through real iptables-restore /
#                             iptables-save (nf_tables backend; ip6tables
#                             for IPv6), loaded after the sets they match on;
#                             fake.rules instead where they use -m ipvs, which
#                             a kernel without IPVS (this one) refuses
#   <test>/ip_vs, <test>/ipvsadm.save
#                             the IPVS table as /proc/net/ip_vs and
#                             ipvsadm -Sn print it (this machine's kernel
#                             has no IPVS: trace/ipvs's formatter writes
#                             them, go test ./trace/ipvs -run
#                             TestKubeProxyFixtures -update)
#
# Scratch modules live in ${KPFIXTURES_CACHE:-~/.cache/kubectl-trace-svc/kpfixtures},
# shared with gen.sh.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${KPFIXTURES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-trace-svc/kpfixtures}
out_root=${KPFIXTURES_IPVS_DEST:-$repo/testdata/ipvs/kube-proxy}
ns=${KPFIXTURES_NETNS:-tsvc-fx-ipvs-$$}
export CGO_ENABLED=0 GOFLAGS=-mod=mod

die() { echo "ipvs.sh: $*" >&2; exit 1; }
[ $# -gt 0 ] || die "usage: $0 vX.Y.Z... (Kubernetes versions)"
[ "$(id -u)" = 0 ] || die "needs root: fixtures are made real with ipset and iptables-restore in a network namespace"
for tool in ipset iptables-nft-restore iptables-nft-save ip6tables-nft-restore ip6tables-nft-save ip python3; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install ipset iptables iproute2 python3)"
done

# scratch_module is gen.sh's: a module that requires k8s.io/kubernetes@version
# with its staging modules pinned to the published v0.X.Y.
scratch_module() {
	local ver=$1 mod=$cache/$1
	local staging_ver=v0.${ver#v1.}
	mkdir -p "$mod"
	if [ ! -f "$mod/go.mod" ]; then
		local replaces="" s staging
		staging=$(cd / && GOFLAGS= go mod download -json "k8s.io/kubernetes@$ver" |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' |
			xargs sed -n 's|^\s*k8s.io/\([^ ]*\) => ./staging/.*|\1|p')
		for s in $staging; do
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

record() { # version -> $cache/$version/recorded-ipvs/<test>/...
	local ver=$1 mod=$cache/$1 pkgdir kp
	scratch_module "$ver"
	pkgdir=$(cd "$mod" && go list -f '{{.Dir}}' k8s.io/kubernetes/pkg/proxy/ipvs)
	kp=$mod/kptest-ipvs
	rm -rf "$kp" "$mod/recorded-ipvs"
	mkdir -p "$kp" "$mod/recorded-ipvs"
	cp "$pkgdir"/*.go "$kp/"
	chmod u+w "$kp"/*.go
	cp "$repo/hack/kpfixtures/ipvsrecorder_test.go.txt" "$kp/kpfixtures_recorder_test.go"
	# syncProxyRules returns retryError since 1.34; the recorder calls it
	# through this adapter either way.
	if grep -q '^func (proxier \*Proxier) syncProxyRules() (retryError error)' "$kp/proxier.go"; then
		printf 'package ipvs\n\nfunc kpfxCallSync(p *Proxier) error { return p.syncProxyRules() }\n' >"$kp/kpfixtures_sync_test.go"
	else
		printf 'package ipvs\n\nfunc kpfxCallSync(p *Proxier) error { p.syncProxyRules(); return nil }\n' >"$kp/kpfixtures_sync_test.go"
	fi
	python3 - "$kp" <<'PY'
import re, sys, pathlib
kp = pathlib.Path(sys.argv[1])
counts = {}
def sub(text, pat, repl, key):
    new, n = re.subn(pat, repl, text, flags=re.M)
    counts[key] = counts.get(key, 0) + n
    return new
for name in ["proxier_test.go", "cleanup_test.go"]:
    p = kp / name
    if not p.exists():
        continue
    s = p.read_text()
    if name == "proxier_test.go":
        s = sub(s, r"^func (checkIPVS|checkIPSet|checkIptables)\(", r"func \1KubeProxy(", "helpers")
        s = sub(s, r"reflect\.DeepEqual\(ipvs, test\.expectedIPVS\)", "kpfxExpectIPVSState(t, ipvs, test.expectedIPVS)", "ipvsState")
        s = sub(s, r"\b((?:[A-Za-z_]\w*\.)*ipvs)\.GetRealServers\(", r"kpfxGetRealServers(t, \1, ", "GetRealServers")
        s = sub(s, r"\b((?:[A-Za-z_]\w*\.)*ipvs)\.GetVirtualServers\(\)", r"kpfxGetVirtualServers(t, \1)", "GetVirtualServers")
        s = sub(s, r"\b(\w+)\.ipsetList\[([^\]]+)\]\.activeEntries", r"kpfxActive(t, \1, \2).activeEntries", "activeEntries")
    s = sub(s, r"\b(\w+)\.syncProxyRules\(\)", r"kpfxSync(t, \1)", "syncProxyRules")
    p.write_text(s)
print("   rewrote:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
if counts.get("helpers") != 3:
    sys.exit("ipvs.sh: checkIPVS/checkIPSet/checkIptables not found as expected")
PY
	echo "== $ver: running kube-proxy's IPVS proxier tests with the recorder"
	(cd "$mod" && KPFIXTURES_OUT="$mod/recorded-ipvs" KPFIXTURES_VERSION="$ver" \
		go test -vet=off -count=1 ./kptest-ipvs) | tail -n 3
}

# fix_comments is gen.sh's: quote multi-word --comment values kube-proxy's
# fake leaves unquoted, which iptables-restore would split.
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

roundtrip() { # version
	local ver=$1 rec=$cache/$1/recorded-ipvs dest=$out_root/$1 dir name v6 bin n=0
	rm -rf "$dest"
	mkdir -p "$dest"
	trap 'ip netns del '"$ns"' 2>/dev/null || true' EXIT
	bin=$(mktemp -d)
	for tool in iptables-restore iptables-save ip6tables-restore ip6tables-save; do
		ln -s "$(command -v "${tool/tables/tables-nft}")" "$bin/$tool"
	done
	for dir in "$rec"/*/; do
		name=$(basename "$dir")
		mkdir -p "$dest/$name"
		cp "$dir/fake.json" "$dir/expectations.json" "$dest/$name/"
		v6=
		grep -q '"ipFamily": "IPv6"' "$dir/fake.json" && v6=6
		ip netns del "$ns" 2>/dev/null || true
		ip netns add "$ns"
		ip netns exec "$ns" ipset restore <"$dir/ipset.restore" ||
			die "$ver/$name: ipset restore rejected the sets"
		ip netns exec "$ns" ipset save >"$dest/$name/ipset.save"
		if [ -s "$dir/iptables.rules" ]; then
			fix_comments <"$dir/iptables.rules" >"$dir/iptables.fixed"
			if ip netns exec "$ns" env PATH="$bin:$PATH" "ip${v6}tables-restore" <"$dir/iptables.fixed" 2>"$dir/restore.err"; then
				ip netns exec "$ns" env PATH="$bin:$PATH" "ip${v6}tables-save" >"$dest/$name/iptables-nft.save"
			elif grep -q -- ' -m ipvs ' "$dir/iptables.fixed" && grep -q 'ipvs revision 0 not supported' "$dir/restore.err"; then
				# -m ipvs needs the kernel's xt_ipvs, which a kernel without
				# IPVS lacks: keep kube-proxy's rules as written.
				cp "$dir/iptables.fixed" "$dest/$name/fake.rules"
				echo "   $name: no xt_ipvs in this kernel, kept fake.rules instead of iptables-nft.save"
			else
				cat "$dir/restore.err" >&2
				die "$ver/$name: ip${v6}tables-restore rejected the rules"
			fi
		fi
		n=$((n + 1))
	done
	rm -rf "$bin"
	ip netns del "$ns" 2>/dev/null || true
	trap - EXIT
	[ -f "$rec/unattached.txt" ] && echo "   $(wc -l <"$rec/unattached.txt") expectations asserted before any sync (not recorded)"
	echo "== $ver: $n synced states made real in $dest"
}

for ver in "$@"; do
	record "$ver"
	roundtrip "$ver"
done
echo "== rendering /proc/net/ip_vs and ipvsadm -Sn with trace/ipvs's formatter"
(cd "$repo" && go test -count=1 -run '^TestKubeProxyFixtures$' ./trace/ipvs -args -update >/dev/null)
