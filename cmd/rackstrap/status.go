package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

// optional ignores a 404: a controller without the route has nothing to say.
func optional(err error) error {
	var ae *api.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil
	}
	return err
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Summarise every rack: nodes in each state, which need a technician, which controller drives it and its image cache",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := contextOrBackground(cmd)
			racks, err := c.Racks(ctx)
			if err != nil {
				return err
			}
			stuck, err := c.Nodes(ctx, "Failed,Quarantined", "")
			if err != nil {
				return err
			}
			var leases struct {
				Leases []store.RackLease `json:"leases"`
				Now    time.Time         `json:"now"`
			}
			var caches struct {
				Caches []store.RackCache `json:"caches"`
			}
			if err := optional(c.Do(ctx, "GET", "/api/v1/rack-leases", nil, &leases)); err != nil {
				return err
			}
			if err := optional(c.Do(ctx, "GET", "/api/v1/rack-caches", nil, &caches)); err != nil {
				return err
			}
			// Nodes waiting on a gate (a no-power window, firmware behind
			// its baseline): not stuck, but a technician asks why.
			var holds []lifecycle.Hold
			if err := optional(c.Do(ctx, "GET", "/api/v1/holds", nil, &holds)); err != nil {
				return err
			}
			out := struct {
				Racks      []model.RackSummary `json:"racks"`
				NeedsHelp  []model.Node        `json:"needsTechnician"`
				RackLeases []store.RackLease   `json:"rackLeases"`
				RackCaches []store.RackCache   `json:"rackCaches"`
				Held       []lifecycle.Hold    `json:"held"`
			}{racks, stuck, nonNilSlice(leases.Leases), nonNilSlice(caches.Caches), nonNilSlice(holds)}
			return render(cmd.OutOrStdout(), g.output, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "RACK\tNODES\tSTATES")
				for _, r := range racks {
					var parts []string
					for _, s := range model.States {
						if n := r.States[s]; n > 0 {
							parts = append(parts, fmt.Sprintf("%s %d", s, n))
						}
					}
					name := r.Rack
					if name == "" {
						name = "(no rack)"
					}
					fmt.Fprintf(w, "%s\t%d\t%s\n", name, r.Nodes, strings.Join(parts, ", "))
				}
				if len(leases.Leases) > 0 {
					// Ages against the controller's clock: leases are its.
					fmt.Fprintln(w, "\nRACK LEASE\tCONTROLLER\tUNTIL\tHAND-OVERS")
					for _, l := range leases.Leases {
						until := l.Expires.Format(time.RFC3339)
						if left := l.Expires.Sub(leases.Now); left > 0 {
							until += fmt.Sprintf(" (in %s)", left.Round(time.Second))
						} else {
							until += " (expired: any controller may take it)"
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", l.Rack, l.Holder, until, l.Epoch-1)
					}
				}
				if len(caches.Caches) > 0 {
					fmt.Fprintln(w, "\nRACK CACHE\tURL\tSTATE")
					for _, c := range caches.Caches {
						state := "live until " + c.Expires.Format(time.RFC3339)
						if !c.Live {
							state = "expired " + c.Expires.Format(time.RFC3339) + ": nodes fetch from the controller"
						}
						fmt.Fprintf(w, "%s\t%s\t%s\n", c.Rack, c.URL, state)
					}
				}
				if len(holds) > 0 {
					fmt.Fprintln(w, "\nHELD\tBY\tUNTIL\tWHY")
					for _, h := range holds {
						by := h.Gate
						if h.Rule != "" {
							by += " (" + h.Rule + ")"
						}
						until := "the gate lets it go"
						if !h.RetryAt.IsZero() {
							until = h.RetryAt.Format(time.RFC3339)
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", h.Node, by, until, h.Reason)
					}
				}
				if len(stuck) > 0 {
					fmt.Fprintln(w, "\nNEEDS A TECHNICIAN\tSTATE\tWHY")
					for _, n := range stuck {
						why := string(n.FailureClass)
						if n.State == model.Quarantined {
							why = "validation findings: rackstrap nodes show " + n.Name
						}
						fmt.Fprintf(w, "%s\t%s\t%s\n", n.Name, n.State, why)
					}
				}
			})
		},
	}
}

