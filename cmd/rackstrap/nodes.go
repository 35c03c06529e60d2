package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
)

func newNodesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List, inspect and act on nodes through the controller's API",
	}
	cmd.AddCommand(newNodesListCmd(g), newNodesShowCmd(g), newNodesActCmd(g))
	return cmd
}

func newNodesListCmd(g *globals) *cobra.Command {
	var state, rack string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List nodes with their state",
		Example: `  rackstrap nodes list
  rackstrap nodes list --state Failed,Quarantined --rack r12 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			nodes, err := c.Nodes(contextOrBackground(cmd), state, rack)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), g.output, nodes, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tRACK\tSLOT\tSTATE\tDESIRED\tSERIAL\tFAILURE")
				for _, n := range nodes {
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", n.Name, n.Identity.Rack, n.Identity.Slot, n.State, n.Desired, n.Identity.Serial, n.FailureClass)
				}
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only nodes in these states (comma-separated, e.g. Failed,Quarantined)")
	cmd.Flags().StringVar(&rack, "rack", "", "only nodes of this rack")
	return cmd
}

// nodeDetail is what `nodes show` prints: the node, its timeline of steps,
// and the other events recorded about it (DHCP answers, check-ins, state
// changes, operator actions).
type nodeDetail struct {
	model.Node
	Timeline []model.Step       `json:"timeline"`
	Events   []model.AuditEntry `json:"events"`
}

// events keeps the audit entries that are not step intents and outcomes
// (those are the timeline), the newest last, at most limit.
func events(all []model.AuditEntry, limit int) []model.AuditEntry {
	var out []model.AuditEntry
	for _, e := range all {
		if !strings.HasPrefix(e.Action, "step.") {
			out = append(out, e)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

func newNodesShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a node, its failure if any, and its timeline of steps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := contextOrBackground(cmd)
			n, err := c.Node(ctx, args[0])
			if err != nil {
				return err
			}
			tl, err := c.Timeline(ctx, args[0])
			if err != nil {
				return err
			}
			audit, err := c.Audit(ctx, args[0], 0, 10000)
			if err != nil {
				return err
			}
			ev := events(audit, 25)
			return render(cmd.OutOrStdout(), g.output, nodeDetail{n, tl, ev}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Name:\t%s\n", n.Name)
				fmt.Fprintf(w, "State:\t%s (desired %s)\n", n.State, n.Desired)
				if n.FailureClass != "" {
					fmt.Fprintf(w, "Failure:\t%s: %s\n", n.FailureClass, n.FailureMsg)
					fmt.Fprintf(w, "\t(after fixing, run: rackstrap nodes act %s retry)\n", n.Name)
				}
				fmt.Fprintf(w, "Rack/slot:\t%s/%d\n", n.Identity.Rack, n.Identity.Slot)
				fmt.Fprintf(w, "Serial:\t%s\n", n.Identity.Serial)
				fmt.Fprintf(w, "UUID:\t%s\n", n.Identity.UUID)
				fmt.Fprintf(w, "BMC:\t%s\n", n.Identity.BMC)
				fmt.Fprintf(w, "MACs:\t%s\n", strings.Join(n.Identity.MACs, ", "))
				fmt.Fprintf(w, "Profile:\t%s\n", n.Profile)
				if len(n.Findings) > 0 {
					fmt.Fprintf(w, "Findings:\t%s\n", n.Findings)
				}
				fmt.Fprintln(w, "\nSTEP\tATTEMPT\tOUTCOME\tSTARTED\tDURATION\tCLASS\tMESSAGE")
				for _, s := range tl {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Attempt, s.Outcome, s.Started.Local().Format(time.TimeOnly),
						s.Duration(time.Now()).Round(time.Millisecond), s.Class, s.Message)
				}
				fmt.Fprintln(w, "\nEVENT\tAT\tBY\tOUTCOME\tDETAIL")
				for _, e := range ev {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.Action, e.At.Local().Format(time.TimeOnly), e.Actor, e.Outcome, e.Detail)
				}
			})
		},
	}
}

func newNodesActCmd(g *globals) *cobra.Command {
	var handOff bool
	cmd := &cobra.Command{
		Use:   "act NAME ACTION",
		Short: "Ask for an action on a node: provision, retry, revalidate or decommission",
		Example: `  rackstrap nodes act r1-n03 retry
  rackstrap nodes act r1-n05 provision --hand-off`,
		Args: cobra.ExactArgs(2),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			var out []string
			for _, a := range lifecycle.Actions {
				out = append(out, string(a))
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			op, err := c.Act(contextOrBackground(cmd), args[0], lifecycle.Action(args[1]), handOff)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), g.output, op, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "operation %d: %s %s: %s\n", op.ID, op.Action, op.Node, op.Status)
			})
		},
	}
	cmd.Flags().BoolVar(&handOff, "hand-off", false, "provision: hand the node to the local cluster once Ready")
	return cmd
}
