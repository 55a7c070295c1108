package conntrack

// Section names a node's connection tables go by: what the debug pod's
// dump script calls them and the suffix of a saved file (NODE.NAME). They
// name what a text is where its content cannot: /proc/net/nf_conntrack and
// `conntrack -L -o extended` print the same layout, and counting both would
// count every connection twice.
const (
	// SectionProc is /proc/net/nf_conntrack: every entry, both families.
	SectionProc = "conntrack-proc"
	// SectionList and SectionList6 are `conntrack -L -f ipv4|ipv6 -o
	// extended`: the same entries as SectionProc, one family each.
	SectionList  = "conntrack-list"
	SectionList6 = "conntrack-list6"
	// SectionIPVS is /proc/net/ip_vs_conn.
	SectionIPVS = "ipvs-conn"
	// SectionLimits is "count N" and "max M" (ParseLimits).
	SectionLimits = "conntrack-limits"
)

// SectionNames lists every section name, in the order the dump script
// prints them.
var SectionNames = []string{SectionProc, SectionList, SectionList6, SectionIPVS, SectionLimits}
