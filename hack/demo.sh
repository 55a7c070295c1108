#!/usr/bin/env bash
# make demo: trace a Service of a recorded two-node cluster — no cluster, no
# kubeconfig. The bundle (testdata/demo, see its README) is the API objects
# and what the plugin's debug pods collected from two real kube-proxy nodes:
# node1 in iptables mode, node2 in nftables mode, whose kube-proxy was
# stopped before the Service's third pod was added (drift).
#
#   hack/demo.sh BIN OUT    BIN is the built plugin; the diagram goes to OUT
#
# DOT names Graphviz's dot (default: dot on PATH).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bin=${1:?usage: hack/demo.sh BIN OUT}
out=${2:?usage: hack/demo.sh BIN OUT}
dot=${DOT:-dot}
demo=testdata/demo

args=(web -n shop --objects "$demo/objects.json")
for f in "$demo"/node*.*; do
	name=${f##*/}
	args+=(--dump "${name%%.*}=$f")
done
echo "$ kubectl trace-svc web -n shop --objects $demo/objects.json \\"
echo "    \$(for f in $demo/node*.*; do n=\${f##*/}; echo --dump \${n%%.*}=\$f; done)"
echo
"$bin" "${args[@]}"
mkdir -p "$out"
"$bin" "${args[@]}" -o dot >"$out/demo.dot"
echo
if command -v "$dot" >/dev/null 2>&1; then
	"$dot" -Tsvg "$out/demo.dot" >"$out/demo.svg"
	echo "The same trace as a diagram: $out/demo.svg (open it in a browser; -o svg writes it directly)"
else
	rm -f "$out/demo.svg"
	echo "Graphviz is not installed (no dot on PATH), so there is no SVG: the diagram is $out/demo.dot."
	echo "Install Graphviz (apt-get install graphviz, brew install graphviz) and run make demo again for $out/demo.svg."
fi
echo "How the cluster was recorded: $demo/README.md. On your own cluster: kubectl trace-svc SERVICE -n NAMESPACE."
