# AWS VPC CNI: pods take VPC addresses; host ends named eniXXXXXXXXXXX with a
# /32 scope-link route in main; policy rules: 512 "to POD lookup main" for
# every pod, 1024 "fwmark 0x80/0x80 lookup main", 1536 "from POD lookup N"
# for pods on a secondary ENI (eth1), whose table N (device number + 1 = 2)
# holds its own default route. As amazon-vpc-cni-k8s's networkutils and
# the plugin's proposal document describe.
. "$(dirname "$0")/lib.sh"
uplink eth0 192.168.70.10/19 192.168.64.1
uplink eth1 192.168.70.20/19 192.168.64.2
nodeip route add default via 192.168.64.1 dev eth0
nodeip route del 192.168.64.0/19 dev eth1
nodeip route add 192.168.64.1 dev eth1 scope link table 2
nodeip route add default via 192.168.64.1 dev eth1 table 2
nodeip rule add pref 1024 fwmark 0x80/0x80 lookup main
i=2
for a in 192.168.70.181 192.168.71.12 192.168.80.44; do
	pod "$i" "eni0f3a9c1b2d$i" "$a/32"
	ip -n "${P}p$i" route add 169.254.1.1 dev eth0 scope link
	ip -n "${P}p$i" route add default via 169.254.1.1 dev eth0
	nodeip route add "$a" dev "eni0f3a9c1b2d$i" scope link
	nodeip rule add pref 512 to "$a" lookup main
	i=$((i + 1))
done
# the last two pods' addresses belong to the secondary ENI
nodeip rule add pref 1536 from 192.168.71.12 lookup 2
nodeip rule add pref 1536 from 192.168.80.44 lookup 2
# the plugin's SNAT and connmark chains.
for c in AWS-SNAT-CHAIN-0 AWS-CONNMARK-CHAIN-0; do ip netns exec "$N" iptables -t nat -N "$c"; done
