// Package file is the offline collector: a node's dump saved to a file (or
// piped to standard input), as attached to a bug report. It opens and reads;
// what the dump means is trace's business.
package file

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
)

// HeadSize is how much of a dump Head returns: enough to tell its format.
const HeadSize = 64 << 10

// Dump is one opened dump.
type Dump struct {
	// Name names the dump in messages: the quoted path, or "from standard
	// input".
	Name string

	file *os.File
	size int64 // -1 unless a regular file
	br   *bufio.Reader
}

// Open opens path ("-" is stdin). A regular file can be read in place
// (ReaderAt); anything else is read once as a stream.
func Open(path string, stdin io.Reader) (*Dump, error) {
	if path == "-" {
		return &Dump{Name: "from standard input", size: -1, br: bufio.NewReaderSize(stdin, HeadSize)}, nil
	}
	d := &Dump{Name: fmt.Sprintf("%q", path), size: -1}
	f, err := os.Open(path)
	if err != nil {
		return nil, cannotOpen(d.Name, err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, cannotOpen(d.Name, err)
	}
	if info.IsDir() {
		_ = f.Close()
		return nil, fmt.Errorf("ruleset %s is a directory; pass the file with the iptables-save or nft list ruleset output", d.Name)
	}
	if info.Mode().IsRegular() {
		d.size = info.Size()
	}
	d.file, d.br = f, bufio.NewReaderSize(f, HeadSize)
	return d, nil
}

// cannotOpen says which ruleset could not be opened, why (without repeating
// the path os.PathError carries) and what to pass instead.
func cannotOpen(name string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("cannot open ruleset %s: %w; pass a file saved with iptables-save or nft list ruleset, or - to read standard input", name, err)
}

// Head returns up to HeadSize bytes from the start without consuming them.
func (d *Dump) Head() ([]byte, error) {
	head, err := d.br.Peek(HeadSize)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("read ruleset %s: %w", d.Name, err)
	}
	return head, nil
}

// Reader reads the dump from its start as a stream.
func (d *Dump) Reader() io.Reader { return d.br }

// ReaderAt gives random access to a regular file's bytes; ok is false for a
// stream. The dump must stay open while the reader is used.
func (d *Dump) ReaderAt() (r io.ReaderAt, size int64, ok bool) {
	if d.file == nil || d.size < 0 {
		return nil, 0, false
	}
	return d.file, d.size, true
}

// Close releases the file.
func (d *Dump) Close() error {
	if d.file == nil {
		return nil
	}
	return d.file.Close()
}
