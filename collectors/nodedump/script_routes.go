package nodedump

// Route and interface sections: what the node does with a packet after
// kube-proxy's DNAT (trace/routes parses them). Each name is fixed, so a
// saved dump file NODE.NAME reads back by name.
const (
	// DumpProcRoute is /proc/net/route: the main IPv4 table.
	DumpProcRoute = "proc-net-route"
	// DumpProcIPv6Route is /proc/net/ipv6_route: every IPv6 table, merged.
	DumpProcIPv6Route = "proc-net-ipv6_route"
	// DumpProcFibTrie is /proc/net/fib_trie: every IPv4 table's prefixes
	// and route types (no devices, no gateways); its local table holds
	// the node's own IPv4 addresses.
	DumpProcFibTrie = "proc-net-fib_trie"
	// DumpProcIfInet6 is /proc/net/if_inet6: the IPv6 addresses per device.
	DumpProcIfInet6 = "proc-net-if_inet6"
	// DumpSysClassNet is the interfaces as /sys/class/net shows them, in
	// the format of RoutesScript's links function.
	DumpSysClassNet = "sys-class-net"
	// The ip command's views, when the image has ip.
	DumpIPRoute  = "ip-route"  // ip -4 -d route show table all
	DumpIP6Route = "ip6-route" // ip -6 -d route show table all
	DumpIPLink   = "ip-link"   // ip -d link show
	DumpIPAddr   = "ip-addr"   // ip -d addr show
	DumpIPRule   = "ip-rule"   // ip rule show
	DumpIP6Rule  = "ip6-rule"  // ip -6 rule show
)

// RouteDumps lists the section names RoutesScript prints, in order.
var RouteDumps = []string{
	DumpProcRoute, DumpProcIPv6Route, DumpProcFibTrie, DumpProcIfInet6, DumpSysClassNet,
	DumpIPRoute, DumpIP6Route, DumpIPLink, DumpIPAddr, DumpIPRule, DumpIP6Rule,
}

// RoutesScript prints the node's routes, policy rules and interfaces in the
// marker protocol of Script: a section is
//
//	@@trace-svc@@ begin NAME
//	...output...
//	@@trace-svc@@ end NAME rc=N
//
// (the end marker follows a newline of its own), a missing file or command
// is "@@trace-svc@@ absent NAME", and each section's stderr follows
// "@@trace-svc@@ stderr NAME" on stderr. It needs only sh and cat, as in the
// kube-proxy image: everything under /sys is read with the shell's read
// builtin, symlinks are resolved with cd -P/pwd -P in a subshell. It only
// reads. It is a fragment: it sets m and defines routes_* functions, and
// prints no "done" marker (Script's caller does).
//
// The sys-class-net section has one block per interface; every line is
// "KEY VALUE" and a block starts with "link NAME":
//
//	link NAME           the interface name (/sys/class/net/NAME)
//	ifindex N           /sys/class/net/NAME/ifindex
//	iflink N            the peer's index for veth, the lower device's for others
//	type N              ARPHRD_* (1 ether, 768 ipip, 772 loopback, 65534 none, …)
//	operstate WORD
//	mtu N
//	flags 0xN           IFF_* flags
//	address MAC
//	devtype WORD        DEVTYPE= from uevent: bridge, vxlan, geneve, wireguard, vlan, bond, …
//	tun_flags 0xN       a tun/tap device
//	has WORD            the directory or link exists: device (hardware), bridge,
//	                    brport (a bridge port), bonding, phy80211
//	master NAME         the device this one is enslaved to
//	upper NAME          /sys/class/net/NAME/upper_*
//	lower NAME          /sys/class/net/NAME/lower_*
//
// Unreadable values are printed empty (a down device's carrier, for one).
const RoutesScript = `m='` + Marker + `'
routes_begin() {
	printf '\n%s stderr %s\n' "$m" "$1" >&2
	printf '%s begin %s\n' "$m" "$1"
}
routes_end() {
	printf '\n%s end %s rc=%d\n' "$m" "$1" "$2"
}
routes_cat() {
	if [ -r "$2" ]; then
		routes_begin "$1"
		cat "$2"
		routes_end "$1" $?
	else
		printf '%s absent %s\n' "$m" "$1"
	fi
}
routes_ip() {
	name=$1; shift
	if command -v ip >/dev/null 2>&1; then
		routes_begin "$name"
		ip "$@"
		routes_end "$name" $?
	else
		printf '%s absent %s\n' "$m" "$name"
	fi
}
routes_links() {
	for d in /sys/class/net/*; do
		[ -r "$d/ifindex" ] || continue
		printf 'link %s\n' "${d##*/}"
		for a in ifindex iflink type operstate mtu flags address; do
			v=
			read -r v 2>/dev/null <"$d/$a"
			printf '%s %s\n' "$a" "$v"
		done
		while read -r l; do
			case $l in DEVTYPE=*) printf 'devtype %s\n' "${l#DEVTYPE=}" ;; esac
		done 2>/dev/null <"$d/uevent"
		if [ -r "$d/tun_flags" ]; then
			v=
			read -r v 2>/dev/null <"$d/tun_flags"
			printf 'tun_flags %s\n' "$v"
		fi
		for h in device bridge brport bonding phy80211; do
			[ -e "$d/$h" ] && printf 'has %s\n' "$h"
		done
		if [ -e "$d/master" ]; then
			v=$(cd -P "$d/master" 2>/dev/null && pwd -P)
			[ -n "$v" ] && printf 'master %s\n' "${v##*/}"
		fi
		for u in "$d"/upper_*; do
			[ -e "$u" ] && printf 'upper %s\n' "${u##*/upper_}"
		done
		for u in "$d"/lower_*; do
			[ -e "$u" ] && printf 'lower %s\n' "${u##*/lower_}"
		done
	done
	return 0
}
routes_cat ` + DumpProcRoute + ` /proc/net/route
routes_cat ` + DumpProcIPv6Route + ` /proc/net/ipv6_route
routes_cat ` + DumpProcFibTrie + ` /proc/net/fib_trie
routes_cat ` + DumpProcIfInet6 + ` /proc/net/if_inet6
if [ -d /sys/class/net ]; then
	routes_begin ` + DumpSysClassNet + `
	routes_links
	routes_end ` + DumpSysClassNet + ` $?
else
	printf '%s absent %s\n' "$m" ` + DumpSysClassNet + `
fi
routes_ip ` + DumpIPRoute + ` -4 -d route show table all
routes_ip ` + DumpIP6Route + ` -6 -d route show table all
routes_ip ` + DumpIPLink + ` -d link show
routes_ip ` + DumpIPAddr + ` -d addr show
routes_ip ` + DumpIPRule + ` rule show
routes_ip ` + DumpIP6Rule + ` -6 rule show
`
