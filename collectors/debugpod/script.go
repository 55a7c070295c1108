package debugpod

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Marker starts every line the dump script adds to the output.
const Marker = "@@trace-svc@@"

// Dump names: each command's output is one dump.
const (
	DumpIPTablesNFT     = "iptables-nft-save"
	DumpIP6TablesNFT    = "ip6tables-nft-save"
	DumpIPTablesLegacy  = "iptables-legacy-save"
	DumpIP6TablesLegacy = "ip6tables-legacy-save"
	DumpNFT             = "nft"
	sectionProxyMode    = "proxyMode"
)

// Families of a dump.
const (
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
	// FamilyAll is nft list ruleset: every table of every family.
	FamilyAll = "all"
)

// Backends that can hold kube-proxy's rules.
const (
	BackendIPTablesNFT    = "iptables-nft"
	BackendIPTablesLegacy = "iptables-legacy"
	BackendNFTables       = "nftables"
)

// Script runs with sh -c in the debug pod. It only reads: every *-save and
// nft list ruleset, and kube-proxy's /proxyMode. iptables-legacy-save gets no
// -t, so the kernel creates no table that did not exist (iptables-wrapper
// avoids it for the same reason). Each command's output sits between begin
// and end markers on stdout; its stderr follows a marker on stderr; a
// missing command is reported as absent.
const Script = `m='` + Marker + `'
run() {
	name=$1; shift
	if command -v "$1" >/dev/null 2>&1; then
		printf '\n%s stderr %s\n' "$m" "$name" >&2
		printf '%s begin %s\n' "$m" "$name"
		"$@"
		rc=$?
		printf '\n%s end %s rc=%d\n' "$m" "$name" "$rc"
	else
		printf '%s absent %s\n' "$m" "$name"
	fi
}
run iptables-nft-save iptables-nft-save
run ip6tables-nft-save ip6tables-nft-save
run iptables-legacy-save iptables-legacy-save
run ip6tables-legacy-save ip6tables-legacy-save
run nft nft list ruleset
if command -v wget >/dev/null 2>&1; then
	run proxyMode wget -q -T 2 -O - http://127.0.0.1:10249/proxyMode
elif command -v curl >/dev/null 2>&1; then
	run proxyMode curl -sS -m 2 http://127.0.0.1:10249/proxyMode
else
	printf '%s absent proxyMode\n' "$m"
fi
printf '%s done\n' "$m"
`

// ScriptCommand is the argv that runs Script.
var ScriptCommand = []string{"sh", "-c", Script}

// directCommands are run one by one when the image has no shell.
var directCommands = []struct {
	name string
	argv []string
}{
	{DumpIPTablesNFT, []string{"iptables-nft-save"}},
	{DumpIP6TablesNFT, []string{"ip6tables-nft-save"}},
	{DumpIPTablesLegacy, []string{"iptables-legacy-save"}},
	{DumpIP6TablesLegacy, []string{"ip6tables-legacy-save"}},
	{DumpNFT, []string{"nft", "list", "ruleset"}},
}

// Dump is one command's output. It satisfies trace/ruleset's Source.
type Dump struct {
	// Name is the command: iptables-nft-save, ip6tables-legacy-save, nft, …
	Name string
	// Family is ipv4, ipv6 or all.
	Family string
	Data   []byte
	// Stderr is what the command printed on standard error.
	Stderr string
	// ExitCode is the command's exit status.
	ExitCode int
}

// Head returns the start of the dump.
func (d Dump) Head() ([]byte, error) { return d.Data[:min(len(d.Data), 64<<10)], nil }

// Reader reads the dump from its start.
func (d Dump) Reader() io.Reader { return bytes.NewReader(d.Data) }

// ReaderAt gives random access to the dump.
func (d Dump) ReaderAt() (io.ReaderAt, int64, bool) {
	return bytes.NewReader(d.Data), int64(len(d.Data)), true
}

// Result is one node's collected dataplane.
type Result struct {
	Node string
	// Pod is the debug pod that collected it ("namespace/name").
	Pod   string
	Dumps []Dump
	// Backend holds kube-proxy's rules: iptables-nft, iptables-legacy or
	// nftables.
	Backend string
	// Chosen names the dumps of Backend that hold rules.
	Chosen []string
	// ProxyMode is what kube-proxy's /proxyMode said; empty when it was not
	// reachable.
	ProxyMode string
	Warnings  []string
}

// Save writes every non-empty dump as DIR/NODE.NAME (for example
// node-1.iptables-nft-save, node-1.nft), the names --dump reads back.
func (r *Result) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range r.Dumps {
		if len(d.Data) == 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, r.Node+"."+d.Name), d.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Dump returns the dump called name.
