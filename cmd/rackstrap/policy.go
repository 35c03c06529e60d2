package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
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
    firmware_compliance: true # nodes behind serve --firmware-baseline are held …
    firmware_compliance_before: [imaging, handoff]  # … before these moves (default both)
  images:                     # allowed images per hardware profile (NAME:VERSION patterns)
    by_profile:
      hgx-h100-8gpu: ["gpu-node:2026.11.*"]
    default: ["gpu-node:*"]
  power:
    timezone: Europe/Paris
    no_power_windows:         # no power on, cycle or off in these windows
      - {name: business-hours, days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00"}

Violations hold the node where it is, with the rule's name (audited as node.held, listed
by 'rackstrap policy holds'), instead of failing it: a node whose power action falls in a
no-power window keeps its step's intent open and moves on when the window ends.`,
	}
	c.AddCommand(newPolicyLintCmd(g), newPolicyShowCmd(g), newPolicyHoldsCmd(g))
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

func newPolicyShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the policy the controller enforces: its file, digest, rules and the no-power window in force now",
		Long: "Asks the controller (--server) for the policy in force (GET /api/v1/policy). Viewers,\n" +
			"operators, auditors and admins may read it.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var v policy.View
			if err := cl.Do(contextOrBackground(c), "GET", "/api/v1/policy", nil, &v); err != nil {
				return fmt.Errorf("policy show: %w", err)
			}
			return render(c.OutOrStdout(), g.output, v, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "file:\t%s\n", v.File)
				fmt.Fprintf(tw, "digest:\t%s\n", v.Digest)
				fmt.Fprintf(tw, "rules:\t%s\n", strings.Join(v.Rules, ", "))
				if v.Power != nil {
					fmt.Fprintf(tw, "power now:\t%s\n", v.Power.Message)
				} else {
					fmt.Fprintf(tw, "power now:\tallowed\n")
				}
			})
		},
	}
}

func newPolicyHoldsCmd(g *globals) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "holds [--node NAME]",
		Short: "List the nodes held where they are, with the gate and rule that hold them",
		Long: "Asks the controller (--server) for the nodes its engine holds (GET /api/v1/holds): held by\n" +
			"a gate before imaging or hand-off (the policy's validation, images and firmware rules, the\n" +
			"firmware feature), or inside a step whose power action fell in a no-power window (tried\n" +
			"again at RETRY). A held node is not failed: it moves on by itself once the rule allows it.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			path := "/api/v1/holds"
			if node != "" {
				path += "?node=" + url.QueryEscape(node)
			}
			var holds []lifecycle.Hold
			if err := cl.Do(contextOrBackground(c), "GET", path, nil, &holds); err != nil {
				return fmt.Errorf("policy holds: %w", err)
			}
			return render(c.OutOrStdout(), g.output, holds, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "NODE\tGATE\tRULE\tAT\tSINCE\tRETRY\tREASON")
				for _, h := range holds {
					at := "before " + string(h.Next)
					if h.Step != "" {
						at = "step " + h.Step
					}
					retry := "-"
					if !h.RetryAt.IsZero() {
						retry = h.RetryAt.Local().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Node, h.Gate, dash(h.Rule), at, h.Since.Local().Format(time.DateTime), retry, h.Reason)
				}
			})
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "only this node's hold")
	return cmd
}
