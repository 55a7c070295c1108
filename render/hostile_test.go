package render

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/trace"
	"github.com/trace-svc/kubectl-trace-svc/trace/iptables"
)

// hostileText is what a node can put in a rule comment, a chain or
// interface name or a warning: an OSC that retitles the terminal, BEL, a
// clear-screen CSI, a C1 CSI, a byte that is not UTF-8 and a bidi override.
const hostileText = "\x1b]0;owned\a\x1b[2J\u009b1m\xff\u202e"

// escapedHostileText is how the views for people show it.
const escapedHostileText = `\x1b]0;owned\x07\x1b[2J\u009b1m\xff\u202e`

// rawControls are byte sequences none of which may reach the terminal from
// the model's text (the renderer's own colour codes are "\x1b[" followed
// by digits and 'm', never these).
var rawControls = []string{"\x1b]", "\a", "\x1b[2J", "\u009b", "\xff", "\u202e"}

// taint appends hostileText to every string the model holds, so that every
// field, including ones added later, is tried.
func taint(v any) {
	var walk func(reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			if v.CanSet() {
				v.SetString(v.String() + hostileText)
			}
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if v.Field(i).CanSet() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				e := reflect.New(v.Type().Elem()).Elem()
				e.Set(v.MapIndex(k))
				walk(e)
				v.SetMapIndex(k, e)
			}
		}
	}
	walk(reflect.ValueOf(v))
}

func checkTerminalSafe(t *testing.T, what, out string, color bool) {
	t.Helper()
	for _, c := range rawControls {
		if strings.Contains(out, c) {
			t.Errorf("%s: %q reaches the terminal", what, c)
		}
	}
	if !color && strings.Contains(out, "\x1b") {
		t.Errorf("%s: ESC without colour", what)
	}
	if !strings.Contains(out, escapedHostileText) {
		t.Errorf("%s: the hostile text is not shown escaped (%s):\n%.2000s", what, escapedHostileText, out)
	}
}

// TestViewsForPeopleEscapeNodeText: the tree, the per-node table and the
// simulation tree show node-made text escaped, with and without colour;
// JSON keeps it exact; DOT keeps no control character.
func TestViewsForPeopleEscapeNodeText(t *testing.T) {
	for _, fx := range pathFixtures {
		t.Run(fx.name, func(t *testing.T) {
			p := fx.path()
			taint(p)
			for _, color := range []string{"never", "always"} {
				checkTerminalSafe(t, "tree --color "+color, renderTree(t, p, color, false), color == "always")
				checkTerminalSafe(t, "wide tree --color "+color, renderTree(t, p, color, true), color == "always")
			}
			var cmp bytes.Buffer
			if err := PathCompare(&cmp, p); err != nil {
				t.Fatal(err)
			}
			checkTerminalSafe(t, "compare table", cmp.String(), false)

			dot := renderDOT(t, p)
			for _, r := range dot {
				if r < 0x20 && r != '\n' && r != '\t' || r >= 0x7f && r <= 0x9f {
					t.Errorf("DOT holds control character %U", r)
					break
				}
			}

			var js bytes.Buffer
			if err := PathJSON(&js, p); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(js.String(), `\u001b]0;owned\u0007`) {
				t.Errorf("JSON does not keep the text exact:\n%.1000s", js.String())
			}
		})
	}
}

func TestSimulationTreeEscapesNodeText(t *testing.T) {
	d, err := iptables.Parse(strings.NewReader("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SEP-X - [0:0]\n" +
		"-A PREROUTING -m comment --comment \"" + hostileText + "\" -j KUBE-SEP-X\n" +
		"-A KUBE-SEP-X -p tcp -j DNAT --to-destination 10.1.0.1:80\nCOMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	sim, err := iptables.Simulate(d, trace.Packet{Source: fxIP("10.0.0.5"), Destination: fxIP("10.96.0.1"), DestinationPort: 80, Protocol: "tcp"}, iptables.Options{})
	if err != nil {
		t.Fatal(err)
	}
	taint(sim)
	for _, color := range []string{"never", "always"} {
		var b bytes.Buffer
		r, err := NewRenderer(&b, color)
		if err != nil {
			t.Fatal(err)
		}
		if err := SimulationTree(&b, r, sim); err != nil {
			t.Fatal(err)
		}
		checkTerminalSafe(t, "simulation tree --color "+color, b.String(), color == "always")
	}
}
