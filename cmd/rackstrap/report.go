package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/controller/manifest"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"

	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/hwprofiles/report"
)

func newReportCmd(g *globals) *cobra.Command {
	var rack, format, out, from, manifestFile, keyFile, keyID string
	cmd := &cobra.Command{
		Use:   "report --rack R [--manifest rack.yaml | --from DIR] [--format json|html|junit|csv] [--out FILE]",
		Short: "Write a rack acceptance report: JSON, self-contained HTML, JUnit XML or CSV",
		Long: "Builds the acceptance report of one rack: nodes expected, found, missing and unexpected, each\n" +
			"node's validation and findings, drift between nodes of the same profile, and firmware\n" +
			"compliance where known. By default the rack's nodes come from the controller (--server),\n" +
			"and --manifest names the rack manifest whose slots were expected. --from DIR instead reads\n" +
			"one JSON file per node (name, profile, and its\n" +
			"inventory or inBand/outOfBand inventories, optionally its validation) and an optional\n" +
			"manifest.json listing the rack's expected slots. --sign-key signs the report with ed25519.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := report.ParseFormat(format)
			if err != nil {
				return err
			}
			var (
				manifest *report.Manifest
				nodes    []report.NodeInput
			)
			if from != "" {
				if manifest, nodes, err = report.LoadDir(from); err != nil {
					return fmt.Errorf("report: %w", err)
				}
			} else {
				if rack == "" {
					return errors.New("report: give --rack R (the rack whose nodes the controller reports), or --from DIR")
				}
				if manifest, nodes, err = fromController(contextOrBackground(cmd), g, rack, manifestFile); err != nil {
					return fmt.Errorf("report: %w", err)
				}
			}
			if rack == "" && manifest != nil {
				rack = manifest.Rack
			}
			if rack == "" {
				return errors.New("report: give --rack R (or a manifest.json with a rack)")
			}
			if manifest != nil && manifest.Rack != "" && manifest.Rack != rack {
				return fmt.Errorf("report: %s/manifest.json is for rack %q, not %q", from, manifest.Rack, rack)
			}
			cat, err := profile.Bundled()
			if err != nil {
				return err
			}
			var inRack []report.NodeInput
			for _, n := range nodes {
				if n.Rack != "" && n.Rack != rack {
					continue
				}
				if err := n.Complete(cat); err != nil {
					return fmt.Errorf("report: %w", err)
				}
				inRack = append(inRack, n)
			}
			r := report.Build(manifest, rack, inRack, time.Now())
			if keyFile != "" {
				data, err := os.ReadFile(keyFile)
				if err != nil {
					return fmt.Errorf("report: %w", err)
				}
				key, err := report.ParsePrivateKey(data)
				if err != nil {
					return fmt.Errorf("report: %s: %w", keyFile, err)
				}
				if keyID == "" {
					keyID = strings.TrimSuffix(filepath.Base(keyFile), filepath.Ext(keyFile))
				}
				if err := r.Sign(key, keyID); err != nil {
					return err
				}
			}
			var buf bytes.Buffer
			if err := report.Render(&buf, r, f); err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return fmt.Errorf("report: %w", err)
			}
			verdict := "NOT ACCEPTED"
			if r.Accepted {
				verdict = "ACCEPTED"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "rack %s: %s (%d expected, %d found, %d missing, %d unexpected, %d quarantined); wrote %s\n",
				r.Rack, verdict, r.Summary.Expected, r.Summary.Found, r.Summary.Missing, r.Summary.Unexpected, r.Summary.Quarantined, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&rack, "rack", "", "rack `NAME` (default: the manifest's)")
	cmd.Flags().StringVar(&format, "format", "html", "output `FORMAT`: json, html, junit or csv")
	cmd.Flags().StringVar(&out, "out", "-", "output `FILE` (- for stdout)")
	cmd.Flags().StringVar(&from, "from", "", "`DIR` of node JSON files and an optional manifest.json (instead of the controller)")
	cmd.Flags().StringVar(&manifestFile, "manifest", "", "rack manifest `FILE` (as for 'rackstrap apply') listing the expected slots")
	cmd.Flags().StringVar(&keyFile, "sign-key", "", "ed25519 private key `FILE` (PKCS #8 PEM or 32-byte seed) to sign the report")
	cmd.Flags().StringVar(&keyID, "key-id", "", "key `ID` recorded in the signature (default: the key file's name)")
	cmd.AddCommand(newReportVerifyCmd(g))
	return cmd
}

func newReportVerifyCmd(g *globals) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "verify --key PUBLIC.pem REPORT.json",
		Short: "Check the ed25519 signature of a JSON acceptance report",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return errors.New("report verify: give --key PUBLIC.pem, the public half of the signing key")
			}
			keyData, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("report verify: %w", err)
			}
			pub, err := report.ParsePublicKey(keyData)
			if err != nil {
				return fmt.Errorf("report verify: %s: %w", keyFile, err)
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("report verify: %w", err)
			}
			defer f.Close()
			var r report.Report
			dec := json.NewDecoder(io.LimitReader(f, 256<<20))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				return fmt.Errorf("report verify: %s: not a JSON acceptance report: %w", args[0], err)
			}
			if err := r.Verify(pub); err != nil {
				return fmt.Errorf("report verify: %s: %w", args[0], err)
			}
			res := map[string]any{"file": args[0], "rack": r.Rack, "accepted": r.Accepted, "keyId": r.Signature.KeyID, "signature": "valid"}
			return render(cmd.OutOrStdout(), g.output, res, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "%s: signature valid (key %s); rack %s accepted=%v\n", args[0], dash(r.Signature.KeyID), r.Rack, r.Accepted)
			})
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "ed25519 public key `FILE` (PEM or 32 bytes)")
	return cmd
}

// fromController reads a rack's nodes from the controller's API, and its
// expected slots from a rack manifest when one is given.
func fromController(ctx context.Context, g *globals, rack, manifestFile string) (*report.Manifest, []report.NodeInput, error) {
	c, err := g.client()
	if err != nil {
		return nil, nil, err
	}
	found, err := c.Nodes(ctx, "", rack)
	if err != nil {
		return nil, nil, err
	}
	var nodes []report.NodeInput
	for _, n := range found {
		in := report.NodeInput{Name: n.Name, Rack: n.Identity.Rack, Slot: n.Identity.Slot, Profile: n.Profile, State: string(n.State)}
		if len(n.Inventory) > 0 {
			if in.Inventory, err = inventory.Parse(n.Inventory); err != nil {
				return nil, nil, fmt.Errorf("node %s: stored inventory: %w", n.Name, err)
			}
		}
		nodes = append(nodes, in)
	}
	if manifestFile == "" {
		return nil, nodes, nil
	}
	m, err := manifest.Load(manifestFile)
	if err != nil {
		return nil, nil, err
	}
	rm := &report.Manifest{Rack: rack}
	for _, n := range m.Nodes() {
		if n.Identity.Rack == rack {
			rm.Slots = append(rm.Slots, report.ExpectedSlot{Slot: n.Identity.Slot, Name: n.Name, Serial: n.Identity.Serial, Profile: n.Profile})
		}
	}
	if len(rm.Slots) == 0 {
		return nil, nil, fmt.Errorf("%s lists no slots of rack %s", manifestFile, rack)
	}
	return rm, nodes, nil
}
