package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/policy"
)

func newPolicyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "The site's local policy file (serve --policy FILE)",
		Long: `A policy file is YAML, checked strictly (unknown keys are errors, with a
suggestion):

  api_version: ` + policy.APIVersion + `
  trusted_signers:            # images must be signed by one of these
    - name: site-2026
      key_file: /var/lib/rackstrap/keys/trusted/<id>.pub
  require:
    firmware_compliance: true # needs serve --firmware-baseline … --firmware-hold imaging
  images:                     # allowed images per hardware profile (NAME:VERSION patterns)
    by_profile:
      hgx-h100-8gpu: ["gpu-node:2026.11.*"]
    default: ["gpu-node:*"]
  power:
    timezone: Europe/Paris
    no_power_windows:         # no power actions (hence no imaging) in these windows
      - {name: business-hours, days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}

Violations hold the node with the rule's name (audited as node.held).`,
	}
	c.AddCommand(newPolicyLintCmd(g))
	return c
}

func newPolicyLintCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check policy files; every problem is reported with its file, line and key",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			failed := 0
			for _, f := range args {
				p, err := policy.Load(f)
				if err != nil {
					failed++
					var es policy.Errors
					if errors.As(err, &es) {
						for _, e := range es {
							fmt.Fprintln(c.OutOrStdout(), e.Error())
						}
					} else {
						fmt.Fprintln(c.OutOrStdout(), err.Error())
					}
					continue
				}
				if g.output == "json" || g.output == "yaml" {
					if err := render(c.OutOrStdout(), g.output, map[string]any{"file": f, "digest": p.Digest, "rules": p.Rules()}, nil); err != nil {
						return err
					}
					continue
				}
				tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintf(tw, "%s: ok (rules: %s)\n", f, strings.Join(p.Rules(), ", "))
				tw.Flush()
			}
			if failed > 0 {
				return fmt.Errorf("policy lint: %d of %d files have problems", failed, len(args))
			}
			return nil
		},
	}
}
