package ipvs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// connTitle starts /proc/net/ip_vs_conn's first line ("Pro FromIP   FPrt
// ToIP     TPrt DestIP   DPrt State       Expires PEName PEData").
var connTitle = []byte("Pro ")

// CountConnections counts the entries of /proc/net/ip_vs_conn without
// keeping them: a node's connection table can hold millions, and only its
// size is wanted (how busy IPVS is, whether stale entries linger). Memory
// stays constant whatever the input's size.
func CountConnections(r io.Reader) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := br.ReadSlice('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(first) > 0) {
		if errors.Is(err, io.EOF) {
			return 0, nil // an empty file: no IPVS on the node
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, &ParseError{Line: 1, Msg: "first line of /proc/net/ip_vs_conn is too long"}
		}
		return 0, fmt.Errorf("read /proc/net/ip_vs_conn: %w", err)
	}
	if !bytes.HasPrefix(first, connTitle) {
		return 0, &ParseError{Line: 1, Msg: fmt.Sprintf("not /proc/net/ip_vs_conn: starts with %s", short(string(first)))}
	}
	n, sawData, buf := 0, false, make([]byte, 64<<10)
	for {
		k, err := br.Read(buf)
		for _, c := range buf[:k] {
			if c == '\n' {
				n++
				sawData = false
			} else {
				sawData = true
			}
		}
		if errors.Is(err, io.EOF) {
			if sawData {
				n++ // a last line without its newline
			}
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read /proc/net/ip_vs_conn: %w", err)
		}
	}
}

// DetectConnections tells whether a prefix of the input is
// /proc/net/ip_vs_conn (its title line).
func DetectConnections(prefix []byte) bool { return bytes.HasPrefix(prefix, connTitle) }
