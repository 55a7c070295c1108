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

	mappable bool   // opened with OpenMapped
	mapped   []byte // the file mapped read-only, once Mapped was called
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

// OpenMapped is Open for a caller that keeps everything it parses from the
// dump only until Close: a regular file's bytes are then offered mapped
// (Mapped), which spares the read into a buffer of the file's size. That
// buffer is fresh memory, and the page faults of filling it cost more
// than the parse of an nftables dump. Only a command that reads, decides
// and prints within one Close may use it (simulate); the bytes are gone
// after Close, and GuardFaults must surround their use because a file
// truncated under the mapping faults on access.
func OpenMapped(path string, stdin io.Reader) (*Dump, error) {
	d, err := Open(path, stdin)
	if err == nil {
		d.mappable = true
	}
	return d, err
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

// Size is a regular file's size in bytes, or -1 for a stream (stdin).
func (d *Dump) Size() int64 { return d.size }

// Mapped returns a regular file's bytes mapped read-only when the dump was
// opened with OpenMapped; ok is false otherwise (a stream, an empty file,
// a system without mmap, or a mapping that failed: read it instead). The
// bytes are valid until Close.
func (d *Dump) Mapped() (data []byte, ok bool) {
	if !d.mappable || d.file == nil || d.size <= 0 || int64(int(d.size)) != d.size {
		return nil, false
	}
	if d.mapped == nil {
		m, err := mapFile(d.file, int(d.size))
		if err != nil {
			d.mappable = false
			return nil, false
		}
		d.mapped = m
	}
	return d.mapped, true
}

// Close releases the file and its mapping.
func (d *Dump) Close() error {
	if d.file == nil {
		return nil
	}
	if d.mapped != nil {
		_ = unmapFile(d.mapped)
		d.mapped = nil
	}
	return d.file.Close()
}
