package main

import (
	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/api"
)

// globals are the flags every verb shares. Each verb's constructor takes a
// pointer to them so tests can build a fresh command tree per case.
type globals struct {
	server string // controller API base URL (--server, RACKSTRAP_SERVER)
	output string // table, json or yaml (--output)
	creds  api.Credentials
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "rackstrap",
		Short:         "Rack-scale bare-metal bootstrapper and OS image builder for disconnected datacenters",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.server, "server", envOr("RACKSTRAP_SERVER", "http://127.0.0.1:8080"), "controller API `URL` (env RACKSTRAP_SERVER)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format of read verbs: table, json or yaml")
	root.PersistentFlags().StringVar(&g.creds.Token, "token", envOr("RACKSTRAP_TOKEN", ""), "API `TOKEN` sent to the controller (env RACKSTRAP_TOKEN; create one with 'rackstrap token create')")
	root.PersistentFlags().StringVar(&g.creds.CAFile, "ca-cert", envOr("RACKSTRAP_CA_CERT", ""), "PEM `FILE` of the CA that signed the controller's certificate, for https:// servers (env RACKSTRAP_CA_CERT)")
	root.PersistentFlags().StringVar(&g.creds.CertFile, "client-cert", envOr("RACKSTRAP_CLIENT_CERT", ""), "PEM client certificate `FILE` for mutual TLS (env RACKSTRAP_CLIENT_CERT)")
	root.PersistentFlags().StringVar(&g.creds.KeyFile, "client-key", envOr("RACKSTRAP_CLIENT_KEY", ""), "PEM private key `FILE` of --client-cert (env RACKSTRAP_CLIENT_KEY)")
	for _, c := range commands(g) {
		root.AddCommand(c)
	}
	return root
}

// client returns an API client for --server with the global credentials.
func (g *globals) client() (*api.Client, error) { return api.NewClientWith(g.server, g.creds) }
