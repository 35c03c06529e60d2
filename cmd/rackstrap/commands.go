package main

import (
	"os"

	"github.com/spf13/cobra"
)

// commands lists every top-level verb. One file per noun defines newXxxCmd.
func commands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newServeCmd(g),
		newDemoCmd(g),
		newDiscoverCmd(g),
		newApplyCmd(g),
		newProvisionCmd(g),
		newStatusCmd(g),
		newNodesCmd(g),
		newAuditCmd(g),
		newProfileCmd(g),
		newValidateCmd(g),
		newReportCmd(g),
		newImageCmd(g),
		newFirmwareCmd(g),
		newKeysCmd(g),
		newBundleCmd(g),
		newTokenCmd(g),
		newUserCmd(g),
		newPolicyCmd(g),
		newExportCmd(g),
		newSimulateCmd(g),
		newVersionCmd(g),
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
