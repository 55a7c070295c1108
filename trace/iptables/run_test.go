package iptables_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables/internal/dumpgen"
)

// TestReaderAtAgreesWithParse checks the fast path ParseReaderAt takes for
// runs of rules of one chain against Parse, which takes every line on its
// own: the same chains with the same rules on the same lines, for dumpgen
// dumps larger than the parser's read buffer (runs cross buffer ends), with
// and without counters, with CRLF line ends, and with a line longer than the
// buffer in the middle of a run.
func TestReaderAtAgreesWithParse(t *testing.T) {
	cfg := dumpgen.Default(600, 3000)
	cfg.NodePortEvery = 1
	cfg.LongNames = true
	c, err := dumpgen.Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	plain := buf.String()
	if len(plain) < 1<<20 {
		t.Fatalf("dump is %d bytes, want one larger than the read buffer", len(plain))
	}
	svc := c.Services[len(c.Services)/2]
	chain := svc.Chain(iptables.PrefixService)
	long := strings.Replace(plain, "-A "+chain+" -m statistic", "-A "+chain+" -m comment --comment "+strings.Repeat("x", 300<<10)+" -m statistic", 1)
	if long == plain {
		t.Fatalf("no rule of %s to lengthen", chain)
	}
	for name, dump := range map[string]string{
		"plain":            plain,
		"counters":         string(dumpgen.WithCounters([]byte(plain))),
		"crlf":             strings.ReplaceAll(plain, "\n", "\r\n"),
		"longline":         long,
		"no final newline": strings.TrimSuffix(plain, "\n"),
	} {
		t.Run(name, func(t *testing.T) {
			mem, err := iptables.Parse(strings.NewReader(dump))
			if err != nil {
				t.Fatal(err)
			}
			file, err := iptables.ParseReaderAt(strings.NewReader(dump), int64(len(dump)))
			if err != nil {
				t.Fatal(err)
			}
			if mem.Lines != file.Lines {
				t.Errorf("Lines: Parse %d, ParseReaderAt %d", mem.Lines, file.Lines)
			}
			want, got := rulesByChain(t, mem), rulesByChain(t, file)
			if len(want) < 1000 {
				t.Fatalf("only %d chains parsed", len(want))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseReaderAt differs from Parse (-Parse +ParseReaderAt):\n%s", diff)
			}
		})
	}
}

type lineRule struct {
	Line int
	Text string
}

func rulesByChain(t *testing.T, d *iptables.Dump) map[string][]lineRule {
	t.Helper()
	out := map[string][]lineRule{}
	for _, tb := range d.Tables() {
		for _, c := range tb.Chains() {
			var rules []lineRule
			if err := c.RawRules(func(line int, text string) bool {
				rules = append(rules, lineRule{line, text})
				return true
			}); err != nil {
				t.Fatal(err)
			}
			out[tb.Name+" "+c.Name+" "+c.Policy] = rules
		}
	}
	return out
}
