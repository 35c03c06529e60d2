package checkin

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// BootParams are the agent's settings from the kernel command line, as the
// controller's iPXE script writes them:
//
//	rackstrap.server=https://10.0.0.1:8443 rackstrap.token=… rackstrap.phase=netboot [rackstrap.ca=/etc/rackstrap/ca.pem] [rackstrap.lldp=35s] [rackstrap.disk=/dev/nvme0n1]
type BootParams struct {
	Server string
	Token  string
	Phase  Phase
	// CAFile is the CA bundle inside the initramfs, when the command line
	// names one.
	CAFile string
	// LLDPWait is how long to listen for LLDP neighbours before checking in
	// (rackstrap.lldp=30s); 0 when not asked.
	LLDPWait time.Duration
	// Disk is the device image tasks write to (rackstrap.disk=/dev/nvme0n1,
	// or a kernel name such as nvme0n1, made /dev/nvme0n1); "" lets the
	// agent pick the only candidate disk.
	Disk string
}

// ErrNoBootParams says the command line has none of the rackstrap.* keys:
// this boot was not started by Rackstrap.
var ErrNoBootParams = errors.New("the kernel command line has no rackstrap.server=, rackstrap.token= or rackstrap.phase=; this boot was not started by a Rackstrap boot script (pass --server, --token-file and --phase to check in by hand)")

// maxCmdline bounds what is parsed (the kernel's own limit is 2048 to 4096
// bytes on x86; anything far larger is not a command line).
const maxCmdline = 64 << 10

// ParseCmdline reads the rackstrap.* parameters from a kernel command line
// (/proc/cmdline). It splits words as the kernel does (white space outside
// double quotes; quotes are removed), ignores unknown parameters, lets a
// later rackstrap.* key override an earlier one, stops at "--" (what follows
// belongs to init), and validates what it found.
func ParseCmdline(cmdline string) (BootParams, error) {
	if len(cmdline) > maxCmdline {
		return BootParams{}, fmt.Errorf("kernel command line is %d bytes, over %d: not a command line", len(cmdline), maxCmdline)
	}
	var p BootParams
	var phase, lldpWait, disk string
	seen := false
	for _, w := range splitCmdline(cmdline) {
		if w == "--" {
			break
		}
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			continue
		}
		switch k {
		case "rackstrap.server":
			p.Server, seen = v, true
		case "rackstrap.token":
			p.Token, seen = v, true
		case "rackstrap.phase":
			phase, seen = v, true
		case "rackstrap.ca":
			p.CAFile, seen = v, true
		case "rackstrap.lldp":
			lldpWait = v
		case "rackstrap.disk":
			disk = v
		}
	}
	if !seen {
		return BootParams{}, ErrNoBootParams
	}
	var errs []error
	if p.Server == "" {
		errs = append(errs, errors.New("rackstrap.server= is missing or empty"))
	} else if u, err := url.Parse(p.Server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		errs = append(errs, fmt.Errorf("rackstrap.server=%q is not an http:// or https:// URL without credentials", p.Server))
	}
	if p.Token == "" {
		errs = append(errs, errors.New("rackstrap.token= is missing or empty"))
	} else if strings.IndexFunc(p.Token, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' }) >= 0 {
		errs = append(errs, errors.New("rackstrap.token= holds characters that are not printable ASCII"))
	}
	if phase == "" {
		errs = append(errs, errors.New("rackstrap.phase= is missing or empty"))
	} else if ph, err := ParsePhase(phase); err != nil {
		errs = append(errs, fmt.Errorf("rackstrap.phase=: %w", err))
	} else {
		p.Phase = ph
	}
	if p.CAFile != "" && !strings.HasPrefix(p.CAFile, "/") {
		errs = append(errs, fmt.Errorf("rackstrap.ca=%q is not an absolute path", p.CAFile))
	}
	if lldpWait != "" {
		d, err := time.ParseDuration(lldpWait)
		if err != nil || d < 0 || d > 10*time.Minute {
			errs = append(errs, fmt.Errorf("rackstrap.lldp=%q is not a duration between 0s and 10m", lldpWait))
		} else {
			p.LLDPWait = d
		}
	}
	switch {
	case disk == "":
	case strings.HasPrefix(disk, "/dev/") && !strings.Contains(disk, "/../"):
		p.Disk = disk
	case !strings.ContainsAny(disk, "/") && disk != "." && disk != "..":
		p.Disk = "/dev/" + disk
	default:
		errs = append(errs, fmt.Errorf("rackstrap.disk=%q is neither a /dev/ path nor a kernel disk name such as nvme0n1", disk))
	}
	if err := errors.Join(errs...); err != nil {
		return BootParams{}, fmt.Errorf("kernel command line: %w; check the node's boot script on the controller", err)
	}
	return p, nil
}

// splitCmdline splits as the kernel's next_arg does: words are separated by
// white space outside double quotes, and the quotes are dropped
// (rackstrap.server="http://x" and "rackstrap.server=http://x" both work).
func splitCmdline(s string) []string {
	var words []string
	var b strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == 0):
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	return words
}
