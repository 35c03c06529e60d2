// Package ipxe renders the per-node iPXE scripts Rackstrap serves over HTTP,
// and builds and parses the Linux kernel command lines inside them.
//
// A script is data (Script) turned into text by one template; everything
// that reaches the text is validated first, because iPXE expands ${...}
// settings and splits lines on whitespace, and a stray newline in a node name
// or a URL would become a command.
package ipxe

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"text/template"
	"time"
)

// Action is what a node's script makes it do.
type Action string

const (
	// Boot fetches a kernel and its initrds over HTTP and boots them (the
	// discovery/inspection environment or the installer).
	Boot Action = "boot"
	// LocalDisk leaves iPXE and boots the node's own disk (Ready nodes).
	LocalDisk Action = "local"
	// Chain hands over to another script or boot program by URL.
	Chain Action = "chain"
	// Wait sleeps and asks for the script again (a node the controller is
	// not ready to boot yet).
	Wait Action = "wait"
)

// Script is one node's boot script, before rendering.
type Script struct {
	Node    string   // node name, for the comment line; may be empty
	MAC     string   // the MAC the script was asked for, for the comment line
	Action  Action   // what to do
	Kernel  string   // Boot: kernel URL
	Initrds []string // Boot: initrd URLs, in order
	Cmdline Cmdline  // Boot: kernel parameters (initrd=NAME is added for each initrd)
	Chain   string   // Chain: the URL to chain to; Wait: the script URL to ask again
	// Retry is how long a failed fetch or a Wait waits before trying again;
	// zero means 5 s.
	Retry time.Duration
}

// ErrScript is wrapped by every script validation error.
var ErrScript = errors.New("invalid iPXE script")

//go:embed script.ipxe.tmpl
var scriptText string

var scriptTmpl = template.Must(template.New("script").Parse(scriptText))

// settingRef matches an iPXE setting expansion such as ${net0/mac} or
// ${platform}: the only '$' use allowed in rendered values.
var settingRef = regexp.MustCompile(`\$\{[A-Za-z0-9_./:-]+\}`)

type initrd struct{ URL, Name string }

type view struct {
	Script
	Comment   string
	KernelArg string
	Initrds   []initrd
	RetrySecs int
}

// Render validates s and renders it as an iPXE script.
func Render(s Script) ([]byte, error) {
	v := view{Script: s, RetrySecs: 5}
	if s.Retry != 0 {
		if s.Retry < time.Second || s.Retry > time.Hour {
			return nil, fmt.Errorf("%w: retry %v: use 1s to 1h", ErrScript, s.Retry)
		}
		v.RetrySecs = int(s.Retry.Round(time.Second) / time.Second)
	}
	var err error
	if v.Comment, err = comment(s.Node, s.MAC, s.Action); err != nil {
		return nil, err
	}
	switch s.Action {
	case Boot:
		if err := checkURL("kernel", s.Kernel); err != nil {
			return nil, err
		}
		cl := s.Cmdline
		seen := map[string]bool{}
		for _, u := range s.Initrds {
			if err := checkURL("initrd", u); err != nil {
				return nil, err
			}
			name := initrdName(u)
			if seen[name] {
				return nil, fmt.Errorf("%w: two initrds named %q: give them distinct file names", ErrScript, name)
			}
			seen[name] = true
			v.Initrds = append(v.Initrds, initrd{URL: u, Name: name})
			if !hasInitrdParam(cl, name) {
				// UEFI iPXE only hands an initrd to the kernel's EFI stub when
				// the command line names it.
				cl = append(cl, Param{Key: "initrd", Value: name, HasValue: true})
			}
		}
		if err := cl.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrScript, err)
		}
		for _, p := range cl {
			if err := checkToken(p.Key + "=" + p.Value); err != nil {
				return nil, err
			}
		}
		v.KernelArg = cl.String()
	case Chain, Wait:
		if err := checkURL("chain", s.Chain); err != nil {
			return nil, err
		}
	case LocalDisk:
	default:
		return nil, fmt.Errorf("%w: unknown action %q: use boot, local, chain or wait", ErrScript, s.Action)
	}
	var b bytes.Buffer
	if err := scriptTmpl.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("render iPXE script: %w", err)
	}
	return b.Bytes(), nil
}

func hasInitrdParam(cl Cmdline, name string) bool {
	for _, p := range cl {
		if p.Key == "initrd" && p.Value == name {
			return true
		}
	}
	return false
}

// initrdName is the name iPXE gives a fetched image: its URL's last path
// element.
func initrdName(u string) string {
	if pu, err := url.Parse(u); err == nil {
		return path.Base(pu.Path)
	}
	return path.Base(u)
}

func comment(node, mac string, a Action) (string, error) {
	for _, f := range []string{node, mac} {
		for _, r := range f {
			if r < ' ' || r == 0x7f {
				return "", fmt.Errorf("%w: node name or MAC %q holds a control character", ErrScript, f)
			}
		}
	}
	c := "rackstrap"
	if node != "" {
		c += " node=" + node
	}
	if mac != "" {
		c += " mac=" + mac
	}
	return c + " action=" + string(a), nil
}

// checkURL accepts absolute http, https and tftp URLs that iPXE reads back as
// one word.
func checkURL(what, u string) error {
	if u == "" {
		return fmt.Errorf("%w: %s URL is empty", ErrScript, what)
	}
	if strings.ContainsRune(u, ' ') {
		return fmt.Errorf("%w: %s URL %q holds a space: percent-encode it", ErrScript, what, u)
	}
	if err := checkToken(u); err != nil {
		return fmt.Errorf("%s URL: %w", what, err)
	}
	// Setting references may stand for the host (${next-server}); parse with
	// them replaced by a placeholder.
	pu, err := url.Parse(settingRef.ReplaceAllString(u, "x"))
	if err != nil {
		return fmt.Errorf("%w: %s URL %q: %w", ErrScript, what, u, err)
	}
	switch pu.Scheme {
	case "http", "https", "tftp":
	default:
		return fmt.Errorf("%w: %s URL %q: scheme must be http, https or tftp", ErrScript, what, u)
	}
	if pu.Host == "" {
		return fmt.Errorf("%w: %s URL %q has no host", ErrScript, what, u)
	}
	return nil
}

// checkToken refuses what iPXE would not read back as one literal word:
// whitespace, control characters, a '$' that is not a setting reference, and
// the command separators.
func checkToken(s string) error {
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			if r == ' ' {
				continue // spaces inside a quoted kernel parameter are fine
			}
			return fmt.Errorf("%w: %q holds a control character", ErrScript, s)
		}
	}
	if strings.Contains(settingRef.ReplaceAllString(s, ""), "$") {
		return fmt.Errorf("%w: %q: '$' is only allowed in setting references like ${net0/mac}", ErrScript, s)
	}
	for _, sep := range []string{"||", "&&"} {
		if strings.Contains(s, sep) {
			return fmt.Errorf("%w: %q holds the iPXE operator %q", ErrScript, s, sep)
		}
	}
	return nil
}
