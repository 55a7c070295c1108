package cli

import (
	"bytes"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// BenchmarkNewRootCommand is what every start pays after package init,
// before a command runs: building the command tree and its flags.
func BenchmarkNewRootCommand(b *testing.B) {
	streams := genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}
	b.ReportAllocs()
	for b.Loop() {
		NewRootCommand(streams)
	}
}
