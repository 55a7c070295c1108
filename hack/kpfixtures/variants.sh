#!/usr/bin/env bash
# Regenerates testdata/iptables/variants/: the same kube-proxy rules as a live
# node prints them in the less common shapes, all written by the real tools in
# a throwaway network namespace (needs root, iptables, nfacct):
#
#   counters-nft.save      iptables-nft-save -c (packet/byte counters on every rule)
#   counters-legacy.save   iptables-legacy-save -c
#   legacy-warning.save    iptables-nft-save 2>&1 while iptables-legacy tables exist
#                          too (the "# Warning: iptables-legacy tables present" line)
#   all-tables.save        kube-proxy's rules plus raw and mangle tables of other software
#   ipv6-counters.save     ip6tables-legacy-save -c of kube-proxy's IPv6 rules
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
src=$repo/testdata/iptables/kube-proxy/v1.37.2/TestLoadBalancer/fake.rules
src6=$repo/testdata/iptables/kube-proxy/v1.37.2/TestNodePorts_ipv6__localhost-nodeports_enabled/fake.rules
dest=$repo/testdata/iptables/variants
[ "$(id -u)" = 0 ] || { echo "variants.sh: needs root" >&2; exit 1; }
[ -f "$src" ] && [ -f "$src6" ] || { echo "variants.sh: run gen.sh v1.37.2 first" >&2; exit 1; }
mkdir -p "$dest"
ns=tsvc-fx-var-$$
fresh() {
	ip netns del "$ns" 2>/dev/null || true
	ip netns add "$ns"
	for acct in $(grep -oh -- '--nfacct-name [^ ]*' "$src" "$src6" | awk '{print $2}' | sort -u); do
		ip netns exec "$ns" nfacct add "$acct" >/dev/null
	done
}
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
nsx() { ip netns exec "$ns" "$@"; }

# Deterministic, varied counters in front of every rule and chain policy.
with_counters() {
	awk '/^-A /{n++; printf "[%d:%d] %s\n", n*7 % 1000, n*7*60 % 100000, $0; next}
	     /^:[A-Z]+ [A-Z]+ \[0:0\]$/{sub(/\[0:0\]/, "[12:720]")} {print}' "$1"
}

for backend in nft legacy; do
	fresh
	with_counters "$src" | nsx "iptables-$backend-restore" --counters
	nsx "iptables-$backend-save" -c >"$dest/counters-$backend.save"
done

fresh
nsx iptables-legacy-restore <"$src"
nsx iptables-nft-restore <"$src"
# iptables 1.8.9 prints the warning on stderr; dumps taken with 2>&1 (or
# through a TTY, as kubectl exec -t does) carry it; stdbuf makes stdout line
# buffered as on a TTY, so the warning lands between lines as users see it.
nsx stdbuf -oL iptables-nft-save >"$dest/legacy-warning.save" 2>&1
grep -q "^# Warning: iptables-legacy tables present" "$dest/legacy-warning.save" ||
	{ echo "variants.sh: iptables-nft-save printed no legacy warning" >&2; exit 1; }

fresh
nsx iptables-nft-restore <"$src"
nsx iptables-nft-restore --noflush <<'RULES'
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:cali-PREROUTING - [0:0]
-A PREROUTING -m comment --comment "cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING
-A cali-PREROUTING -m comment --comment "cali:XFX5xbM8B9qR10JG" -j MARK --set-xmark 0x0/0xf0000
-A cali-PREROUTING -i cali+ -m comment --comment "cali:EWMPb0zVROM-woQp" -j MARK --set-xmark 0x40000/0x40000
-A OUTPUT -p udp -m udp --dport 4789 -j NOTRACK
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A POSTROUTING -o eth0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill
COMMIT
RULES
nsx iptables-nft-save >"$dest/all-tables.save"

fresh
# ip6tables-nft-restore 1.8.9 drops restored counters; the legacy backend keeps them.
with_counters "$src6" | nsx ip6tables-legacy-restore --counters
nsx ip6tables-legacy-save -c >"$dest/ipv6-counters.save"

ls -l "$dest"

# nftables variants (testdata/nftables/variants), written by the real nft:
#   mixed-tables.nft/.json   kube-proxy's nftables table next to the tables
#                            iptables-nft creates (ip filter/nat/mangle, as a
#                            node that once ran iptables mode keeps them)
#   affinity-live.nft/.json  an affinity set holding a live client entry with
#                            a timeout, as a busy node prints it
nft_dest=$repo/testdata/nftables/variants
nft_src=$repo/testdata/nftables/kube-proxy/v1.37.2
mkdir -p "$nft_dest"
fresh
nsx nft -f "$nft_src/TestLoadBalancer/fake.nft"
nsx iptables-nft-restore <"$src"
nsx nft list ruleset >"$nft_dest/mixed-tables.nft"
nsx nft -j list ruleset >"$nft_dest/mixed-tables.json"

fresh
nsx nft -f "$nft_src/TestTracePacketV4/fake.nft"
nsx nft add element ip kube-proxy 'affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80' '{ 10.0.0.2 timeout 3h }'
nsx nft list ruleset >"$nft_dest/affinity-live.nft"
nsx nft -j list ruleset >"$nft_dest/affinity-live.json"
ls -l "$nft_dest"
