package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/controller/fwrun"
	"github.com/rackstrap/rackstrap/controller/model"
	cstore "github.com/rackstrap/rackstrap/controller/store"
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
	cmd.AddCommand(newFirmwareInventoryCmd(g), newFirmwareComplianceCmd(g), newFirmwareSignCmd(g), newFirmwareApplyCmd(g), newFirmwareRunsCmd(g), newFirmwareCancelCmd(g))
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
	var baselineFile, rack string
	cmd := &cobra.Command{
		Use:   "compliance --baseline FILE --bmc URL [--bmc URL...] --username NAME --password-file FILE | compliance [--baseline NAME] [--rack R]",
		Short: "Compare BMCs' firmware with a baseline: compliant, behind, ahead or unknown per component",
		Long: "Reads each BMC's firmware inventory and compares every component the baseline governs with\n" +
			"its requirement. Components behind name the package that brings them to the baseline.\n" +
			"Without --bmc, asks the controller about its nodes (--rack R narrows them; --baseline names\n" +
			"a baseline in the controller's --firmware-dir, default its --firmware-baseline).\n" +
			"Exits 1 when a component is behind, or a BMC could not be read.",
		Example: `  rackstrap firmware compliance --baseline fleet.yaml --bmc https://10.0.12.11 --username admin --password-file bmc.pass
  rackstrap firmware compliance --baseline fleet.yaml --bmc 10.0.12.11 --bmc 10.0.12.12 --username admin --password-file bmc.pass -o json
  rackstrap firmware compliance --rack r12`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(f.addrs) == 0 {
				return controllerCompliance(cmd, g, baselineFile, rack)
			}
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
	cmd.Flags().StringVar(&baselineFile, "baseline", "", "firmware baseline `FILE` (YAML); without --bmc, a baseline name on the controller")
	cmd.Flags().StringVar(&rack, "rack", "", "without --bmc: only the controller's nodes in `RACK`")
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

// firmwareClient calls the controller's firmware API with the global
// credentials.
func firmwareClient(g *globals) (*fwrun.Client, error) {
	u, err := url.Parse(g.server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid controller address %q: use http://HOST:PORT or https://HOST:PORT (flag --server or RACKSTRAP_SERVER)", g.server)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.creds.CAFile != "" {
		pem, err := os.ReadFile(g.creds.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read the controller CA bundle: %w; pass the CA the controller's certificate is signed by with --ca-cert", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate; pass the controller's CA certificate with --ca-cert", g.creds.CAFile)
		}
		conf.RootCAs = pool
	}
	if g.creds.CertFile != "" || g.creds.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(g.creds.CertFile, g.creds.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load the client certificate: %w; pass both --client-cert and --client-key (PEM)", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = conf
	// Planning reads every node's BMC: give it time.
	return fwrun.NewClient(g.server, &http.Client{Timeout: 10 * time.Minute, Transport: tr}, g.creds.Token), nil
}

func controllerCompliance(cmd *cobra.Command, g *globals, baseline, rack string) error {
	c, err := firmwareClient(g)
	if err != nil {
		return err
	}
	list, err := c.Compliance(contextOrBackground(cmd), baseline, rack)
	if err != nil {
		return fmt.Errorf("firmware compliance: %w", err)
	}
	behind, failed := 0, 0
	for _, n := range list {
		behind += n.Summary[firmware.Behind]
		if n.Error != "" {
			failed++
		}
	}
	if err := render(cmd.OutOrStdout(), g.output, list, func(w *tabwriter.Writer) { nodeComplianceTable(w, list) }); err != nil {
		return err
	}
	var errs []error
	if failed > 0 {
		errs = append(errs, fmt.Errorf("the firmware of %d node(s) could not be read; the table says why", failed))
	}
	if behind > 0 {
		errs = append(errs, fmt.Errorf("%w: %d component(s) behind; bring them to the baseline with 'rackstrap firmware apply'", errBehind, behind))
	}
	return errors.Join(errs...)
}

// nodeComplianceTable prints one line per node and component.
func nodeComplianceTable(w *tabwriter.Writer, list []fwrun.NodeCompliance) {
	fmt.Fprintln(w, "NODE\tCOMPONENT\tCURRENT\tREQUIRED\tSTATE\tPACKAGE")
	for _, n := range list {
		if n.Error != "" {
			fmt.Fprintf(w, "%s\t-\t-\t-\tERROR\t%s\n", n.Node, n.Error)
			continue
		}
		for _, st := range n.Status {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, st.Component, dash(st.Current), st.Required, strings.ToUpper(string(st.State)), dash(st.Package))
		}
	}
}

func newFirmwareApplyCmd(g *globals) *cobra.Command {
	var (
		req  fwrun.RunRequest
		wait bool
	)
	cmd := &cobra.Command{
		Use:   "apply --baseline NAME [--rack R] [--wave-size N] [--max-failures K] [--dry-run]",
		Short: "Bring nodes to a firmware baseline in staged waves, a canary first (the controller runs it)",
		Long: "Asks the controller to plan a firmware run: which nodes (at rest: Enrolled, Validated, Ready or\n" +
			"Quarantined) need which packages of the baseline (a file in the controller's --firmware-dir), in a\n" +
			"canary wave and then waves of --wave-size. The controller stores the plan and runs it: each\n" +
			"package is verified (sha256, signature) before it is sent, the BMC's task is polled, the reset\n" +
			"the package needs is applied and the new version verified. The run stops when --max-failures\n" +
			"nodes failed (or the canary did); failed nodes are quarantined with the reason. A controller\n" +
			"restarted mid-run resumes it without flashing anything twice. --dry-run prints the plan and\n" +
			"changes nothing.",
		Example: `  rackstrap firmware apply --baseline dgx-h100-2026q4 --rack r12 --dry-run
  rackstrap firmware apply --baseline dgx-h100-2026q4 --rack r12 --wave-size 8 --max-failures 2 --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := firmwareClient(g)
			if err != nil {
				return err
			}
			ctx := contextOrBackground(cmd)
			plan, err := c.Start(ctx, req)
			if err != nil {
				return fmt.Errorf("firmware apply: %w", err)
			}
			out := cmd.OutOrStdout()
			if err := render(out, g.output, plan, func(w *tabwriter.Writer) { planTable(w, plan) }); err != nil {
				return err
			}
			if plan.Run == nil || !wait {
				return nil
			}
			for {
				v, err := c.Run(ctx, plan.Run.ID)
				if err != nil {
					return err
				}
				if v.Status != cstore.FirmwareRunning {
					if g.output == "table" {
						tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
						runTable(tw, v)
						tw.Flush()
					}
					if v.Status != cstore.FirmwareDone {
						return fmt.Errorf("firmware run %d %s: %s", v.ID, v.Status, v.Reason)
					}
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Second):
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Baseline, "baseline", "", "baseline `NAME`: a file in the controller's --firmware-dir (default: its --firmware-baseline)")
	fl.StringVar(&req.Rack, "rack", "", "only nodes in `RACK`")
	fl.StringSliceVar(&req.Nodes, "node", nil, "only these `NODE`s (repeatable)")
	fl.IntVar(&req.Canary, "canary", 1, "nodes in the canary wave; a canary failure stops the run")
	fl.IntVar(&req.WaveSize, "wave-size", 10, "nodes per wave after the canary")
	fl.IntVar(&req.MaxFailures, "max-failures", 1, "stop the run when this many nodes failed")
	fl.BoolVar(&req.DryRun, "dry-run", false, "print the plan; store nothing and send nothing")
	fl.BoolVar(&wait, "wait", false, "wait for the run to end and print its outcome (exit 1 when it stopped)")
	return cmd
}

func planTable(w *tabwriter.Writer, p fwrun.PlanReply) {
	wave := map[string]int{}
	for i, nodes := range p.Waves {
		for _, n := range nodes {
			wave[n] = i
		}
	}
	fmt.Fprintln(w, "NODE\tSTATE\tWAVE\tCOMPONENT\tFROM\tTO\tPACKAGE")
	for _, n := range p.Nodes {
		switch {
		case n.Skipped != "":
			fmt.Fprintf(w, "%s\t%s\t-\t-\t-\t-\tskipped: %s\n", n.Node, n.State, n.Skipped)
		case len(n.Updates) == 0:
			fmt.Fprintf(w, "%s\t%s\t-\t-\t-\t-\tcompliant\n", n.Node, n.State)
		}
		for _, u := range n.Updates {
			label := fmt.Sprint(wave[n.Node])
			if wave[n.Node] == 0 {
				label = "canary"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, n.State, label, u.Component, dash(u.From), u.To, filepath.Base(u.Package.File))
		}
	}
	w.Flush()
	fmt.Fprintln(w)
	switch {
	case p.DryRun:
		fmt.Fprintf(w, "Dry run: %d wave(s) (canary %d, waves of %d, stop at %d failure(s)); nothing was stored or sent.\n",
			len(p.Waves), p.Policy.Canary, p.Policy.WaveSize, p.Policy.MaxFailures)
	case p.Run != nil:
		fmt.Fprintf(w, "Started firmware run %d: %d wave(s); follow it with 'rackstrap firmware runs %d'.\n", p.Run.ID, len(p.Waves), p.Run.ID)
	default:
		fmt.Fprintln(w, "Nothing to update: every node at rest is at its baseline.")
	}
}

func runTable(w *tabwriter.Writer, v fwrun.RunView) {
	fmt.Fprintf(w, "Firmware run %d: baseline %s, %s", v.ID, v.Baseline, strings.ToUpper(v.Status))
	if v.Reason != "" {
		fmt.Fprintf(w, " (%s)", v.Reason)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "NODE\tWAVE\tOUTCOME\tMESSAGE")
	for _, n := range v.Nodes {
		outcome := n.Outcome
		if outcome == "" {
			outcome = "pending"
			if v.Status != cstore.FirmwareRunning {
				outcome = "not started"
			}
		}
		msg := n.Message
		if len(msg) > 120 {
			msg = msg[:117] + "..."
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", n.Node, n.Wave, outcome, dash(msg))
	}
}

func newFirmwareRunsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "runs [ID]",
		Short: "List firmware runs, or show one: its waves, each node's outcome and each step",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := firmwareClient(g)
			if err != nil {
				return err
			}
			ctx := contextOrBackground(cmd)
			if len(args) == 1 {
				id, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil {
					return fmt.Errorf("firmware runs: %q is not a run id", args[0])
				}
				v, err := c.Run(ctx, id)
				if err != nil {
					return err
				}
				return render(cmd.OutOrStdout(), g.output, v, func(w *tabwriter.Writer) { runTable(w, v) })
			}
			runs, err := c.Runs(ctx)
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), g.output, runs, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tBASELINE\tRACK\tSTATUS\tBY\tSTARTED\tREASON")
				for _, r := range runs {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Baseline, dash(r.Rack), r.Status, r.Actor, r.Created.Format(time.RFC3339), dash(r.Reason))
				}
			})
		},
	}
}

// demoBaseline is the baseline `rackstrap demo` compares its rack with:
// the simulated machines run BMC 1.4.2, so every BMC is behind.
const demoBaseline = `name: demo-2026q4
components:
  - id: BMC
    version: 1.5.0
  - id: BIOS
    version: 2.1.7
  - id: CPLD
    version: F1.0A
  - name: "ConnectX-6*"
    minimum: 26.36.1010
`

// demoFirmwareCompliance reads the firmware of each node's BMC and prints
// a compliance table against demoBaseline: one line per node, one column
// per component.
func demoFirmwareCompliance(ctx context.Context, out io.Writer, nodes []model.Node, username, password string) error {
	b, err := firmware.Parse([]byte(demoBaseline))
	if err != nil {
		return err
	}
	c := firmware.New(firmware.Config{Timeout: 20 * time.Second})
	type row struct {
		node   string
		status []firmware.Status
		err    error
	}
	rows := make([]row, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		rows[i].node = n.Name
		wg.Add(1)
		go func() {
			defer wg.Done()
			comps, err := c.Inventory(ctx, bmc.Endpoint{Address: n.Identity.BMC, Protocol: bmc.Redfish, Username: username, Password: password})
			rows[i].status, rows[i].err = firmware.Compliance(b, comps), err
		}()
	}
	wg.Wait()
	fmt.Fprintf(out, "\nFirmware compliance with baseline %s\n", b.Name)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	cols := []string{"BMC", "BIOS", "CPLD", "NIC1"}
	fmt.Fprintln(tw, "NODE\tBMC\tBIOS\tCPLD\tNIC1\t")
	behind := 0
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\tBMC unreadable: %s\t\t\t\t\n", r.node, bmc.FailureClass(r.err))
			continue
		}
		cells := make([]string, len(cols))
		for i, id := range cols {
			cells[i] = "-"
			for _, s := range r.status {
				if s.Component != id {
					continue
				}
				cells[i] = s.Current + " " + string(s.State)
				if s.State == firmware.Behind {
					cells[i] = fmt.Sprintf("%s BEHIND (%s)", s.Current, s.Required)
					behind++
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t\n", r.node, strings.Join(cells, "\t"))
	}
	tw.Flush()
	if behind > 0 {
		fmt.Fprintf(out, "%d component(s) behind; 'rackstrap firmware apply --baseline NAME' updates them in waves, a canary first\n", behind)
	}
	return nil
}

func newFirmwareCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a running firmware run: nodes being updated are finished, no other node starts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("firmware cancel: %q is not a run id", args[0])
			}
			c, err := firmwareClient(g)
			if err != nil {
				return err
			}
			v, err := c.Cancel(contextOrBackground(cmd), id)
			if err != nil {
				return fmt.Errorf("firmware cancel: %w", err)
			}
			return render(cmd.OutOrStdout(), g.output, v, func(w *tabwriter.Writer) { runTable(w, v) })
		},
	}
}
