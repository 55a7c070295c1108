// Each -m module's options, one function per match kind: ruleParser's
// moduleOption hands an option to the match it belongs to.

package iptables

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/trace-svc/kubectl-trace-svc/trace/excerpt"
)

// option is one option of a -m module as the rule gives it: its name, "!"
// before it, and its values.
type option struct {
	module, name string
	neg          bool
	args         []string
}

// one returns the option's single value.
func (o option) one() (string, error) {
	if len(o.args) != 1 {
		return "", fmt.Errorf("-m %s %s wants one value, got %d", excerpt.Clip(o.module), excerpt.Clip(o.name), len(o.args))
	}
	return o.args[0], nil
}

// raw is the option as written, for the record of what was not evaluated.
func (o option) raw() []string {
	out := []string{}
	if o.neg {
		out = append(out, "!")
	}
	return append(append(out, o.name), o.args...)
}

// option reads the port options of tcp, udp, sctp, multiport, …; other
// options (--tcp-flags, --syn) are kept in Other for the walk to judge.
func (m *PortMatch) option(o option, r *Rule) error {
	switch o.name {
	case "--dport", "--destination-port", "--dports", "--destination-ports", "--sport", "--source-port", "--sports", "--source-ports", "--ports":
		v, err := o.one()
		if err != nil {
			return err
		}
		ranges, err := parsePorts(v)
		if err != nil {
			return fmt.Errorf("%s %s: %v", excerpt.Clip(o.name), excerpt.Quote(v), err)
		}
		switch o.name {
		case "--dport", "--destination-port", "--dports", "--destination-ports":
			m.DPorts, m.DNegated = ranges, o.neg
		case "--sport", "--source-port", "--sports", "--source-ports":
			m.SPorts, m.SNegated = ranges, o.neg
		default:
			m.APorts, m.ANe = ranges, o.neg
		}
	default:
		m.Other = append(m.Other, o.raw()...)
	}
	return nil
}

// option reads --src-type, --dst-type and the interface limits.
func (m *AddrTypeMatch) option(o option, r *Rule) error {
	switch o.name {
	case "--src-type", "--dst-type":
		v, err := o.one()
		if err != nil {
			return err
		}
		types := strings.Split(v, ",")
		if o.name == "--src-type" {
			m.SrcType, m.SrcNegated = types, o.neg
		} else {
			m.DstType, m.DstNegated = types, o.neg
		}
	case "--limit-iface-in":
		m.LimitIfaceIn = true
	case "--limit-iface-out":
		m.LimitIfaceOut = true
	default:
		return fmt.Errorf("-m addrtype: unknown option %s", excerpt.Clip(o.name))
	}
	return nil
}

// option reads --mode, --probability, --every, --packet.
func (m *StatisticMatch) option(o option, r *Rule) error {
	if o.neg {
		m.Negated = true
	}
	v, err := o.one()
	if err != nil {
		return err
	}
	switch o.name {
	case "--mode":
		m.Mode = v
	case "--probability":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			return fmt.Errorf("-m statistic --probability %s is not a number between 0 and 1", excerpt.Quote(v))
		}
		m.Probability = f
	case "--every", "--packet":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("-m statistic %s %s is not a count", excerpt.Clip(o.name), excerpt.Quote(v))
		}
		if o.name == "--every" {
			m.Every = n
		} else {
			m.Packet = n
		}
	default:
		return fmt.Errorf("-m statistic: unknown option %s", excerpt.Clip(o.name))
	}
	return nil
}

// option reads the list operation, its name, the time window and the side.
func (m *RecentMatch) option(o option, r *Rule) error {
	if o.neg {
		m.Negated = true
	}
	switch o.name {
	case "--set", "--rcheck", "--update", "--remove":
		m.Op = strings.TrimPrefix(o.name, "--")
	case "--name":
		v, err := o.one()
		if err != nil {
			return err
		}
		m.Name = v
	case "--seconds", "--hitcount":
		v, err := o.one()
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("-m recent %s %s is not a number", excerpt.Clip(o.name), excerpt.Quote(v))
		}
		if o.name == "--seconds" {
			m.Seconds = n
		} else {
			m.HitCount = n
		}
	case "--reap":
		m.Reap = true
	case "--rsource", "--rdest":
		m.Side = strings.TrimPrefix(o.name, "--")
	case "--mask":
		v, err := o.one()
		if err != nil {
			return err
		}
		m.Mask = v
	case "--rttl":
	default:
		return fmt.Errorf("-m recent: unknown option %s", excerpt.Clip(o.name))
	}
	return nil
}

// option reads --mark VALUE[/MASK].
func (m *MarkMatch) option(o option, r *Rule) error {
	if o.name != "--mark" {
		return fmt.Errorf("-m mark: unknown option %s", excerpt.Clip(o.name))
	}
	v, err := o.one()
	if err != nil {
		return err
	}
	val, mask, err := parseMark(v)
	if err != nil {
		return fmt.Errorf("-m mark --mark %s: %v", excerpt.Quote(v), err)
	}
	m.Value, m.Mask, m.Negated = val, mask, o.neg
	return nil
}

// option reads --ctstate/--state; other options are kept in Other.
func (m *ConntrackMatch) option(o option, r *Rule) error {
	switch o.name {
	case "--ctstate", "--state":
		v, err := o.one()
		if err != nil {
			return err
		}
		m.States, m.Negated = strings.Split(v, ","), o.neg
	default:
		m.Other = append(m.Other, o.raw()...)
	}
	return nil
}

// option reads --match-set NAME FLAGS; counter options and
// --return-nomatch are ignored.
func (m *SetMatch) option(o option, r *Rule) error {
	if o.name != "--match-set" && o.name != "--set" {
		// --return-nomatch, counters options and the like.
		return nil
	}
	if len(o.args) != 2 {
		return fmt.Errorf("-m set %s wants a set name and flags", excerpt.Clip(o.name))
	}
	m.Set, m.Flags, m.Negated = o.args[0], o.args[1], o.neg
	return nil
}

// option reads --comment TEXT.
func (m *CommentMatch) option(o option, r *Rule) error {
	if o.name != "--comment" || len(o.args) == 0 {
		return fmt.Errorf("-m comment: want --comment TEXT")
	}
	// iptables-save quotes comments with spaces; kube-proxy's test
	// fakes do not. Both mean the same text.
	v := strings.Join(o.args, " ")
	m.Text = v
	r.Comment = v
	return nil
}

// option reads --nfacct-name NAME.
func (m *NFAcctMatch) option(o option, r *Rule) error {
	if o.name != "--nfacct-name" {
		return fmt.Errorf("-m nfacct: unknown option %s", excerpt.Clip(o.name))
	}
	v, err := o.one()
	if err != nil {
		return err
	}
	m.Name = v
	return nil
}

// option reads anything: the options are kept for the walk to name.
func (m *UnknownMatch) option(o option, r *Rule) error {
	m.Args = append(m.Args, o.raw()...)
	return nil
}
