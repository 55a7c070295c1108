package conntrack

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
)

// Frontend is one address a Service is reached at — a ClusterIP, a node
// address with a NodePort, a load-balancer or external IP — with its port
// and protocol: what a connection's original destination is.
type Frontend struct {
	Addr  netip.Addr
	Port  uint16
	Proto Proto
}

func (f Frontend) String() string {
	return netip.AddrPortFrom(f.Addr, f.Port).String() + "/" + f.Proto.String()
}

func (f Frontend) addrPort() netip.AddrPort { return netip.AddrPortFrom(f.Addr, f.Port) }

// Options bound and shape what an Aggregator keeps.
type Options struct {
	// Clients keeps, per backend, the client addresses and their connection
	// counts (--show-clients). Off, only counts are kept.
	Clients bool
	// MaxClients bounds the clients kept per backend (default 1000); the
	// connections of further clients are counted in OtherClients.
	MaxClients int
	// MaxBackends bounds the backends kept per frontend (default 1024); the
	// connections to further backends are counted in OtherBackends.
	MaxBackends int
}

const (
	defaultMaxClients  = 1000
	defaultMaxBackends = 1024
	// maxStates bounds the distinct state words kept per backend; a state
	// table has a dozen, and a hostile input gets the rest counted as
	// "OTHER".
	maxStates = 32
)

// State words an Aggregator uses for protocols without states of their
// own (UDP, ICMP, ...).
const (
	StateUnreplied = "UNREPLIED" // no reply seen
	StateReplied   = "REPLIED"   // a reply seen, not (yet) assured
	StateAssured   = "ASSURED"   // traffic both ways, kept under pressure
	StateOther     = "OTHER"     // states beyond maxStates
)

// FrontendCount is what the kernel did with the connections to one
// frontend.
type FrontendCount struct {
	Frontend Frontend
	// Connections is the number of entries whose original destination is
	// the frontend (IPVS templates not included).
	Connections int
	// Backends are the addresses the connections were translated to (the
	// reply tuple's source; IPVS's destination), sorted.
	Backends []BackendCount
	// OtherBackends counts connections to backends beyond
	// Options.MaxBackends.
	OtherBackends int
	// Templates counts IPVS persistence templates (session affinity) for
	// the frontend; they are not connections.
	Templates int
}

// BackendCount is the connections of one frontend that went to one
// backend.
type BackendCount struct {
	Backend     netip.AddrPort
	Connections int
	// States counts the connections by state: the TCP/SCTP/DCCP or IPVS
	// state, or for other protocols StateUnreplied, StateReplied or
	// StateAssured.
	States map[string]int
	// Unreplied and Assured count the connections with those flags
	// (conntrack only).
	Unreplied, Assured int
	// Untranslated: the backend is the frontend itself — the kernel did not
	// rewrite these connections' destination (no DNAT on this node).
	Untranslated bool
	// Clients are the client addresses (original source), most connections
	// first; kept only with Options.Clients.
	Clients []ClientCount
	// OtherClients counts connections of clients beyond Options.MaxClients.
	OtherClients int
}

// ClientCount is one client address and its connections.
type ClientCount struct {
	Addr        netip.Addr
	Connections int
}

// Backend returns the count for one backend.
func (f *FrontendCount) Backend(b netip.AddrPort) (BackendCount, bool) {
	i, ok := slices.BinarySearchFunc(f.Backends, b, func(x BackendCount, t netip.AddrPort) int { return x.Backend.Compare(t) })
	if !ok {
		return BackendCount{}, false
	}
	return f.Backends[i], true
}

// Stale returns the backends that are not among endpoints: connections the
// kernel keeps sending to an address that is no longer an endpoint of the
// Service (the stale UDP entry that black-holes DNS after a pod moves).
// Untranslated connections are not stale and are left out.
func (f *FrontendCount) Stale(endpoints []netip.AddrPort) []BackendCount {
	var out []BackendCount
	for _, b := range f.Backends {
		if b.Untranslated {
			continue
		}
		if !slices.ContainsFunc(endpoints, func(ep netip.AddrPort) bool { return unmapAP(ep) == b.Backend }) {
			out = append(out, b)
		}
	}
	return out
}

