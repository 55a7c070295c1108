# Shared helpers for the node layouts. A layout script is run as
#   sh LAYOUT.sh PREFIX
# and builds network namespaces named PREFIX*: PREFIXnode is the node whose
# routes and interfaces are recorded; PREFIXup plays the node's network
# (its default gateway and the other nodes); PREFIXpN are pods. eth0 of the
# node is a veth into PREFIXup standing in for the NIC (there is no real NIC
# to give a namespace). Everything is read-only afterwards.
set -eu
P=$1
N=${P}node
U=${P}up
nodeip() { ip -n "$N" "$@"; }
mkns() {
	ip netns add "$1"
	ip -n "$1" link set lo up
	ip netns exec "$1" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward
		echo 0 >/proc/sys/net/ipv4/conf/all/rp_filter
		echo 0 >/proc/sys/net/ipv4/conf/default/rp_filter
		echo 1 >/proc/sys/net/ipv6/conf/all/forwarding'
}
mkns "$N"
mkns "$U"
# uplink NAME ADDR/LEN GATEWAY: a NIC stand-in NAME in the node, its peer in
# PREFIXup holding GATEWAY.
uplink() {
	ip -n "$N" link add "$1" type veth peer name "up-$1" netns "$U"
	ip -n "$N" addr add "$2" dev "$1"
	ip -n "$N" link set "$1" up
	ip -n "$U" addr add "$3/${2#*/}" dev "up-$1"
	ip -n "$U" link set "up-$1" up
}
# pod NUM HOSTVETH ADDR/LEN: pod namespace PREFIXpNUM with eth0 at ADDR, its
# host end HOSTVETH in the node.
pod() {
	mkns "${P}p$1"
	ip -n "$N" link add "$2" type veth peer name eth0 netns "${P}p$1"
	ip -n "${P}p$1" addr add "$3" dev eth0
	ip -n "${P}p$1" link set eth0 up
	ip -n "$N" link set "$2" up
}
