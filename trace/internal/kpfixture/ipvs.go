package kpfixture

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// IPVS fixtures (hack/kpfixtures/ipvs.sh) are recorded after every sync of
// kube-proxy's own IPVS proxier tests: the fake state the proxier left
// (fake.json), the files a node would give for it (ip_vs, ipvsadm.save,
// ipset.save, iptables-nft.save), and every expectation the test asserted
// after that sync (expectations.json). The agreement test of the IPVS
// engine checks that each expectation is what the simulator answers.

// IPVSFixture is one recorded sync.
type IPVSFixture struct {
	// Dir holds the fixture's files.
	Dir          string
	State        IPVSState
	Expectations []IPVSExpectation
}

// IPVSState is fake.json: what kube-proxy's fakes held after the sync.
type IPVSState struct {
	KubernetesVersion string `json:"kubernetesVersion"`
	Test              string `json:"test"`
	// Sync counts the test's syncs, from 1; Source is its call in
	// proxier_test.go ("proxier_test.go:847").
	Sync   int    `json:"sync"`
	Source string `json:"source"`
	// IPFamily is "IPv4" or "IPv6".
	IPFamily string `json:"ipFamily"`
	// MasqueradeMark is kube-proxy's masquerade mark ("0x004000": the
	// fake proxier has none, the recorder sets NewProxier's default).
	MasqueradeMark string `json:"masqueradeMark"`
	// NodeIPs are the node's own addresses; IPVSAddresses are those
	// kube-proxy bound to kube-ipvs0 (every Service address it serves).
	NodeIPs        []string            `json:"nodeIPs"`
	IPVSAddresses  []string            `json:"ipvsAddresses"`
	VirtualServers []IPVSVirtualServer `json:"virtualServers"`
	IPSets         []IPVSSet           `json:"ipsets"`
	// IPSetFamilyFixed: kube-proxy's fake made the sets of an IPv6 proxier
	// inet; the recorder made them inet6, as a real node has them (the
	// names stay KUBE-..., where a real IPv6 proxier uses KUBE-6-...).
	IPSetFamilyFixed bool `json:"ipsetFamilyFixed,omitempty"`
}

// IPVSVirtualServer is a virtual server with its real servers, as
// kube-proxy's utilipvs types hold it.
type IPVSVirtualServer struct {
	Protocol  string `json:"protocol"`
	Address   string `json:"address"`
	Port      uint16 `json:"port"`
	Scheduler string `json:"scheduler,omitempty"`
	// Flags: 0x1 persistent (session affinity ClientIP, for Timeout
	// seconds), 0x10 source hash (the "mh" scheduler's flag-2).
	Flags       uint32           `json:"flags,omitempty"`
	Timeout     uint32           `json:"timeout,omitempty"`
	RealServers []IPVSRealServer `json:"realServers"`
}

// Persistent reports the persistence flag (ClientIP session affinity).
func (v IPVSVirtualServer) Persistent() bool { return v.Flags&0x1 != 0 }

// IPVSRealServer is one real server; weight 0 is a terminating endpoint.
type IPVSRealServer struct {
	Address      string `json:"address"`
	Port         uint16 `json:"port"`
	Weight       int    `json:"weight"`
	ActiveConn   int    `json:"activeConn,omitempty"`
	InactiveConn int    `json:"inactiveConn,omitempty"`
}

// IPVSSet is one ipset with its entries in kube-proxy's notation
// ("10.0.0.1,tcp:80").
type IPVSSet struct {
	Name      string   `json:"name"`
	Type      string   `json:"type"`
	Family    string   `json:"family,omitempty"`
	PortRange string   `json:"portRange,omitempty"`
	Entries   []string `json:"entries"`
}

// IPVSExpectation is one thing the upstream test asserted after the sync
// (or read and asserted on inline). Kinds:
//
//	ipvsState           the whole IPVS table equals VirtualServers
//	checkIPVS           Count virtual servers exist, and VirtualServer with
//	                    as many real servers, compared by address and port
//	                    when there is one (WeightsUnchecked)
//	checkIPSet          Set holds exactly Entries
//	checkIptables       Chain's rules are Rules, in order
//	virtualServersRead  the table the test read: Count, VirtualServers
//	realServersRead     VirtualServer's real servers as the test read them
//	ipsetRead           Set's entries (kube-proxy's active entries) as read
type IPVSExpectation struct {
	Kind           string              `json:"kind"`
	Source         string              `json:"source"`
	VirtualServers []IPVSVirtualServer `json:"virtualServers,omitempty"`
	VirtualServer  *IPVSVirtualServer  `json:"virtualServer,omitempty"`
	Count          *int                `json:"count,omitempty"`
	Set            string              `json:"set,omitempty"`
	SetType        string              `json:"setType,omitempty"`
	Entries        *[]string           `json:"entries,omitempty"`
	Chain          string              `json:"chain,omitempty"`
	Rules          []IPVSChainRule     `json:"rules,omitempty"`
	// StateChanged marks a read the test made after changing the IPVS
	// state itself since the sync (UpdateRealServer, syncEndpoint): it is
	// not about the recorded state, and agreement tests skip it.
	StateChanged bool `json:"stateChanged,omitempty"`
	// WeightsUnchecked: the real servers are named by address and port
	// only (checkIPVS's ExpectedRealServer has no weight; "weight": 0
	// there means nothing).
	WeightsUnchecked bool `json:"weightsUnchecked,omitempty"`
}

// IPVSChainRule is one expected rule of a chain.
type IPVSChainRule struct {
	SourceAddress string `json:"sourceAddress,omitempty"`
	MatchSet      string `json:"matchSet,omitempty"`
	Jump          string `json:"jump"`
}

// LoadIPVS reads every fixture under root (root/<version>/<test>/), sorted
// by directory. It fails the test when there is none.
func LoadIPVS(t testing.TB, root string) []IPVSFixture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "*", "*", "fake.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no kube-proxy IPVS fixtures under %s (run hack/kpfixtures/ipvs.sh)", root)
	}
	sort.Strings(files)
	var out []IPVSFixture
	for _, f := range files {
		fx := IPVSFixture{Dir: filepath.Dir(f)}
		readJSON(t, f, &fx.State)
		readJSON(t, filepath.Join(fx.Dir, "expectations.json"), &fx.Expectations)
		out = append(out, fx)
	}
	return out
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
