package nodedump

import (
	"bytes"
	"slices"
	"strconv"

	"github.com/trace-svc/kubectl-trace-svc/trace/conntrack"
)

// Sections of the conntrack snippet (ConntrackScript), which the dump
// script runs last when it observes (ScriptOptions.Observe).
const (
	// DumpConntrackProc is /proc/net/nf_conntrack: every tracked
	// connection, IPv4 and IPv6, in the kernel's layout (`ipv4 2 tcp 6 ...`).
	DumpConntrackProc = conntrack.SectionProc
	// DumpConntrackList and DumpConntrackList6 are `conntrack -L -f ipv4 -o
	// extended` and `-f ipv6`: the same entries through netlink, for
	// kernels built without CONFIG_NF_CONNTRACK_PROCFS.
	DumpConntrackList  = conntrack.SectionList
	DumpConntrackList6 = conntrack.SectionList6
	// DumpIPVSConn is /proc/net/ip_vs_conn, IPVS's connection table (only
	// where the ip_vs module is loaded: kube-proxy's IPVS mode).
	DumpIPVSConn = conntrack.SectionIPVS
	// DumpConntrackLimits is "count N" and "max M": the table's fill and
	// size (net.netfilter.nf_conntrack_count and _max). A full table drops
	// new connections.
	DumpConntrackLimits = conntrack.SectionLimits
)

// ConntrackDumps lists the snippet's section names, in output order
// (trace/conntrack's SectionNames: the names --dump reads back).
var ConntrackDumps = conntrack.SectionNames

// DefaultConntrackMaxBytes caps each conntrack section: about 250,000
// entries of /proc/net/nf_conntrack.
const DefaultConntrackMaxBytes = 64 << 20

// conntrackLineBytes is the shortest a conntrack line really is (an IPv4
// UDP entry in conntrack -L's layout is about 130 bytes): an image without
// head caps by lines, MaxBytes/conntrackLineBytes of them.
const conntrackLineBytes = 128

// ConntrackOptions shape the conntrack snippet.
type ConntrackOptions struct {
	// MaxBytes caps each section (default DefaultConntrackMaxBytes).
	MaxBytes int64
	// AlwaysList runs conntrack -L even when /proc/net/nf_conntrack is
	// readable (by default it runs only when the file is missing or
	// unreadable: both show the same entries).
	AlwaysList bool
}

// ConntrackLineCap is the number of lines a section holds at most when the
// image has no head and the snippet caps with grep -m.
func ConntrackLineCap(maxBytes int64) int64 {
	if maxBytes <= 0 {
		maxBytes = DefaultConntrackMaxBytes
	}
	return max(1, maxBytes/conntrackLineBytes)
}

// ConntrackScript returns the snippet that reads the node's connection
// tables, read-only, for the dump script (ScriptFor) to run after its own
// commands. It needs a POSIX sh, cat, and head or (as in kube-proxy's own
// image, which has no head) GNU grep; conntrack only when the image has
// it.
//
// Each section uses the dump script's markers: "@@trace-svc@@ begin NAME",
// the data, a newline, "@@trace-svc@@ end NAME rc=N"; the command's stderr
// follows "@@trace-svc@@ stderr NAME" on stderr; a missing file or command
// is "@@trace-svc@@ absent NAME". A section holds at most MaxBytes (with
// head) or ConntrackLineCap(MaxBytes) lines (with grep -m); when there was
// more, the line "@@trace-svc@@ capped NAME" follows its end line, and a
// command stopped early by the cap reports rc=0, not its closed-pipe 141.
// With head, and with grep on the /proc files (GNU grep leaves a regular
// file positioned after the last line it printed), the capped line is
// exact. With grep on conntrack's pipe it is not: what grep read past its
// last line is gone, so a table at most about 100 KiB over the cap can look
// complete — a section of exactly ConntrackLineCap lines may be cut.
func ConntrackScript(o ConntrackOptions) string {
	maxBytes := o.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultConntrackMaxBytes
	}
	list := "auto"
	if o.AlwaysList {
		list = "always"
	}
	return "ct_cap=" + strconv.FormatInt(maxBytes, 10) +
		"\nct_lines=" + strconv.FormatInt(ConntrackLineCap(maxBytes), 10) +
		"\nct_list=" + list + "\n" + conntrackSnippet
}

