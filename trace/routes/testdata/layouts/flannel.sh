# flannel, vxlan backend (the default): pods on the cni0 bridge through
# vethXXXXXXXX (the CNI bridge plugin's names), 10.244.N.0/24 per node; every
# other node's subnet via its flannel.1 address, on-link over the flannel.1
# VXLAN device (VNI 1, UDP 8472, nolearning), flannel.1 holding NET.0/32.
# As flanneld's vxlan backend and kube-flannel's cni0 bridge do.
. "$(dirname "$0")/lib.sh"
uplink eth0 10.0.0.11/24 10.0.0.1
nodeip route add default via 10.0.0.1 dev eth0
nodeip link add cni0 type bridge
nodeip addr add 10.244.0.1/24 dev cni0
nodeip link set cni0 up
for i in 2 3 4; do
	pod "$i" "veth0a1b2c0$i" "10.244.0.$i/24"
	nodeip link set "veth0a1b2c0$i" master cni0
	ip -n "${P}p$i" route add default via 10.244.0.1
done
nodeip link add flannel.1 type vxlan id 1 local 10.0.0.11 dev eth0 dstport 8472 nolearning
nodeip addr add 10.244.0.0/32 dev flannel.1
nodeip link set flannel.1 up
for n in 1 2; do
	nodeip route add "10.244.$n.0/24" via "10.244.$n.0" dev flannel.1 onlink
	nodeip neigh add "10.244.$n.0" lladdr "0a:58:0a:f4:0$n:00" dev flannel.1
done
# flanneld's own chains (iptables mode).
ip netns exec "$N" iptables -t nat -N FLANNEL-POSTRTG
ip netns exec "$N" iptables -t nat -A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
ip netns exec "$N" iptables -t filter -N FLANNEL-FWD
ip netns exec "$N" iptables -t filter -A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
