package trace

import "bytes"

// Ruleset formats a node can print; DetectRulesetFormat tells them apart.
const (
	FormatIPTables = "iptables" // iptables-save / ip6tables-save
	FormatNFT      = "nft"      // nft list ruleset
	FormatNFTJSON  = "nft-json" // nft -j list ruleset
	// FormatNFTScript is nft -f input ("add table ...", "flush ruleset"):
	// not what a node prints, so it is recognised only to say so.
	FormatNFTScript = "nft-script"
)

// DetectRulesetFormat looks at the start of a dump and says which format it
// is in, or "" when it is none of them. Blank lines and "#" comments
// (iptables-save's header and warnings) are skipped.
func DetectRulesetFormat(head []byte) string {
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		line = bytes.TrimSpace(line)
		switch {
		case len(line) == 0:
			continue
		case line[0] == '#':
			if bytes.Contains(line, []byte("iptables-save")) || bytes.Contains(line, []byte("ip6tables-save")) {
				return FormatIPTables
			}
			continue
		case line[0] == '*' || line[0] == ':' || bytes.HasPrefix(line, []byte("-A ")) || bytes.HasPrefix(line, []byte("COMMIT")),
			line[0] == '[' && bytes.Contains(line, []byte("] -A ")): // iptables-save -c
			return FormatIPTables
		case line[0] == '{':
			return FormatNFTJSON
		case bytes.HasPrefix(line, []byte("table ")):
			return FormatNFT
		case bytes.HasPrefix(line, []byte("add ")) || bytes.HasPrefix(line, []byte("flush ")) ||
			bytes.HasPrefix(line, []byte("delete ")) || bytes.HasPrefix(line, []byte("create ")):
			return FormatNFTScript
		}
		return ""
	}
	return ""
}
