# The iptables rules kubelet 1.22 installs on every node before kube-proxy
# runs (syncNetworkUtil in pkg/kubelet/kubelet_network_linux.go, default
# --iptables-drop-bit 15 and --iptables-masquerade-bit 14), as the same
# EnsureChain / EnsureRule calls. Sourced by gen.sh inside the fixture's
# network namespace with `iptables` pointing at the backend being recorded.
ensure_chain() { iptables -w -t "$1" -N "$2" 2>/dev/null || true; }
ensure_rule() { # position table chain args...
	local pos=$1 table=$2 chain=$3
	shift 3
	iptables -w -t "$table" -C "$chain" "$@" 2>/dev/null || iptables -w -t "$table" "$pos" "$chain" "$@"
}
ensure_chain nat KUBE-MARK-DROP
ensure_rule -A nat KUBE-MARK-DROP -j MARK --or-mark 0x008000
ensure_chain filter KUBE-FIREWALL
ensure_rule -A filter KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" -m mark --mark 0x008000/0x008000 -j DROP
ensure_rule -A filter KUBE-FIREWALL -m comment --comment "block incoming localnet connections" --dst 127.0.0.0/8 ! --src 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
ensure_rule -I filter OUTPUT -j KUBE-FIREWALL
ensure_rule -I filter INPUT -j KUBE-FIREWALL
ensure_chain nat KUBE-MARK-MASQ
ensure_chain nat KUBE-POSTROUTING
ensure_rule -A nat KUBE-MARK-MASQ -j MARK --or-mark 0x004000
ensure_rule -I nat POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
ensure_rule -A nat KUBE-POSTROUTING -m mark ! --mark 0x004000/0x004000 -j RETURN
ensure_rule -A nat KUBE-POSTROUTING -j MARK --xor-mark 0x004000
ensure_rule -A nat KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
