package ipvs_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs"
)

func TestSchedule(t *testing.T) {
	reals := func(weights ...int) []*ipvs.RealServer {
		var out []*ipvs.RealServer
		for i, w := range weights {
			out = append(out, &ipvs.RealServer{Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), Port: 80, Forward: ipvs.Masq, Weight: w})
		}
		return out
	}
	for _, tc := range []struct {
		sched   string
		weights []int
		want    map[string]float64 // address -> probability
		note    string             // a note must contain this ("" = no notes)
	}{
		{"rr", []int{1, 1, 1}, map[string]float64{"10.0.0.1": 1.0 / 3, "10.0.0.2": 1.0 / 3, "10.0.0.3": 1.0 / 3}, ""},
		{"rr", []int{1, 0, 1}, map[string]float64{"10.0.0.1": 0.5, "10.0.0.3": 0.5}, ""},
		{"rr", []int{5, 1}, map[string]float64{"10.0.0.1": 0.5, "10.0.0.2": 0.5}, ""},
		{"wrr", []int{3, 1, 0}, map[string]float64{"10.0.0.1": 0.75, "10.0.0.2": 0.25}, ""},
		{"lc", []int{3, 1}, map[string]float64{"10.0.0.1": 0.5, "10.0.0.2": 0.5}, "equally loaded"},
		{"wlc", []int{3, 1}, map[string]float64{"10.0.0.1": 0.75, "10.0.0.2": 0.25}, "equally loaded"},
		{"sh", []int{1, 1}, map[string]float64{"10.0.0.1": 0.5, "10.0.0.2": 0.5}, "client's address"},
		{"mh", []int{2, 2}, map[string]float64{"10.0.0.1": 0.5, "10.0.0.2": 0.5}, "client's address"},
		{"fo", []int{1, 3, 3}, map[string]float64{"10.0.0.2": 1}, "highest weight"},
		{"frob", []int{1, 3}, map[string]float64{"10.0.0.1": 0.25, "10.0.0.2": 0.75}, "not known"},
		{"rr", []int{0, 0}, map[string]float64{}, "ICMP port unreachable"},
		{"rr", nil, map[string]float64{}, "ICMP port unreachable"},
	} {
		v := &ipvs.VirtualServer{Protocol: ipvs.TCP, Scheduler: tc.sched, Reals: reals(tc.weights...)}
		got := v.Schedule()
		shares := map[string]float64{}
		sum := 0.0
		for _, s := range got.Shares {
			shares[s.Real.Addr.String()] = s.Probability
			sum += s.Probability
		}
		if diff := cmp.Diff(tc.want, shares); diff != "" {
			t.Errorf("%s %v (-want +got):\n%s", tc.sched, tc.weights, diff)
		}
		if len(got.Shares) > 0 && (sum < 1-1e-9 || sum > 1+1e-9) {
			t.Errorf("%s %v: shares add up to %v", tc.sched, tc.weights, sum)
		}
		notes := strings.Join(got.Notes, " | ")
		if (tc.note == "") != (notes == "") || !strings.Contains(notes, tc.note) {
			t.Errorf("%s %v: notes %q, want one containing %q", tc.sched, tc.weights, notes, tc.note)
		}
	}
	v := &ipvs.VirtualServer{Scheduler: "rr", Persistent: true, Timeout: 10800, Reals: reals(1)}
	// The timeout's unit depends on where the table came from (jiffies
	// from /proc/net/ip_vs): the schedule's note names no number.
	if n := v.Schedule().Notes; len(n) != 1 || n[0] != ipvs.PersistentNote {
		t.Errorf("persistence note: %q", n)
	}
}
