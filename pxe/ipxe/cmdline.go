package ipxe

import (
	"errors"
	"fmt"
	"strings"
)

// Param is one kernel command-line parameter: a bare flag ("quiet") or a
// key=value pair ("console=ttyS0,115200"). Value may contain spaces; it is
// then double-quoted when rendered, the only quoting Linux understands.
type Param struct {
	Key      string
	Value    string
	HasValue bool
}

// Cmdline is an ordered kernel command line. Order matters to the kernel
// (the last console= wins the /dev/console), so it is a list, not a map.
type Cmdline []Param

// ErrCmdline is wrapped by every command-line validation error.
var ErrCmdline = errors.New("invalid kernel command line")

// Flag returns the command line with a bare flag appended.
func (c Cmdline) Flag(key string) Cmdline { return append(c, Param{Key: key}) }

// Set returns the command line with key=value appended, or with the value of
// an existing key replaced in place (so defaults can be overridden without
// growing duplicates).
func (c Cmdline) Set(key, value string) Cmdline {
	for i := range c {
		if c[i].Key == key {
			out := append(Cmdline(nil), c...)
			out[i] = Param{Key: key, Value: value, HasValue: true}
			return out
		}
	}
	return append(c, Param{Key: key, Value: value, HasValue: true})
}

// Get returns the value of the last occurrence of key (the one the kernel
// and most parsers honour).
func (c Cmdline) Get(key string) (string, bool) {
	for i := len(c) - 1; i >= 0; i-- {
		if c[i].Key == key {
			return c[i].Value, true
		}
	}
	return "", false
}

// Validate reports the first parameter that cannot be rendered so that the
// kernel reads it back unchanged.
func (c Cmdline) Validate() error {
	for _, p := range c {
		if err := p.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (p Param) validate() error {
	if p.Key == "" {
		return fmt.Errorf("%w: empty parameter name", ErrCmdline)
	}
	for _, r := range p.Key {
		if r <= ' ' || r >= 0x7f || r == '=' || r == '"' {
			return fmt.Errorf("%w: parameter name %q: use printable ASCII without spaces, '=' or '\"'", ErrCmdline, p.Key)
		}
	}
	if !p.HasValue && p.Value != "" {
		return fmt.Errorf("%w: flag %q carries a value; set HasValue", ErrCmdline, p.Key)
	}
	for _, r := range p.Value {
		if r < ' ' || r >= 0x7f || r == '"' {
			return fmt.Errorf("%w: value of %q: %q holds a quote or a non-printable character", ErrCmdline, p.Key, p.Value)
		}
	}
	return nil
}

// String renders the command line as the kernel expects it. Invalid
// parameters are rendered as they are; call Validate first.
func (c Cmdline) String() string {
	var b strings.Builder
	for i, p := range c {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.Key)
		if !p.HasValue {
			continue
		}
		b.WriteByte('=')
		if p.Value == "" || strings.ContainsRune(p.Value, ' ') {
			b.WriteByte('"')
			b.WriteString(p.Value)
			b.WriteByte('"')
		} else {
			b.WriteString(p.Value)
		}
	}
	return b.String()
}

// ParseCmdline reads a command line the way Linux's next_arg does: words are
// separated by spaces outside double quotes, the first '=' splits key from
// value, and quote characters are dropped. Input the kernel would read
// ambiguously (an unterminated quote, control characters) is an error.
func ParseCmdline(s string) (Cmdline, error) {
	var out Cmdline
	i := 0
	for {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i >= len(s) {
			return out, nil
		}
		var word strings.Builder
		inQuote, hasEq := false, false
		var key string
		for ; i < len(s); i++ {
			ch := s[i]
			if ch < ' ' || ch >= 0x7f {
				return nil, fmt.Errorf("%w: byte %#x at offset %d", ErrCmdline, ch, i)
			}
			if ch == '"' {
				inQuote = !inQuote
				continue
			}
			if ch == ' ' && !inQuote {
				break
			}
			if ch == '=' && !hasEq {
				hasEq = true
				key = word.String()
				word.Reset()
				continue
			}
			word.WriteByte(ch)
		}
		if inQuote {
			return nil, fmt.Errorf("%w: unterminated quote", ErrCmdline)
		}
		p := Param{Key: word.String()}
		if hasEq {
			p = Param{Key: key, Value: word.String(), HasValue: true}
		}
		if err := p.validate(); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
}
