package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this rackstrap",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := map[string]string{"version": version, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "CGO_ENABLED" {
						info["cgo"] = s.Value
					}
				}
			}
			return render(cmd.OutOrStdout(), g.output, info, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "rackstrap %s (%s, %s)\n", info["version"], info["go"], info["platform"])
			})
		},
	}
}
