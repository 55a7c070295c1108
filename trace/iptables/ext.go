// Facts beyond an iptables dump that some rules need to be evaluated
// exactly: the node's ipsets (-m set) and its IPVS table (the IPVS hook at
// LOCAL_IN, and -m ipvs after it). Kept apart from eval.go so that the walk
// of a plain dump is unchanged when neither is given.

package iptables

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipset"
)

// Extensions are the node's facts that rules refer to outside the dump.
type Extensions struct {
	// Sets are the node's ipsets (ipset save). Without them a -m set match
	// is decided by assumption: the packet is taken not to be in the set,
	// and a note says so.
	Sets *ipset.Dump
	// IPVS is the node's IPVS table. With it, a packet that reaches
	// LOCAL_IN (after filter INPUT) and belongs to a virtual server is
	// scheduled to a real server and sent on through OUTPUT and
	// POSTROUTING, as the kernel does for kube-proxy's IPVS mode (NAT
	// forwarding).
	IPVS IPVS
}

// IPVS is the kernel's IPVS as the iptables walk meets it.
type IPVS interface {
	// Schedule answers for a packet at LOCAL_IN: the virtual server that
	// takes it, with its real servers' shares; ok is false when no
	// virtual server does (the packet is delivered locally).
	Schedule(p IPVSPacket) (d IPVSDecision, ok bool)
}

// IPVSPacket is the packet as IPVS sees it at LOCAL_IN.
type IPVSPacket struct {
	Src, Dst netip.Addr
	Port     uint16
	// Protocol is "tcp", "udp" or "sctp".
	Protocol string
	Mark     uint32
}

// IPVSDecision is a virtual server's answer for one packet.
type IPVSDecision struct {
	// Protocol ("tcp"), Addr and Port are the virtual server's, for -m
	// ipvs --vproto/--vaddr/--vport; FWMark is set for a firewall-mark
	// service.
	Protocol string
	Addr     netip.Addr
	Port     uint16
	FWMark   uint32
	// Ref names the virtual server in the table it was read from; it is
	// recorded on the branch as the rule that decided the destination.
	Ref trace.RuleRef
	// Choices are the real servers a new connection can go to, with
	// probabilities adding up to 1; empty when none takes new connections
	// (the node's stack then answers the connection: REJECT).
	Choices []IPVSChoice
	// Notes say what the choices depend on (the scheduler, persistence).
	Notes []string
	// Affinity is the virtual server's persistence, shown as session
	// affinity; nil when it has none.
	Affinity *trace.AffinityRule
}

// IPVSChoice is one real server and its share of new connections.
type IPVSChoice struct {
	Addr        netip.Addr
	Port        uint16
	Probability float64
}

// SimulateWith is Simulate with the node's ipsets and IPVS table.
func SimulateWith(d *Dump, pkt trace.Packet, opts Options, ext Extensions) (*trace.Simulation, error) {
	return simulate(d, pkt, opts, ext)
}

// setChance decides -m set --match-set NAME FLAGS against the node's
// ipsets, or by assumption when they were not given.
func (w *walker) setChance(st *state, r *Rule, m *SetMatch) float64 {
	no := 0.0
	if m.Negated {
		no = 1
	}
	if w.ext.Sets == nil {
		w.Note("line %d: the node's ipsets were not given (ipset save): the packet is taken not to be in ipset %s", r.Line, excerpt.Quote(m.Set))
		return no
	}
	dirs, err := ipset.ParseDirs(m.Flags)
	if err != nil {
		w.Note("line %d: %s; the packet is taken not to be in the set", r.Line, excerpt.Clip(err.Error()))
		return no
	}
	for _, d := range dirs {
		if d == ipset.Src && setHasSrcPort(w.ext.Sets.Set(m.Set), dirs) {
			w.Note("line %d: ipset %s compares the source port, which the simulator does not know: taken as 0", r.Line, excerpt.Quote(m.Set))
			break
		}
	}
	res, err := w.ext.Sets.Contains(m.Set, ipset.Packet{Src: st.src, Dst: st.dst, Protocol: st.proto, DstPort: st.dport, InIface: st.in}, dirs)
	switch {
	case errors.Is(err, ipset.ErrUnknownSet):
		w.Note("line %d: the rule names ipset %s, which the node's ipsets do not hold (the kernel refuses such a rule: the dumps are from different moments); taken as not matching", r.Line, excerpt.Quote(m.Set))
		return 0
	case err != nil:
		w.Note("line %d: %s; the packet is taken not to be in the set", r.Line, excerpt.Clip(err.Error()))
		return no
	}
	if res.Matched != m.Negated {
		return 1
	}
	return 0
}

// setHasSrcPort tells whether a src flag falls on a port dimension of the
// set (the simulator knows no source port).
func setHasSrcPort(s *ipset.Set, dirs []ipset.Dir) bool {
	if s == nil {
		return false
	}
	for i, k := range s.Type.Dims() {
		if i < len(dirs) && dirs[i] == ipset.Src && k == ipset.KindPort {
			return true
		}
	}
	return false
}

