package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/firmware"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/images/store"
)

// errBehind is returned when a compliance check finds components behind
// their baseline, so the process exits 1 after printing the table.
var errBehind = errors.New("firmware behind baseline")

func newFirmwareCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firmware",
		Short: "Firmware inventory, baselines and compliance over Redfish",
		Long: "Reads the firmware a BMC reports (Redfish UpdateService/FirmwareInventory) and compares it\n" +
			"with a baseline: a YAML file naming per component the required version or minimum and the\n" +
			"package (file, sha256, signature) that brings a component there.",
	}
	cmd.AddCommand(newFirmwareInventoryCmd(g), newFirmwareComplianceCmd(g), newFirmwareSignCmd(g))
	return cmd
}

// bmcFlags are the flags that name BMCs and their credentials.
type bmcFlags struct {
	addrs        []string
	username     string
	passwordFile string
	certSHA256   string
	timeout      time.Duration
}

func (f *bmcFlags) register(cmd *cobra.Command, many bool) {
	fl := cmd.Flags()
	usage := "BMC `URL` (https://10.0.12.11, or host[:port])"
	if many {
		usage += "; repeat for several"
	}
	fl.StringArrayVar(&f.addrs, "bmc", nil, usage)
	fl.StringVar(&f.username, "username", "", "BMC user `NAME`")
	fl.StringVar(&f.passwordFile, "password-file", "", "`FILE` holding the BMC password (never on the command line)")
	fl.StringVar(&f.certSHA256, "cert-sha256", "", "pin the BMC's TLS certificate (`HEX` sha256); default: trust any")
	fl.DurationVar(&f.timeout, "timeout", time.Minute, "deadline for reading one BMC")
}

func (f *bmcFlags) endpoints(verb string, many bool) ([]bmc.Endpoint, error) {
	switch {
	case len(f.addrs) == 0:
		return nil, fmt.Errorf("firmware %s: give --bmc URL", verb)
	case len(f.addrs) > 1 && !many:
		return nil, fmt.Errorf("firmware %s: give one --bmc", verb)
	case f.username == "":
		return nil, fmt.Errorf("firmware %s: give --username (the BMC account)", verb)
	case f.passwordFile == "":
		return nil, fmt.Errorf("firmware %s: give --password-file FILE holding the BMC password", verb)
	}
	data, err := os.ReadFile(f.passwordFile)
	if err != nil {
		return nil, fmt.Errorf("firmware %s: --password-file: %w", verb, err)
	}
	pass := strings.TrimRight(string(data), "\r\n")
	if pass == "" {
		return nil, fmt.Errorf("firmware %s: --password-file %s is empty", verb, f.passwordFile)
	}
	eps := make([]bmc.Endpoint, len(f.addrs))
	for i, a := range f.addrs {
		eps[i] = bmc.Endpoint{Address: a, Protocol: bmc.Redfish, Username: f.username, Password: pass, CertSHA256: f.certSHA256}
	}
	return eps, nil
}

