package routes

import (
	"fmt"
	"slices"
	"strings"
)

// Facts are what a node shows about the dataplanes on it, as plain names
// so that this package needs none of the rule engines.
type Facts struct {
	// Snapshot is the node's routes and interfaces; nil when unknown.
	Snapshot *Snapshot
	// Chains are iptables chain names (every table, both backends).
	Chains []string
	// NFTTables are nftables tables as "FAMILY NAME" ("ip kube-proxy",
	// "inet cilium"), or bare names.
	NFTTables []string
	// IPSets are ipset names.
	IPSets []string
}

// Plugin is a network plugin the node shows signs of.
type Plugin struct {
	// Name is the plugin: Calico, Cilium, flannel, AWS VPC CNI, kindnet,
	// Weave Net, Antrea, OVN-Kubernetes.
	Name string `json:"name"`
	// Mode is what the signs say of how it routes pods: "VXLAN", "IPIP",
	// "BGP", "native routing", "eBPF", …; empty when they do not say.
	Mode string `json:"mode,omitempty"`
	// Evidence lists the signs, each short ("interface flannel.1 (vxlan)",
	// "chain FLANNEL-POSTRTG").
	Evidence []string `json:"evidence"`
}

// ServiceDataplane is an eBPF service load balancer that replaces (or
// runs beside) kube-proxy on the node.
type ServiceDataplane struct {
	Name string `json:"name"`
	// ReplacesKubeProxy: the node has no kube-proxy rules, so Services
	// are served by this dataplane alone.
	ReplacesKubeProxy bool     `json:"replacesKubeProxy"`
	Evidence          []string `json:"evidence"`
	// Instead is what to run to see its Service table.
	Instead string `json:"instead"`
	// Note says what the node's rules mean next to it.
	Note string `json:"note"`
}

// Detection is what Detect found.
type Detection struct {
	Plugins []Plugin `json:"plugins,omitempty"`
	// KubeProxy is whether kube-proxy's rules exist (the KUBE-SERVICES
	// chain, or the kube-proxy nftables table).
	KubeProxy bool `json:"kubeProxy"`
	// Service is set when an eBPF service dataplane is present.
	Service *ServiceDataplane `json:"service,omitempty"`
}

// Names lists the plugins' names, for the node header.
func (d Detection) Names() []string {
	out := make([]string, 0, len(d.Plugins))
	for _, p := range d.Plugins {
		if p.Mode != "" {
			out = append(out, p.Name+" ("+p.Mode+")")
		} else {
			out = append(out, p.Name)
		}
	}
	return out
}

// evidence gathers the signs of one plugin: strong ones name it alone,
// weak ones (generic names other setups use too) only next to a strong one.
type evidence struct {
	strong, weak []string
}

func (e *evidence) add(strong bool, format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if slices.Contains(e.strong, s) || slices.Contains(e.weak, s) {
		return
	}
	if strong {
		if len(e.strong) < 8 {
			e.strong = append(e.strong, s)
		}
	} else if len(e.weak) < 8 {
		e.weak = append(e.weak, s)
	}
}

func (e *evidence) found() bool { return len(e.strong) > 0 }

func (e *evidence) list() []string { return append(append([]string{}, e.strong...), e.weak...) }

// prefixCount counts names with prefix and returns the first.
func prefixCount(names []string, prefix string) (int, string) {
	n, first := 0, ""
	for _, x := range names {
		if strings.HasPrefix(x, prefix) {
			if n == 0 {
				first = x
			}
			n++
		}
	}
	return n, first
}

func plural(n int, first string) string {
	if n == 1 {
		return first
	}
	return fmt.Sprintf("%s and %d more", first, n-1)
}

