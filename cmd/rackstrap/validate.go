package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/hwprofiles/validate"
)

// errQuarantine is returned when validation finds errors, so the process
// exits 1 after printing the findings.
var errQuarantine = errors.New("verdict: quarantine")

func newValidateCmd(g *globals) *cobra.Command {
	var profileName, inbandFile, oobFile string
	cmd := &cobra.Command{
		Use:   "validate --inventory FILE.json [--oob FILE.json] [--profile NAME|FILE]",
		Short: "Validate inventory files against a hardware profile; exit 1 when the node would be quarantined",
		Long: "Merges the in-band inventory (--inventory, from the agent) with the out-of-band one (--oob, from\n" +
			"the BMC), checks it against the profile and prints the findings: rule, location, expected,\n" +
			"actual, severity and what to do. Without --profile the bundled profile that matches the\n" +
			"system's vendor and model is used. Exits 1 when any finding is an error (verdict quarantine).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if inbandFile == "" && oobFile == "" {
				return errors.New("validate: give --inventory FILE.json (the agent's) and/or --oob FILE.json (the BMC's)")
			}
			in, err := readInventory(inbandFile)
			if err != nil {
				return err
			}
			oob, err := readInventory(oobFile)
			if err != nil {
				return err
			}
			merged := in
			if in == nil || in.Source != inventory.Merged || oob != nil {
				merged = inventory.Merge(in, oob)
			}
			cat, err := profile.Bundled()
			if err != nil {
				return err
			}
			var p *profile.Profile
			if isProfileFile(profileName) {
				p, err = lookupProfile(cat, profileName)
			} else {
				p, err = validate.Pick(cat, profileName, merged.System)
			}
			switch {
			case errors.Is(err, profile.ErrNotFound):
				return fmt.Errorf("%w; run 'rackstrap profile list', or pass a profile file", err)
			case errors.Is(err, validate.ErrNoProfile):
				return fmt.Errorf("%w, or pass --profile NAME or a profile file", err)
			case err != nil:
				return err
			}
			res := validate.Validate(merged, p)
			if err := render(cmd.OutOrStdout(), g.output, res, func(w *tabwriter.Writer) { findingsTable(w, res) }); err != nil {
				return err
			}
			if res.Verdict == validate.Quarantine {
				return fmt.Errorf("%w: %d error(s) against profile %s; fix them and validate again", errQuarantine, res.Errors, res.Profile)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&profileName, "profile", "", "profile `NAME` (see 'rackstrap profile list') or profile FILE; default: the bundled profile matching the system")
	cmd.Flags().StringVar(&inbandFile, "inventory", "", "in-band inventory `FILE.json` (from rackstrap-agent)")
	cmd.Flags().StringVar(&oobFile, "oob", "", "out-of-band inventory `FILE.json` (from the BMC)")
	return cmd
}

func readInventory(path string) (*inventory.Inventory, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	inv, err := inventory.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("validate: %s: %w", path, err)
	}
	return inv, nil
}

func findingsTable(w *tabwriter.Writer, res validate.Result) {
	fmt.Fprintf(w, "profile %s: %s (%d errors, %d warnings)\n", res.Profile, strings.ToUpper(string(res.Verdict)), res.Errors, res.Warnings)
	if len(res.Findings) == 0 {
		return
	}
	infos := 0
	header := false
	for _, f := range res.Findings {
		if f.Severity == validate.Info {
			infos++
			continue
		}
		if !header {
			fmt.Fprintln(w, "SEVERITY\tRULE\tLOCATION\tEXPECTED\tACTUAL\tWHAT TO DO")
			header = true
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Severity, f.Rule, dash(f.Location), dash(f.Expected), dash(f.Actual), dash(f.Hint))
	}
	if infos > 0 {
		fmt.Fprintf(w, "%d informational finding(s) (in-band and out-of-band disagreements); -o json lists them\n", infos)
	}
}