func newProvisionCmd(g *globals) *cobra.Command {
	var (
		rack                string
		all, handOff, watch bool
		every               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "provision (--rack R | --all | NODE...)",
		Short: "Ask the controller to provision nodes to Ready (or hand them off with --hand-off)",
		Long: `Set the desired outcome of the nodes to ready (or handed-off) and let the
controller drive them. Nodes that are Failed or Quarantined are left alone and
reported: fix them and use 'rackstrap nodes act NODE retry|revalidate'.
Idempotent: a node already there is reported as such.`,
		Example: `  rackstrap provision --rack r12
  rackstrap provision --all --hand-off
  rackstrap provision r12-n01 r12-n02
  rackstrap provision --all --watch`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (rack != "") == all && len(args) == 0 || (rack != "" || all) && len(args) > 0 {
				return errors.New("give --rack R, --all, or node names (one of them)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := contextOrBackground(cmd)
			names := args
			if len(names) == 0 {
				nodes, err := c.Nodes(ctx, "", rack)
				if err != nil {
					return err
				}
				if len(nodes) == 0 {
					return fmt.Errorf("no nodes in %s: declare them with 'rackstrap apply rack.yaml'", map[bool]string{true: "the controller", false: "rack " + rack}[all])
				}
				for _, n := range nodes {
					names = append(names, n.Name)
				}
			}
			type line struct {
				Node, Result string
				Operation    int64 `json:",omitempty"`
			}
			// Ask for every node, a few requests at a time (a fleet is
			// thousands of them); the report keeps the order asked.
			report := make([]line, len(names))
			var (
				skipped atomic.Int64
				acts    errgroup.Group
			)
			acts.SetLimit(16)
			for i, name := range names {
				acts.Go(func() error {
					op, err := c.Act(ctx, name, lifecycle.ActProvision, handOff)
					var ae *api.APIError
					switch {
					case errors.As(err, &ae) && ae.Status == 409:
						report[i] = line{Node: name, Result: "skipped: " + ae.Error_.Message}
						skipped.Add(1)
					case err != nil:
						return fmt.Errorf("provision %s: %w", name, err)
					default:
						report[i] = line{Node: name, Result: op.Status, Operation: op.ID}
					}
					return nil
				})
			}
			if err := acts.Wait(); err != nil {
				return err
			}
			if watch {
				if skipped.Load() > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d nodes skipped (Failed, Quarantined or decommissioning): see 'rackstrap status'\n", skipped.Load(), len(names))
				}
				return watchProgress(ctx, c, cmd.OutOrStdout(), rack, names, handOff, every)
			}
			if err := render(cmd.OutOrStdout(), g.output, report, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NODE\tRESULT\tOPERATION")
				for _, l := range report {
					fmt.Fprintf(w, "%s\t%s\t%d\n", l.Node, l.Result, l.Operation)
				}
			}); err != nil {
				return err
			}
			if n := skipped.Load(); n > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d nodes skipped (Failed, Quarantined or decommissioning): see 'rackstrap status'\n", n, len(names))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rack, "rack", "", "every node of this rack")
	cmd.Flags().BoolVar(&all, "all", false, "every node")
	cmd.Flags().BoolVar(&handOff, "hand-off", false, "hand the nodes to the local cluster once Ready")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the run until every node rests: per-state counts, rate and ETA (one updating line on a terminal, a plain line every --every otherwise)")
	cmd.Flags().DurationVar(&every, "every", 5*time.Second, "with --watch and no terminal: how often to print a line")
	return cmd
}
