package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"

	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/bmc/discover"
	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/manifest"
	"github.com/rackstrap/rackstrap/controller/model"
)

// discovered is one line of discover's report.
type discovered struct {
	Address  string   `json:"address"`
	Protocol string   `json:"protocol"`
	Vendor   string   `json:"vendor,omitempty"`
	Model    string   `json:"model,omitempty"`
	Serial   string   `json:"serial,omitempty"`
	UUID     string   `json:"uuid,omitempty"`
	HostMACs []string `json:"hostMACs,omitempty"`
	Enrolled bool     `json:"credentialsWork"`
	Problem  string   `json:"problem,omitempty"`
	Slot     string   `json:"slot,omitempty"`   // from the manifest
	Match    string   `json:"match,omitempty"`  // matched, mismatched, unexpected
	Node     string   `json:"node,omitempty"`   // with --enroll
	Result   string   `json:"result,omitempty"` // with --enroll: created, unchanged
}

type discoverReport struct {
	Found   []discovered `json:"found"`
	Missing []string     `json:"missing,omitempty"` // manifest slots with no BMC found
}

func newDiscoverCmd(g *globals) *cobra.Command {
	var (
		cidr, credsFile, manifestFile, rack string
		httpsPort, httpPort, ipmiPort       uint16
		noIPMI, enroll                      bool
		timeout                             time.Duration
		concurrency                         int
	)
	cmd := &cobra.Command{
		Use:   "discover --cidr PREFIX",
		Short: "Find the BMCs on a network (Redfish and IPMI) and what machine is behind each",
		Long: `Scan every address of a prefix, concurrently and with a deadline per host,
for a Redfish service root (HTTPS, then HTTP) and an IPMI LAN channel (UDP 623).
Each BMC found is surveyed with the first credentials that work: vendor, model,
serial, UUID, BMC firmware and host MACs.

--credentials names a YAML file of logins to try, in order (keep it short: BMCs
lock accounts after a few failures):

  - username: admin
    password: …

--manifest compares what was found with a rack manifest: matched, mismatched
(another machine in the slot), missing and unexpected BMCs. --enroll declares
every BMC whose credentials work as a node on the controller (--server),
named after its manifest slot when there is one, and stores the login that
worked with it (sealed at rest, never shown again).`,
		Example: `  rackstrap discover --cidr 10.0.12.0/24 --credentials bmc-logins.yaml
  rackstrap discover --cidr 10.0.12.0/24 --credentials bmc-logins.yaml --manifest rack-r12.yaml --enroll`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prefix, err := netip.ParsePrefix(cidr)
			if err != nil {
				return fmt.Errorf("--cidr %q: %w; give the BMC network, e.g. 10.0.12.0/24", cidr, err)
			}
			cfg := discover.Config{Concurrency: concurrency, HostTimeout: timeout, HTTPSPort: httpsPort, HTTPPort: httpPort, IPMIPort: ipmiPort, NoIPMI: noIPMI}
			if credsFile != "" {
				if cfg.Credentials, err = loadCredentials(credsFile); err != nil {
					return err
				}
			}
			var expected []discover.Expected
			names := map[string]model.Node{}
			if manifestFile != "" {
				m, err := manifest.Load(manifestFile)
				if err != nil {
					return err
				}
				for _, n := range m.Nodes() {
					if rack != "" && n.Identity.Rack != rack {
						continue
					}
					e := discover.Expected{Slot: n.Name, Serial: n.Identity.Serial}
					if a, err := netip.ParseAddr(n.Identity.BMC); err == nil {
						e.BMCAddress = a
					}
					expected = append(expected, e)
					names[n.Name] = n
				}
			}
			ctx := contextOrBackground(cmd)
			found, err := discover.Scan(ctx, prefix, cfg)
			if err != nil {
				return err
			}
			rep := discoverReport{}
			bySlot := map[netip.Addr]discovered{}
			for _, f := range found {
				d := discovered{Address: f.Address.String(), Enrolled: f.Enrolled, Problem: f.AuthError}
				switch {
				case f.Redfish != nil && f.IPMI != nil:
					d.Protocol = "redfish+ipmi"
				case f.Redfish != nil:
					d.Protocol = "redfish"
				default:
					d.Protocol = "ipmi"
				}
				if f.Enrolled {
					d.Vendor, d.Model, d.Serial, d.UUID, d.HostMACs = f.Survey.Manufacturer, f.Survey.Model, f.Survey.Serial, f.Survey.UUID, f.Survey.HostMACs
				} else if f.Redfish != nil {
					d.Vendor = f.Redfish.Vendor
				}
				bySlot[f.Address] = d
			}
			if manifestFile != "" {
				mr := discover.MatchManifest(expected, found)
				for _, m := range mr.Matched {
					d := bySlot[m.Found.Address]
					d.Slot, d.Match = m.Expected.Slot, "matched"
					bySlot[m.Found.Address] = d
				}
				for _, m := range mr.Mismatched {
					d := bySlot[m.Found.Address]
					d.Slot, d.Match, d.Problem = m.Expected.Slot, "mismatched", fmt.Sprint(m.Reasons)
					bySlot[m.Found.Address] = d
				}
				for _, f := range mr.Unexpected {
					d := bySlot[f.Address]
					d.Match = "unexpected"
					bySlot[f.Address] = d
				}
				for _, e := range mr.Missing {
					rep.Missing = append(rep.Missing, e.Slot)
				}
			}
			for _, f := range found {
				d := bySlot[f.Address]
				if enroll && f.Enrolled && d.Match != "mismatched" {
					if err := enrollFound(ctx, g, f, &d, names); err != nil {
						return err
					}
				}
				rep.Found = append(rep.Found, d)
			}
			return render(cmd.OutOrStdout(), g.output, rep, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ADDRESS\tPROTOCOL\tVENDOR\tMODEL\tSERIAL\tLOGIN\tSLOT\tMATCH\tNODE\tPROBLEM")
				for _, d := range rep.Found {
					login := "ok"
					if !d.Enrolled {
						login = "failed"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Address, d.Protocol, d.Vendor, d.Model, d.Serial, login, d.Slot, d.Match, d.Node, d.Problem)
				}
				fmt.Fprintf(w, "\n%d BMCs found in %s\n", len(rep.Found), prefix)
				for _, s := range rep.Missing {
					fmt.Fprintf(w, "missing: %s (listed in the manifest, no BMC found: check its power and cabling)\n", s)
				}
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cidr, "cidr", "", "the BMC network to scan, e.g. 10.0.12.0/24")
	fl.StringVar(&credsFile, "credentials", "", "YAML `FILE` of BMC logins to try, in order")
	fl.StringVar(&manifestFile, "manifest", "", "rack manifest `FILE` to match the BMCs found against")
	fl.StringVar(&rack, "rack", "", "only this rack of the manifest")
	fl.BoolVar(&enroll, "enroll", false, "declare each BMC whose login works as a node on the controller")
	fl.Uint16Var(&httpsPort, "https-port", 443, "Redfish HTTPS port")
	fl.Uint16Var(&httpPort, "http-port", 80, "Redfish HTTP port")
	fl.Uint16Var(&ipmiPort, "ipmi-port", 623, "IPMI UDP port")
	fl.BoolVar(&noIPMI, "no-ipmi", false, "do not probe IPMI")
	fl.DurationVar(&timeout, "host-timeout", 3*time.Second, "deadline of the probes of one address")
	fl.IntVar(&concurrency, "concurrency", 64, "addresses probed at once")
	return cmd
}

// loadCredentials reads the logins to try; the file, not argv, holds the
// passwords.
func loadCredentials(path string) ([]discover.Credential, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--credentials: %w", err)
	}
	var raw []struct {
		Username string `yaml:"username"`
		Password string `yaml:"password"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %v; the file lists logins as '- username: …' / '  password: …'", path, err)
	}
	var out []discover.Credential
	for i, c := range raw {
		if c.Username == "" {
			return nil, fmt.Errorf("%s: login %d has no username", path, i+1)
		}
		out = append(out, discover.Credential{Username: c.Username, Password: c.Password})
	}
	return out, nil
}

// enrollFound declares a found BMC as a node (idempotent by name).
func enrollFound(ctx context.Context, g *globals, f discover.Found, d *discovered, names map[string]model.Node) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	n := model.Node{Name: "bmc-" + sanitize(f.Address.String())}
	if m, ok := names[d.Slot]; ok {
		n = m
	}
	n.Identity.BMC = f.Endpoint.Address
	if n.Identity.Serial == "" {
		n.Identity.Serial = f.Survey.Serial
	}
	n.Identity.UUID = f.Survey.UUID
	for _, mac := range f.Survey.HostMACs {
		if norm, err := model.NormalizeMAC(mac); err == nil {
			n.Identity.MACs = append(n.Identity.MACs, norm)
		}
	}
	got, created, err := c.CreateNode(ctx, api.NodeCreate{Name: n.Name, Identity: n.Identity, Profile: n.Profile, Desired: n.Desired})
	if err != nil {
		return fmt.Errorf("enroll %s: %w", f.Address, err)
	}
	d.Node, d.Result = got.Name, "unchanged"
	if created {
		d.Result = "created"
	}
	// The login that worked is stored with the node, sealed at rest.
	if err := c.SetBMCCredentials(ctx, got.Name, f.Endpoint.Username, f.Endpoint.Password); err != nil {
		return fmt.Errorf("store the BMC login of %s: %w", got.Name, err)
	}
	return nil
}

func sanitize(s string) string {
	out := []byte(s)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			out[i] = '-'
		}
	}
	return string(out)
}
