# Cilium, VXLAN tunnel mode (the default): the cilium_host/cilium_net veth
# pair, cilium_host holding the router address 10.0.0.87/32; every pod CIDR,
# the node's own and the others', routed "via 10.0.0.87 dev cilium_host"
# (eBPF on lxc* and cilium_vxlan does the real forwarding); cilium_vxlan in
# external (collect-metadata) mode on UDP 8472; lxcXXXXXXXXXXXX pod veths and
# lxc_health. Policy rules: 9 "fwmark 0x200/0xf00 lookup 2004" (table 2004:
# local default to lo, for the L7 proxy) and the local table moved to 100.
. "$(dirname "$0")/lib.sh"
uplink eth0 192.168.1.15/24 192.168.1.1
nodeip route add default via 192.168.1.1 dev eth0
nodeip link add cilium_host type veth peer name cilium_net
nodeip link set cilium_net up
nodeip link set cilium_host up
nodeip addr add 10.0.0.87/32 dev cilium_host
nodeip route add 10.0.0.87 dev cilium_host proto kernel scope link
nodeip route add 10.0.0.0/24 via 10.0.0.87 dev cilium_host proto kernel src 10.0.0.87
nodeip route add 10.0.1.0/24 via 10.0.0.87 dev cilium_host proto kernel src 10.0.0.87 mtu 1450
nodeip route add 10.0.2.0/24 via 10.0.0.87 dev cilium_host proto kernel src 10.0.0.87 mtu 1450
nodeip link add cilium_vxlan type vxlan external dstport 8472
nodeip link set cilium_vxlan up
i=2
for v in lxc5e2a7d3b4c1f lxc_health lxc9b1d0e6f2a3c; do
	pod "$i" "$v" "10.0.0.$((i * 10))/32"
	ip -n "${P}p$i" route add 10.0.0.87 dev eth0 scope link
	ip -n "${P}p$i" route add default via 10.0.0.87 dev eth0
	i=$((i + 1))
done
nodeip route add local default dev lo proto kernel scope host table 2004
nodeip rule add pref 9 fwmark 0x200/0xf00 lookup 2004
nodeip rule add pref 100 lookup local
nodeip rule del pref 0 lookup local
# Cilium's chains (kube-proxy replacement: no KUBE-SERVICES).
for c in CILIUM_POST_nat CILIUM_PRE_nat CILIUM_OUTPUT_nat; do ip netns exec "$N" iptables -t nat -N "$c"; done
for c in CILIUM_INPUT CILIUM_FORWARD CILIUM_OUTPUT; do ip netns exec "$N" iptables -t filter -N "$c"; done