func (r *Result) Dump(name string) (Dump, bool) {
	for _, d := range r.Dumps {
		if d.Name == name {
			return d, true
		}
	}
	return Dump{}, false
}

func familyOf(name string) string {
	switch {
	case name == DumpNFT:
		return FamilyAll
	case strings.HasPrefix(name, "ip6"):
		return FamilyIPv6
	default:
		return FamilyIPv4
	}
}

type section struct {
	data     []byte
	stderr   string
	exitCode int
	cut      bool
}

// ParseOutput splits the script's stdout and stderr into a Result for node
// and decides which backend holds kube-proxy's rules.
func ParseOutput(node string, stdout, stderr []byte) *Result {
	res := &Result{Node: node}
	sections, order, absent, done := splitStdout(stdout)
	errs := splitStderr(stderr)
	if !done {
		res.Warnings = append(res.Warnings, "the dump script's output ended early; the dumps may be incomplete")
	}
	for _, name := range order {
		s := sections[name]
		s.stderr = errs[name]
		if name == sectionProxyMode {
			if s.exitCode == 0 && !s.cut {
				res.ProxyMode = strings.TrimSpace(string(s.data))
			}
			continue
		}
		res.Dumps = append(res.Dumps, Dump{Name: name, Family: familyOf(name), Data: s.data, Stderr: s.stderr, ExitCode: s.exitCode})
		if s.cut {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s output was cut off", name))
		}
	}
	analyze(res, absent)
	return res
}

// splitStdout returns the sections by name in output order, the dumps the
// image had no command for (at most a few known names), and whether the
// final marker was seen.
func splitStdout(out []byte) (map[string]*section, []string, []string, bool) {
	sections := map[string]*section{}
	var order, absent []string
	done := false
	begin := []byte(Marker + " begin ")
	absentPrefix := []byte(Marker + " absent ")
	for len(out) > 0 {
		line, rest, _ := bytes.Cut(out, []byte("\n"))
		out = rest
		switch {
		case bytes.HasPrefix(line, begin):
			name := string(line[len(begin):])
			s := &section{}
			end := []byte("\n" + Marker + " end " + name + " rc=")
			i := bytes.Index(out, end)
			if i < 0 {
				s.data, s.cut, out = out, true, nil
			} else {
				s.data = out[:i]
				tail := out[i+len(end):]
				rc, after, _ := bytes.Cut(tail, []byte("\n"))
				s.exitCode, _ = strconv.Atoi(string(rc))
				out = after
			}
			if _, seen := sections[name]; !seen {
				order = append(order, name)
			}
			sections[name] = s
		case bytes.HasPrefix(line, absentPrefix):
			// Only the dumps the script runs: a name is untrusted text.
			if name := string(line[len(absentPrefix):]); isDumpName(name) && !slices.Contains(absent, name) {
				absent = append(absent, name)
			}
		case string(line) == Marker+" done":
			done = true
		}
		// stray lines are skipped.
	}
	return sections, order, absent, done
}

// isDumpName tells whether name is one of the dumps the script takes.
func isDumpName(name string) bool {
	switch name {
	case DumpIPTablesNFT, DumpIP6TablesNFT, DumpIPTablesLegacy, DumpIP6TablesLegacy, DumpNFT:
		return true
	}
	return false
}

func splitStderr(errOut []byte) map[string]string {
	res := map[string]string{}
	prefix := []byte("\n" + Marker + " stderr ")
	parts := bytes.Split(append([]byte("\n"), errOut...), prefix)
	for _, p := range parts[1:] {
		name, msg, _ := bytes.Cut(p, []byte("\n"))
		res[string(name)] = strings.TrimSpace(string(msg))
	}
	return res
}

var (
	// kubelet (1.17+) creates one of these in the mangle table; this is how
	// iptables-wrapper tells which backend the node uses.
	kubeletHintRE = regexp.MustCompile(`(?m)^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) `)
	// kube-proxy's iptables (and ipvs) mode always creates KUBE-SERVICES.
	kubeProxyChainRE = regexp.MustCompile(`(?m)^:KUBE-SERVICES `)
	// kube-proxy's nftables mode owns table "kube-proxy" in ip and ip6.
	nftKubeProxyRE = regexp.MustCompile(`(?m)^table (ip|ip6) kube-proxy \{`)
)

type iptFacts struct {
	dumps     []string // names of the backend's dumps with data
	hint      bool
	kubeProxy bool
	ruleLines int // lines starting with "-", as iptables-wrapper v2 counted
}

