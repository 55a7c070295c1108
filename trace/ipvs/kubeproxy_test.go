package ipvs_test

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace/internal/kpfixture"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipset"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs/internal/ipvsfmt"
)

var update = flag.Bool("update", false, "rewrite the kube-proxy fixtures' ip_vs and ipvsadm.save from fake.json")

const kubeProxyFixtures = "../../testdata/ipvs/kube-proxy"

// ipvsadm's -b names for the IP_VS_SVC_F_SCHED2 flag kube-proxy sets for "mh".
var schedFlag2 = map[string]string{"mh": "mh-port", "sh": "sh-port"}

// tableFromState is the IPVS table a node holds for kube-proxy's fake
// state, ordered as ipvsadm sorts it: family, protocol number, address,
// port; real servers by address and port.
func tableFromState(t *testing.T, st kpfixture.IPVSState) *ipvs.Table {
	t.Helper()
	tab := &ipvs.Table{}
	for _, v := range st.VirtualServers {
		addr, err := netip.ParseAddr(v.Address)
		if err != nil {
			t.Fatalf("virtual server address %q: %v", v.Address, err)
		}
		vs := &ipvs.VirtualServer{
			Protocol: v.Protocol, Addr: addr, Port: v.Port, IPv6: addr.Is6(), Scheduler: v.Scheduler,
			Persistent: v.Persistent(), NetmaskBits: 32,
		}
		if vs.IPv6 {
			vs.NetmaskBits = 128
		}
		if vs.Persistent {
			vs.Timeout = v.Timeout
		}
		if v.Flags&0x10 != 0 {
			vs.SchedFlags = schedFlag2[v.Scheduler]
			if vs.SchedFlags == "" {
				vs.SchedFlags = "flag-2"
			}
		}
		for _, r := range v.RealServers {
			ra, err := netip.ParseAddr(r.Address)
			if err != nil {
				t.Fatalf("real server address %q: %v", r.Address, err)
			}
			vs.Reals = append(vs.Reals, &ipvs.RealServer{
				Addr: ra, Port: r.Port, Forward: ipvs.Masq, Weight: r.Weight,
				ActiveConn: uint64(r.ActiveConn), InactConn: uint64(r.InactiveConn),
			})
		}
		slices.SortFunc(vs.Reals, func(a, b *ipvs.RealServer) int {
			if c := a.Addr.Compare(b.Addr); c != 0 {
				return c
			}
			return int(a.Port) - int(b.Port)
		})
		tab.Services = append(tab.Services, vs)
	}
	protoNum := map[string]int{ipvs.TCP: 6, ipvs.UDP: 17, ipvs.SCTP: 132}
	slices.SortStableFunc(tab.Services, func(a, b *ipvs.VirtualServer) int {
		if a.IPv6 != b.IPv6 {
			if a.IPv6 {
				return 1
			}
			return -1
		}
		if c := protoNum[a.Protocol] - protoNum[b.Protocol]; c != 0 {
			return c
		}
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return tab
}

// restoreText writes sets (kube-proxy's notation) as ipset restore input
// for the package's own parser, as kube-proxy's ipset runner creates them.
func restoreText(sets []kpfixture.IPVSSet) string {
	var b strings.Builder
	for _, s := range sets {
		if s.Type == string(ipset.BitmapPort) {
			fmt.Fprintf(&b, "create %s %s range %s\n", s.Name, s.Type, s.PortRange)
		} else {
			fmt.Fprintf(&b, "create %s %s family %s\n", s.Name, s.Type, s.Family)
		}
		for _, e := range s.Entries {
			fmt.Fprintf(&b, "add %s %s\n", s.Name, e)
		}
	}
	return b.String()
}

// members is a set's content as comparable text, independent of how a
// tool spells an element ("10.0.0.1" and "10.0.0.1/32" in a net dimension).
func members(s *ipset.Set) []string {
	var out []string
	for _, m := range s.Members {
		var parts []string
		for _, p := range m.Elem {
			switch p.Kind {
			case ipset.KindIP, ipset.KindNet:
				parts = append(parts, p.Prefix.String())
			case ipset.KindPort:
				parts = append(parts, fmt.Sprintf("%d:%d", p.Proto, p.Port))
			default:
				parts = append(parts, p.Name)
			}
		}
		out = append(out, strings.Join(parts, ","))
	}
	sort.Strings(out)
	return out
}

type realKey struct {
	Addr   netip.Addr
	Port   uint16
	Weight int
}

func realsOf(v *ipvs.VirtualServer) []realKey {
	var out []realKey
	for _, r := range v.Reals {
		out = append(out, realKey{r.Addr, r.Port, r.Weight})
	}
	slices.SortFunc(out, func(a, b realKey) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out
}

func expectedReals(t *testing.T, v *kpfixture.IPVSVirtualServer, withWeight bool) []realKey {
	var out []realKey
	for _, r := range v.RealServers {
		k := realKey{netip.MustParseAddr(r.Address), r.Port, r.Weight}
		if !withWeight {
			k.Weight = 0
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b realKey) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out
}

func lookup(tab *ipvs.Table, v *kpfixture.IPVSVirtualServer) *ipvs.VirtualServer {
	a, err := netip.ParseAddr(v.Address)
	if err != nil {
		return nil
	}
	return tab.Lookup(v.Protocol, a, v.Port)
}

// TestKubeProxyFixtures reads every state recorded from kube-proxy's IPVS
// proxier tests in the forms a node prints, with this repository's
// parsers, and checks (1) that the parsed IPVS table and ipsets are kube-
// proxy's fake state, and (2) that every expectation the upstream test
// asserted after that sync holds for what was parsed — as upstream's own
// helpers check it.
func TestKubeProxyFixtures(t *testing.T) {
	fixtures := kpfixture.LoadIPVS(t, kubeProxyFixtures)
	kinds := map[string]int{}
	perVersion := map[string][3]int{} // tests, syncs, expectations
	tests := map[string]bool{}
	for _, fx := range fixtures {
		rel, _ := filepath.Rel(kubeProxyFixtures, fx.Dir)
		st := fx.State
		pv := perVersion[st.KubernetesVersion]
		if key := st.KubernetesVersion + " " + strings.SplitN(st.Test, "/", 2)[0]; !tests[key] {
			tests[key] = true
			pv[0]++
		}
		pv[1]++
		pv[2] += len(fx.Expectations)
		perVersion[st.KubernetesVersion] = pv
		t.Run(rel, func(t *testing.T) {
			want := tableFromState(t, st)
			tables := map[ipvs.Format]*ipvs.Table{}
			for file, form := range map[string]ipvs.Format{"ip_vs": ipvs.FormatProc, "ipvsadm.save": ipvs.FormatSave} {
				path := filepath.Join(fx.Dir, file)
				text := ipvsfmt.String(form, want)
				if *update {
					if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (go test ./trace/ipvs -run TestKubeProxyFixtures -update writes it)", err)
				}
				if string(raw) != text {
					t.Errorf("%s is not what the formatter prints for fake.json (run with -update)", file)
				}
				got, err := ipvs.Parse(bytes.NewReader(raw))
				if err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				if got.Format != form && !(len(want.Services) == 0 && got.Format == "") {
					t.Errorf("%s: detected as %q", file, got.Format)
				}
				if diff := cmp.Diff(want.Services, got.Services, ignoreLines); diff != "" {
					t.Errorf("%s: parsed table differs from kube-proxy's fake state (-fake +parsed):\n%s", file, diff)
				}
				tables[form] = got
			}
			proc := tables[ipvs.FormatProc]

			// ipsets: real ipset save output against the fake's sets.
			raw, err := os.ReadFile(filepath.Join(fx.Dir, "ipset.save"))
			if err != nil {
				t.Fatal(err)
			}
			sets, err := ipset.Parse(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("ipset.save: %v", err)
			}
			fake, err := ipset.Parse(strings.NewReader(restoreText(st.IPSets)))
			if err != nil {
				t.Fatalf("fake ipsets: %v", err)
			}
			if len(sets.Sets) != len(fake.Sets) {
				t.Errorf("ipset.save has %d sets, the fake %d", len(sets.Sets), len(fake.Sets))
			}
			for _, fs := range fake.Sets {
				s := sets.Set(fs.Name)
				if s == nil {
					t.Errorf("ipset.save lacks set %s", fs.Name)
					continue
				}
				if s.Type != fs.Type || s.Family != fs.Family {
					t.Errorf("set %s: %s %s, fake %s %s", fs.Name, s.Type, s.Family, fs.Type, fs.Family)
				}
				if diff := cmp.Diff(members(fs), members(s)); diff != "" {
					t.Errorf("set %s (-fake +ipset.save):\n%s", fs.Name, diff)
				}
			}

			// iptables: the real dump parses, and every set it matches on
			// is in ipset.save with flags Contains understands.
			dumpFile := filepath.Join(fx.Dir, "iptables-nft.save")
			if _, err := os.Stat(dumpFile); err != nil {
				dumpFile = filepath.Join(fx.Dir, "fake.rules")
				b, _ := os.ReadFile(dumpFile)
				if !bytes.Contains(b, []byte(" -m ipvs ")) {
					t.Errorf("no iptables-nft.save, and fake.rules has no -m ipvs to explain why")
				}
			}
			f, err := os.Open(dumpFile)
			if err != nil {
				t.Fatal(err)
			}
			dump, err := iptables.Parse(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(dumpFile), err)
			}
			chainRules := map[string][]*iptables.Rule{}
			for _, tab := range []string{"nat", "filter"} {
				table := dump.Table(tab)
				if table == nil {
					continue
				}
				for _, c := range table.Chains() {
					rules, err := c.Rules()
					if err != nil {
						t.Fatalf("%s %s: %v", tab, c.Name, err)
					}
					chainRules[c.Name] = append(chainRules[c.Name], rules...)
					for _, r := range rules {
						for _, m := range r.Matches {
							if sm, ok := m.(*iptables.SetMatch); ok {
								if sets.Set(sm.Set) == nil {
									t.Errorf("line %d matches set %s, which ipset.save lacks", r.Line, sm.Set)
								}
								if _, err := ipset.ParseDirs(sm.Flags); err != nil {
									t.Errorf("line %d: %v", r.Line, err)
								}
							}
						}
					}
				}
			}

			for _, e := range fx.Expectations {
				if e.StateChanged {
					kinds["skipped: stateChanged"]++
					continue
				}
				kinds[e.Kind]++
				checkExpectation(t, e, proc, sets, chainRules)
			}
		})
	}
	var versions []string
	for v := range perVersion {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		c := perVersion[v]
		t.Logf("%s: %d tests, %d syncs, %d expectations", v, c[0], c[1], c[2])
	}
	t.Logf("expectations by kind: %v", kinds)
}

// checkExpectation checks one upstream expectation against the parsed
// node state, the way upstream's test checked it against its fakes.
func checkExpectation(t *testing.T, e kpfixture.IPVSExpectation, proc *ipvs.Table, sets *ipset.Dump, chains map[string][]*iptables.Rule) {
	t.Helper()
	where := e.Kind + " at " + e.Source
	switch e.Kind {
	case "ipvsState", "virtualServersRead":
		if e.Count != nil && *e.Count != len(proc.Services) {
			t.Errorf("%s: %d virtual servers expected, %d parsed", where, *e.Count, len(proc.Services))
		}
		if e.Kind == "ipvsState" && len(e.VirtualServers) != len(proc.Services) {
			t.Errorf("%s: %d virtual servers expected, %d parsed", where, len(e.VirtualServers), len(proc.Services))
		}
		for i := range e.VirtualServers {
			v := &e.VirtualServers[i]
			got := lookup(proc, v)
			if got == nil {
				t.Errorf("%s: no virtual server %s %s:%d", where, v.Protocol, v.Address, v.Port)
				continue
			}
			if got.Scheduler != v.Scheduler || got.Persistent != v.Persistent() || (got.Persistent && got.Timeout != v.Timeout) {
				t.Errorf("%s: %s is %s persistent=%v/%d, expected %s %v/%d", where, got, got.Scheduler, got.Persistent, got.Timeout, v.Scheduler, v.Persistent(), v.Timeout)
			}
			if diff := cmp.Diff(expectedReals(t, v, true), realsOf(got), addrEqual); diff != "" {
				t.Errorf("%s: %s real servers (-expected +parsed):\n%s", where, got, diff)
			}
		}
	case "checkIPVS":
		// upstream: the count, then for the named service the number of
		// real servers, and their address when there is one
		if *e.Count != len(proc.Services) {
			t.Errorf("%s: %d virtual servers expected, %d parsed", where, *e.Count, len(proc.Services))
		}
		if got := lookup(proc, e.VirtualServer); got != nil {
			want := expectedReals(t, e.VirtualServer, false)
			if len(got.Reals) != len(want) {
				t.Errorf("%s: %s has %d real servers, expected %d", where, got, len(got.Reals), len(want))
			} else if len(want) == 1 && (got.Reals[0].Addr != want[0].Addr || got.Reals[0].Port != want[0].Port) {
				t.Errorf("%s: %s real server %s, expected %s:%d", where, got, got.Reals[0], want[0].Addr, want[0].Port)
			}
		}
	case "realServersRead":
		got := lookup(proc, e.VirtualServer)
		if got == nil {
			t.Errorf("%s: no virtual server %s %s:%d", where, e.VirtualServer.Protocol, e.VirtualServer.Address, e.VirtualServer.Port)
			return
		}
		if diff := cmp.Diff(expectedReals(t, e.VirtualServer, true), realsOf(got), addrEqual); diff != "" {
			t.Errorf("%s: %s real servers (-read +parsed):\n%s", where, got, diff)
		}
	case "checkIPSet", "ipsetRead":
		s := sets.Set(e.Set)
		if s == nil {
			t.Errorf("%s: no set %s", where, e.Set)
			return
		}
		want, err := ipset.Parse(strings.NewReader(restoreText([]kpfixture.IPVSSet{{
			Name: s.Name, Type: string(s.Type), Family: string(s.Family), PortRange: s.Range, Entries: *e.Entries,
		}})))
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		if diff := cmp.Diff(members(want.Sets[0]), members(s)); diff != "" {
			t.Errorf("%s: set %s (-expected +ipset.save):\n%s", where, e.Set, diff)
		}
	case "checkIptables":
		rules := chains[e.Chain]
		if len(rules) != len(e.Rules) {
			t.Errorf("%s: chain %s has %d rules, expected %d", where, e.Chain, len(rules), len(e.Rules))
			return
		}
		for i, want := range e.Rules {
			r := rules[i]
			set := ""
			for _, m := range r.Matches {
				if sm, ok := m.(*iptables.SetMatch); ok {
					set = sm.Set
				}
			}
			if r.Target.Name != want.Jump || set != want.MatchSet {
				t.Errorf("%s: chain %s rule %d is %q, expected set %q jump %s", where, e.Chain, i+1, r.Text, want.MatchSet, want.Jump)
			}
		}
	default:
		t.Errorf("%s: unknown kind", where)
	}
}
