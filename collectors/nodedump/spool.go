package nodedump

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
)

// A node's dump is tens of megabytes on a large cluster, and a trace with
// --all-nodes collects hundreds of nodes: held in memory until every node
// is in, the dumps alone would take gigabytes. With RunOptions.SpoolDir a
// node's output goes to a file of its own while the script runs; what the
// collectors need at once (the backend, kube-proxy's mode, the warnings) is
// read from it when the run ends, and the dumps themselves are dropped from
// memory until Result.Load reads them back for parsing.

// spool is where a spooled Result's output lies: the file and each dump's
// place in it.
type spool struct {
	path string
	// dumps and sections are Result.Dumps' and Result.Sections' places in
	// the file, index for index.
	dumps, sections []span
	// loaded is the file's content while the dumps are loaded.
	loaded []byte
}

// span is one dump's place in its spool file.
type span struct{ off, n int }

// spoolFilePattern names spool files: fixed text and a random part from
// os.CreateTemp, never anything a node printed.
const spoolFilePattern = "spool-*"

// runSpooled is Run with the script's standard output streamed to a file of
// its own in dir (mode 0600, from os.CreateTemp). The file is removed when
// the run fails; on success the Result owns it until Close.
func runSpooled(ctx context.Context, ex Executor, node string, target Target, o RunOptions) (res *Result, err error) {
	f, err := os.CreateTemp(o.SpoolDir, spoolFilePattern)
	if err != nil {
		return nil, fmt.Errorf("node %q: cannot spool its output: %w", node, err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close() // (an error: it may be closed already)
			os.Remove(f.Name())
		}
	}()
	var stderr bytes.Buffer
	out := bufio.NewWriterSize(f, 1<<20)
	limit := newOutputCap(o.MaxOutput)
	err = limit.exec(ctx, ex, target, CommandFor(o.Script), out, &stderr)
	switch {
	case limit.exceeded():
		return nil, limit.tooLarge(node)
	case err != nil && ctx.Err() == nil && noShell(err, stderr.Bytes()):
		// A distroless image: run each dump on its own (in memory: one
		// node's commands, then spooled like the script's output).
		res, err := runDirect(ctx, ex, node, target, newOutputCap(o.MaxOutput), o.Script)
		if err != nil {
			return nil, err
		}
		return res, res.spoolTo(o.SpoolDir)
	case err != nil:
		return nil, err
	}
	if err := out.Flush(); err != nil {
		return nil, fmt.Errorf("node %q: cannot spool its output: %w", node, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("node %q: cannot spool its output: %w", node, err)
	}
	// Reading the output back and splitting it is CPU work on a whole
	// dump: at most one node per core does it at once, so that the nodes
	// collected in parallel (--parallel) wait on disk rather than in
	// memory.
	select {
	case analyzing <- struct{}{}:
		defer func() { <-analyzing }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	data, err := os.ReadFile(f.Name())
	if err != nil {
		return nil, fmt.Errorf("node %q: cannot read its spooled output back: %w", node, err)
	}
	res = ParseOutput(node, data, stderr.Bytes())
	res.unloadInto(f.Name(), data)
	keep = true
	return res, nil
}

// analyzing bounds how many spooled outputs are read back and split at
// once: one per core.
var analyzing = make(chan struct{}, runtime.GOMAXPROCS(0))

// spoolTo writes the dumps of a Result held in memory to a new spool file
// in dir and drops them from memory.
func (r *Result) spoolTo(dir string) error {
	f, err := os.CreateTemp(dir, spoolFilePattern)
	if err != nil {
		return fmt.Errorf("node %q: cannot spool its output: %w", r.Node, err)
	}
	var data []byte
	var dumps, sections []span
	place := func(d Dump) span {
		s := span{off: len(data), n: len(d.Data)}
		data = append(data, d.Data...)
		return s
	}
	for _, d := range r.Dumps {
		dumps = append(dumps, place(d))
	}
	for _, d := range r.Sections {
		sections = append(sections, place(d))
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("node %q: cannot spool its output: %w", r.Node, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("node %q: cannot spool its output: %w", r.Node, err)
	}
	r.spool = &spool{path: f.Name(), dumps: dumps, sections: sections}
	r.unload()
	return nil
}

// unloadInto records where each dump of r lies in data, the content of the
// spool file at path, and drops the dumps from memory. ParseOutput cuts
// every dump out of the output without copying, so a dump's place is where
// its bytes start in data (a slice's capacity runs to the end of data); a
// dump that is not part of data (none today) stays in memory.
func (r *Result) unloadInto(path string, data []byte) {
	sp := &spool{path: path}
	place := func(d Dump) span {
		off := cap(data) - cap(d.Data)
		switch {
		case off < 0 || off+len(d.Data) > len(data):
			return span{off: -1}
		case len(d.Data) == 0:
			// An empty dump is dropped too: even empty, a slice of data
			// would keep all of it in memory.
			return span{off: 0}
		case &data[off] != &d.Data[0]:
			return span{off: -1}
		}
		return span{off: off, n: len(d.Data)}
	}
	for _, d := range r.Dumps {
		sp.dumps = append(sp.dumps, place(d))
	}
	for _, d := range r.Sections {
		sp.sections = append(sp.sections, place(d))
	}
	r.spool = sp
	r.unload()
}

// unload drops the dumps that lie in the spool file from memory.
func (r *Result) unload() {
	for i, s := range r.spool.dumps {
		if s.off >= 0 {
			r.Dumps[i].Data = nil
		}
	}
	for i, s := range r.spool.sections {
		if s.off >= 0 {
			r.Sections[i].Data = nil
		}
	}
	r.spool.loaded = nil
}

// Spooled tells whether r's dumps lie in a spool file (RunOptions.SpoolDir)
// rather than in memory: Load reads them back.
func (r *Result) Spooled() bool { return r != nil && r.spool != nil }

// Load reads the dumps of a spooled Result back into memory (their Data);
// for a Result held in memory it does nothing. Unload, or Close, drops them
// again.
func (r *Result) Load() error {
	if !r.Spooled() || r.spool.loaded != nil {
		return nil
	}
	data, err := os.ReadFile(r.spool.path)
	if err != nil {
		return fmt.Errorf("node %q: cannot read its spooled output back: %w", r.Node, err)
	}
	set := func(d *Dump, s span) error {
		if s.off < 0 {
			return nil
		}
		if s.off+s.n > len(data) {
			return fmt.Errorf("node %q: its spooled output was cut short", r.Node)
		}
		d.Data = data[s.off : s.off+s.n : s.off+s.n]
		return nil
	}
	for i, s := range r.spool.dumps {
		if err := set(&r.Dumps[i], s); err != nil {
			return err
		}
	}
	for i, s := range r.spool.sections {
		if err := set(&r.Sections[i], s); err != nil {
			return err
		}
	}
	r.spool.loaded = data
	return nil
}

// Unload drops the dumps of a spooled Result from memory again; Load reads
// them back. A Result held in memory keeps them.
func (r *Result) Unload() {
	if r.Spooled() {
		r.unload()
	}
}

// Close drops a spooled Result's dumps and removes its spool file; the
// Result keeps what was decided from them (backend, mode, warnings). For a
// Result held in memory it does nothing.
func (r *Result) Close() error {
	if !r.Spooled() {
		return nil
	}
	r.unload()
	err := os.Remove(r.spool.path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return err
}

// DumpBytes is the size of r's rule dumps and route sections, in memory or
// spooled.
func (r *Result) DumpBytes() int {
	total := 0
	for i, d := range r.Dumps {
		if r.Spooled() && r.spool.dumps[i].off >= 0 {
			total += r.spool.dumps[i].n
			continue
		}
		total += len(d.Data)
	}
	return total
}
