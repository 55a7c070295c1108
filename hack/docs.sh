#!/usr/bin/env bash
# Regenerates the pictures in docs/images with the tool itself, from the
# project's own test data (saved API objects + real kube-proxy rules), so the
# docs show exactly what users get.
#
#   hack/docs.sh            rewrite docs/images
#   hack/docs.sh --check    fail if docs/images is not what the tool prints now
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=docs/images
check=false
if [ "${1:-}" = --check ]; then
	check=true
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
command -v dot >/dev/null || { echo "hack/docs.sh: Graphviz's dot is needed (apt-get install graphviz)" >&2; exit 1; }
bindir=$(mktemp -d)
bin=$bindir/kubectl-trace_svc
CGO_ENABLED=0 go build -trimpath -o "$bindir/" ./cmd/kubectl-trace_svc ./cmd/trace-svc-cluster

kp=testdata/iptables/kube-proxy/v1.37.2
nft=testdata/nftables/kube-proxy/v1.37.2
# test-node's saved route sections (a Calico layout recorded in network
# namespaces: testdata/scenarios/routes)
routes=$(for f in testdata/scenarios/routes/calico-bgp/*; do printf -- '--dump test-node=%s ' "$f"; done)
# name | args (a Service from testdata/scenarios, and the node dumps)
scenarios=(
	"loadbalancer-iptables|svc1 -n ns1 --objects testdata/scenarios/loadbalancer/objects.yaml --dump node-a=$kp/TestLoadBalancer/iptables-nft.save"
	"loadbalancer-nftables|svc1 -n ns1 --objects testdata/scenarios/loadbalancer/objects.yaml --dump node-a=$nft/TestLoadBalancer/ruleset.nft"
	"local-policy-iptables|svc1 -n ns1 --objects testdata/scenarios/local-policy/objects.yaml --dump test-node=$kp/TestExternalTrafficPolicyLocal/iptables-nft.save"
	"multi-port-nftables|svc2 -n ns2 --objects testdata/scenarios/multi-port/objects.yaml --dump test-node=$nft/TestClusterIPGeneral/ruleset.nft"
	"no-endpoints-iptables|svc1 -n ns1 --objects testdata/scenarios/no-endpoints/objects.yaml --dump test-node=$kp/TestNoEndpointsReject/iptables-nft.save"
	"affinity-nftables|svc5 -n ns5 --objects testdata/scenarios/affinity/objects.yaml --dump test-node=$nft/TestTracePacketV4/ruleset.nft"
	"dual-stack-iptables|svc1 -n ns1 --objects testdata/scenarios/dual-stack/objects.yaml --dump test-node=$kp/TestNodePorts_ipv4__localhost-nodeports_enabled/iptables-nft.save --dump test-node=$kp/TestNodePorts_ipv6__localhost-nodeports_enabled/iptables-nft.save"
	"compare-nodes|svc1 -n ns1 --objects testdata/scenarios/loadbalancer/objects.yaml --dump node-a=$kp/TestLoadBalancer/iptables-nft.save --dump node-b=$kp/TestNoEndpointsReject/iptables-nft.save"
	"last-leg-iptables|svc1 -n ns1 --objects testdata/scenarios/local-policy/objects.yaml --dump test-node=$kp/TestExternalTrafficPolicyLocal/iptables-nft.save $routes"
	"loadbalancer-allowed-client|svc1 -n ns1 --objects testdata/scenarios/loadbalancer/objects.yaml --dump node-a=$nft/TestLoadBalancer/ruleset.nft --source-ip 203.0.113.7"
)
mkdir -p "$out"
for s in "${scenarios[@]}"; do
	name=${s%%|*}
	read -r -a args <<<"${s#*|}"
	"$bin" "${args[@]}" --color never >"$out/$name.txt"
	"$bin" "${args[@]}" -o dot >"$out/$name.dot"
	dot -Tsvg "$out/$name.dot" >"$out/$name.svg"
done
# The README's usage example is one of the pictures: the block after the
# marker line is the command and what it prints.
marker='<!-- make docs writes the tree below: docs/images/loadbalancer-iptables.txt -->'
grep -qF -- "$marker" README.md || { echo "hack/docs.sh: README.md lost its usage marker" >&2; exit 1; }
readme=$(mktemp)
awk -v marker="$marker" -v tree="$out/loadbalancer-iptables.txt" '
	$0 == marker { print; print "```console"; print "$ kubectl trace-svc svc1 -n ns1"
		while ((getline line < tree) > 0) print line
		print "```"; skip = 1; next }
	skip == 1 && /^```console/ { skip = 2; next }
	skip == 2 { if (/^```/) skip = 0; next }
	{ print }' README.md >"$readme"
if $check; then
	if ! diff -u README.md "$readme"; then
		rm -f "$readme"
		echo "README.md's usage example is out of date: run make docs" >&2
		exit 1
	fi
	rm -f "$readme"
else
	cat "$readme" >README.md
	rm -f "$readme"
fi
if $check; then
	if ! diff -r "$out" docs/images >/dev/null; then
		diff -r "$out" docs/images | head -40
		echo "docs/images is out of date: run make docs" >&2
		exit 1
	fi
	echo "docs/images is up to date"
fi
