# kindnet (kind's network plugin): native routing, no tunnel. Pods through
# the CNI ptp plugin: vethXXXXXXXX host ends holding the gateway 10.244.1.1/32,
# a /32 scope-host route per pod; every other node's pod CIDR via that
# node's address on eth0. As `ip route` on kind nodes prints it.
. "$(dirname "$0")/lib.sh"
uplink eth0 172.18.0.3/16 172.18.0.1
nodeip route add default via 172.18.0.1 dev eth0
for i in 2 3 4; do
	pod "$i" "vethb2bab33$i" "10.244.1.$i/24"
	nodeip addr add 10.244.1.1/32 dev "vethb2bab33$i"
	nodeip route add "10.244.1.$i" dev "vethb2bab33$i" scope host
	ip -n "${P}p$i" route add 10.244.1.1 dev eth0 scope link 2>/dev/null || true
	ip -n "${P}p$i" route add default via 10.244.1.1 dev eth0 2>/dev/null || true
done
nodeip route add 10.244.0.0/24 via 172.18.0.2 dev eth0
nodeip route add 10.244.2.0/24 via 172.18.0.4 dev eth0
# kindnet's ip-masq-agent chain.
ip netns exec "$N" iptables -t nat -N KIND-MASQ-AGENT
ip netns exec "$N" iptables -t nat -A POSTROUTING -m addrtype ! --dst-type LOCAL -m comment --comment "kind-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom KIND-MASQ-AGENT chain" -j KIND-MASQ-AGENT
ip netns exec "$N" iptables -t nat -A KIND-MASQ-AGENT -d 10.244.0.0/16 -m comment --comment "kind-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN
# dual-stack, as kind's IPv6 family: the node on the docker network's
# fc00:f853:ccd:e793::/64, pods in fd00:10:244:N::/64 per node.
nodeip -6 addr add fc00:f853:ccd:e793::3/64 dev eth0 nodad
ip -n "$U" -6 addr add fc00:f853:ccd:e793::1/64 dev up-eth0 nodad
nodeip -6 route add default via fc00:f853:ccd:e793::1 dev eth0
for i in 2 3 4; do
	ip -n "${P}p$i" -6 addr add "fd00:10:244:1::$i/64" dev eth0 nodad
	nodeip -6 route add "fd00:10:244:1::$i" dev "vethb2bab33$i"
done
nodeip -6 route add fd00:10:244::/64 via fc00:f853:ccd:e793::2 dev eth0
nodeip -6 route add fd00:10:244:2::/64 via fc00:f853:ccd:e793::4 dev eth0
