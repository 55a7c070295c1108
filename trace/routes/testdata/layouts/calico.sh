# Calico, VXLAN CrossSubnet with Felix's own routes (proto 80), as Calico's
# felix FV tests and the published `ip route` of such nodes show: pods behind
# caliXXXXXXXXXXX veths with /32 scope-link routes (no address on the host
# end, proxy ARP on), a blackhole for the node's own /26 block, other nodes'
# blocks in the same subnet via their address on-link, across subnets via
# vxlan.calico (VNI 4096, UDP 4789) to the remote tunnel address.
. "$(dirname "$0")/lib.sh"
uplink eth0 172.17.0.7/16 172.17.0.1
nodeip route add default via 172.17.0.1 dev eth0
nodeip route add blackhole 10.65.0.0/26 proto 80
for i in 2 3; do
	pod "$i" "cali29f56ea1ab$i" "10.65.0.$i/32"
	ip -n "${P}p$i" route add 169.254.1.1 dev eth0 scope link
	ip -n "${P}p$i" route add default via 169.254.1.1 dev eth0
	ip netns exec "$N" sh -c "echo 1 >/proc/sys/net/ipv4/conf/cali29f56ea1ab$i/proxy_arp"
	nodeip route add "10.65.0.$i" dev "cali29f56ea1ab$i" scope link
done
nodeip route add 10.65.1.0/26 via 172.17.0.6 dev eth0 proto 80 onlink
nodeip route add 10.65.2.0/26 via 172.17.0.5 dev eth0 proto 80 onlink
nodeip link add vxlan.calico type vxlan id 4096 local 172.17.0.7 dev eth0 dstport 4789 nolearning
nodeip addr add 10.65.0.0/32 dev vxlan.calico
nodeip link set vxlan.calico up
nodeip route add 10.65.3.0/26 via 10.65.3.0 dev vxlan.calico onlink proto 80
# a few of Felix's chains and ipsets (iptables mode).
for c in cali-PREROUTING cali-POSTROUTING cali-nat-outgoing; do ip netns exec "$N" iptables -t nat -N "$c"; done
for c in cali-FORWARD cali-INPUT cali-OUTPUT; do ip netns exec "$N" iptables -t filter -N "$c"; done
ip netns exec "$N" ipset create cali40masq-ipam-pools hash:net
ip netns exec "$N" ipset create cali40all-ipam-pools hash:net
# dual-stack: IPv6 /122 blocks, the same shapes.
nodeip -6 addr add fd00:172:17::7/64 dev eth0 nodad
nodeip -6 route add default via fd00:172:17::1 dev eth0
nodeip -6 route add blackhole fd00:65::/122 proto 80
for i in 2 3; do
	nodeip -6 route add "fd00:65::$i" dev "cali29f56ea1ab$i"
done
nodeip -6 route add fd00:65::40/122 via fd00:172:17::6 dev eth0 proto 80 onlink
nodeip -6 route add unreachable fd00:65:dead::/64
