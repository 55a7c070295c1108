# EnsureChain / EnsureRule calls of kube-proxy 1.22's syncProxyRules, in order
iptables -w -t filter -N KUBE-EXTERNAL-SERVICES 2>/dev/null || true
iptables -w -t filter -C INPUT -m conntrack --ctstate NEW -m comment --comment 'kubernetes externally-visible service portals' -j KUBE-EXTERNAL-SERVICES 2>/dev/null || iptables -w -t filter -I INPUT -m conntrack --ctstate NEW -m comment --comment 'kubernetes externally-visible service portals' -j KUBE-EXTERNAL-SERVICES
iptables -w -t filter -N KUBE-EXTERNAL-SERVICES 2>/dev/null || true
iptables -w -t filter -C FORWARD -m conntrack --ctstate NEW -m comment --comment 'kubernetes externally-visible service portals' -j KUBE-EXTERNAL-SERVICES 2>/dev/null || iptables -w -t filter -I FORWARD -m conntrack --ctstate NEW -m comment --comment 'kubernetes externally-visible service portals' -j KUBE-EXTERNAL-SERVICES
iptables -w -t filter -N KUBE-NODEPORTS 2>/dev/null || true
iptables -w -t filter -C INPUT -m comment --comment 'kubernetes health check service ports' -j KUBE-NODEPORTS 2>/dev/null || iptables -w -t filter -I INPUT -m comment --comment 'kubernetes health check service ports' -j KUBE-NODEPORTS
iptables -w -t filter -N KUBE-SERVICES 2>/dev/null || true
iptables -w -t filter -C FORWARD -m conntrack --ctstate NEW -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES 2>/dev/null || iptables -w -t filter -I FORWARD -m conntrack --ctstate NEW -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES
iptables -w -t filter -N KUBE-SERVICES 2>/dev/null || true
iptables -w -t filter -C OUTPUT -m conntrack --ctstate NEW -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES 2>/dev/null || iptables -w -t filter -I OUTPUT -m conntrack --ctstate NEW -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES
iptables -w -t filter -N KUBE-FORWARD 2>/dev/null || true
iptables -w -t filter -C FORWARD -m comment --comment 'kubernetes forwarding rules' -j KUBE-FORWARD 2>/dev/null || iptables -w -t filter -I FORWARD -m comment --comment 'kubernetes forwarding rules' -j KUBE-FORWARD
iptables -w -t nat -N KUBE-SERVICES 2>/dev/null || true
iptables -w -t nat -C OUTPUT -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES 2>/dev/null || iptables -w -t nat -I OUTPUT -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES
iptables -w -t nat -N KUBE-SERVICES 2>/dev/null || true
iptables -w -t nat -C PREROUTING -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES 2>/dev/null || iptables -w -t nat -I PREROUTING -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES
iptables -w -t nat -N KUBE-POSTROUTING 2>/dev/null || true
iptables -w -t nat -C POSTROUTING -m comment --comment 'kubernetes postrouting rules' -j KUBE-POSTROUTING 2>/dev/null || iptables -w -t nat -I POSTROUTING -m comment --comment 'kubernetes postrouting rules' -j KUBE-POSTROUTING
iptables -w -t nat -N KUBE-MARK-DROP 2>/dev/null || true
