package nodedump

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSaveRefusesNodeNamesThatAreNotNames: the node name is part of every
// file name; one that is not a DNS subdomain is refused before anything is
// written.
func TestSaveRefusesNodeNamesThatAreNotNames(t *testing.T) {
	for _, node := range []string{"../up", "a/b", "/abs", "..", "", "Node_1", strings.Repeat("n", 300)} {
		t.Run(node, func(t *testing.T) {
			top := t.TempDir()
			res := ParseOutput(node, []byte(sec(DumpNFT, "table ip kube-proxy {\n}", 0)+done), nil)
			err := res.Save(filepath.Join(top, "dumps"))
			if err == nil || !strings.Contains(err.Error(), "cannot name a file") {
				t.Fatalf("Save: %v, want a refusal", err)
			}
			if entries, _ := os.ReadDir(top); len(entries) != 0 {
				t.Errorf("%d entries written", len(entries))
			}
		})
	}
}

// TestSaveStaysInDir: a symlink planted in DIR under a dump's name does not
// lead the write out of DIR, and a file already there ends up 0600.
func TestSaveStaysInDir(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "dumps")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(top, "outside")
	if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "node-1.nft")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node-1.proxyMode"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := ParseOutput("node-1", []byte(sec(SectionProxyMode, "nftables", 0)+sec(DumpNFT, "table ip kube-proxy {\n}", 0)+done), nil)
	if err := res.Save(dir); err == nil {
		t.Error("Save followed a symlink out of DIR without an error")
	}
	if got, _ := os.ReadFile(outside); string(got) != "keep" {
		t.Errorf("the file outside DIR now holds %q", got)
	}
	info, err := os.Stat(filepath.Join(dir, "node-1.proxyMode"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("node-1.proxyMode has mode %v, want 0600", info.Mode().Perm())
	}
}

func TestParseOutputDropsUnknownSections(t *testing.T) {
	var stdout strings.Builder
	stdout.WriteString(sec(DumpNFT, "table ip kube-proxy {\n}", 0))
	for i := range 8 {
		stdout.WriteString(sec(fmt.Sprintf("../%d", i), "x", 0))
	}
	stdout.WriteString(sec(strings.Repeat("long", 100), "x", 0) + done)
	res := ParseOutput("n", []byte(stdout.String()), nil)
	var names []string
	for _, d := range res.Sections {
		names = append(names, d.Name)
	}
	if diff := cmp.Diff([]string{DumpNFT}, names); diff != "" {
		t.Errorf("sections kept (-want +got):\n%s", diff)
	}
	want := `the node's output holds sections the dump script does not collect, dropped unread: "../0", "../1", "../2", "../3", "../4" and 4 more`
	if diff := cmp.Diff(want, res.Warnings[0].Message); diff != "" {
		t.Errorf("warning (-want +got):\n%s", diff)
	}
}

// TestSectionsMakeTheScript: the one list of sections makes the script and
// the commands run without a shell.
func TestSectionsMakeTheScript(t *testing.T) {
	for _, s := range dumpSections {
		switch {
		case s.script != "" && !strings.Contains(Script, s.script):
			t.Errorf("the script lacks the part that prints section %s", s.name)
		case s.script == "" && s.argv != nil && !strings.Contains(Script, "run "+s.name+" "+strings.Join(s.command(DefaultScriptOptions), " ")+"\n"):
			t.Errorf("the script does not run section %s", s.name)
		}
	}
	if n := strings.Count(Script, RoutesScript); n != 1 {
		t.Errorf("RoutesScript is in the script %d times, want once", n)
	}
	if !strings.HasSuffix(Script, "printf '%s done\\n' \"$m\"\n") {
		t.Errorf("the script does not end with the done marker:\n%s", Script)
	}
}
