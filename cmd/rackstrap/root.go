package main

import (
	"github.com/spf13/cobra"
)

// globals are the flags every verb shares. Each verb's constructor takes a
// pointer to them so tests can build a fresh command tree per case.
type globals struct {
	server string // controller API base URL (--server, RACKSTRAP_SERVER)
	output string // table, json or yaml (--output)
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
	for _, c := range commands(g) {
		root.AddCommand(c)
	}
	return root
}