// analyze decides the backend; absent names the dumps the image had no
// command for.
func analyze(res *Result, absent []string) {
	ipt := map[string]*iptFacts{BackendIPTablesNFT: {}, BackendIPTablesLegacy: {}}
	nftKubeProxy := false
	for _, d := range res.Dumps {
		if d.ExitCode != 0 {
			msg := firstLine(d.Stderr)
			if msg == "" {
				msg = "no message"
			}
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s failed (exit status %d): %s", d.Name, d.ExitCode, msg))
		}
		if d.Name == DumpNFT {
			nftKubeProxy = nftKubeProxyRE.Match(d.Data)
			continue
		}
		b := BackendIPTablesNFT
		if strings.Contains(d.Name, "legacy") {
			b = BackendIPTablesLegacy
		}
		f := ipt[b]
		if len(bytes.TrimSpace(d.Data)) > 0 {
			f.dumps = append(f.dumps, d.Name)
		}
		f.hint = f.hint || kubeletHintRE.Match(d.Data)
		f.kubeProxy = f.kubeProxy || kubeProxyChainRE.Match(d.Data)
		f.ruleLines += countRuleLines(d.Data)
	}

	var holders []string
	for _, b := range []string{BackendIPTablesNFT, BackendIPTablesLegacy} {
		if ipt[b].kubeProxy {
			holders = append(holders, b)
		}
	}
	if nftKubeProxy {
		holders = append(holders, BackendNFTables)
	}

	// iptables-wrapper: kubelet's hint chains, nft first, then legacy; with
	// no hint, the older wrapper's count of rule lines.
	wrapper := BackendIPTablesNFT
	switch {
	case ipt[BackendIPTablesNFT].hint:
	case ipt[BackendIPTablesLegacy].hint:
		wrapper = BackendIPTablesLegacy
	case ipt[BackendIPTablesLegacy].ruleLines >= 10 || ipt[BackendIPTablesLegacy].ruleLines > ipt[BackendIPTablesNFT].ruleLines:
		wrapper = BackendIPTablesLegacy
	}

	backend := wrapper
	switch mode := res.ProxyMode; {
	case mode == "nftables":
		backend = BackendNFTables
	case mode == "iptables" || mode == "ipvs":
		backend = iptablesHolder(wrapper, ipt, res)
	case len(holders) == 1 && holders[0] == BackendNFTables:
		backend = BackendNFTables
	default:
		backend = iptablesHolder(wrapper, ipt, res)
	}
	res.Backend = backend
	if backend == BackendNFTables {
		res.Chosen = []string{DumpNFT}
	} else {
		res.Chosen = ipt[backend].dumps
	}

	switch {
	case len(holders) == 0 && len(absent) > 0:
		// The rules may well be there, where the image cannot look.
		res.Warnings = append(res.Warnings, fmt.Sprintf("no kube-proxy rules found, and the debug image has no %s to read the rest with: pass --image with an image that has sh, iptables and nft (kube-proxy's own image has them)", strings.Join(absentCommands(absent), ", ")))
	case len(holders) == 0:
		res.Warnings = append(res.Warnings, "no kube-proxy rules found in iptables-nft, iptables-legacy or nftables (is kube-proxy running on this node, or does another service proxy replace it?)")
	case len(holders) > 1:
		res.Warnings = append(res.Warnings, fmt.Sprintf("kube-proxy rules exist in more than one backend (%s); %s is used, the others are probably left over from an earlier kube-proxy mode or a second proxy", strings.Join(holders, ", "), backend))
	}
	if res.ProxyMode == "nftables" && !nftKubeProxy {
		res.Warnings = append(res.Warnings, "kube-proxy reports mode nftables but the node has no kube-proxy nftables table")
	}
	if res.ProxyMode == "ipvs" {
		res.Warnings = append(res.Warnings, "kube-proxy runs in IPVS mode; the iptables dumps hold only its helper rules")
	}
}

// absentCommands names the commands behind absent dumps, as a user would
// look for them in an image.
func absentCommands(absent []string) []string {
	var cmds []string
	for _, d := range absent {
		if d == DumpNFT {
			d = "nft"
		}
		cmds = append(cmds, d)
	}
	return cmds
}

// iptablesHolder keeps the wrapper's choice unless only the other iptables
// backend has kube-proxy's rules (a kube-proxy image without the wrapper).
func iptablesHolder(wrapper string, ipt map[string]*iptFacts, res *Result) string {
	other := BackendIPTablesLegacy
	if wrapper == BackendIPTablesLegacy {
		other = BackendIPTablesNFT
	}
	if !ipt[wrapper].kubeProxy && ipt[other].kubeProxy {
		res.Warnings = append(res.Warnings, fmt.Sprintf("kubelet's chains point to %s but kube-proxy's rules are in %s; %s is used", wrapper, other, other))
		return other
	}
	return wrapper
}

func countRuleLines(data []byte) int {
	n := 0
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		if len(line) > 0 && line[0] == '-' {
			n++
		}
	}
	return n
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	line, _, _ := strings.Cut(s, "\n")
	return line
}