// conntrackSnippet reads ct_cap, ct_lines and ct_list, and ct_proc and
// ct_ipvs when set (tests point them at other files). fd 4 is the
// section's stdout while fd 5 carries "cut" and "rc=N" back to the
// function that prints the markers.
const conntrackSnippet = `m='` + Marker + `'
ct_proc=${ct_proc:-/proc/net/nf_conntrack}
ct_ipvs=${ct_ipvs:-/proc/net/ip_vs_conn}
ct_copy() {
	if command -v head >/dev/null 2>&1; then
		head -c "$ct_cap"
		ct_s=$?
		[ "$(head -c 1; echo x)" = x ] || echo cut >&5
	elif command -v grep >/dev/null 2>&1; then
		grep -m "$ct_lines" ''
		ct_s=$?
		[ "$ct_s" = 1 ] && ct_s=0
		if grep -q ''; then echo cut >&5; fi
	else
		# Neither head nor grep (an image with only a shell): the
		# shell's own read, line by line, up to the same cap.
		ct_n=0
		while [ "$ct_n" -lt "$ct_lines" ] && IFS= read -r ct_line; do
			printf '%s\n' "$ct_line"
			ct_n=$((ct_n + 1))
		done
		ct_s=0
		if IFS= read -r ct_line; then echo cut >&5; fi
	fi
	return "$ct_s"
}
ct_end() {
	case $2 in
	*cut*) ct_cut=1 ;;
	*) ct_cut= ;;
	esac
	ct_rc=$3
	case $2 in
	*rc=*)
		ct_rc=${2##*rc=}
		ct_rc=${ct_rc%%[!0-9]*}
		;;
	esac
	[ -n "$ct_cut" ] && [ "$ct_rc" = 141 ] && ct_rc=0
	printf '\n%s end %s rc=%d\n' "$m" "$1" "$ct_rc"
	[ -z "$ct_cut" ] || printf '%s capped %s\n' "$m" "$1"
}
ct_file() {
	if [ -e "$2" ]; then
		printf '\n%s stderr %s\n' "$m" "$1" >&2
		printf '%s begin %s\n' "$m" "$1"
		{ ct_r=$( { ct_copy <"$2"; } 5>&1 >&4); ct_s=$?; } 4>&1
		ct_end "$1" "$ct_r" "$ct_s"
	else
		printf '%s absent %s\n' "$m" "$1"
	fi
}
ct_cmd() {
	ct_name=$1
	shift
	if command -v "$1" >/dev/null 2>&1; then
		printf '\n%s stderr %s\n' "$m" "$ct_name" >&2
		printf '%s begin %s\n' "$m" "$ct_name"
		{ ct_r=$( { { "$@"; echo "rc=$?" >&5; } | ct_copy; } 5>&1 >&4); } 4>&1
		ct_end "$ct_name" "$ct_r" 0
	else
		printf '%s absent %s\n' "$m" "$ct_name"
	fi
}
ct_file ` + DumpConntrackProc + ` "$ct_proc"
if [ "$ct_list" = always ] || ! [ -r "$ct_proc" ]; then
	ct_cmd ` + DumpConntrackList + ` conntrack -L -f ipv4 -o extended
	ct_cmd ` + DumpConntrackList6 + ` conntrack -L -f ipv6 -o extended
fi
ct_file ` + DumpIPVSConn + ` "$ct_ipvs"
# The table's fill. A /proc/sys file gives its whole value only to a read
# from offset 0: the shell's read builtin takes one byte at a time and would
# get the first digit, so only cat or grep may read it.
ct_sysctl() {
	if command -v cat >/dev/null 2>&1; then
		cat "$1"
	elif command -v grep >/dev/null 2>&1; then
		grep '' "$1"
	else
		return 127
	fi
}
if [ -r /proc/sys/net/netfilter/nf_conntrack_count ] &&
	ct_count=$(ct_sysctl /proc/sys/net/netfilter/nf_conntrack_count) &&
	ct_max=$(ct_sysctl /proc/sys/net/netfilter/nf_conntrack_max); then
	printf '\n%s stderr %s\n' "$m" ` + DumpConntrackLimits + ` >&2
	printf '%s begin %s\n' "$m" ` + DumpConntrackLimits + `
	printf 'count %s\nmax %s\n' "$ct_count" "$ct_max"
	printf '\n%s end %s rc=0\n' "$m" ` + DumpConntrackLimits + `
else
	printf '%s absent %s\n' "$m" ` + DumpConntrackLimits + `
fi
`

// IsConntrackSection tells whether a section name is one of the conntrack
// snippet's: they hold connection tables, not rules, and must be kept out
// of the backend analysis.
func IsConntrackSection(name string) bool { return slices.Contains(ConntrackDumps, name) }

// ConntrackCapped returns the names of the sections the snippet marked as
// capped, in output order. Like ParseOutput it steps over each section's
// data to its end marker, so no line of the data can pose as a marker.
func ConntrackCapped(stdout []byte) []string {
	var names []string
	begin := []byte(Marker + " begin ")
	for len(stdout) > 0 {
		line, rest, _ := bytes.Cut(stdout, []byte("\n"))
		stdout = rest
		name, ok := bytes.CutPrefix(line, begin)
		if !ok {
			continue
		}
		end := []byte("\n" + Marker + " end " + string(name) + " rc=")
		i := bytes.Index(stdout, end)
		if i < 0 {
			break
		}
		_, stdout, _ = bytes.Cut(stdout[i+len(end):], []byte("\n"))
		next, after, _ := bytes.Cut(stdout, []byte("\n"))
		if string(next) == Marker+" capped "+string(name) {
			names = append(names, string(name))
			stdout = after
		}
	}
	return names
}
