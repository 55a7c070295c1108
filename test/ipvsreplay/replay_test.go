package ipvsreplay

import "testing"

// TestRecording replays the committed recording of real kube-proxy in IPVS
// mode (testdata/ipvs/real): every case must agree, with each way of
// saving the IPVS table.
func TestRecording(t *testing.T) {
	results, err := Replay("../../testdata/ipvs/real")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		t.Logf("%v: %d/%d real traffic cases agree", r.Files, r.Agree, r.Total)
		for _, p := range r.Problems {
			t.Errorf("%v: %s", r.Files, p)
		}
		if r.Total < 20 {
			t.Errorf("%v: only %d cases", r.Files, r.Total)
		}
	}
}

// TestReplayNotices: the replay is not lenient — without the node's ipsets
// the set matches are taken as misses, and cases go wrong.
func TestReplayNotices(t *testing.T) {
	results, err := replay("../../testdata/ipvs/real", [][]string{{"iptables-legacy-save", "proc-net-ip_vs"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Agree == r.Total || len(r.Problems) == 0 {
		t.Errorf("without ipsets %d/%d cases agree; want disagreement", r.Agree, r.Total)
	} else {
		t.Logf("without ipsets %d/%d agree, e.g. %s", r.Agree, r.Total, r.Problems[0])
	}
}
