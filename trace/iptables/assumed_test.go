package iptables

import (
	"strings"
	"testing"
)

// TestAssumedMatches: -m physdev, -m rpfilter and -m socket are decided by
// the assumptions their notes state, negations included.
func TestAssumedMatches(t *testing.T) {
	for _, tc := range []struct {
		match string
		drop  bool
		note  string
	}{
		{"-m physdev --physdev-is-bridged", false, "-m physdev"},
		{"-m physdev ! --physdev-is-bridged", true, "-m physdev"},
		{"-m physdev --physdev-in vethwe-bridge", false, "-m physdev"},
		{"-m physdev ! --physdev-out vethwe-bridge ! --physdev-is-in", true, "-m physdev"},
		{"-m physdev ! --physdev-out vethwe-bridge --physdev-is-out", false, "-m physdev"},
		{"-m rpfilter --validmark", true, "-m rpfilter"},
		{"-m rpfilter --validmark --invert", false, "-m rpfilter"},
		{"-m socket --transparent", false, "-m socket"},
	} {
		t.Run(tc.match, func(t *testing.T) {
			dump := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD " + tc.match + " -j DROP\nCOMMIT\n"
			sim, err := Simulate(mustParse(t, dump), pkt("10.0.0.5", "10.9.9.9", 80), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := sim.Verdict == "DROP"; got != tc.drop {
				t.Errorf("dropped %v, want %v (notes %q)", got, tc.drop, sim.Notes)
			}
			if !strings.Contains(strings.Join(sim.Notes, "\n"), tc.note+":") {
				t.Errorf("notes %q lack %q", sim.Notes, tc.note)
			}
		})
	}
}
