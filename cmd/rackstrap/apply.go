package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/manifest"
	"github.com/rackstrap/rackstrap/controller/model"
)

// applied is one line of apply's report.
type applied struct {
	Node    string `json:"node"`
	Rack    string `json:"rack"`
	Slot    int    `json:"slot"`
	Result  string `json:"result"` // created, unchanged, differs
	Details string `json:"details,omitempty"`
	Op      int64  `json:"operation,omitempty"`
}

func newApplyCmd(g *globals) *cobra.Command {
	var provision bool
	cmd := &cobra.Command{
		Use:   "apply MANIFEST.yaml...",
		Short: "Declare racks and their machines from a manifest (idempotent: re-applying does nothing new)",
		Long: `Create a node for every slot of every rack in the manifests. A node that
exists already is left as it is; when the manifest says something else about
it (serial, BMC, profile), apply reports the difference instead of
overwriting what the controller learned.

Manifest format:

  racks:
    - name: r12                  # rack name; nodes default to r12-n01, r12-n02…
      profile: nvidia-dgx-h100   # default hardware profile of the rack's nodes
      desired: ready             # ready (default), handed-off or enrolled
      handoff: slurm             # cluster handed-off nodes join: slurm or kubernetes
      nodes:
        - slot: 1
          serial: SN001          # expected chassis serial
          bmc: 10.0.12.11        # BMC address or URL
          bmcMAC: aa:bb:cc:00:12:01
          macs: [aa:bb:cc:10:12:01]
          name: gpu-r12-01       # optional
          profile: …             # optional, overrides the rack's
          handoff: kubernetes    # optional, overrides the rack's`,
		Example: `  rackstrap apply rack-r12.yaml
  rackstrap apply racks/*.yaml --provision -o json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var nodes []model.Node
			targets := map[string]string{}
			for _, path := range args {
				m, err := manifest.Load(path)
				if err != nil {
					return fmt.Errorf("%w\nfix the manifest and apply again; nothing was applied", err)
				}
				nodes = append(nodes, m.Nodes()...)
				maps.Copy(targets, m.HandOffTargets())
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := contextOrBackground(cmd)
			var report []applied
			var toProvision []model.Node
			for _, want := range nodes {
				got, created, err := c.CreateNode(ctx, api.NodeCreate{Name: want.Name, Identity: want.Identity, Profile: want.Profile, Desired: want.Desired})
				if err != nil {
					return fmt.Errorf("apply %s: %w (nodes before it were applied; re-running apply is safe)", want.Name, err)
				}
				a := applied{Node: want.Name, Rack: want.Identity.Rack, Slot: want.Identity.Slot, Result: "created"}
				if !created {
					a.Result = "unchanged"
					if d := differences(want, got); d != "" {
						a.Result, a.Details = "differs", d
					}
				}
				if provision && got.State != model.Failed && got.State != model.Quarantined {
					toProvision = append(toProvision, want)
				}
				report = append(report, a)
			}
			// Targets before provisioning: a node must know its cluster
			// before it can be handed off.
			if len(targets) > 0 {
				if err := c.SetHandOffTargets(ctx, targets); err != nil {
					return fmt.Errorf("set hand-off targets: %w (the nodes were applied; re-running apply is safe)", err)
				}
			}
			for _, want := range toProvision {
				op, err := c.Act(ctx, want.Name, lifecycle.ActProvision, want.Desired == model.WantHandedOff)
				if err != nil {
					return err
				}
				for i := range report {
					if report[i].Node == want.Name {
						report[i].Op = op.ID
					}
				}
			}
			return render(cmd.OutOrStdout(), g.output, report, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NODE\tRACK\tSLOT\tRESULT\tDETAILS")
				for _, a := range report {
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", a.Node, a.Rack, a.Slot, a.Result, a.Details)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&provision, "provision", false, "also ask the controller to provision every node to its desired outcome")
	return cmd
}

// differences lists what the manifest declares that the controller holds
// differently; empty manifest fields declare nothing.
func differences(want, got model.Node) string {
	var d []string
	check := func(field, w, g string) {
		if w != "" && w != g {
			d = append(d, fmt.Sprintf("%s: manifest %q, controller %q", field, w, g))
		}
	}
	check("serial", want.Identity.Serial, got.Identity.Serial)
	check("bmc", want.Identity.BMC, got.Identity.BMC)
	check("profile", want.Profile, got.Profile)
	check("rack", want.Identity.Rack, got.Identity.Rack)
	if want.Identity.Slot != got.Identity.Slot {
		d = append(d, fmt.Sprintf("slot: manifest %d, controller %d", want.Identity.Slot, got.Identity.Slot))
	}
	for _, mac := range want.Identity.MACs {
		if !slices.Contains(got.Identity.MACs, mac) {
			d = append(d, "mac "+mac+" not seen on the node")
		}
	}
	return strings.Join(d, "; ")
}
