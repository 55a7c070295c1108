#!/usr/bin/env bash
# Records real conntrack tables for trace/conntrack's tests
# (trace/conntrack/testdata/recorded/), from real connections made through
# kube-proxy-style iptables rules inside network namespaces this script
# creates. Needs root, Go, iproute2, iptables (nft backend) and conntrack.
#
#   hack/conntrack/gen.sh                 set up, make traffic, record, tear down
#   hack/conntrack/gen.sh --keep          leave the namespaces and processes up
#   hack/conntrack/gen.sh --teardown      only remove what an earlier run left
#   options: --prefix h14-   namespace name prefix (default h14-)
#            --out DIR       where the recording goes
#
# The layout: a client namespace, a "node" namespace that forwards between
# the client and three "pod" namespaces (A, B, C), each pod running netpeer's
# TCP/UDP server. The node holds kube-proxy-shaped nat rules (chain names
# computed as kube-proxy does) for
#
#   h14/echo   ClusterIP 10.96.14.10 and [fd14:96::10]: http 80/TCP -> 8080
#              (NodePort 30080), dns 53/UDP -> 5353, sctp 9/SCTP -> 9;
#              endpoints A and B, 50/50 (-m statistic --mode random)
#   h14/dns    ClusterIP 10.96.14.53: dns 53/UDP -> 5353; endpoint C, later B
#
# The client is outside the cluster CIDR (10.14.0.0/20), so its ClusterIP
# traffic is masqueraded as kube-proxy does. Traffic: TCP connections closed
# (TIME_WAIT) and held open (ESTABLISHED), UDP queries, SCTP INIT, ICMP and
# ICMPv6 echo, GRE and an unknown protocol (253), flows in conntrack zones and
# with a connmark, and half of them with conntrack accounting and timestamps
# on. Last the stale-UDP case: a client keeps one UDP socket sending to
# h14/dns while its only pod C "moves" to B: the rules are rewritten to B (as
# kube-proxy would), C's namespace is deleted, and the conntrack entry keeps
# sending the client's datagrams to C's address.
#
# Then, from the node namespace: /proc/net/nf_conntrack, conntrack -L (default
# and -o extended, IPv4 and IPv6), iptables-save -c and ip6tables-save -c, and
# the kernel's own counts (conntrack -L -d ADDR -p PROTO --dport PORT, and per
# reply source) that the tests compare the parser with.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
prefix=h14-
out=$repo/trace/conntrack/testdata/recorded
keep=0
teardown_only=0
while [ $# -gt 0 ]; do
	case $1 in
	--prefix) prefix=$2; shift ;;
	--out) out=$2; shift ;;
	--keep) keep=1 ;;
	--teardown) teardown_only=1 ;;
	*) echo "gen.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
case $prefix in
h14-*) ;;
*) echo "gen.sh: the namespace prefix must start with h14-" >&2; exit 2 ;;
esac

die() { echo "gen.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root: it creates network namespaces"
for tool in ip iptables-nft-restore iptables-nft-save ip6tables-nft-restore ip6tables-nft-save conntrack go; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install iproute2 iptables conntrack)"
done

state=/run/kubectl-trace-svc-conntrack/$prefix
client=${prefix}client node=${prefix}node
pods=(a b c)
ns_pod() { echo "${prefix}pod-$1"; }

teardown() {
	if [ -f "$state/pids" ]; then
		while read -r pid; do
			kill "$pid" 2>/dev/null || true
		done <"$state/pids"
		while read -r pid; do
			for _ in 1 2 3 4 5 6 7 8 9 10; do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		done <"$state/pids"
		rm -f "$state/pids"
	fi
	for ns in "$client" "$node" $(for p in "${pods[@]}"; do ns_pod "$p"; done); do
		if ip netns list | grep -qx "$ns\( (id: [0-9]*)\)\?"; then
			ip netns delete "$ns"
		fi
	done
	rm -rf "$state"
}

teardown
[ "$teardown_only" = 1 ] && exit 0
[ "$keep" = 1 ] || trap teardown EXIT

