package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
)

func newSimulateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Run SIMULATED hardware for trials and tests (Redfish BMCs)",
	}
	cmd.AddCommand(newSimulateBMCCmd(g), newSimulateFleetCmd(g), newSimulateMachinesCmd())
	return cmd
}

func newSimulateBMCCmd(g *globals) *cobra.Command {
	var (
		nodes        int
		first        string
		port         uint16
		plainHTTP    bool
		user, pwFile string
		withMockup   func(*redfishsim.Config) error
	)
	cmd := &cobra.Command{
		Use:   "bmc",
		Short: "Serve N simulated Redfish BMCs on loopback addresses until interrupted",
		Long: `Serve N simulated Redfish BMCs, one per loopback address from --first
(127.0.0.0/8 is all loopback on Linux), each with a distinct 8-GPU machine
behind it (serial, UUID, MACs, CPUs, DIMMs, drives, GPUs, firmware). They
answer power, boot override, virtual media, event log and firmware inventory
like a vendor BMC, so 'rackstrap discover' and 'rackstrap serve' can be tried
against them.`,
		Example: `  rackstrap simulate bmc --nodes 8 --port 8443 &
  rackstrap discover --cidr 127.10.0.0/28 --https-port 8443 --credentials logins.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start, err := netip.ParseAddr(first)
			if err != nil || !start.Is4() || !start.IsLoopback() {
				return fmt.Errorf("--first %q: give a 127.x.y.z address (simulated BMCs stay on loopback)", first)
			}
			password := "password"
			if pwFile != "" {
				b, err := os.ReadFile(pwFile)
				if err != nil {
					return fmt.Errorf("--password-file: %w", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			}
			var list []redfishsim.Node
			for i := 1; i <= nodes; i++ {
				n := redfishsim.SampleNode(i)
				n.Username, n.Password = user, password
				list = append(list, n)
			}
			cfg := redfishsim.Config{First: start, Port: port, HTTP: plainHTTP}
			if err := withMockup(&cfg); err != nil {
				return err
			}
			fleet, err := redfishsim.Start(cfg, list...)
			if err != nil {
				return fmt.Errorf("start %d simulated BMCs: %w", nodes, err)
			}
			defer fleet.Close()
			type row struct {
				Endpoint string `json:"endpoint"`
				Serial   string `json:"serial"`
			}
			var rows []row
			for _, b := range fleet.BMCs() {
				rows = append(rows, row{b.Endpoint(), b.Serial()})
			}
			if err := render(cmd.OutOrStdout(), g.output, rows, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "BMC\tSERIAL")
				for _, r := range rows {
					fmt.Fprintf(w, "%s\t%s\n", r.Endpoint, r.Serial)
				}
				fmt.Fprintf(w, "\n%d SIMULATED BMCs (login %s); Ctrl-C stops them\n", len(rows), user)
			}); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(contextOrBackground(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
	fl := cmd.Flags()
	withMockup = redfishsim.MockupFlag(fl)
	fl.IntVar(&nodes, "nodes", 8, "how many BMCs")
	fl.StringVar(&first, "first", "127.10.0.1", "address of the first BMC; the others follow it")
	fl.Uint16Var(&port, "port", 0, "port every BMC listens on (0: a free one)")
	fl.BoolVar(&plainHTTP, "http", false, "serve plain HTTP instead of HTTPS")
	fl.StringVar(&user, "username", "admin", "the BMCs' user name")
	fl.StringVar(&pwFile, "password-file", "", "`FILE` holding the BMCs' password (default \"password\")")
	return cmd
}
