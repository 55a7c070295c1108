package debugpod

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump/nodedumptest"
)

// TestOutputIsCapped: a node that prints more than MaxOutput fails with an
// error that names it and the flag, and its debug pod is still deleted.
func TestOutputIsCapped(t *testing.T) {
	big := strings.Repeat("-A KUBE-SERVICES -j ACCEPT\n", 4096) // 108 KiB
	t.Run("debug pod", func(t *testing.T) {
		ex := &nodedumptest.ScriptedExec{T: t, Where: inDebugPod, Steps: []nodedumptest.Step{{Argv: nodedumptest.ScriptCommand, Stdout: nodedumptest.Section(nodedump.DumpIPTablesNFT, big, 0) + nodedumptest.Done}}}
		c := newClient(t, running)
		opts := testOptions(ex)
		opts.MaxOutput = 64 << 10
		_, err := Collect(context.Background(), c, nil, "node-1", opts, nil)
		if !errors.Is(err, nodedump.ErrOutputTooLarge) || !strings.Contains(err.Error(), `node "node-1" printed more than 64Ki`) || !strings.Contains(err.Error(), "--max-dump-size 128Ki") {
			t.Errorf("got %v", err)
		}
		assertNoPods(t, c)
	})
	t.Run("without a shell", func(t *testing.T) {
		noSh := errors.New(`exec: "sh": executable file not found in $PATH`)
		ex := &nodedumptest.ScriptedExec{T: t, Where: inDebugPod, Steps: []nodedumptest.Step{
			{Argv: nodedumptest.ScriptCommand, Err: noSh},
			{Argv: []string{"iptables-nft-save", "-c"}, Stdout: big[:40<<10]},
			{Argv: []string{"ip6tables-nft-save", "-c"}, Stdout: big[:40<<10]},
		}}
		c := newClient(t, running)
		opts := testOptions(ex)
		opts.MaxOutput = 64 << 10
		_, err := Collect(context.Background(), c, nil, "node-1", opts, nil)
		if !errors.Is(err, nodedump.ErrOutputTooLarge) {
			t.Errorf("got %v", err)
		}
		ex.Done()
		assertNoPods(t, c)
	})
	t.Run("default", func(t *testing.T) {
		if NewOptions().MaxOutput != 256<<20 {
			t.Errorf("default MaxOutput %d", NewOptions().MaxOutput)
		}
	})
}
