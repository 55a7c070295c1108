// Package trace decides what a node's dataplane does with a request. It is pure:
// it parses dumps handed to it and evaluates them, and never talks to a cluster,
// prints, or reads files by name. Engines for each dataplane live in
// subpackages (trace/iptables, ...); they all answer with the types in this file.
package trace

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// Verdict is what the node's rules do to a packet, as far as kube-proxy's rules
// decide it.
type Verdict string

const (
	// VerdictDNAT: the destination was rewritten to a Service endpoint.
	VerdictDNAT Verdict = "DNAT"
	// VerdictDrop: the packet is silently discarded.
	VerdictDrop Verdict = "DROP"
	// VerdictReject: the packet is refused (ICMP unreachable / TCP reset).
	VerdictReject Verdict = "REJECT"
	// VerdictAccept: a kube-proxy rule explicitly accepted the packet without
	// rewriting it (for example a health-check node port).
	VerdictAccept Verdict = "ACCEPT"
	// VerdictNone: kube-proxy's rules leave the packet alone; normal routing
	// applies.
	VerdictNone Verdict = "NONE"
)

// Packet is the first packet of a new connection as the simulator sees it.
type Packet struct {
	Source      netip.Addr `json:"source"`
	Destination netip.Addr `json:"destination"`
	// DestinationPort is the L4 destination port.
	DestinationPort uint16 `json:"destinationPort"`
	// Protocol is lower-case: "tcp", "udp" or "sctp".
	Protocol string `json:"protocol"`
	// InInterface is the interface the packet arrived on; empty when unknown
	// (the simulator then uses the convention described in its notes).
	InInterface string `json:"inInterface,omitempty"`
}

func (p Packet) String() string {
	return fmt.Sprintf("%s %s -> %s", p.Protocol, p.Source, netip.AddrPortFrom(p.Destination, p.DestinationPort))
}

// Validate reports a packet the simulator cannot evaluate.
func (p Packet) Validate() error {
	switch {
	case !p.Source.IsValid():
		return fmt.Errorf("packet has no source address")
	case !p.Destination.IsValid():
		return fmt.Errorf("packet has no destination address")
	case p.Source.Is4() != p.Destination.Is4():
		return fmt.Errorf("source %s and destination %s are of different IP families", p.Source, p.Destination)
	case p.DestinationPort == 0:
		return fmt.Errorf("destination port must be between 1 and 65535")
	}
	switch p.Protocol {
	case "tcp", "udp", "sctp":
	default:
		return fmt.Errorf("protocol %s is not one of tcp, udp, sctp", excerpt.Quote(p.Protocol))
	}
	return nil
}

// RuleRef names one rule of a dump and how it acted on the packet.
type RuleRef struct {
	Table string `json:"table"`
	Chain string `json:"chain"`
	// Line is the rule's line in the dump it was parsed from (1-based).
	Line int `json:"line"`
	// Rule is the rule's text as it stands in the dump, without "-A CHAIN".
	Rule string `json:"rule"`
	// Folded, when set, makes this entry stand for that many rules of
	// Chain, from Line on, that matched one after the other without
	// changing the packet; they are not listed one by one (Rule is empty).
	// See FoldAfter.
	Folded int `json:"folded,omitempty"`
	// Counters are the rule's packet and byte counters when the dump has
	// them (iptables-save -c); nil otherwise.
	Counters *RuleCounters `json:"counters,omitempty"`
	// Policy marks a chain's policy rather than a rule: the packet fell
	// off the end of a base chain whose policy is drop (Rule says so).
	Policy bool `json:"policy,omitempty"`
	// Foreign marks a rule or policy kube-proxy did not write: a host
	// firewall's, Docker's, a network plugin's table.
	Foreign bool `json:"foreign,omitempty"`
	// Backend, set on foreign rules, names the tool that wrote the rule's
	// table: iptables-legacy, iptables-nft, nftables.
	Backend string `json:"backend,omitempty"`
}

// RuleCounters are a rule's counters as the kernel kept them: packets and
// bytes that matched it since the rule was written (for a nat rule, only
// each connection's first packet).
type RuleCounters struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

