#!/usr/bin/env bash
# The house rules of the package layout, checked on the code (not tests):
# - only trace/ruleset imports the dataplane engines (trace/iptables,
#   trace/nftables, trace/ipvs, trace/ipset): the tracer, the commands and the
#   renderers reach an engine through that one door (engines may use each
#   other; fixture generators under hack/ and test/ may use them);
# - trace/ never imports collectors/ or render/, render/ never imports
#   collectors/ (render never talks to a cluster);
# - the plugin's binary (cmd/kubectl-trace_svc, which runs simulate and
#   version itself) links no cluster client: nothing of client-go, k8s.io/api,
#   k8s.io/kubectl or cli-runtime but genericiooptions, in any of its
#   dependencies (cmd/kubectl-trace_svc/main.go says why).
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
engines="$mod/trace/iptables $mod/trace/nftables $mod/trace/ipvs $mod/trace/ipset"
fail=0
is_engine() {
	local p=$1 e
	for e in $engines; do
		[[ $p == "$e" || $p == "$e"/* ]] && return 0
	done
	return 1
}
while read -r pkg imports; do
	case $pkg in "$mod"/hack/* | "$mod"/test/*) continue ;; esac
	for imp in $imports; do
		if is_engine "$imp" && [[ $pkg != "$mod/trace/ruleset" ]] && ! is_engine "$pkg"; then
			echo "$pkg imports $imp: only trace/ruleset may import an engine package"
			fail=1
		fi
		case $pkg in
		"$mod"/trace | "$mod"/trace/*)
			if [[ $imp == "$mod"/collectors* || $imp == "$mod"/render* || $imp == "$mod"/cmd* ]]; then
				echo "$pkg imports $imp: trace/ never imports collectors/, render/ or cmd/"
				fail=1
			fi
			;;
		"$mod"/render | "$mod"/render/*)
			if [[ $imp == "$mod"/collectors* || $imp == "$mod"/cmd* ]]; then
				echo "$pkg imports $imp: render/ never imports collectors/ or cmd/"
				fail=1
			fi
			;;
		esac
	done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)
client=$(go list -deps ./cmd/kubectl-trace_svc | grep -E '^(k8s\.io/(client-go|api|kubectl|apiserver)(/|$)|k8s\.io/cli-runtime/)' | grep -vx 'k8s.io/cli-runtime/pkg/genericiooptions' || true)
if [[ -n $client ]]; then
	echo "cmd/kubectl-trace_svc links the cluster client, which simulate must not pay for at start-up:"
	echo "$client" | sed 's/^/  /'
	echo "(go list -deps ./cmd/kubectl-trace_svc; keep such imports in cmd/cli and trace-svc-cluster)"
	fail=1
fi
if [[ $fail -ne 0 ]]; then
	exit 1
fi
echo "imports: package layout rules hold"
