package routes

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sectionSeeds are every recorded section of every layout, by name, plus
// the published transcriptions.
func sectionSeeds(f *testing.F) map[string][][]byte {
	out := map[string][][]byte{}
	files, _ := filepath.Glob("testdata/*.txt")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, s := range splitScript(f, b) {
			out[s.Name] = append(out[s.Name], s.Data)
		}
	}
	pub, _ := filepath.Glob("testdata/published/*")
	for _, file := range pub {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if name := DetectSection(b); name != "" {
			out[name] = append(out[name], b)
		}
	}
	return out
}

func addSeeds(f *testing.F, names ...string) {
	seeds := sectionSeeds(f)
	for _, n := range names {
		for _, s := range seeds[n] {
			f.Add(s)
		}
	}
	f.Add([]byte(""))
}

// lines counts the non-blank lines a parser must account for.
func lines(in []byte, keep func(string) bool) int {
	n := 0
	for _, l := range strings.Split(string(in), "\n") {
		if strings.TrimSpace(l) != "" && keep(l) {
			n++
		}
	}
	return n
}

func FuzzParseIPRoute(f *testing.F) {
	addSeeds(f, SectionIPRoute, SectionIP6Route)
	f.Add([]byte("10.1.0.0/24 proto static\n\tnexthop via 10.0.0.2 dev eth0 weight 1\n\tnexthop via 10.0.0.3 dev eth1 weight 2 onlink\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rs, ws, err := ParseIPRoute(in, 0)
		if err != nil {
			return
		}
		// every route line is a route or a warning: nothing is lost.
		want := lines(in, func(l string) bool {
			f := strings.Fields(l)
			return !(l[0] == ' ' || l[0] == '\t') || (f[0] != "nexthop" && f[0] != "cache")
		})
		if want > len(rs)+len(ws) && len(ws) < maxWarnings {
			t.Fatalf("%d lines, %d routes, %d warnings", want, len(rs), len(ws))
		}
		s := &Snapshot{Routes: rs}
		for _, r := range rs {
			_ = r.String()
			s.Lookup(Query{Dst: r.Dst.Addr()})
		}
	})
}

func FuzzParseIPRule(f *testing.F) {
	addSeeds(f, SectionIPRule, SectionIP6Rule)
	f.Add([]byte("0:\tfrom all lookup local\n5:\tnot from 10.0.0.0/8 to 1.2.3.4 fwmark 0x4000/0x4000 iif eth0 goto 7\n7:\tfrom all suppress_prefixlength 0 lookup main\n8:\tfrom all uidrange 0-100 unreachable\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rs, ws, err := ParseIPRule(in, 4)
		if err != nil {
			return
		}
		if want := lines(in, func(string) bool { return true }); want > len(rs)+len(ws) && len(ws) < maxWarnings {
			t.Fatalf("%d lines, %d rules, %d warnings", want, len(rs), len(ws))
		}
		s := &Snapshot{Rules4: rs, Routes: []Route{{Table: TableMain, Type: Unicast, Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "eth0"}}}
		s.Lookup(Query{Dst: netip.MustParseAddr("10.1.2.3"), Src: netip.MustParseAddr("10.0.0.1"), IIF: "eth0", Mark: 0x4000})
	})
}

func FuzzParseIPLink(f *testing.F) {
	addSeeds(f, SectionIPLink, SectionIPAddr)
	f.Fuzz(func(t *testing.T, in []byte) {
		ifs, ws, err := ParseIPLink(in)
		if err != nil {
			return
		}
		heads := lines(in, func(l string) bool { return l[0] != ' ' && l[0] != '\t' })
		if heads > len(ifs)+len(ws) && len(ws) < maxWarnings {
			t.Fatalf("%d interfaces, %d parsed, %d warnings", heads, len(ifs), len(ws))
		}
		for _, ifc := range ifs {
			if !validIfName(ifc.Name) {
				t.Fatalf("bad name %q kept", ifc.Name)
			}
		}
	})
}

func FuzzParseProcRoute(f *testing.F) {
	addSeeds(f, SectionProcRoute)
	f.Fuzz(func(t *testing.T, in []byte) {
		rs, _, err := ParseProcRoute(in)
		if err == nil {
			for _, r := range rs {
				if !r.Dst.IsValid() || !r.Dst.Addr().Is4() {
					t.Fatalf("bad route %+v", r)
				}
			}
		}
	})
}

func FuzzParseProcIPv6Route(f *testing.F) {
	addSeeds(f, SectionProcIPv6Route)
	f.Fuzz(func(t *testing.T, in []byte) { _, _, _ = ParseProcIPv6Route(in) })
}

func FuzzParseFibTrie(f *testing.F) {
	addSeeds(f, SectionProcFibTrie)
	f.Fuzz(func(t *testing.T, in []byte) {
		es, _, err := ParseFibTrie(in)
		if err == nil {
			for _, e := range es {
				if e.Table == "" || !e.Dst.IsValid() {
					t.Fatalf("bad entry %+v", e)
				}
			}
		}
		_ = FibTables(in)
	})
}

func FuzzParseIfInet6(f *testing.F) {
	addSeeds(f, SectionProcIfInet6)
	f.Fuzz(func(t *testing.T, in []byte) { _, _, _ = ParseIfInet6(in) })
}

func FuzzParseSysClassNet(f *testing.F) {
	addSeeds(f, SectionSysClassNet)
	f.Fuzz(func(t *testing.T, in []byte) {
		ls, _, err := ParseSysClassNet(in)
		if err == nil {
			for _, l := range ls {
				_ = l.Interface()
			}
		}
	})
}

func FuzzParseRouteGet(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.routeget.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var cases []routeGetCase
		if err := json.Unmarshal(b, &cases); err != nil {
			f.Fatal(err)
		}
		for i, c := range cases {
			if i%8 == 0 {
				f.Add([]byte(c.Get))
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		g, err := ParseRouteGet(in)
		if err == nil {
			_ = g.Verdict()
		}
	})
}

// FuzzParse feeds one recorded layout with one section replaced by the
// fuzzer's bytes (name chosen by the first byte) through Parse, Lookup,
// Hop and Detect.
func FuzzParse(f *testing.F) {
	base, err := os.ReadFile("testdata/calico.txt")
	if err != nil {
		f.Fatal(err)
	}
	secs := splitScript(f, base)
	for i, s := range secs {
		f.Add(byte(i), s.Data)
	}
	f.Fuzz(func(t *testing.T, which byte, in []byte) {
		mixed := append([]Section{}, secs...)
		mixed[int(which)%len(mixed)] = Section{Name: mixed[int(which)%len(mixed)].Name, Data: in}
		if which >= 128 {
			mixed = append(mixed, Section{Name: "unnamed", Data: bytes.Clone(in)})
		}
		s, err := Parse(mixed)
		if err != nil {
			return
		}
		for _, a := range []string{"10.65.0.2", "10.65.1.5", "8.8.8.8", "fd00:65::2"} {
			res := s.Lookup(Query{Dst: netip.MustParseAddr(a)})
			_ = s.Hop("node-a", res, nil).Line()
		}
		_ = Detect(Facts{Snapshot: s}).Names()
	})
}