func (r RuleRef) String() string {
	if r.Folded > 0 {
		return fmt.Sprintf("%s/%s (from line %d): %s", r.Table, r.Chain, r.Line, r.FoldedText())
	}
	s := fmt.Sprintf("%s/%s (line %d): %s", r.Table, r.Chain, r.Line, r.Rule)
	if r.Policy {
		s = fmt.Sprintf("%s/%s: %s", r.Table, r.Chain, r.Rule)
	}
	if r.Foreign {
		s += " — not kube-proxy's"
		if r.Backend != "" {
			s += " (" + r.Backend + ")"
		}
	}
	return s
}

// FoldedText describes a folded entry for people: "… 1,199,998 more rules
// matched, no effect".
func (r RuleRef) FoldedText() string {
	noun := "rules"
	if r.Folded == 1 {
		noun = "rule"
	}
	return fmt.Sprintf("… %s more %s matched, no effect", thousands(r.Folded), noun)
}

// thousands writes n with commas between groups of three digits.
func thousands(n int) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Endpoint is a destination the packet can be DNATed to.
type Endpoint struct {
	IP   netip.Addr `json:"ip"`
	Port uint16     `json:"port"`
	// Probability that a new connection goes to this endpoint, with the
	// random-probability cascade resolved. Over all endpoints of one result it
	// sums to 1 when the verdict is DNAT on every branch.
	Probability float64 `json:"probability"`
	// Masquerade tells whether the branch to this endpoint source-NATs the
	// packet to the node's address.
	Masquerade bool `json:"masquerade"`
	// Chain is the endpoint chain (KUBE-SEP-*) or map element that chose it.
	Chain string `json:"chain,omitempty"`
}

// AddrPort returns the endpoint as one address:port value.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.IP, e.Port) }

// Outcome is one branch of the walk: the packet either took each random
// choice on it or did not. Branches are disjoint; their probabilities sum to 1.
type Outcome struct {
	Probability float64   `json:"probability"`
	Verdict     Verdict   `json:"verdict"`
	Endpoint    *Endpoint `json:"endpoint,omitempty"`
	Masquerade  bool      `json:"masquerade"`
	// DecidedBy is the rule that dropped, rejected, accepted or DNATed the
	// packet; nil when no rule did (verdict NONE).
	DecidedBy *RuleRef `json:"decidedBy,omitempty"`
	// Rules are the rules that matched on this branch, in the order the kernel
	// evaluates them.
	Rules []RuleRef `json:"rules"`
}

// AffinityRule is a session-affinity check the packet passed. A new client has
// no entry, so the check does not match; a client that connected within
// Seconds is pinned to Endpoint instead of the random choice.
type AffinityRule struct {
	Rule RuleRef `json:"rule"`
	// List is the name of the "recent" list (kube-proxy names it after the
	// endpoint chain).
	List    string `json:"list"`
	Seconds int    `json:"seconds,omitempty"`
	// Endpoint is where an affinity hit sends the packet, when the list's
	// chain DNATs to one fixed endpoint.
	Endpoint string `json:"endpoint,omitempty"`
	// Hit tells whether the simulation assumed this client has an entry.
	Hit bool `json:"hit"`
}

// Simulation is the answer to "what does this node do with this packet".
type Simulation struct {
	Packet Packet `json:"packet"`
	// LocalAddresses are the addresses treated as the node's own.
	LocalAddresses []netip.Addr `json:"localAddresses"`
	// Origin is "local" when the packet is generated on the node (its source
	// is a local address) and "forwarded" when it arrives from elsewhere.
	Origin     string     `json:"origin"`
	Verdict    Verdict    `json:"verdict"`
	Endpoints  []Endpoint `json:"endpoints"`
	Masquerade bool       `json:"masquerade"`
	// Rules is every rule that matched on any branch, in walk order, each once.
	Rules    []RuleRef      `json:"rules"`
	Outcomes []Outcome      `json:"outcomes"`
	Affinity []AffinityRule `json:"affinity,omitempty"`
	// Notes state assumptions the simulator made (unknown interface, matches
	// it cannot evaluate, ...). They are part of the answer, not diagnostics.
	Notes []string `json:"notes,omitempty"`
	// IPVS is the IPVS virtual server that scheduled the packet (kube-proxy's
	// IPVS mode); nil when none did.
	IPVS *IPVSHop `json:"ipvs,omitempty"`
}

