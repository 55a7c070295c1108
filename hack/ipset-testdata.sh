#!/usr/bin/env bash
# Regenerates trace/ipset/testdata from the real ipset tool and kernel.
#
#   hack/ipset-testdata.sh      (needs root, ipset, iptables, ip, python3)
#
# In a fresh network namespace it restores sets.restore (kube-proxy's IPVS
# sets and ones shaped like Calico's, Weave's and kube-router's), then saves
# what the kernel holds as `ipset save` (save.txt), `ipset list` (list.txt) and
# `ipset list -t` (terse.txt). Then, for every line of probes.tsv, it sends
# one real packet (TCP SYN, UDP datagram or ICMP echo request) from SRC:SPORT
# to DST:DPORT through an OUTPUT rule `-m set --match-set SET FLAGS` and
# writes whether the kernel matched it to probes-kernel.tsv: ground truth
# for the package's membership test.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=$repo/trace/ipset/testdata
ns=${IPSET_NETNS:-tsvc-ipset-$$}

die() { echo "ipset-testdata.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root: the sets live in a network namespace"
for tool in ipset iptables ip6tables iptables-save ip6tables-save ip python3; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install ipset iptables iproute2 python3)"
done

ip netns del "$ns" 2>/dev/null || true
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
in_ns() { ip netns exec "$ns" "$@"; }

in_ns ipset restore <"$dir/sets.restore"
# initval is random per creation: regenerated files differ there only.
in_ns ipset save >"$dir/save.txt"
in_ns ipset list >"$dir/list.txt"
in_ns ipset list -t >"$dir/terse.txt"

# A veth that every destination routes through; the probes'
# sources are its addresses.
in_ns ip link set lo up
in_ns ip link add probe0 type veth peer name probe1
in_ns ip link set probe1 up
in_ns ip link set probe0 up
in_ns ip route add default dev probe0
in_ns ip -6 route add default dev probe0
grep -v '^#' "$dir/probes.tsv" | cut -f4 | sort -u | while read -r src; do
	case $src in
	*:*) in_ns ip addr add "$src/128" dev probe0 nodad ;;
	*) in_ns ip addr add "$src/32" dev probe0 ;;
	esac
done

n=0
while IFS=$'\t' read -r set flags proto src sport dst dport; do
	case $set in '#'* | '') continue ;; esac
	n=$((n + 1))
	ipt=iptables plen=32
	case $dst in *:*) ipt=ip6tables plen=128 ;; esac
	ports=()
	[ "$proto" = icmp ] || ports=(--sport "$sport" --dport "$dport")
	in_ns "$ipt" -t raw -A OUTPUT -s "$src/$plen" -d "$dst/$plen" -p "$proto" "${ports[@]}" \
		-m set --match-set "$set" "$flags" -m comment --comment "probe$n" 2>/dev/null ||
		true # a rule the kernel refuses (family mismatch) is reported as rejected below
done <"$dir/probes.tsv"

in_ns python3 - "$dir/probes.tsv" <<'PY'
import socket, sys, struct
for line in open(sys.argv[1]):
    if line.startswith('#') or not line.strip():
        continue
    s, flags, proto, src, sport, dst, dport = line.rstrip('\n').split('\t')
    fam = socket.AF_INET6 if ':' in dst else socket.AF_INET
    if proto == 'icmp':
        sk = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        sk.bind((src, 0))
        body = struct.pack('!BBHHH', 8, 0, 0, 1, 1)
        csum = 0
        for i in range(0, len(body), 2):
            csum += (body[i] << 8) + body[i + 1]
        csum = (csum >> 16) + (csum & 0xffff)
        csum = ~(csum + (csum >> 16)) & 0xffff
        sk.sendto(struct.pack('!BBHHH', 8, 0, csum, 1, 1), (dst, 0))
    elif proto == 'udp':
        sk = socket.socket(fam, socket.SOCK_DGRAM)
        sk.bind((src, int(sport)))
        sk.sendto(b'probe', (dst, int(dport)))
    else:
        sk = socket.socket(fam, socket.SOCK_STREAM)
        sk.setblocking(False)
        sk.bind((src, int(sport)))
        try:
            sk.connect((dst, int(dport)))
        except BlockingIOError:
            pass
    sk.close()
PY

{
	echo "# set	flags	proto	src	sport	dst	dport	kernel"
	echo "# written by hack/ipset-testdata.sh from real packets; kernel is match, nomatch or rejected (the rule could not be added)"
	counts=$( (in_ns iptables-save -c -t raw; in_ns ip6tables-save -c -t raw) | sed -n 's/^\[\([0-9]*\):.*--comment \(probe[0-9]*\).*/\2 \1/p')
	i=0
	while IFS=$'\t' read -r set flags proto src sport dst dport; do
		case $set in '#'* | '') continue ;; esac
		i=$((i + 1))
		c=$(awk -v p="probe$i" '$1 == p {print $2}' <<<"$counts")
		verdict=nomatch
		if [ -z "$c" ]; then
			verdict=rejected
		elif [ "$c" -gt 0 ]; then
			verdict=match
		fi
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$set" "$flags" "$proto" "$src" "$sport" "$dst" "$dport" "$verdict"
	done <"$dir/probes.tsv"
} >"$dir/probes-kernel.tsv"
echo "== $(grep -c . "$dir/save.txt") save lines, $n probes into $dir"
