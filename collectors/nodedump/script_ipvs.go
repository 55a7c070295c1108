package nodedump

import "slices"

// Sections of kube-proxy's IPVS mode (and of network plugins that keep
// addresses in ipsets): read by content on the other side (trace/ruleset),
// so a saved NODE.ipvs or NODE.ipset-save needs no name to be understood.
const (
	// DumpIPVS is the IPVS table: ipvsadm -Sn where the image has ipvsadm
	// (its persistence timeouts are in seconds), else /proc/net/ip_vs —
	// kube-proxy's image has no ipvsadm. Only where the ip_vs module is
	// loaded.
	DumpIPVS = "ipvs"
	// DumpIPSet is ipset save; only where the ip_set module is loaded.
	DumpIPSet = "ipset-save"
)

// IPVSDumps are the IPVS and ipset sections, in the order the script
// prints them.
var IPVSDumps = []string{DumpIPVS, DumpIPSet}

// IsIPVSSection tells whether a section name is one of IPVSDumps.
func IsIPVSSection(name string) bool { return slices.Contains(IPVSDumps, name) }

// ipvsScript prints the IPVS table and the ipsets only where their kernel
// modules are loaded, so a node without them gets no failed command: the
// table through one tool only (two tables of one node would disagree on
// nothing but units).
const ipvsScript = `if [ -r /proc/net/ip_vs ]; then
	if command -v ipvsadm >/dev/null 2>&1; then
		run ` + DumpIPVS + ` ipvsadm -Sn
	else
		run ` + DumpIPVS + ` cat /proc/net/ip_vs
	fi
fi
if [ -d /sys/module/ip_set ]; then
	run ` + DumpIPSet + ` ipset save
fi
`

// ipvsSections are IPVSDumps, printed by ipvsScript.
func ipvsSections() []section {
	return []section{
		{name: DumpIPVS, kind: ipvsSection, script: ipvsScript},
		{name: DumpIPSet, kind: ipvsSection, script: ipvsScript},
	}
}
