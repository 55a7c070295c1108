package routes

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseIPRule reads `ip [-6] rule show`: "PRIO:<tab>[not] from SRC [to DST]
// [selectors] ACTION". family (4 or 6) decides what "all" means. Rules come
// back in the order ip printed them, which is the kernel's evaluation order.
func ParseIPRule(data []byte, family int) ([]Rule, []string, error) {
	w := &warnings{section: "ip rule"}
	var out []Rule
	err := eachLine(data, func(no int, line string) error {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil
		}
		if len(out) >= maxItems {
			return fmt.Errorf("ip rule: more than %d rules: %w", maxItems, ErrTooLarge)
		}
		r, err := parseRuleFields(f, family)
		if err != nil {
			w.add("line %d: %v", no, err)
			return nil
		}
		out = append(out, r)
		return nil
	})
	return out, w.done(), err
}

// ruleValueKeys are selectors with one value the lookup does not evaluate.
var ruleValueKeys = map[string]bool{
	"uidrange": true, "ipproto": true, "sport": true, "dport": true, "tun_id": true,
	"suppress_ifgroup": true, "realms": true, "flowlabel": true, "dscp": true,
}

func parseRuleFields(f []string, family int) (Rule, error) {
	r := Rule{SuppressPrefixLen: -1}
	prio, ok := strings.CutSuffix(f[0], ":")
	if !ok {
		return r, fmt.Errorf("no priority in %s", quote(f[0]))
	}
	n, err := strconv.ParseUint(prio, 10, 32)
	if err != nil {
		return r, fmt.Errorf("bad priority %s", quote(prio))
	}
	r.Priority = uint32(n)
	for i := 1; i < len(f); i++ {
		key := f[i]
		val := ""
		if i+1 < len(f) {
			val = f[i+1]
		}
		need := func() error {
			if i+1 >= len(f) {
				return fmt.Errorf("%s without a value", quote(key))
			}
			i++
			return nil
		}
		switch key {
		case "not":
			r.Not = true
		case "from", "to":
			if err := need(); err != nil {
				return r, err
			}
			if val == "all" {
				continue
			}
			p, err := parsePrefix(val, family)
			if err != nil {
				return r, fmt.Errorf("%s: %w", key, err)
			}
			if key == "from" {
				r.From = p
			} else {
				r.To = p
			}
		case "tos", "dsfield":
			if err := need(); err != nil {
				return r, err
			}
			n, err := parseUint(val, 8)
			if err != nil {
				return r, fmt.Errorf("tos: %w", err)
			}
			r.TOS = uint8(n)
		case "fwmark":
			if err := need(); err != nil {
				return r, err
			}
			mark, mask, hasMask := strings.Cut(val, "/")
			m, err := parseUint(mark, 32)
			if err != nil {
				return r, fmt.Errorf("fwmark: %w", err)
			}
			r.FWMark, r.FWMask, r.HasMark = uint32(m), 0xffffffff, true
			if hasMask {
				mk, err := parseUint(mask, 32)
				if err != nil {
					return r, fmt.Errorf("fwmark mask: %w", err)
				}
				r.FWMask = uint32(mk)
			}
		case "iif", "oif":
			if err := need(); err != nil {
				return r, err
			}
			if !validIfName(val) {
				return r, fmt.Errorf("bad device name %s", quote(val))
			}
			if key == "iif" {
				r.IIF = val
			} else {
				r.OIF = val
			}
		case "[detached]":
			r.Detached = true
		case "lookup", "table":
			if err := need(); err != nil {
				return r, err
			}
			r.Action, r.Table = ActionLookup, canonicalTable(val)
		case "goto":
			if err := need(); err != nil {
				return r, err
			}
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return r, fmt.Errorf("bad goto target %s", quote(val))
			}
			r.Action, r.Goto = ActionGoto, uint32(n)
		case "nop":
			r.Action = ActionNop
		case "blackhole", "unreachable", "prohibit":
			r.Action = RuleAction(key)
		case "suppress_prefixlength":
			if err := need(); err != nil {
				return r, err
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < -1 || n > 128 {
				return r, fmt.Errorf("bad suppress_prefixlength %s", quote(val))
			}
			r.SuppressPrefixLen = n
		case "proto", "protocol":
			if err := need(); err != nil {
				return r, err
			}
			r.Protocol = canonicalProto(val)
		case "l3mdev":
			r.Unsupported = append(r.Unsupported, key)
		default:
			if ruleValueKeys[key] {
				if err := need(); err != nil {
					return r, err
				}
				if len(r.Unsupported) < 16 {
					r.Unsupported = append(r.Unsupported, key+" "+val)
				}
				continue
			}
			if strings.HasPrefix(key, "map-to") || key == "realms" {
				i++
				continue
			}
			return r, fmt.Errorf("unknown rule attribute %s", quote(key))
		}
	}
	if r.Action == "" {
		// ip prints an unknown action number as "type N"… or nothing; a
		// rule without an action is not something the kernel evaluates.
		return r, fmt.Errorf("rule %d has no action", r.Priority)
	}
	return r, nil
}
