package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rackstrap/rackstrap/cluster/export"
)

func newExportCmd(g *globals) *cobra.Command {
	var rack, out string
	var port int
	cmd := &cobra.Command{
		Use:   "export ansible|prometheus-sd|csv",
		Short: "Export the controller's nodes: an Ansible inventory, Prometheus file_sd targets or a CSV of facts",
		Long: `Write the nodes the controller knows, with the facts it verified, for other tools:

  ansible        YAML inventory: hosts with rackstrap_* variables (ansible_host from
                 the DHCP lease) in groups rack_<r>, profile_<p>, gpu_<model>,
                 slurm/kubernetes (hand-off target) and state_<state>
  prometheus-sd  JSON for Prometheus file_sd_configs: one target (address:port) per
                 node with an address, labelled node, rack, slot, profile, gpu_model…
  csv            one row per node: name, rack, slot, serial, … (RFC 4180)

--out writes the file atomically (a rename), as Prometheus' file watcher wants.`,
		Example: `  rackstrap export ansible --rack r12 --out inventory.yaml
  rackstrap export prometheus-sd --port 9400 --out /etc/prometheus/rackstrap.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format := args[0]
			if !slices.Contains(export.Formats, format) {
				return fmt.Errorf("export: unknown format %q: use %s", format, strings.Join(export.Formats, ", "))
			}
			q := url.Values{}
			if rack != "" {
				q.Set("rack", rack)
			}
			if port != 0 {
				q.Set("port", strconv.Itoa(port))
			}
			path := "/api/v1/export/" + format
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			body, err := rawGet(cmd, g, path)
			if err != nil {
				return fmt.Errorf("export %s: %w", format, err)
			}
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			return writeAtomic(out, body)
		},
	}
	cmd.Flags().StringVar(&rack, "rack", "", "only this `RACK`'s nodes")
	cmd.Flags().StringVar(&out, "out", "", "write to `FILE` (atomically) instead of standard output")
	cmd.Flags().IntVar(&port, "port", 0, "prometheus-sd: scrape `PORT` of the targets (default: the controller's --export-scrape-port, 9100)")
	return cmd
}

// rawGet fetches a non-JSON API document with the global credentials.
func rawGet(cmd *cobra.Command, g *globals, path string) ([]byte, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	var body []byte
	err = c.Do(contextOrBackground(cmd), "GET", path, nil, &body)
	return body, err
}

// writeAtomic writes data to path through a temporary file and a rename.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("export: write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}
