package nftables

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// Parse reads a ruleset in either format `nft list ruleset` prints: text, or
// JSON (`nft -j`), told apart by the first non-blank byte.
func Parse(r io.Reader) (*Ruleset, error) {
	br := bufio.NewReader(r)
	for {
		b, err := br.Peek(1)
		if err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("%w: the ruleset is empty", ErrMalformed)
			}
			return nil, err
		}
		if bytes.ContainsAny(b, " \t\r\n") {
			br.ReadByte()
			continue
		}
		if b[0] == '{' {
			return ParseJSON(br)
		}
		return ParseText(br)
	}
}
