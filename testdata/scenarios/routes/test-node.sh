# The node "test-node" of the local-policy, multi-port and dual-stack
# scenarios (addresses from kube-proxy's tests: node 192.168.0.2 and
# 2001:db8::1, pod CIDRs 10.0.0.0/24 and fd00:10::/64, endpoints in
# 10.180.0.0/16 and fd00:10:180::/48) laid out as Calico with BGP routes it:
# pods behind caliXXXXXXXXXXX veths with /32 (/128) scope-link routes, a
# blackhole for each of the node's own blocks, the other node's blocks via
# its address, proto bird. Run as the trace/routes layouts are:
#   sh test-node.sh PREFIX
# (cmd/cli's TestScenarioRoutes -record-routes records the route script's
# output.)
. "$(dirname "$0")/../../../trace/routes/testdata/layouts/lib.sh"
uplink eth0 192.168.0.2/24 192.168.0.1
nodeip route add default via 192.168.0.1 dev eth0
nodeip -6 addr add 2001:db8::1/64 dev eth0 nodad
ip -n "$U" -6 addr add 2001:db8::ffff/64 dev up-eth0 nodad
[ "${2:-}" = broken ] || nodeip -6 route add default via 2001:db8::ffff dev eth0
# this node's blocks
nodeip route add blackhole 10.180.2.0/26 proto bird
nodeip route add blackhole 10.0.0.0/26 proto bird
nodeip -6 route add blackhole fd00:10:180::2:0/122 proto bird
nodeip -6 route add blackhole fd00:10::/122 proto bird
# pods: the endpoint 10.180.2.1 / fd00:10:180::2:1, and a client pod at
# 10.0.0.2 / fd00:10::2 (the address the tracer sends ClusterIP traffic
# from "a pod on this node")
pod 2 cali3f9c2a8d1b4 10.180.2.1/32
pod 3 cali8e1d5c7a2f6 10.0.0.2/32
for i in 2 3; do
	ip -n "${P}p$i" route add 169.254.1.1 dev eth0 scope link
	ip -n "${P}p$i" route add default via 169.254.1.1 dev eth0
done
ip -n "${P}p2" -6 addr add fd00:10:180::2:1/128 dev eth0 nodad
ip -n "${P}p3" -6 addr add fd00:10::2/128 dev eth0 nodad
nodeip route add 10.0.0.2 dev cali8e1d5c7a2f6 scope link
nodeip -6 route add fd00:10::2 dev cali8e1d5c7a2f6
nodeip route add 10.0.1.0/26 via 192.168.0.3 dev eth0 proto bird
if [ "${2:-}" = broken ]; then
	nodeip route add 10.180.0.0/26 via 192.168.0.4 dev eth0 proto bird
	nodeip -6 route add fd00:10:180::2:0/124 via 2001:db8::2 dev eth0 proto bird
	exit 0
fi
nodeip route add 10.180.2.1 dev cali3f9c2a8d1b4 scope link
nodeip -6 route add fd00:10:180::2:1 dev cali3f9c2a8d1b4
# the other node's blocks, via its address
nodeip route add 10.180.0.0/26 via 192.168.0.3 dev eth0 proto bird
nodeip -6 route add fd00:10:180::/122 via 2001:db8::2 dev eth0 proto bird