mkdir -p "$state"
: >"$state/pids"
peer=$state/netpeer
(cd "$repo" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$peer" ./hack/conntrack/netpeer)

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
bg() { # ns outfile cmd...: start a process in ns, remember its pid
	local ns=$1 outf=$2; shift 2
	ip netns exec "$ns" "$@" >"$outf" 2>&1 &
	echo $! >>"$state/pids"
}
wait_for() { # file text: wait until file holds text
	for _ in $(seq 100); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	die "timed out waiting for '$2' in $1: $(cat "$1" 2>/dev/null)"
}

# --- namespaces and links -------------------------------------------------
ip netns add "$client"
ip netns add "$node"
for ns in "$client" "$node"; do
	nsx "$ns" ip link set lo up
	nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done
nsx "$node" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

# client <-> node: the client is outside the cluster's pod CIDR
nsx "$node" ip link add cl0 type veth peer name eth0 netns "$client"
nsx "$node" ip addr add 10.14.100.1/24 dev cl0
nsx "$node" ip addr add fd14:100::1/64 dev cl0 nodad
nsx "$client" ip addr add 10.14.100.2/24 dev eth0
nsx "$client" ip addr add fd14:100::2/64 dev eth0 nodad
nsx "$node" ip link set cl0 up
nsx "$client" ip link set eth0 up
nsx "$client" ip route add default via 10.14.100.1
# A second client address inside the cluster's pod CIDR, as a pod on another
# node has: kube-proxy does not masquerade its ClusterIP traffic.
nsx "$client" ip addr add 10.14.9.2/32 dev eth0
nsx "$node" ip route add 10.14.9.2/32 via 10.14.100.2
nsx "$client" ip -6 route add default via fd14:100::1

declare -A pod4=([a]=10.14.1.2 [b]=10.14.2.2 [c]=10.14.3.2)
declare -A pod6=([a]=fd14:1::2 [b]=fd14:2::2 [c]=fd14:3::2)
i=0
for p in "${pods[@]}"; do
	i=$((i + 1))
	ns=$(ns_pod "$p")
	ip netns add "$ns"
	nsx "$ns" ip link set lo up
	nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	nsx "$node" ip link add "${p}0" type veth peer name eth0 netns "$ns"
	nsx "$node" ip addr add "10.14.$i.1/24" dev "${p}0"
	nsx "$node" ip addr add "fd14:$i::1/64" dev "${p}0" nodad
	nsx "$node" ip link set "${p}0" up
	nsx "$ns" ip addr add "${pod4[$p]}/24" dev eth0
	nsx "$ns" ip addr add "${pod6[$p]}/64" dev eth0 nodad
	nsx "$ns" ip link set eth0 up
	nsx "$ns" ip route add default via "10.14.$i.1"
	nsx "$ns" ip -6 route add default via "fd14:$i::1"
	bg "$ns" "$state/serve-$p.log" "$peer" serve -name "$p" -tcp 8080 -udp 5353,7777,7778
	tail -n 1 "$state/pids" >"$state/serve-$p.pid"
done
for p in "${pods[@]}"; do wait_for "$state/serve-$p.log" ready; done

# --- kube-proxy-shaped rules ----------------------------------------------
chain() { "$peer" chain "$@"; }
svc_http=$(chain SVC h14/echo:http tcp)
ext_http=$(chain EXT h14/echo:http tcp)
svc_dns=$(chain SVC h14/echo:dns udp)
svc_sctp=$(chain SVC h14/echo:sctp sctp)
svc_stale=$(chain SVC h14/dns:dns udp)

# service_rules FAMILY: the nat table for one family
service_rules() {
	local fam=$1 vip a b masq32 cidr
	if [ "$fam" = 4 ]; then
		vip=10.96.14.10 a=${pod4[a]} b=${pod4[b]} masq32=32 cidr=10.14.0.0/20
	else
		vip=fd14:96::10 a=${pod6[a]} b=${pod6[b]} masq32=128 cidr=fd14::/60
	fi
	ep() { if [ "$fam" = 4 ]; then echo "$1:$2"; else echo "[$1]:$2"; fi; }
	local sep_http_a sep_http_b sep_dns_a sep_dns_b sep_sctp_a sep_sctp_b
	sep_http_a=$(chain SEP h14/echo:http tcp "$(ep "$a" 8080)")
	sep_http_b=$(chain SEP h14/echo:http tcp "$(ep "$b" 8080)")
	sep_dns_a=$(chain SEP h14/echo:dns udp "$(ep "$a" 5353)")
	sep_dns_b=$(chain SEP h14/echo:dns udp "$(ep "$b" 5353)")
	sep_sctp_a=$(chain SEP h14/echo:sctp sctp "$(ep "$a" 9)")
	sep_sctp_b=$(chain SEP h14/echo:sctp sctp "$(ep "$b" 9)")
	cat <<EOF
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:$svc_http - [0:0]
:$ext_http - [0:0]
:$svc_dns - [0:0]
:$svc_sctp - [0:0]
:$sep_http_a - [0:0]
:$sep_http_b - [0:0]
:$sep_dns_a - [0:0]
:$sep_dns_b - [0:0]
:$sep_sctp_a - [0:0]
:$sep_sctp_b - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -d $vip/$masq32 -p tcp -m comment --comment "h14/echo:http cluster IP" -m tcp --dport 80 -j $svc_http
-A KUBE-SERVICES -d $vip/$masq32 -p udp -m comment --comment "h14/echo:dns cluster IP" -m udp --dport 53 -j $svc_dns
-A KUBE-SERVICES -d $vip/$masq32 -p sctp -m comment --comment "h14/echo:sctp cluster IP" -m sctp --dport 9 -j $svc_sctp
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "h14/echo:http" -m tcp --dport 30080 -j $ext_http
-A $ext_http -m comment --comment "masquerade traffic for h14/echo:http external destinations" -j KUBE-MARK-MASQ
-A $ext_http -j $svc_http
-A $svc_http ! -s $cidr -d $vip/$masq32 -p tcp -m comment --comment "h14/echo:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A $svc_http -m comment --comment "h14/echo:http -> $(ep "$a" 8080)" -m statistic --mode random --probability 0.50000000000 -j $sep_http_a
-A $svc_http -m comment --comment "h14/echo:http -> $(ep "$b" 8080)" -j $sep_http_b
-A $svc_dns ! -s $cidr -d $vip/$masq32 -p udp -m comment --comment "h14/echo:dns cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ
-A $svc_dns -m comment --comment "h14/echo:dns -> $(ep "$a" 5353)" -m statistic --mode random --probability 0.50000000000 -j $sep_dns_a
-A $svc_dns -m comment --comment "h14/echo:dns -> $(ep "$b" 5353)" -j $sep_dns_b
-A $svc_sctp ! -s $cidr -d $vip/$masq32 -p sctp -m comment --comment "h14/echo:sctp cluster IP" -m sctp --dport 9 -j KUBE-MARK-MASQ
-A $svc_sctp -m comment --comment "h14/echo:sctp -> $(ep "$a" 9)" -m statistic --mode random --probability 0.50000000000 -j $sep_sctp_a
-A $svc_sctp -m comment --comment "h14/echo:sctp -> $(ep "$b" 9)" -j $sep_sctp_b
-A $sep_http_a -s $a/$masq32 -m comment --comment "h14/echo:http" -j KUBE-MARK-MASQ
-A $sep_http_a -p tcp -m comment --comment "h14/echo:http" -m tcp -j DNAT --to-destination $(ep "$a" 8080)
-A $sep_http_b -s $b/$masq32 -m comment --comment "h14/echo:http" -j KUBE-MARK-MASQ
-A $sep_http_b -p tcp -m comment --comment "h14/echo:http" -m tcp -j DNAT --to-destination $(ep "$b" 8080)
-A $sep_dns_a -s $a/$masq32 -m comment --comment "h14/echo:dns" -j KUBE-MARK-MASQ
-A $sep_dns_a -p udp -m comment --comment "h14/echo:dns" -m udp -j DNAT --to-destination $(ep "$a" 5353)
-A $sep_dns_b -s $b/$masq32 -m comment --comment "h14/echo:dns" -j KUBE-MARK-MASQ
-A $sep_dns_b -p udp -m comment --comment "h14/echo:dns" -m udp -j DNAT --to-destination $(ep "$b" 5353)
-A $sep_sctp_a -s $a/$masq32 -m comment --comment "h14/echo:sctp" -j KUBE-MARK-MASQ
-A $sep_sctp_a -p sctp -m comment --comment "h14/echo:sctp" -m sctp -j DNAT --to-destination $(ep "$a" 9)
-A $sep_sctp_b -s $b/$masq32 -m comment --comment "h14/echo:sctp" -j KUBE-MARK-MASQ
-A $sep_sctp_b -p sctp -m comment --comment "h14/echo:sctp" -m sctp -j DNAT --to-destination $(ep "$b" 9)
COMMIT
EOF
}

# stale_rules POD: h14/dns pointing at one pod, written the way kube-proxy's
# partial restores do (--noflush; the service chain re-declared, so flushed,
# and the old endpoint chain deleted).
stale_rules() {
	local to=$1 from=${2:-} sep_to
	sep_to=$(chain SEP h14/dns:dns udp "${pod4[$to]}:5353")
	echo "*nat"
	echo ":$svc_stale - [0:0]"
	echo ":$sep_to - [0:0]"
	if [ -n "$from" ]; then
		local sep_from
		sep_from=$(chain SEP h14/dns:dns udp "${pod4[$from]}:5353")
		echo ":$sep_from - [0:0]"
	fi
	cat <<EOF
-A $svc_stale ! -s 10.14.0.0/20 -d 10.96.14.53/32 -p udp -m comment --comment "h14/dns:dns cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ
-A $svc_stale -m comment --comment "h14/dns:dns -> ${pod4[$to]}:5353" -j $sep_to
-A $sep_to -s ${pod4[$to]}/32 -m comment --comment "h14/dns:dns" -j KUBE-MARK-MASQ
-A $sep_to -p udp -m comment --comment "h14/dns:dns" -m udp -j DNAT --to-destination ${pod4[$to]}:5353
EOF
	[ -n "$from" ] && echo "-X $sep_from"
	echo "COMMIT"
}

service_rules 4 | nsx "$node" iptables-nft-restore
service_rules 6 | nsx "$node" ip6tables-nft-restore
printf '*nat\n:%s - [0:0]\n-I KUBE-SERVICES 1 -d 10.96.14.53/32 -p udp -m comment --comment "h14/dns:dns cluster IP" -m udp --dport 53 -j %s\nCOMMIT\n' \
	"$svc_stale" "$svc_stale" | nsx "$node" iptables-nft-restore --noflush
stale_rules c | nsx "$node" iptables-nft-restore --noflush
# Not kube-proxy's, but what other node agents add: a connmark on NodePort
# traffic and conntrack zones (one per direction too) for two test ports.
nsx "$node" iptables-nft -t mangle -A PREROUTING -p tcp --dport 30080 -j CONNMARK --set-mark 20
nsx "$node" iptables-nft -t raw -A PREROUTING -p udp --dport 7777 -j CT --zone 7
nsx "$node" iptables-nft -t raw -A PREROUTING -p udp --dport 7778 -j CT --zone-orig 3

# --- traffic --------------------------------------------------------------
run_client() { # name cmd...: run netpeer in the client, keep its tally
	local name=$1; shift
	nsx "$client" "$peer" "$@" >"$state/$name.tally"
}
held() { # name cmd...: connections that stay open until teardown
	local name=$1; shift
	bg "$client" "$state/$name.tally" "$peer" "$@" -hold 1h
}

# Phase 1: the kernel's defaults (no accounting, no timestamps).
nsx "$node" sysctl -qw net.netfilter.nf_conntrack_acct=0 net.netfilter.nf_conntrack_timestamp=0
run_client http-closed tcp -addr 10.96.14.10:80 -n 10
held http-held tcp -addr 10.96.14.10:80 -n 4
run_client dns udp -addr 10.96.14.10:53 -n 12
run_client sctp raw -addr 10.96.14.10 -proto sctp -dport 9 -n 3
run_client ping-a ping -addr "${pod4[a]}"
run_client gre-b raw -addr "${pod4[b]}" -proto gre
run_client proto253-a raw -addr "${pod4[a]}" -proto 253
run_client zone7 udp -addr "${pod4[b]}:7777" -n 2
run_client zone-orig3 udp -addr "${pod4[b]}:7778" -n 1
wait_for "$state/http-held.tally" '[ab] [0-9]'

# Phase 2: accounting and timestamps on (packets=, bytes=, delta-time=).
nsx "$node" sysctl -qw net.netfilter.nf_conntrack_acct=1 net.netfilter.nf_conntrack_timestamp=1
run_client nodeport-closed tcp -addr 10.14.100.1:30080 -n 6
held nodeport-held tcp -addr 10.14.100.1:30080 -n 2
run_client http6-closed tcp -addr '[fd14:96::10]:80' -n 6
held http6-held tcp -addr '[fd14:96::10]:80' -n 2
run_client dns6 udp -addr '[fd14:96::10]:53' -n 6
run_client ping6-b ping -addr "${pod6[b]}"
wait_for "$state/nodeport-held.tally" '[ab] [0-9]'
wait_for "$state/http6-held.tally" '[ab] [0-9]'

# Phase 3: the stale UDP entry. A resolver socket of an in-cluster client
# talks to h14/dns (pod C)... (From outside the cluster the traffic would be
# masqueraded, and the kernel flushes masqueraded entries when their
# interface goes away, so no stale entry would stay.)
nsx "$node" sysctl -qw net.netfilter.nf_conntrack_acct=0 net.netfilter.nf_conntrack_timestamp=0
bg "$client" "$state/stream.log" "$peer" udp-stream -addr 10.96.14.53:53 -laddr 10.14.9.2 -sport 40053 -every 200ms
wait_for "$state/stream.log" '^c$'
sleep 2.5 # replies seen for over 2s: the kernel marks the entry ASSURED (stream timeout)
run_client stale-before udp -addr 10.96.14.53:53 -laddr 10.14.9.2 -n 3
# ...then the pod moves to B: kube-proxy rewrites the rules, C's namespace is
# deleted, and nothing clears the conntrack entry.
stale_rules b c | nsx "$node" iptables-nft-restore --noflush
server_c=$(cat "$state/serve-c.pid")
kill "$server_c"
while kill -0 "$server_c" 2>/dev/null; do sleep 0.1; done
ip netns delete "$(ns_pod c)"
run_client stale-after udp -addr 10.96.14.53:53 -n 4
sleep 1 # the stream sends a few more datagrams towards C's address

# --- record ---------------------------------------------------------------
mkdir -p "$out"
nsx "$node" cat /proc/net/nf_conntrack >"$out/nf_conntrack"
nsx "$node" conntrack -L >"$out/conntrack-L" 2>"$out/conntrack-L.stderr"
nsx "$node" conntrack -L -o extended >"$out/conntrack-L-extended" 2>"$out/conntrack-L-extended.stderr"
nsx "$node" conntrack -L -f ipv6 >"$out/conntrack-L6" 2>"$out/conntrack-L6.stderr"
nsx "$node" conntrack -L -f ipv6 -o extended >"$out/conntrack-L6-extended" 2>"$out/conntrack-L6-extended.stderr"
nsx "$node" iptables-nft-save -c >"$out/iptables-nft-save-c"
nsx "$node" ip6tables-nft-save -c >"$out/ip6tables-nft-save-c"

# The kernel's own counts, read with conntrack's filters: one line per
# frontend ("FAMILY PROTO ADDR PORT - COUNT") and one per frontend and reply
# source ("FAMILY PROTO ADDR PORT REPLYSRC:REPLYPORT COUNT").
count() { # conntrack filter args -> number of entries it lists
	nsx "$node" conntrack -L "$@" 2>&1 >/dev/null | sed -n 's/.*: \([0-9]*\) flow entries have been shown\./\1/p'
}
{
	echo "# kernel counts: family proto original-destination port reply-source count"
	for f in "ipv4 tcp 10.96.14.10 80 8080" "ipv4 udp 10.96.14.10 53 5353" "ipv4 sctp 10.96.14.10 9 9" \
		"ipv4 tcp 10.14.100.1 30080 8080" "ipv4 udp 10.96.14.53 53 5353" \
		"ipv6 tcp fd14:96::10 80 8080" "ipv6 udp fd14:96::10 53 5353"; do
		set -- $f
		echo "$1 $2 $3 $4 - $(count -f "$1" -p "$2" -d "$3" --dport "$4")"
		for p in "${pods[@]}"; do
			src=${pod4[$p]}
			[ "$1" = ipv6 ] && src=${pod6[$p]}
			n=$(count -f "$1" -p "$2" -d "$3" --dport "$4" --reply-src "$src" --reply-port-src "$5")
			if [ "$1" = ipv6 ]; then src="[$src]"; fi
			[ "$n" = 0 ] || echo "$1 $2 $3 $4 $src:$5 $n"
		done
	done
} >"$out/kernel-counts"
{
	echo "# what each client saw: backend count (noreply = no answer)"
	for f in "$state"/*.tally; do
		echo "[$(basename "$f" .tally)]"
		cat "$f"
	done
} >"$out/client-tallies"
{
	echo "kernel $(uname -r)"
	echo "conntrack $(conntrack --version 2>&1)"
	echo "iptables $(iptables-nft --version)"
} >"$out/versions"
echo "recorded into $out"