// ipvsChance decides -m ipvs as xt_ipvs does: --ipvs alone asks whether
// the packet belongs to an IPVS connection; any other option fails on a
// packet that does not, and otherwise compares the connection's virtual
// server (a first packet's direction is ORIGINAL, its method Masq).
func (w *walker) ipvsChance(st *state, r *Rule, m *UnknownMatch) float64 {
	if w.ext.IPVS == nil {
		w.Note("line %d: -m ipvs matches packets IPVS has scheduled; the node's IPVS table was not given, so none is: taken as not matching", r.Line)
	}
	opts, err := parseIPVSMatch(m.Args)
	if err != nil {
		w.Note("line %d: -m ipvs %s: %s; taken as not matching", r.Line, excerpt.Clip(strings.Join(m.Args, " ")), excerpt.Clip(err.Error()))
		return 0
	}
	c := st.ipvs
	if len(opts) == 1 && opts[0].name == "--ipvs" {
		if (c != nil) != opts[0].neg {
			return 1
		}
		return 0
	}
	if c == nil {
		return 0
	}
	for _, o := range opts {
		var ok bool
		switch o.name {
		case "--ipvs":
			ok = true
		case "--vproto":
			ok = protoMatches(o.value, c.Proto)
		case "--vaddr":
			pfx, err := parseAddrOrPrefix(o.value)
			ok = err == nil && pfx.Contains(c.Addr)
		case "--vport":
			p, err := strconv.ParseUint(o.value, 10, 16)
			ok = err == nil && uint16(p) == c.Port
		case "--vdir":
			ok = strings.EqualFold(o.value, "ORIGINAL")
		case "--vmethod":
			ok = strings.EqualFold(o.value, "MASQ")
		case "--vportctl":
			// kube-proxy's services have no control connection.
			ok = false
		}
		if ok == o.neg {
			return 0
		}
	}
	return 1
}

type ipvsOpt struct {
	name, value string
	neg         bool
}

// parseIPVSMatch reads the options of -m ipvs as iptables-save prints them.
func parseIPVSMatch(args []string) ([]ipvsOpt, error) {
	var out []ipvsOpt
	for i := 0; i < len(args); i++ {
		o := ipvsOpt{}
		if args[i] == "!" {
			o.neg = true
			i++
			if i >= len(args) {
				return nil, errors.New("a lone '!'")
			}
		}
		o.name = args[i]
		switch o.name {
		case "--ipvs":
		case "--vproto", "--vaddr", "--vport", "--vdir", "--vmethod", "--vportctl":
			if i+1 >= len(args) {
				return nil, fmt.Errorf("%s wants a value", o.name)
			}
			i++
			o.value = args[i]
		default:
			return nil, fmt.Errorf("unknown option %s", o.name)
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, errors.New("no option")
	}
	return out, nil
}

// protoMatches compares --vproto (a name or number) with a protocol name.
func protoMatches(v, proto string) bool {
	if strings.EqualFold(v, proto) {
		return true
	}
	n, ok := ipset.ProtoNumber(proto)
	return ok && v == strconv.Itoa(int(n))
}

// IPVSHookChain registers IPVS as the kernel does for kube-proxy's IPVS
// mode: at the input hook, priority NF_IP_PRI_NAT_SRC-2 (ip_vs_remote_request,
// after filter INPUT and before nat INPUT). A packet whose destination is a
// virtual server is scheduled to a real server and sent out again from the
// node (NAT forwarding: through output and postrouting, where the nat
// chains no longer run for a connection whose NAT conntrack already made,
// trace.ExitResent); any other packet goes on to local delivery.
func IPVSHookChain(ipvs IPVS) trace.HookChain {
	return trace.HookChain{Hook: trace.HookInput, Priority: trace.PrioritySrcNAT - 2, Table: "ipvs", Chain: "LOCAL_IN", Backend: "IPVS",
		Run: func(w *trace.Walk, f *trace.Flow) ([]trace.ChainExit, error) { return scheduleIPVS(w, ipvs, f) }}
}

// scheduleIPVS is IPVS at LOCAL_IN for one branch.
func scheduleIPVS(w *trace.Walk, ipvs IPVS, f *trace.Flow) ([]trace.ChainExit, error) {
	if f.Endpoint != nil {
		// DNATed by a rule to a local address: IPVS sees the new
		// destination, which is no virtual server of kube-proxy's.
		return []trace.ChainExit{{Flow: f, Exit: trace.ExitAccept}}, nil
	}
	d, ok := ipvs.Schedule(IPVSPacket{Src: f.Src, Dst: f.Dst, Port: f.DPort, Protocol: f.Proto, Mark: f.Mark})
	if !ok {
		return []trace.ChainExit{{Flow: f, Exit: trace.ExitAccept}}, nil
	}
	ref := d.Ref
	f.Record(ref)
	for _, n := range d.Notes {
		w.Note("%s", n)
	}
	if d.Affinity != nil {
		w.AddAffinity(*d.Affinity)
	}
	if len(d.Choices) == 0 {
		// No real server takes new connections: the node's stack answers
		// the connection itself.
		f.Verdict, f.DecidedBy = trace.VerdictReject, &ref
		return []trace.ChainExit{{Flow: f, Exit: trace.ExitDrop}}, nil
	}
	if err := w.CountBranches(len(d.Choices)); err != nil {
		return nil, err
	}
	out := make([]trace.ChainExit, 0, len(d.Choices))
	for _, c := range d.Choices {
		b := *f
		b.Prob = f.Prob * c.Probability
		b.Endpoint = &trace.Endpoint{IP: c.Addr, Port: c.Port, Chain: ref.Chain}
		b.Dst, b.DPort = c.Addr, c.Port
		b.DecidedBy = &ref
		if b.Verdict == trace.VerdictAccept {
			b.Verdict = ""
		}
		b.IPVS = &trace.IPVSConn{Proto: d.Protocol, Addr: d.Addr, Port: d.Port}
		out = append(out, trace.ChainExit{Flow: &b, Exit: trace.ExitResent})
	}
	return out, nil
}
