package conntrack

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// addSeeds adds the first lines of each file as one seed, and each of its
// first lines alone.
func addSeeds(f *testing.F, files ...string) {
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		lines := bytes.SplitAfter(data, []byte("\n"))
		f.Add(bytes.Join(lines[:min(len(lines), 20)], nil))
		for _, l := range lines[:min(len(lines), 8)] {
			f.Add(l)
		}
	}
}

// FuzzReader: any input reads without panicking, every entry handed out is
// consistent, and the counts add up.
func FuzzReader(f *testing.F) {
	addSeeds(f,
		filepath.Join(recorded, "nf_conntrack"),
		filepath.Join(recorded, "conntrack-L"),
		filepath.Join(recorded, "conntrack-L6-extended"))
	f.Add([]byte("ipv4     2 tcp      6 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1 [OFFLOAD] [start=Mon Jan  2 15:04:05 2006] use=1 id=5\n"))
	f.Add([]byte("conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		n := 0
		for {
			e, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error type: %v", err)
				}
				return
			}
			n++
			if !e.Original.Src.IsValid() || !e.Reply.Dst.IsValid() {
				t.Fatalf("entry with a missing address: %v", e)
			}
			if e.Original.Src.Is4() != e.Reply.Src.Is4() || (e.Family == IPv4) != e.Original.Src.Is4() {
				t.Fatalf("entry mixes families: %v", e)
			}
			if e.State != "" && len(e.State) > 32 {
				t.Fatalf("state not bounded: %d bytes", len(e.State))
			}
		}
		st := r.Stats()
		if st.Entries != n || st.Entries+st.Skipped > st.Lines {
			t.Fatalf("stats %+v after %d entries", st, n)
		}
		if len(st.Examples) > maxExamples {
			t.Fatalf("%d examples", len(st.Examples))
		}
	})
}

// FuzzIPVSReader: the same for /proc/net/ip_vs_conn.
func FuzzIPVSReader(f *testing.F) {
	addSeeds(f, "testdata/ipvs/ip_vs_conn", "testdata/ipvs/ip_vs_conn-2.6.32")
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewIPVSReader(bytes.NewReader(data))
		n := 0
		for {
			c, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			n++
			if !c.Client.IsValid() || !c.Virtual.IsValid() || !c.Dest.IsValid() {
				t.Fatalf("entry with a missing address: %v", c)
			}
			if len(c.PEData) > maxPEData || len(c.PEName) > 16 {
				t.Fatalf("persistence engine fields not bounded")
			}
		}
		st := r.Stats()
		if st.Entries != n || st.Entries+st.Skipped > st.Lines {
			t.Fatalf("stats %+v after %d entries", st, n)
		}
	})
}

// FuzzObserve: whatever the table, the counts per frontend add up and
// stay within the bounds.
func FuzzObserve(f *testing.F) {
	addSeeds(f, filepath.Join(recorded, "nf_conntrack"), "testdata/ipvs/ip_vs_conn")
	fronts := []Frontend{
		{Addr: netip.MustParseAddr("10.96.14.10"), Port: 80, Proto: ProtoTCP},
		{Addr: netip.MustParseAddr("10.96.14.10"), Port: 53, Proto: ProtoUDP},
		{Addr: netip.MustParseAddr("fd14:96::10"), Port: 80, Proto: ProtoTCP},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		obs, err := Observe(bytes.NewReader(data), fronts, Options{Clients: true, MaxClients: 2, MaxBackends: 2})
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		sum := 0
		for _, fc := range obs.Frontends {
			n := fc.OtherBackends
			if len(fc.Backends) > 2 {
				t.Fatalf("%d backends kept", len(fc.Backends))
			}
			for _, b := range fc.Backends {
				n += b.Connections
				if len(b.Clients) > 2 {
					t.Fatalf("%d clients kept", len(b.Clients))
				}
			}
			if n != fc.Connections {
				t.Fatalf("%s: backends add up to %d, not %d", fc.Frontend, n, fc.Connections)
			}
			sum += fc.Connections + fc.Templates
		}
		if sum != obs.Matched {
			t.Fatalf("frontends add up to %d, matched %d", sum, obs.Matched)
		}
		// Observe's fast path (entries to other destinations are not
		// parsed to the end) counts what a full parse counts.
		if Detect(data[:min(len(data), 4<<10)]) != FormatIPVS {
			agg := NewAggregator(fronts, Options{Clients: true, MaxClients: 2, MaxBackends: 2})
			if _, err := Scan(bytes.NewReader(data), func(e *Entry) error { agg.Add(e); return nil }); err == nil {
				if diff := cmp.Diff(agg.Result(), obs.Frontends, addrs); diff != "" {
					t.Fatalf("fast path differs from a full parse (-full +fast):\n%s", diff)
				}
			}
		}
	})
}