func newFirmwareInventoryCmd(g *globals) *cobra.Command {
	var f bmcFlags
	cmd := &cobra.Command{
		Use:   "inventory --bmc URL --username NAME --password-file FILE",
		Short: "List the firmware components a BMC reports, with their versions",
		Example: `  rackstrap firmware inventory --bmc https://10.0.12.11 --username admin --password-file bmc.pass
  rackstrap firmware inventory --bmc 10.0.12.11 --username admin --password-file bmc.pass -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eps, err := f.endpoints("inventory", false)
			if err != nil {
				return err
			}
			c := firmware.New(firmware.Config{Timeout: f.timeout})
			comps, err := c.Inventory(contextOrBackground(cmd), eps[0])
			if err != nil {
				return err
			}
			if comps == nil {
				comps = []inventory.FirmwareComponent{}
			}
			return render(cmd.OutOrStdout(), g.output, comps, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tNAME\tVERSION")
				for _, c := range comps {
					fmt.Fprintf(w, "%s\t%s\t%s\n", c.ID, dash(c.Name), dash(c.Version))
				}
			})
		},
	}
	f.register(cmd, false)
	return cmd
}

// bmcCompliance is one BMC's compliance, as `firmware compliance` prints it.
type bmcCompliance struct {
	BMC      string                 `json:"bmc"`
	Baseline string                 `json:"baseline"`
	Summary  map[firmware.State]int `json:"summary"`
	Status   []firmware.Status      `json:"status"`
	Error    string                 `json:"error,omitempty"`
}

func newFirmwareComplianceCmd(g *globals) *cobra.Command {
	var f bmcFlags
	var baselineFile string
	cmd := &cobra.Command{
		Use:   "compliance --baseline FILE --bmc URL [--bmc URL...] --username NAME --password-file FILE",
		Short: "Compare BMCs' firmware with a baseline: compliant, behind, ahead or unknown per component",
		Long: "Reads each BMC's firmware inventory and compares every component the baseline governs with\n" +
			"its requirement. Components behind name the package that brings them to the baseline.\n" +
			"Exits 1 when a component is behind, or a BMC could not be read.",
		Example: `  rackstrap firmware compliance --baseline fleet.yaml --bmc https://10.0.12.11 --username admin --password-file bmc.pass
  rackstrap firmware compliance --baseline fleet.yaml --bmc 10.0.12.11 --bmc 10.0.12.12 --username admin --password-file bmc.pass -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if baselineFile == "" {
				return errors.New("firmware compliance: give --baseline FILE (a firmware baseline YAML)")
			}
			b, err := firmware.Load(baselineFile)
			if err != nil {
				return err
			}
			eps, err := f.endpoints("compliance", true)
			if err != nil {
				return err
			}
			c := firmware.New(firmware.Config{Timeout: f.timeout})
			ctx := contextOrBackground(cmd)
			var results []bmcCompliance
			var errs []error
			behind := 0
			for _, ep := range eps {
				r := bmcCompliance{BMC: ep.String(), Baseline: b.Name, Status: []firmware.Status{}}
				comps, err := c.Inventory(ctx, ep)
				if err != nil {
					r.Error = err.Error()
					errs = append(errs, err)
				} else {
					r.Status = firmware.Compliance(b, comps)
					r.Summary = firmware.Summary(r.Status)
					behind += r.Summary[firmware.Behind]
				}
				results = append(results, r)
			}
			if err := render(cmd.OutOrStdout(), g.output, results, func(w *tabwriter.Writer) { complianceTable(w, results) }); err != nil {
				return err
			}
			if behind > 0 {
				errs = append(errs, fmt.Errorf("%w: %d component(s) behind baseline %s; the table names the packages that bring them there", errBehind, behind, b.Name))
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&baselineFile, "baseline", "", "firmware baseline `FILE` (YAML)")
	f.register(cmd, true)
	return cmd
}

func complianceTable(w *tabwriter.Writer, results []bmcCompliance) {
	for i, r := range results {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "%s: baseline %s: ERROR %s\n", r.BMC, r.Baseline, r.Error)
			continue
		}
		s := r.Summary
		fmt.Fprintf(w, "%s: baseline %s: %d compliant, %d behind, %d ahead, %d unknown\n", r.BMC, r.Baseline,
			s[firmware.Compliant], s[firmware.Behind], s[firmware.Ahead], s[firmware.Unknown])
		if len(r.Status) == 0 {
			continue
		}
		fmt.Fprintln(w, "COMPONENT\tNAME\tCURRENT\tREQUIRED\tSTATE\tPACKAGE\tNOTE")
		for _, st := range r.Status {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Component, dash(st.Name), dash(st.Current), st.Required,
				strings.ToUpper(string(st.State)), dash(st.Package), dash(st.Note))
		}
	}
}

func newFirmwareSignCmd(_ *globals) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "sign --key FILE PACKAGE...",
		Short: "Sign firmware packages: writes PACKAGE.sig and prints the sha256 for the baseline",
		Long: "Signs each package's sha256 with an ed25519 key (made by 'rackstrap image keygen') and writes\n" +
			"the detached signature beside it as PACKAGE.sig. Name the file, its sha256 and the .sig in\n" +
			"the baseline; updates refuse a package whose digest or signature does not match.",
		Example: `  rackstrap firmware sign --key fw.key bmc-1.5.0.bin bios-2.2.0.bin`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return errors.New("firmware sign: no --key given; create one with 'rackstrap image keygen'")
			}
			priv, err := store.LoadPrivateKey(key)
			if err != nil {
				return fmt.Errorf("firmware sign: %w", err)
			}
			for _, p := range args {
				sig, sha, err := firmware.SignPackage(p, priv)
				if err != nil {
					return fmt.Errorf("firmware sign: %w", err)
				}
				if err := os.WriteFile(p+".sig", sig, 0o644); err != nil {
					return fmt.Errorf("firmware sign: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s  sha256: %s  signature: %s\n", filepath.Base(p), sha, filepath.Base(p)+".sig")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "ed25519 private `KEY` file")
	return cmd
}
