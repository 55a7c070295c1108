// Command nodescript gives the end-to-end suite the plugin's node dump
// script where no debug pod can run it: TestIPVS's node is a VM without a
// kubelet. "nodescript print" prints the script the debug pod runs with
// sh -c (the defaults: observe on, default caps); "nodescript save" reads
// what the script printed and saves it exactly as --save-dumps does, and
// prints the warnings the plugin would report.
//
//	nodescript print
//	nodescript save -node NODE -stdout FILE -stderr FILE -dir DIR
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/trace-svc/kubectl-trace-svc/collectors/nodedump"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nodescript print | save -node NODE -stdout FILE -stderr FILE -dir DIR")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "print":
		fmt.Print(nodedump.ScriptFor(nodedump.DefaultScriptOptions))
	case "save":
		fs := flag.NewFlagSet("save", flag.ExitOnError)
		node := fs.String("node", "", "the node's name")
		stdout := fs.String("stdout", "", "the script's standard output")
		stderr := fs.String("stderr", "", "the script's standard error")
		dir := fs.String("dir", "", "where to save the sections (NODE.SECTION)")
		_ = fs.Parse(os.Args[2:])
		out, err := os.ReadFile(*stdout)
		if err != nil {
			fail(err)
		}
		errOut, err := os.ReadFile(*stderr)
		if err != nil {
			fail(err)
		}
		res := nodedump.ParseOutput(*node, out, errOut)
		if err := res.Save(*dir); err != nil {
			fail(err)
		}
		for _, w := range res.Warnings {
			fmt.Printf("warning %s: %s\n", w.Code, w.Message)
		}
	default:
		fmt.Fprintf(os.Stderr, "nodescript: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "nodescript: %v\n", err)
	os.Exit(1)
}