// Detect names the network plugins and eBPF service dataplanes a node
// shows, from its interfaces and routes and the names of its iptables
// chains, nftables tables and ipsets. Each rule is written from the
// plugin's own source or documentation (see the comments); interface,
// chain and set names are the plugins' defaults, which operators rarely
// change.
func Detect(f Facts) Detection {
	var d Detection
	chains := f.Chains
	tables := make([]string, 0, len(f.NFTTables))
	for _, t := range f.NFTTables {
		fam, name, ok := strings.Cut(t, " ")
		if !ok {
			name, fam = fam, ""
		}
		tables = append(tables, name)
		if name == "kube-proxy" && (fam == "" || fam == "ip" || fam == "ip6") {
			d.KubeProxy = true
		}
	}
	if slices.Contains(chains, "KUBE-SERVICES") {
		d.KubeProxy = true
	}
	var ifs []Interface
	var routes []Route
	if f.Snapshot != nil {
		ifs, routes = f.Snapshot.Interfaces, f.Snapshot.Routes
	}
	names := make([]string, 0, len(ifs))
	kind := map[string]Kind{}
	for _, ifc := range ifs {
		names = append(names, ifc.Name)
		kind[ifc.Name] = ifc.Kind
	}
	hasIf := func(name string) bool { _, ok := kind[name]; return ok }
	ifDesc := func(name string) string {
		if k := kind[name]; k != KindUnknown {
			return fmt.Sprintf("interface %s (%s)", name, k)
		}
		return "interface " + name
	}
	routesVia := func(match func(Route) bool) int {
		n := 0
		for _, r := range routes {
			if match(r) {
				n++
			}
		}
		return n
	}
	chainsWith := func(e *evidence, prefix string) {
		if n, first := prefixCount(chains, prefix); n > 0 {
			e.add(true, "chain %s", plural(n, first))
		}
	}
	add := func(name, mode string, e *evidence) {
		if e.found() {
			d.Plugins = append(d.Plugins, Plugin{Name: name, Mode: mode, Evidence: e.list()})
		}
	}

	// Calico (projectcalico/calico felix): host ends of pod veths named
	// cali + 11 hex; tunl0 (IPIP), vxlan.calico / vxlan-v6.calico,
	// wireguard.cali / wg-v6.cali; chains cali-*; ipsets cali40* /
	// cali60*; nftables table "calico"; routes from BIRD (proto bird) or
	// Felix (proto 80) with a blackhole for the node's own block. eBPF mode
	// adds the bpfin.cali / bpfout.cali veth pair.
	{
		var e evidence
		if n, first := prefixCount(names, "cali"); n > 0 && first != "" {
			e.add(true, "%s", plural(n, ifDesc(first)))
		}
		for _, n := range []string{"vxlan.calico", "vxlan-v6.calico", "wireguard.cali", "wg-v6.cali", "bpfin.cali", "bpfout.cali"} {
			if hasIf(n) {
				e.add(true, "%s", ifDesc(n))
			}
		}
		chainsWith(&e, "cali-")
		if n, first := prefixCount(f.IPSets, "cali40"); n > 0 {
			e.add(true, "ipset %s", plural(n, first))
		} else if n, first := prefixCount(f.IPSets, "cali60"); n > 0 {
			e.add(true, "ipset %s", plural(n, first))
		}
		if slices.Contains(tables, "calico") {
			e.add(true, "nftables table calico")
		}
		bird := routesVia(func(r Route) bool { return r.Protocol == "bird" })
		felix := routesVia(func(r Route) bool { return r.Protocol == "80" })
		if felix > 0 {
			e.add(true, "%d routes with proto 80 (Felix)", felix)
		}
		if bird > 0 {
			e.add(false, "%d routes with proto bird (BGP)", bird)
		}
		ipip := hasIf("tunl0") && routesVia(func(r Route) bool { return r.Dev == "tunl0" }) > 0
		if ipip {
			e.add(false, "routes through tunl0 (IPIP)")
		}
		mode := ""
		switch {
		case hasIf("bpfin.cali"):
			mode = "eBPF"
		case hasIf("wireguard.cali"):
			mode = "WireGuard"
		case hasIf("vxlan.calico") && routesVia(func(r Route) bool { return r.Dev == "vxlan.calico" }) > 0:
			mode = "VXLAN"
		case ipip:
			mode = "IPIP"
		case bird > 0:
			mode = "BGP"
		}
		add("Calico", mode, &e)
		if hasIf("bpfin.cali") || hasIf("bpfout.cali") {
			d.Service = &ServiceDataplane{
				Name:              "Calico eBPF",
				ReplacesKubeProxy: !d.KubeProxy,
				Evidence:          e.list(),
				Instead:           "kubectl -n calico-system exec ds/calico-node -- calico-node -bpf nat dump",
			}
		}
	}

	// Cilium (cilium/cilium): cilium_host / cilium_net (a veth pair),
	// cilium_vxlan or cilium_geneve in tunnel mode, cilium_wg0 with
	// WireGuard; pod veths lxc + 12 hex and lxc_health; chains CILIUM_*.
	// Its kube-proxy replacement serves Services in eBPF: with it, kube-
	// proxy's rules are absent.
	{
		var e evidence
		for _, n := range []string{"cilium_host", "cilium_net", "cilium_vxlan", "cilium_geneve", "cilium_wg0", "lxc_health"} {
			if hasIf(n) {
				e.add(true, "%s", ifDesc(n))
			}
		}
		if n, first := prefixCount(names, "lxc"); n > 0 && e.found() {
			e.add(false, "%s", plural(n, ifDesc(first)))
		}
		chainsWith(&e, "CILIUM_")
		if n, first := prefixCount(f.IPSets, "cilium_"); n > 0 {
			e.add(true, "ipset %s", plural(n, first))
		}
		mode := ""
		switch {
		case hasIf("cilium_vxlan"):
			mode = "VXLAN"
		case hasIf("cilium_geneve"):
			mode = "Geneve"
		case e.found():
			mode = "native routing"
		}
		if hasIf("cilium_wg0") {
			mode += ", WireGuard"
		}
		add("Cilium", strings.TrimPrefix(mode, ", "), &e)
		if e.found() && (hasIf("cilium_host") || hasIf("cilium_net")) {
			sd := &ServiceDataplane{
				Name:     "Cilium",
				Evidence: e.list(),
				Instead:  "kubectl -n kube-system exec ds/cilium -- cilium-dbg service list",
			}
			if !d.KubeProxy {
				sd.ReplacesKubeProxy = true
				sd.Name = "Cilium kube-proxy replacement"
				sd.Note = "the node has no kube-proxy rules: Cilium's eBPF serves its Services"
			} else {
				sd.Note = "kube-proxy's rules exist too; whether Cilium's kube-proxy replacement is on cannot be told from the node (cilium-dbg status shows KubeProxyReplacement), and Cilium routes pods in eBPF: its kernel routes all point at cilium_host"
			}
			if d.Service == nil {
				d.Service = sd
			}
		}
	}

	// flannel (flannel-io/flannel): flannel.1 (vxlan backend, VNI 1),
	// flannel-wg / flannel-wg-v6 (wireguard), flannel.ipip (ipip), the CNI
	// bridge cni0 (weak: other bridge setups use it), chains
	// FLANNEL-POSTRTG and FLANNEL-FWD, nftables table "flannel" (its
	// nftables mode).
	{
		var e evidence
		for _, n := range []string{"flannel.1", "flannel-v6.1", "flannel-wg", "flannel-wg-v6", "flannel.ipip"} {
			if hasIf(n) {
				e.add(true, "%s", ifDesc(n))
			}
		}
		chainsWith(&e, "FLANNEL-")
		if slices.Contains(tables, "flannel") {
			e.add(true, "nftables table flannel")
		}
		if hasIf("cni0") && kind["cni0"] == KindBridge {
			e.add(false, "%s", ifDesc("cni0"))
		}
		mode := ""
		switch {
		case hasIf("flannel.1"):
			mode = "VXLAN"
		case hasIf("flannel-wg"):
			mode = "WireGuard"
		case hasIf("flannel.ipip"):
			mode = "IPIP"
		case e.found():
			mode = "host-gw"
		}
		add("flannel", mode, &e)
	}

	// AWS VPC CNI (aws/amazon-vpc-cni-k8s): pod veths eni + 11 hex
	// (AWS_VPC_K8S_CNI_VETHPREFIX), chains AWS-SNAT-CHAIN-N and
	// AWS-CONNMARK-CHAIN-N, policy rules at 512 ("to POD lookup main"),
	// 1024 ("fwmark 0x80/0x80 lookup main") and 1536 ("from POD lookup
	// N", N the ENI's table).
	{
		var e evidence
		chainsWith(&e, "AWS-SNAT-CHAIN-")
		chainsWith(&e, "AWS-CONNMARK-CHAIN-")
		if n, first := prefixCount(names, "eni"); n > 0 && first != "" && kind[first] != KindDevice {
			e.add(false, "%s", plural(n, ifDesc(first)))
		}
		if f.Snapshot != nil {
			to, from := 0, 0
			for _, r := range f.Snapshot.Rules4 {
				switch {
				case r.Priority == 512 && r.To.IsValid() && r.To.IsSingleIP() && r.Table == TableMain:
					to++
				case r.Priority == 1536 && r.From.IsValid() && r.Table != TableMain:
					from++
				}
			}
			if to > 0 {
				e.add(to > 0 && len(e.weak) > 0, "%d policy rules at 512 to a pod, lookup main", to)
			}
			if from > 0 {
				e.add(len(e.weak) > 0, "%d policy rules at 1536 from a pod to an ENI table", from)
			}
		}
		add("AWS VPC CNI", "native VPC routing", &e)
	}

	// kindnet (kubernetes-sigs/kind, aojea/kindnet): chain
	// KIND-MASQ-AGENT (its ip-masq-agent), nftables tables
	// kindnet-network-policies and kindnet-ipmasq; pods on ptp veths with
	// /32 "scope host" routes, other nodes' pod CIDRs via their address.
	{
		var e evidence
		chainsWith(&e, "KIND-MASQ-AGENT")
		for _, t := range tables {
			if strings.HasPrefix(t, "kindnet") {
				e.add(true, "nftables table %s", t)
			}
		}
		hostRoutes := routesVia(func(r Route) bool {
			return r.Table == TableMain && r.Dst.IsSingleIP() && r.Scope == "host" && r.Type == Unicast && kind[r.Dev] == KindVeth
		})
		if hostRoutes > 0 {
			e.add(false, "%d pod routes \"scope host\" into veths (ptp plugin)", hostRoutes)
		}
		add("kindnet", "native routing", &e)
	}

	// Weave Net (weaveworks/weave): the weave bridge, vethwe-bridge /
	// vethwe-datapath, the datapath (Open vSwitch) device, vxlan-6784,
	// pod veths vethwepl*; chains WEAVE, WEAVE-NPC*, WEAVE-EXPOSE; ipsets
	// weave-*.
	{
		var e evidence
		for _, n := range []string{"weave", "vethwe-bridge", "vethwe-datapath", "datapath", "vxlan-6784"} {
			if hasIf(n) && (n != "weave" && n != "datapath" || hasIf("vethwe-bridge")) {
				e.add(true, "%s", ifDesc(n))
			}
		}
		if n, first := prefixCount(names, "vethwepl"); n > 0 {
			e.add(true, "%s", plural(n, ifDesc(first)))
		}
		if slices.Contains(chains, "WEAVE") {
			e.add(true, "chain WEAVE")
		}
		chainsWith(&e, "WEAVE-")
		if n, first := prefixCount(f.IPSets, "weave-"); n > 0 {
			e.add(true, "ipset %s", plural(n, first))
		}
		add("Weave Net", "", &e)
	}

	// Antrea (antrea-io/antrea): antrea-gw0 (the gateway), antrea-tun0
	// (the tunnel port), antrea-egress0, the OVS bridge br-int; chains
	// ANTREA-*; ipsets ANTREA-POD-IP*.
	{
		var e evidence
		for _, n := range []string{"antrea-gw0", "antrea-tun0", "antrea-egress0"} {
			if hasIf(n) {
				e.add(true, "%s", ifDesc(n))
			}
		}
		chainsWith(&e, "ANTREA-")
		if n, first := prefixCount(f.IPSets, "ANTREA-"); n > 0 {
			e.add(true, "ipset %s", plural(n, first))
		}
		mode := ""
		if hasIf("antrea-tun0") {
			mode = "tunnel"
		}
		add("Antrea", mode, &e)
	}

	// OVN-Kubernetes (ovn-org/ovn-kubernetes): ovn-k8s-mp0 (the
	// management port), br-int, breth0 / br-ex (the gateway bridge),
	// genev_sys_6081; chains OVN-KUBE-*; nftables table "ovn-kubernetes".
	{
		var e evidence
		for _, n := range []string{"ovn-k8s-mp0", "ovn-k8s-mp1"} {
			if hasIf(n) {
				e.add(true, "%s", ifDesc(n))
			}
		}
		for _, n := range []string{"br-int", "breth0", "br-ex", "genev_sys_6081"} {
			if hasIf(n) {
				e.add(false, "%s", ifDesc(n))
			}
		}
		chainsWith(&e, "OVN-KUBE-")
		if slices.Contains(tables, "ovn-kubernetes") {
			e.add(true, "nftables table ovn-kubernetes")
		}
		mode := ""
		if hasIf("genev_sys_6081") {
			mode = "Geneve"
		}
		add("OVN-Kubernetes", mode, &e)
	}

	if d.Service != nil && !d.Service.ReplacesKubeProxy && d.Service.Note == "" {
		d.Service.Note = "kube-proxy's rules exist too, but Calico's eBPF programs take Service traffic before them"
	}
	if d.Service != nil && d.Service.ReplacesKubeProxy && d.Service.Note == "" {
		d.Service.Note = fmt.Sprintf("the node has no kube-proxy rules: %s serves its Services", d.Service.Name)
	}
	return d
}

// Findings turns the detection into node findings: one, when an eBPF
// service dataplane replaces kube-proxy, saying so and what to use
// instead (rather than "no kube-proxy rule matched" under every entry).
func (d Detection) Findings(node string) []Finding {
	if d.Service == nil || !d.Service.ReplacesKubeProxy {
		return nil
	}
	return []Finding{{
		Severity: "info",
		Code:     "KubeProxyReplaced",
		Message: fmt.Sprintf("node %s has no kube-proxy rules; %s serves Services in eBPF, which this tool cannot read: use %s",
			node, d.Service.Name, d.Service.Instead),
	}}
}
