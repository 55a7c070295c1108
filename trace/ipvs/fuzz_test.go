package ipvs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs"
	"github.com/trace-svc/kubectl-trace-svc/trace/ipvs/internal/ipvsfmt"
)

// FuzzParse checks that Parse never panics, and that what it accepts
// prints (in the form it was read from) to text that parses back to the
// same text: no fact is lost or invented on the way.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/published/*.txt")
	// and a sample of the tables kube-proxy's IPVS tests left
	for _, form := range []string{"ip_vs", "ipvsadm.save"} {
		fixtures, _ := filepath.Glob("../../testdata/ipvs/kube-proxy/*/*/" + form)
		for i, name := range fixtures {
			if i%16 == 0 {
				files = append(files, name)
			}
		}
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, form := range []ipvs.Format{ipvs.FormatProc, ipvs.FormatList, ipvs.FormatSave} {
		f.Add([]byte(ipvsfmt.String(form, sample())))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		tab, err := ipvs.ParseWithLimits(bytes.NewReader(in), ipvs.Limits{MaxServices: 256, MaxReals: 1024, MaxLineBytes: 1024})
		if err != nil || tab.Format == "" {
			return
		}
		text := ipvsfmt.String(tab.Format, tab)
		tab2, err := ipvs.Parse(strings.NewReader(text))
		if err != nil {
			t.Fatalf("printed table does not parse: %v\n%s", err, text)
		}
		if text2 := ipvsfmt.String(tab.Format, tab2); text2 != text {
			t.Fatalf("print/parse is not stable:\n%s\n---\n%s", text, text2)
		}
		_, _ = ipvs.CountConnections(bytes.NewReader(in))
	})
}