// IPVSHop is an IPVS virtual server as the packet met it: the kernel's
// table, not rules, chose the endpoint.
type IPVSHop struct {
	// VirtualServer names it as ipvsadm -Ln does: "TCP  10.96.0.1:443".
	VirtualServer string     `json:"virtualServer"`
	Protocol      string     `json:"protocol,omitempty"`
	Address       netip.Addr `json:"address,omitzero"`
	Port          uint16     `json:"port,omitempty"`
	FWMark        uint32     `json:"fwmark,omitempty"`
	Scheduler     string     `json:"scheduler"`
	// Persistent is session affinity ClientIP; PersistenceSeconds its
	// timeout when the table says it in seconds (ipvsadm; /proc/net/ip_vs
	// prints jiffies, whose length the dump does not give).
	Persistent         bool          `json:"persistent,omitempty"`
	PersistenceSeconds uint32        `json:"persistenceSeconds,omitempty"`
	RealServers        []IPVSRealHop `json:"realServers"`
}

// IPVSRealHop is one real server of the virtual server with its share of
// new connections (0 for weight 0: a terminating endpoint).
type IPVSRealHop struct {
	IP          netip.Addr `json:"ip"`
	Port        uint16     `json:"port"`
	Forward     string     `json:"forward"`
	Weight      int        `json:"weight"`
	Probability float64    `json:"probability"`
}

// Summarize fills the aggregate fields (Verdict, Endpoints, Masquerade, Rules)
// from Outcomes. Engines call it once the walk is done.
func (s *Simulation) Summarize() {
	s.Verdict = summarizeVerdict(s.Outcomes)
	s.Masquerade = false
	s.Endpoints = nil
	s.Rules = nil
	byAddr := map[netip.AddrPort]int{}
	seen := map[RuleRef]bool{}
	for _, o := range s.Outcomes {
		s.Masquerade = s.Masquerade || o.Masquerade
		for _, r := range o.Rules {
			if !seen[r] {
				seen[r] = true
				s.Rules = append(s.Rules, r)
			}
		}
		if o.Endpoint == nil || o.Verdict != VerdictDNAT {
			continue
		}
		key := o.Endpoint.AddrPort()
		if i, ok := byAddr[key]; ok {
			s.Endpoints[i].Probability += o.Probability
			s.Endpoints[i].Masquerade = s.Endpoints[i].Masquerade || o.Masquerade
			continue
		}
		byAddr[key] = len(s.Endpoints)
		e := *o.Endpoint
		e.Probability = o.Probability
		e.Masquerade = o.Masquerade
		s.Endpoints = append(s.Endpoints, e)
	}
	if s.Rules == nil {
		s.Rules = []RuleRef{}
	}
	if s.Endpoints == nil {
		s.Endpoints = []Endpoint{}
	}
}

// summarizeVerdict picks the packet's verdict from its branches: a DNAT on any
// branch wins (the others are listed in Outcomes), then DROP, REJECT, ACCEPT,
// and NONE when no branch was decided by a rule. kube-proxy's rules never mix
// DNAT and drop branches for one packet, so in practice the branches agree.
func summarizeVerdict(outcomes []Outcome) Verdict {
	best := VerdictNone
	rank := map[Verdict]int{VerdictNone: 0, VerdictAccept: 1, VerdictReject: 2, VerdictDrop: 3, VerdictDNAT: 4}
	for _, o := range outcomes {
		if rank[o.Verdict] > rank[best] {
			best = o.Verdict
		}
	}
	return best
}

// EndpointList renders endpoints the way kube-proxy's packet-flow tests write
// them: "ip:port, ip:port" in walk order, or the verdict when nothing was
// DNATed ("" for NONE).
func (s *Simulation) EndpointList() string {
	if s.Verdict != VerdictDNAT {
		if s.Verdict == VerdictNone {
			return ""
		}
		return string(s.Verdict)
	}
	parts := make([]string, 0, len(s.Endpoints))
	for _, e := range s.Endpoints {
		parts = append(parts, e.AddrPort().String())
	}
	return strings.Join(parts, ", ")
}
