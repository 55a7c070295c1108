package nodedump

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// Marker starts every line the dump script adds to the output.
const Marker = "@@trace-svc@@"

// Section names of the rule dumps: each command's output is one section of
// the dump script's output, between markers that carry the name.
const (
	DumpIPTablesNFT     = "iptables-nft-save"
	DumpIP6TablesNFT    = "ip6tables-nft-save"
	DumpIPTablesLegacy  = "iptables-legacy-save"
	DumpIP6TablesLegacy = "ip6tables-legacy-save"
	DumpNFT             = "nft"
	// SectionProxyMode is what kube-proxy's /proxyMode says.
	SectionProxyMode = "proxyMode"
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

// sectionKind says what ParseOutput makes of a section.
type sectionKind int

const (
	// rulesDump is iptables-save or nft list ruleset output: a Dump with a
	// family.
	rulesDump sectionKind = iota
	// proxyModeAnswer is kube-proxy's answer on /proxyMode.
	proxyModeAnswer
	// routeSection is one of the node's route or interface views
	// (RouteDumps): a Dump without a family.
	routeSection
	// conntrackSection is one of the node's connection tables
	// (IsConntrackSection): a Dump without a family.
	conntrackSection
	// ipvsSection is the IPVS table or the ipsets (IPVSDumps): a Dump
	// without a family, read with the rules.
	ipvsSection
)

// section is one thing the dump script collects from a node.
type section struct {
	// name is the section's name in the markers and the suffix of its
	// file in --save-dumps (NODE.NAME).
	name string
	kind sectionKind
	// argv runs the command; without a shell (an image that has none) it
	// is run as it is. Nil for a section that needs the shell.
	argv []string
	// script is the part of the script that prints the section; empty runs
	// argv through the script's run function. A fragment that prints
	// several sections (RoutesScript) is given to each and written once.
	script string
	// counters: the command takes -c to print rule counters when the
	// script observes (iptables-save -c).
	counters bool
	// observed: the section is only read when the script observes (the
	// connection tables, from ConntrackScript).
	observed bool
}

// proxyModeScript asks kube-proxy's metrics port with whichever of wget and
// curl the image has.
const proxyModeScript = `if command -v wget >/dev/null 2>&1; then
	run proxyMode wget -q -T 2 -O - http://127.0.0.1:10249/proxyMode
elif command -v curl >/dev/null 2>&1; then
	run proxyMode curl -sS -m 2 http://127.0.0.1:10249/proxyMode
else
	printf '%s absent proxyMode\n' "$m"
fi
`

// dumpSections is the one list of what the dump script collects, in order. The
// script, the commands run without a shell, what ParseOutput keeps (any
// other section in the output is dropped with a warning) and the files
// Save writes are all made from it: a new section (conntrack, ipvs,
// ipset, ...) is one entry here, plus what ParseOutput makes of a new
// kind. It only reads: iptables-legacy-save gets no -t, so the kernel
// creates no table that did not exist (iptables-wrapper avoids it for the
// same reason).
var dumpSections = append([]section{
	{name: DumpIPTablesNFT, kind: rulesDump, argv: []string{"iptables-nft-save"}, counters: true},
	{name: DumpIP6TablesNFT, kind: rulesDump, argv: []string{"ip6tables-nft-save"}, counters: true},
	{name: DumpIPTablesLegacy, kind: rulesDump, argv: []string{"iptables-legacy-save"}, counters: true},
	{name: DumpIP6TablesLegacy, kind: rulesDump, argv: []string{"ip6tables-legacy-save"}, counters: true},
	{name: DumpNFT, kind: rulesDump, argv: []string{"nft", "list", "ruleset"}},
	{name: SectionProxyMode, kind: proxyModeAnswer, script: proxyModeScript},
}, append(append(ipvsSections(), routeSections()...), conntrackSections()...)...)

// conntrackSections are the connection tables ConntrackScript prints when
// the script observes; without a shell nothing can cap them, so they have
// no argv.
func conntrackSections() []section {
	var out []section
	for _, name := range ConntrackDumps {
		out = append(out, section{name: name, kind: conntrackSection, observed: true})
	}
	return out
}

// routeSections are RouteDumps, printed by RoutesScript; those the ip
// command prints can also run without a shell.
func routeSections() []section {
	argv := map[string][]string{
		DumpIPRoute:  {"ip", "-4", "-d", "route", "show", "table", "all"},
		DumpIP6Route: {"ip", "-6", "-d", "route", "show", "table", "all"},
		DumpIPLink:   {"ip", "-d", "link", "show"},
		DumpIPAddr:   {"ip", "-d", "addr", "show"},
		DumpIPRule:   {"ip", "rule", "show"},
		DumpIP6Rule:  {"ip", "-6", "rule", "show"},
	}
	out := make([]section, 0, len(RouteDumps))
	for _, name := range RouteDumps {
		out = append(out, section{name: name, kind: routeSection, argv: argv[name], script: RoutesScript})
	}
	return out
}

// sectionNamed returns the known section called name.
func sectionNamed(name string) (section, bool) {
	for _, s := range dumpSections {
		if s.name == name {
			return s, true
		}
	}
	return section{}, false
}

// DumpNames are the names of every dump the script prints, which Save
// writes and --dump reads back: the rule dumps, the route sections, then
// the connection tables (ConntrackDumps).
var DumpNames = func() []string {
	var names []string
	for _, s := range dumpSections {
		if s.kind != proxyModeAnswer {
			names = append(names, s.name)
		}
	}
	return names
}()

// ScriptOptions shape the dump script.
type ScriptOptions struct {
	// Observe also reads what the kernel observed: every iptables dump with
	// its rule counters (iptables-save -c) and the connection tables
	// (ConntrackScript). Off, the script reads only rules and routes.
	Observe bool
	// Conntrack caps the connection tables.
	Conntrack ConntrackOptions
}

// DefaultScriptOptions observe, with the default caps.
var DefaultScriptOptions = ScriptOptions{Observe: true}

// ScriptFor is the script that runs with sh -c in the debug pod: every
// section of dumpSections, in order (the rule dumps — with -c when
// observing —, kube-proxy's /proxyMode, the node's routes and interfaces
// through RoutesScript, then, when observing, its connection tables through
// ConntrackScript). Each command's output sits between begin and end
// markers on stdout; its stderr follows a marker on stderr; a missing
// command is reported as absent.
func ScriptFor(o ScriptOptions) string {
	var b strings.Builder
	b.WriteString(`m='` + Marker + `'
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
`)
	written := map[string]bool{}
	for _, s := range dumpSections {
		if s.observed && !o.Observe {
			continue
		}
		script := s.script
		if s.kind == conntrackSection {
			script = ConntrackScript(o.Conntrack)
		}
		switch {
		case script == "":
			b.WriteString("run " + s.name + " " + strings.Join(s.command(o), " ") + "\n")
		case !written[script]:
			written[script] = true
			b.WriteString(script)
		}
	}
	b.WriteString(`printf '%s done\n' "$m"
`)
	return b.String()
}

// command is the section's argv under o: with -c when it takes counters
// and the script observes.
func (s section) command(o ScriptOptions) []string {
	if s.counters && o.Observe {
		return append(slices.Clone(s.argv), "-c")
	}
	return s.argv
}

// CommandFor is the argv that runs ScriptFor(o).
func CommandFor(o ScriptOptions) []string { return []string{"sh", "-c", ScriptFor(o)} }

// Dump is one command's output. It satisfies trace/ruleset's Source.
type Dump struct {
	// Name is the command: iptables-nft-save, ip6tables-legacy-save, nft, …
	Name string
	// Family is ipv4, ipv6 or all for a rule dump; empty for a route
	// section (RouteDumps).
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
	Pod string
	// Dumps are the rule dumps and the route sections.
	Dumps []Dump
	// Sections is the output of every known section, rule dumps, route
	// sections and the others (proxyMode, ...), in output order: what Save
	// writes.
	Sections []Dump
	// Backend holds kube-proxy's rules: iptables-nft, iptables-legacy or
	// nftables.
	Backend string
	// Chosen names the dumps of Backend that hold rules.
	Chosen []string
	// ProxyMode is what kube-proxy's /proxyMode said; empty when it was not
	// reachable.
	ProxyMode string
	Warnings  []trace.Warning

	// spool is where the dumps lie when they were spooled
	// (RunOptions.SpoolDir); nil when they are held in memory.
	spool *spool
}

// Save writes every known section that has output as DIR/NODE.SECTION
// (node-1.iptables-nft-save, node-1.nft, node-1.ip-route,
// node-1.proxyMode), the names --dump reads back. The files hold a node's
// whole firewall: they are created 0600, and DIR, when Save creates it,
// 0700. Every write goes through an os.Root on DIR, the node name must be a
// DNS subdomain (as the API server requires of node names) and section
// names come from the dumpSections list, never from the pod's output: nothing
// can land outside DIR. An empty connection table is written too.
func (r *Result) Save(dir string) error {
	if errs := validation.IsDNS1123Subdomain(r.Node); len(errs) > 0 {
		return fmt.Errorf("node name %s cannot name a file: %s", excerpt.Quote(r.Node), errs[0])
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if r.Spooled() && r.spool.loaded == nil {
		if err := r.Load(); err != nil {
			return err
		}
		defer r.Unload()
	}
	for _, d := range r.Sections {
		sec, known := sectionNamed(d.Name)
		// An empty connection table is written too: no connections is an
		// observation.
		if !known || len(d.Data) == 0 && sec.kind != conntrackSection {
			continue
		}
		if err := writeFile(root, r.Node+"."+sec.name, d.Data); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes data to name in root, mode 0600 even when the file was
// there before with another mode.
func writeFile(root *os.Root, name string, data []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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

// warn makes a typed warning.
func warn(code trace.Code, msg string) trace.Warning { return trace.Warning{Code: code, Message: msg} }

func familyOf(name string) string {
	switch {
	case slices.Contains(RouteDumps, name), IsConntrackSection(name), IsIPVSSection(name):
		return "" // a route, conntrack, IPVS or ipset section: no family
	case name == DumpNFT:
		return FamilyAll
	case strings.HasPrefix(name, "ip6"):
		return FamilyIPv6
	default:
		return FamilyIPv4
	}
}

type output struct {
	data     []byte
	exitCode int
	cut      bool
}

// maxNamedUnknown is how many unknown section names the warning quotes.
const maxNamedUnknown = 5

// ParseOutput splits the script's stdout and stderr into a Result for node
// and decides which backend holds kube-proxy's rules. Only the sections
// the dump script collects are kept; the output comes from the node and
// may hold anything else, which is dropped with one warning.
func ParseOutput(node string, stdout, stderr []byte) *Result {
	res := &Result{Node: node}
	outs, order, absent, done := splitStdout(stdout)
	errs := splitStderr(stderr)
	if !done {
		res.Warnings = append(res.Warnings, warn(trace.CodeDumpIncomplete, "the dump script's output ended early; the dumps may be incomplete"))
	}
	var unknown []string
	for _, name := range order {
		sec, known := sectionNamed(name)
		if !known {
			unknown = append(unknown, name)
			continue
		}
		o := outs[name]
		d := Dump{Name: sec.name, Data: o.data, Stderr: errs[name], ExitCode: o.exitCode}
		res.Sections = append(res.Sections, d)
		if sec.kind == proxyModeAnswer {
			if o.exitCode == 0 && !o.cut {
				res.ProxyMode = excerpt.Clip(strings.TrimSpace(string(o.data)))
			}
			continue
		}
		d.Family = familyOf(sec.name)
		res.Dumps = append(res.Dumps, d)
		if o.cut {
			res.Warnings = append(res.Warnings, warn(trace.CodeDumpIncomplete, fmt.Sprintf("%s output was cut off", sec.name)))
		}
	}
	if len(unknown) > 0 {
		res.Warnings = append(res.Warnings, warn(trace.CodeDumpIrregular, unknownSections(unknown)))
	}
	res.Warnings = append(res.Warnings, conntrackWarnings(stdout, res)...)
	if routesAbsent(stdout) && !slices.ContainsFunc(res.Dumps, func(d Dump) bool { return slices.Contains(RouteDumps, d.Name) }) {
		res.Warnings = append(res.Warnings, warn(trace.CodeRoutesIncomplete, "the node gave none of its routes or interfaces (neither /proc/net nor ip could be read): the path after DNAT is not shown"))
	}
	analyze(res, absent)
	return res
}

// conntrackWarnings says which connection tables the cap cut, and when the
// script observed but no connection table came back.
func conntrackWarnings(stdout []byte, res *Result) []trace.Warning {
	var out []trace.Warning
	for _, name := range ConntrackCapped(stdout) {
		out = append(out, warn(trace.CodeConntrackCapped, fmt.Sprintf("%s was cut off at the collection cap (--conntrack-max-bytes): the observed connections are those of the part that was read", name)))
	}
	asked := bytes.Contains(stdout, []byte(Marker+" absent "+DumpConntrackProc+"\n")) || slices.ContainsFunc(res.Dumps, func(d Dump) bool { return IsConntrackSection(d.Name) })
	read := slices.ContainsFunc(res.Dumps, func(d Dump) bool {
		return (d.Name == DumpConntrackProc || d.Name == DumpConntrackList || d.Name == DumpConntrackList6) && d.ExitCode == 0
	})
	if asked && !read {
		out = append(out, warn(trace.CodeConntrackUnavailable, "the node's connection table could not be read (no /proc/net/nf_conntrack, and no conntrack command in the image or it failed): observed connections are not shown"))
	}
	return out
}

// unknownSections is the warning about sections the dump script does not
// collect: their names, quoted and clipped, the first few of them.
func unknownSections(names []string) string {
	quoted := make([]string, 0, maxNamedUnknown)
	for _, n := range names[:min(len(names), maxNamedUnknown)] {
		quoted = append(quoted, excerpt.Quote(n))
	}
	list := strings.Join(quoted, ", ")
	if more := len(names) - len(quoted); more > 0 {
		list += fmt.Sprintf(" and %d more", more)
	}
	return fmt.Sprintf("the node's output holds sections the dump script does not collect, dropped unread: %s", list)
}

// routesAbsent tells whether the output reports a route section absent
// (output without the route part says nothing about routes).
func routesAbsent(stdout []byte) bool {
	for _, name := range RouteDumps {
		if bytes.Contains(stdout, []byte(Marker+" absent "+name+"\n")) {
			return true
		}
	}
	return false
}

// splitStdout returns the sections by name in output order, and whether the
// final marker was seen.
func splitStdout(out []byte) (map[string]*output, []string, []string, bool) {
	sections := map[string]*output{}
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
			s := &output{}
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
			// Only the rule dumps the script runs: a name is untrusted
			// text.
			if name := string(line[len(absentPrefix):]); isRuleDump(name) && !slices.Contains(absent, name) {
				absent = append(absent, name)
			}
		case string(line) == Marker+" done":
			done = true
		}
		// stray lines are skipped.
	}
	return sections, order, absent, done
}

// isRuleDump tells whether name is one of the rule dumps the script takes.
func isRuleDump(name string) bool {
	s, ok := sectionNamed(name)
	return ok && s.kind == rulesDump
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

// Compiled on first use, not at every start of the binary.
var (
	// kubelet (1.17+) creates one of these in the mangle table; this is how
	// iptables-wrapper tells which backend the node uses.
	kubeletHintRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) `) })
	// kube-proxy's iptables (and ipvs) mode always creates KUBE-SERVICES.
	kubeProxyChainRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^:KUBE-SERVICES `) })
	// kube-proxy's nftables mode owns table "kube-proxy" in ip and ip6.
	nftKubeProxyRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^table (ip|ip6) kube-proxy \{`) })
)

type iptFacts struct {
	dumps     []string // names of the backend's dumps with data
	hint      bool
	kubeProxy bool
	ruleLines int // lines starting with "-", as iptables-wrapper v2 counted
}

// analyze decides the backend; absent names the rule dumps the image had
// no command for.
func analyze(res *Result, absent []string) {
	ipt := map[string]*iptFacts{BackendIPTablesNFT: {}, BackendIPTablesLegacy: {}}
	nftKubeProxy := false
	for _, d := range res.Dumps {
		if d.ExitCode != 0 {
			msg := excerpt.Line(firstLine(d.Stderr))
			if msg == "" {
				msg = "no message"
			}
			if d.ExitCode == 137 {
				// SIGKILL: in a debug pod, most likely its memory limit.
				msg += "; it was killed, most likely for using more than its container's memory limit: use --collector kube-proxy on a node this big"
			}
			res.Warnings = append(res.Warnings, warn(trace.CodeDumpCommandFailed, fmt.Sprintf("%s failed (exit status %d): %s", d.Name, d.ExitCode, msg)))
		}
		if d.Family == "" {
			continue // a route or conntrack section: no rules
		}
		if d.Name == DumpNFT {
			nftKubeProxy = nftKubeProxyRE().Match(d.Data)
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
		f.hint = f.hint || kubeletHintRE().Match(d.Data)
		f.kubeProxy = f.kubeProxy || kubeProxyChainRE().Match(d.Data)
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
		res.Warnings = append(res.Warnings, warn(trace.CodeKubeProxyRulesMissing, fmt.Sprintf("no kube-proxy rules found, and the debug image has no %s to read the rest with: pass --image with an image that has sh, iptables and nft (kube-proxy's own image has them)", strings.Join(absentCommands(absent), ", "))))
	case len(holders) == 0:
		res.Warnings = append(res.Warnings, warn(trace.CodeKubeProxyRulesMissing, "no kube-proxy rules found in iptables-nft, iptables-legacy or nftables (is kube-proxy running on this node, or does another service proxy replace it?)"))
	case len(holders) > 1:
		res.Warnings = append(res.Warnings, warn(trace.CodeRulesInSeveralBackends, fmt.Sprintf("kube-proxy rules exist in more than one backend (%s); %s is used, the others are probably left over from an earlier kube-proxy mode or a second proxy", strings.Join(holders, ", "), backend)))
	}
	if res.ProxyMode == "nftables" && !nftKubeProxy {
		res.Warnings = append(res.Warnings, warn(trace.CodeProxyModeMismatch, "kube-proxy reports mode nftables but the node has no kube-proxy nftables table"))
	}
	if _, ok := res.Dump(DumpIPVS); res.ProxyMode == "ipvs" && !ok {
		res.Warnings = append(res.Warnings, warn(trace.CodeIPVSIncomplete, "kube-proxy reports IPVS mode but the node gave no IPVS table (/proc/net/ip_vs): only its helper iptables rules are traced, without the virtual servers that choose the endpoints"))
	}
}

// iptablesHolder keeps the wrapper's choice unless only the other iptables
// backend has kube-proxy's rules (a kube-proxy image without the wrapper).
func iptablesHolder(wrapper string, ipt map[string]*iptFacts, res *Result) string {
	other := BackendIPTablesLegacy
	if wrapper == BackendIPTablesLegacy {
		other = BackendIPTablesNFT
	}
	if !ipt[wrapper].kubeProxy && ipt[other].kubeProxy {
		res.Warnings = append(res.Warnings, warn(trace.CodeCollectorWarning, fmt.Sprintf("kubelet's chains point to %s but kube-proxy's rules are in %s; %s is used", wrapper, other, other)))
		return other
	}
	return wrapper
}

func countRuleLines(data []byte) int {
	n := 0
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		if len(line) > 0 && line[0] == '[' {
			// iptables-save -c: "[packets:bytes] -A CHAIN ..."
			if i := bytes.IndexByte(line, ']'); i >= 0 {
				line = bytes.TrimLeft(line[i+1:], " ")
			}
		}
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