// ClearCommand is the conntrack command, run on the node (with NET_ADMIN
// in its network namespace), that deletes the frontend's entries to one
// backend — how to clear a stale entry. Its arguments are plain addresses
// and numbers, never text from the table.
func ClearCommand(f Frontend, backend netip.AddrPort) []string {
	fam := "ipv4"
	if f.Addr.Is6() {
		fam = "ipv6"
	}
	return []string{"conntrack", "-D", "-f", fam, "-p", f.Proto.String(),
		"--orig-dst", f.Addr.String(), "--orig-port-dst", strconv.Itoa(int(f.Port)),
		"--reply-src", backend.Addr().Unmap().String(), "--reply-port-src", strconv.Itoa(int(backend.Port()))}
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Aggregator counts entries for a fixed set of frontends. It keeps nothing
// about entries to other destinations, so its memory does not grow with
// the table.
type Aggregator struct {
	opts   Options
	order  []Frontend
	fronts map[Frontend]*frontAgg
	// Matched is the number of entries (and IPVS templates) that hit a
	// frontend.
	Matched int
}

type frontAgg struct {
	connections   int
	backends      map[netip.AddrPort]*backendAgg
	otherBackends int
	templates     int
}

type backendAgg struct {
	connections        int
	states             map[string]int
	unreplied, assured int
	clients            map[netip.Addr]int
	otherClients       int
}

// NewAggregator counts connections to frontends (duplicates are counted
// once).
func NewAggregator(frontends []Frontend, opts Options) *Aggregator {
	if opts.MaxClients <= 0 {
		opts.MaxClients = defaultMaxClients
	}
	if opts.MaxBackends <= 0 {
		opts.MaxBackends = defaultMaxBackends
	}
	a := &Aggregator{opts: opts, fronts: make(map[Frontend]*frontAgg, len(frontends))}
	for _, f := range frontends {
		f.Addr = f.Addr.Unmap()
		if _, dup := a.fronts[f]; dup {
			continue
		}
		a.fronts[f] = &frontAgg{backends: map[netip.AddrPort]*backendAgg{}}
		a.order = append(a.order, f)
	}
	return a
}

// wants tells whether an original destination is one of the frontends; a
// protocol without ports (invalid addr) is never one.
func (a *Aggregator) wants(p Proto, dst netip.Addr, port uint16) bool {
	if !dst.IsValid() {
		return false
	}
	_, ok := a.fronts[Frontend{Addr: dst, Port: port, Proto: p}]
	return ok
}

// Add counts a conntrack entry if its original destination is one of the
// frontends, and reports whether it was.
func (a *Aggregator) Add(e *Entry) bool {
	f := Frontend{Addr: e.Original.Dst, Port: e.Original.DstPort, Proto: e.Proto}
	fa := a.fronts[f]
	if fa == nil {
		return false
	}
	a.Matched++
	fa.connections++
	backend := e.Reply.SrcAddrPort()
	state := e.State
	switch {
	case state != "":
	case e.Unreplied:
		state = StateUnreplied
	case e.Assured:
		state = StateAssured
	default:
		state = StateReplied
	}
	b := a.backend(fa, backend)
	if b == nil {
		return true
	}
	b.count(state, e.Original.Src, a.opts)
	if e.Unreplied {
		b.unreplied++
	}
	if e.Assured {
		b.assured++
	}
	return true
}

// AddIPVS counts an IPVS connection (or template) if its virtual address is
// one of the frontends, and reports whether it was.
func (a *Aggregator) AddIPVS(c *IPVSConn) bool {
	f := Frontend{Addr: c.Virtual.Addr(), Port: c.Virtual.Port(), Proto: c.Proto}
	fa := a.fronts[f]
	if fa == nil {
		return false
	}
	a.Matched++
	if c.Template() {
		fa.templates++
		return true
	}
	fa.connections++
	if b := a.backend(fa, c.Dest); b != nil {
		b.count(c.State, c.Client.Addr(), a.opts)
	}
	return true
}

func (a *Aggregator) backend(fa *frontAgg, addr netip.AddrPort) *backendAgg {
	b := fa.backends[addr]
	if b == nil {
		if len(fa.backends) >= a.opts.MaxBackends {
			fa.otherBackends++
			return nil
		}
		b = &backendAgg{states: map[string]int{}}
		fa.backends[addr] = b
	}
	return b
}

func (b *backendAgg) count(state string, client netip.Addr, opts Options) {
	b.connections++
	if _, ok := b.states[state]; !ok && len(b.states) >= maxStates {
		state = StateOther
	}
	b.states[state]++
	if !opts.Clients {
		return
	}
	if b.clients == nil {
		b.clients = map[netip.Addr]int{}
	}
	if _, ok := b.clients[client]; !ok && len(b.clients) >= opts.MaxClients {
		b.otherClients++
		return
	}
	b.clients[client]++
}

// Result returns the counts per frontend, in the order the frontends were
// given; frontends without connections are included with zero counts.
func (a *Aggregator) Result() []FrontendCount {
	out := make([]FrontendCount, 0, len(a.order))
	for _, f := range a.order {
		fa := a.fronts[f]
		fc := FrontendCount{Frontend: f, Connections: fa.connections, OtherBackends: fa.otherBackends, Templates: fa.templates}
		for addr, b := range fa.backends {
			bc := BackendCount{
				Backend:      addr,
				Connections:  b.connections,
				States:       maps(b.states),
				Unreplied:    b.unreplied,
				Assured:      b.assured,
				Untranslated: addr == f.addrPort(),
				OtherClients: b.otherClients,
			}
			for c, n := range b.clients {
				bc.Clients = append(bc.Clients, ClientCount{Addr: c, Connections: n})
			}
			slices.SortFunc(bc.Clients, func(x, y ClientCount) int {
				return cmp.Or(cmp.Compare(y.Connections, x.Connections), x.Addr.Compare(y.Addr))
			})
			fc.Backends = append(fc.Backends, bc)
		}
		slices.SortFunc(fc.Backends, func(x, y BackendCount) int { return x.Backend.Compare(y.Backend) })
		out = append(out, fc)
	}
	return out
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Observation is what a node's table says about a set of frontends.
type Observation struct {
	// Stats describes the table read: its format, entries, what was
	// skipped, whether it was cut.
	Stats Stats
	// Matched is the number of entries that hit a frontend.
	Matched   int
	Frontends []FrontendCount
}

// Observe reads a whole table — /proc/net/nf_conntrack, `conntrack -L`
// (with or without -o extended) or /proc/net/ip_vs_conn, told apart by
// content — and counts the connections to frontends.
//
// It reads a conntrack line only as far as its original destination unless
// that is a frontend: other entries are counted in Stats.Entries but not
// checked to the end (a line malformed after its destination is then not in
// Stats.Skipped). The counts are those of a full parse (FuzzObserve checks).
func Observe(r io.Reader, frontends []Frontend, opts Options) (*Observation, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(4 << 10)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	agg := NewAggregator(frontends, opts)
	var st Stats
	switch Detect(head) {
	case FormatIPVS:
		st, err = ScanIPVS(br, func(c *IPVSConn) error { agg.AddIPVS(c); return nil })
	case FormatXML:
		return nil, fmt.Errorf("%w: this is conntrack's XML output (-o xml); collect `conntrack -L` or /proc/net/nf_conntrack instead", ErrMalformed)
	default:
		cr := NewReader(br)
		cr.want = agg.wants
		st, err = scan(cr, func(e *Entry) error { agg.Add(e); return nil })
	}
	if err != nil {
		return nil, err
	}
	return &Observation{Stats: st, Matched: agg.Matched, Frontends: agg.Result()}, nil
}
