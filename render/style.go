// Package render draws the results of trace/ for people and programs. It
// writes to an io.Writer and never talks to a cluster.
package render

import (
	"fmt"
	"io"
	"os"

	"github.com/charmbracelet/lipgloss"
	"github.com/mattn/go-isatty"
	"github.com/muesli/termenv"
)

// ColorModes are the values --color accepts.
var ColorModes = []string{"auto", "always", "never"}

// NewRenderer returns a lipgloss renderer for w, decided once from mode:
// "never" writes plain text; "always" colours; "auto" colours only when w is
// a terminal and NO_COLOR is unset. It never queries the terminal (lipgloss's
// own background detection can stall on a pipe or a slow tty).
func NewRenderer(w io.Writer, mode string) (*lipgloss.Renderer, error) {
	r := lipgloss.NewRenderer(w)
	r.SetHasDarkBackground(true)
	profile := termenv.Ascii
	switch mode {
	case "never":
	case "always":
		profile = termenv.ANSI256
	case "auto", "":
		if f, ok := w.(*os.File); ok && os.Getenv("NO_COLOR") == "" &&
			(isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
			profile = termenv.ANSI256
		}
	default:
		return nil, fmt.Errorf("--color %q is not one of auto, always, never", mode)
	}
	r.SetColorProfile(profile)
	return r, nil
}

// palette holds the styles every view shares.
type palette struct {
	good, bad, warn, dim, bold, accent lipgloss.Style
}

func newPalette(r *lipgloss.Renderer) palette {
	return palette{
		good:   r.NewStyle().Foreground(lipgloss.Color("2")),
		bad:    r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		warn:   r.NewStyle().Foreground(lipgloss.Color("3")),
		dim:    r.NewStyle().Foreground(lipgloss.Color("8")),
		bold:   r.NewStyle().Bold(true),
		accent: r.NewStyle().Foreground(lipgloss.Color("6")),
	}
}
