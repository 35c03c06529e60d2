package main

import (
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
)

// authFlags are access control's serve flags (see
// docs/decisions/0013-access-control.md). Every command tree gets its own;
// the values sit behind a lock because serveOption.feature cannot tell
// which tree it serves and reads the latest one registered (one per
// process outside tests).
type authFlags struct {
	mu sync.Mutex
	c  controller.AuthConfig
}

var (
	authFlagsMu     sync.Mutex
	authFlagsLatest *authFlags
)

func init() {
	addServeOption(serveOption{
		register: func(fl *pflag.FlagSet) {
			f := &authFlags{c: controller.AuthConfig{Mode: "auto", TLS: "auto", SummaryEvery: time.Minute}}
			c := &f.c
			fl.Var(lockedString{f, &c.Mode}, "auth", "API access control: on, off, or auto (on unless --api-listen is loopback only); callers then need an API token or a client certificate")
			fl.Var(lockedString{f, &c.TLS}, "api-tls", "serve the API over HTTPS: on, off, or auto (on with access control, except with real machines, whose agents speak plain HTTP)")
			fl.Var(lockedString{f, &c.TLSDir}, "tls-dir", "`DIR` of the local CA and the API's server certificate, made on first start (default DATA-DIR/tls)")
			fl.Var(lockedString{f, &c.ServerCertFile}, "tls-cert", "PEM server certificate `FILE` for the API instead of one from the local CA")
			fl.Var(lockedString{f, &c.ServerKeyFile}, "tls-key", "PEM private key `FILE` of --tls-cert")
			fl.Var(lockedList{f, &c.ClientCAFiles}, "client-ca", "PEM `FILE` of a CA whose client certificates are accepted besides the local CA's (repeatable); role from the subject OU")
			fl.Var(lockedList{f, &c.Hosts}, "tls-host", "extra DNS `NAME` or address in the issued server certificate (repeatable)")
			fl.Var(lockedDuration{f, &c.SummaryEvery}, "auth-audit-every", "how often refused API requests are summarised into one audit entry")
			authFlagsMu.Lock()
			authFlagsLatest = f
			authFlagsMu.Unlock()
		},
		feature: func() (controller.Feature, error) {
			authFlagsMu.Lock()
			f := authFlagsLatest
			authFlagsMu.Unlock()
			if f == nil {
				return nil, nil
			}
			f.mu.Lock()
			c := f.c
			c.ClientCAFiles = append([]string(nil), c.ClientCAFiles...)
			c.Hosts = append([]string(nil), c.Hosts...)
			f.mu.Unlock()
			if c.Mode == "off" && c.TLS == "off" {
				return nil, nil
			}
			return controller.NewAuthFeature(c)
		},
	})
}

type lockedString struct {
	f *authFlags
	p *string
}

func (v lockedString) Set(s string) error {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	*v.p = s
	return nil
}

func (v lockedString) String() string {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	return *v.p
}

func (v lockedString) Type() string { return "string" }

type lockedList struct {
	f *authFlags
	p *[]string
}

func (v lockedList) Set(s string) error {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*v.p = append(*v.p, part)
		}
	}
	return nil
}

func (v lockedList) String() string {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	return "[" + strings.Join(*v.p, ",") + "]"
}

func (v lockedList) Type() string { return "stringSlice" }

type lockedDuration struct {
	f *authFlags
	p *time.Duration
}

func (v lockedDuration) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	*v.p = d
	return nil
}

func (v lockedDuration) String() string {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	return v.p.String()
}

func (v lockedDuration) Type() string { return "duration" }
