package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/rackstrap/rackstrap/controller"
)

// Access control's serve flags (see docs/decisions/0013-access-control.md),
// bound to each command tree's own flag set.
func init() {
	addServeOption(serveOption{bind: func(fl *pflag.FlagSet) func() (controller.Feature, error) {
		c := controller.AuthConfig{}
		fl.StringVar(&c.Mode, "auth", "auto", "API access control: on, off, or auto (on unless --api-listen is loopback only); callers then need an API token or a client certificate")
		fl.StringVar(&c.TLS, "api-tls", "auto", "serve the API over HTTPS: on, off, or auto (on with access control, except with real machines without --agent-tls, whose agents then speak plain HTTP)")
		fl.StringVar(&c.TLSDir, "tls-dir", "", "`DIR` of the local CA and the API's server certificate, made on first start (default DATA-DIR/tls)")
		fl.StringVar(&c.ServerCertFile, "tls-cert", "", "PEM server certificate `FILE` for the API instead of one from the local CA")
		fl.StringVar(&c.ServerKeyFile, "tls-key", "", "PEM private key `FILE` of --tls-cert")
		fl.StringSliceVar(&c.ClientCAFiles, "client-ca", nil, "PEM `FILE` of a CA whose client certificates are accepted besides the local CA's (repeatable); role from the subject OU")
		fl.StringSliceVar(&c.Hosts, "tls-host", nil, "extra DNS `NAME` or address in the issued server certificate (repeatable)")
		fl.DurationVar(&c.SummaryEvery, "auth-audit-every", time.Minute, "how often refused API requests are summarised into one audit entry")
		fl.BoolVar(&c.AgentTLS, "agent-tls", false, "agents on real machines speak TLS: the boot script appends a site initrd with the local CA and the API's HTTPS URL (give --agent-url https://HOST:PORT), and agents may get a client certificate bound to their node (mutual TLS); turns --api-tls auto on with real machines")
		return func() (controller.Feature, error) {
			if c.Mode == "off" && c.TLS == "off" {
				return nil, nil
			}
			return controller.NewAuthFeature(c)
		}
	}})
}
