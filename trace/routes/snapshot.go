package routes

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Section is one named dump of a node: a route script section, or a saved
// file. An unknown Name is detected from the content.
type Section struct {
	Name string
	Data []byte
}

// The patterns that tell sections apart are compiled on first use, not at
// every start of the binary (simulate of an iptables dump never needs them).
var (
	ipRuleRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\d+:\s+(not\s+)?from\s`) })
	ipLinkRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\d+: [^ ]+: <`) })
	fibHeadRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(Main|Local|Id \d+):$`) })
	procRtRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^Iface\s+Destination\s+Gateway`) })
	ipv6RtRE  = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[0-9a-f]{32} [0-9a-f]{2} [0-9a-f]{32} [0-9a-f]{2} [0-9a-f]{32} `)
	})
	ifInet6RE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[0-9a-f]{32} [0-9a-f]{2,8} [0-9a-f]{2} [0-9a-f]{2} [0-9a-f]{2}\s+\S+$`)
	})
	ipAddrLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^\s+inet6? `) })
)

// DetectSection names what data is by its first line: one of the Section*
// names, or "" when it is none of them. ip -6 rule's output cannot be told
// from ip rule's when it has no addresses; it is taken as IPv4.
func DetectSection(data []byte) string {
	first := ""
	_ = eachLine(data[:min(len(data), maxLineLen)], func(_ int, line string) error {
		if first == "" && strings.TrimSpace(line) != "" {
			first = line
		}
		return nil
	})
	first = strings.TrimRight(first, " \t")
	switch {
	case first == "":
		return ""
	case procRtRE().MatchString(first):
		return SectionProcRoute
	case fibHeadRE().MatchString(first):
		return SectionProcFibTrie
	case ipv6RtRE().MatchString(first):
		return SectionProcIPv6Route
	case ifInet6RE().MatchString(first):
		return SectionProcIfInet6
	case strings.HasPrefix(first, "link "):
		return SectionSysClassNet
	case ipRuleRE().MatchString(first):
		if strings.Contains(first, "::") || strings.Contains(strings.SplitN(first, "lookup", 2)[0], ":/") {
			return SectionIP6Rule
		}
		return SectionIPRule
	case ipLinkRE().MatchString(first):
		if ipAddrLine().Match(data) {
			return SectionIPAddr
		}
		return SectionIPLink
	}
	f := strings.Fields(first)
	i := 0
	if _, ok := routeTypes[f[0]]; ok && len(f) > 1 {
		i = 1
	}
	if p, err := parsePrefix(f[i], 0); err == nil {
		if f[i] != "default" && p.Addr().Is6() {
			return SectionIP6Route
		}
		return SectionIPRoute
	}
	return ""
}

// Parse builds a node's Snapshot from its route sections. ip's views win
// over /proc and /sys where both exist (they carry tables, types and
// kinds); without ip the main table comes from /proc/net/route with the
// route types of /proc/net/fib_trie, the local table and the other tables'
// prefixes from fib_trie, addresses from fib_trie and if_inet6, kinds from
// sysfs. A section that cannot be read at all is an error only when it is
// beyond the size bounds; otherwise its problems are warnings.
func Parse(sections []Section) (*Snapshot, error) {
	s := &Snapshot{}
	byName := map[string][]byte{}
	for _, sec := range sections {
		name := sec.Name
		if !slices.Contains(SectionNames, name) {
			name = DetectSection(sec.Data)
			if name == "" {
				s.Warnings = append(s.Warnings, fmt.Sprintf("section %s is not a route or interface dump; skipped", quote(sec.Name)))
				continue
			}
		}
		if _, dup := byName[name]; dup {
			s.Warnings = append(s.Warnings, fmt.Sprintf("two %s sections; the later one is used", name))
		}
		byName[name] = sec.Data
	}
	for _, name := range SectionNames {
		if _, ok := byName[name]; ok {
			s.Sections = append(s.Sections, name)
		}
	}
	warn := func(ws []string) { s.Warnings = append(s.Warnings, ws...) }
	wrap := func(name string, err error) error { return fmt.Errorf("route section %s: %w", name, err) }

	// Routes.
	var v4, v6 []Route
	if data, ok := byName[SectionIPRoute]; ok {
		rs, ws, err := ParseIPRoute(data, 4)
		if err != nil {
			return nil, wrap(SectionIPRoute, err)
		}
		warn(ws)
		for _, r := range rs {
			if r.Dst.Addr().Is4() {
				v4 = append(v4, r)
			} else if _, has6 := byName[SectionIP6Route]; !has6 {
				v6 = append(v6, r)
			}
		}
		s.RoutesFrom4 = FromIP
	}
	if data, ok := byName[SectionIP6Route]; ok {
		rs, ws, err := ParseIPRoute(data, 6)
		if err != nil {
			return nil, wrap(SectionIP6Route, err)
		}
		warn(ws)
		v6 = v6[:0]
		for _, r := range rs {
			if r.Dst.Addr().Is6() {
				v6 = append(v6, r)
			}
		}
		s.RoutesFrom6 = FromIP
	}
	var fib []FibEntry
	if data, ok := byName[SectionProcFibTrie]; ok {
		es, ws, err := ParseFibTrie(data)
		if err != nil {
			return nil, wrap(SectionProcFibTrie, err)
		}
		warn(ws)
		fib = es
		s.Tables = FibTables(data)
	}
	if s.RoutesFrom4 == "" {
		if data, ok := byName[SectionProcRoute]; ok {
			rs, ws, err := ParseProcRoute(data)
			if err != nil {
				return nil, wrap(SectionProcRoute, err)
			}
			warn(ws)
			v4 = mergeFib(rs, fib)
			s.RoutesFrom4 = FromProc
		} else if len(fib) > 0 {
			v4 = mergeFib(nil, fib)
			s.RoutesFrom4 = FromProc
		}
	}
	if s.RoutesFrom6 == "" && len(v6) > 0 {
		s.RoutesFrom6 = FromIP
	}
	if s.RoutesFrom6 == "" {
		if data, ok := byName[SectionProcIPv6Route]; ok {
			rs, ws, err := ParseProcIPv6Route(data)
			if err != nil {
				return nil, wrap(SectionProcIPv6Route, err)
			}
			warn(ws)
			v6 = rs
			s.RoutesFrom6 = FromProc
		}
	}
	s.Routes = append(v4, v6...)
	for _, r := range s.Routes {
		if !slices.Contains(s.Tables, r.Table) && r.Dst.Addr().Is4() && len(s.Tables) < 4096 {
			s.Tables = append(s.Tables, r.Table)
		}
	}

	// Rules.
	for _, x := range []struct {
		name   string
		family int
		dst    *[]Rule
	}{{SectionIPRule, 4, &s.Rules4}, {SectionIP6Rule, 6, &s.Rules6}} {
		data, ok := byName[x.name]
		if !ok {
			continue
		}
		rs, ws, err := ParseIPRule(data, x.family)
		if err != nil {
			return nil, wrap(x.name, err)
		}
		warn(ws)
		if len(ws) > 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: %d rules could not be read; lookups may differ from the node's", x.name, len(ws)))
		}
		if rs == nil {
			rs = []Rule{}
		}
		*x.dst = rs
	}
	if _, ok := byName[SectionIPRule]; !ok && s.RoutesFrom4 != "" {
		other := []string{}
		for _, t := range s.Tables {
			if t != TableLocal && t != TableMain && t != TableDefault {
				other = append(other, t)
			}
		}
		msg := "the node gave no ip rule (no ip in the image): lookups use the local, main and default tables"
		if len(other) > 0 {
			// Other tables are only used through rules: the lookups
			// may well be wrong.
			msg += fmt.Sprintf("; tables %s exist, so policy rules probably send some packets elsewhere", strings.Join(other, ", "))
			s.Warnings = append(s.Warnings, msg)
		} else {
			s.Notes = append(s.Notes, msg)
		}
	}

	// Interfaces.
	if err := s.buildInterfaces(byName, warn); err != nil {
		return nil, err
	}
	s.index()
	return s, nil
}

// mergeFib joins /proc/net/route's main table with fib_trie: the route
// types come from fib_trie (/proc/net/route shows a blackhole, an
// unreachable, a prohibit and a throw route alike), and fib_trie's other
// tables (local, default, Id N) are added as routes without device or
// gateway, which only ip shows.
func mergeFib(main []Route, fib []FibEntry) []Route {
	type key struct {
		p   netip.Prefix
		tos uint8
	}
	mainTypes := map[key][]RouteType{}
	for _, e := range fib {
		if e.Table == TableMain {
			k := key{e.Dst, e.TOS}
			mainTypes[k] = append(mainTypes[k], e.Type)
		}
	}
	out := make([]Route, 0, len(main)+len(fib))
	for _, r := range main {
		if ts := mainTypes[key{r.Dst, r.TOS}]; r.Dev == "" && len(ts) > 0 {
			for _, t := range ts {
				if t != Unicast {
					r.Type = t
					break
				}
			}
		}
		out = append(out, r)
	}
	for _, e := range fib {
		if e.Table == TableMain && len(main) > 0 {
			continue
		}
		out = append(out, Route{Table: e.Table, Type: e.Type, Dst: e.Dst, Scope: e.Scope, TOS: e.TOS, Source: FromProc})
	}
	return out
}

func (s *Snapshot) buildInterfaces(byName map[string][]byte, warn func([]string)) error {
	var fromIP []Interface
	ipName := ""
	for _, name := range []string{SectionIPAddr, SectionIPLink} {
		if data, ok := byName[name]; ok {
			ifs, ws, err := ParseIPLink(data)
			if err != nil {
				return fmt.Errorf("route section %s: %w", name, err)
			}
			warn(ws)
			fromIP, ipName = ifs, name
			break
		}
	}
	var sys []SysfsLink
	if data, ok := byName[SectionSysClassNet]; ok {
		ls, ws, err := ParseSysClassNet(data)
		if err != nil {
			return fmt.Errorf("route section %s: %w", SectionSysClassNet, err)
		}
		warn(ws)
		sys = ls
	}
	byIP := map[string]*Interface{}
	for i := range fromIP {
		byIP[fromIP[i].Name] = &fromIP[i]
	}
	ifs := fromIP
	for _, l := range sys {
		ifc, ok := byIP[l.Name]
		if !ok {
			if len(ifs) >= maxItems {
				break
			}
			ifs = append(ifs, l.Interface())
			continue
		}
		// ip's view, completed from sysfs.
		if ifc.Kind == KindUnknown {
			ifc.Kind, ifc.KindFrom = l.Classify(), FromSysfs
		}
		if ifc.Master == "" {
			ifc.Master = l.Master
		}
		if ifc.Link == 0 && l.IfLink != l.Index {
			ifc.Link = l.IfLink
		}
		ifc.Type = l.Type
		if ifc.SlaveKind == "" && l.has("brport") {
			ifc.SlaveKind = "bridge_slave"
		}
	}
	// Kinds ip -d link did not print (ip without -d, or a physical
	// device: ip prints no kind for it) and no sysfs to ask.
	for i := range ifs {
		if ifs[i].Kind == KindUnknown && ifs[i].Name == "lo" {
			ifs[i].Kind = KindLoopback
		}
	}
	if ipName != SectionIPAddr {
		s.addressesWithoutIP(ifs, byName, warn)
	}
	slices.SortStableFunc(ifs, func(a, b Interface) int { return cmp.Compare(a.Index, b.Index) })
	s.Interfaces = ifs
	return nil
}

// addressesWithoutIP gives interfaces their IPv6 addresses from
// /proc/net/if_inet6 when ip addr is missing. IPv4 addresses have no
// per-device file: fib_trie's local table lists them (Snapshot.LocalAddrs
// and every lookup use it), but which device holds one cannot be told
// reliably (two interfaces in one subnet, a /32 on a tunnel), so they are
// not put on interfaces.
func (s *Snapshot) addressesWithoutIP(ifs []Interface, byName map[string][]byte, warn func([]string)) {
	at := map[string]int{}
	for i, ifc := range ifs {
		at[ifc.Name] = i
	}
	data, ok := byName[SectionProcIfInet6]
	if !ok {
		return
	}
	as, ws, err := ParseIfInet6(data)
	if err != nil {
		warn([]string{fmt.Sprintf("route section %s: %v", SectionProcIfInet6, err)})
		return
	}
	warn(ws)
	for _, a := range as {
		if i, ok := at[a.Dev]; ok && len(ifs[i].Addrs) < 4096 {
			ifs[i].Addrs = append(ifs[i].Addrs, a.Addr)
		}
	}
}
