// Package export writes the nodes Rackstrap knows in the formats other
// tools read: an Ansible inventory (YAML), Prometheus file-based service
// discovery (JSON) and a CSV of node facts. Output is sorted and stable, so
// a regenerated file differs only where the fleet changed.
package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Host is one node's facts, as exported.
type Host struct {
	Name      string
	Rack      string
	Slot      int
	Serial    string
	UUID      string
	Profile   string
	State     string
	Target    string // hand-off target: slurm, kubernetes or empty
	Addr      string // host address (its DHCP lease), empty when unknown
	BMC       string
	MACs      []string
	GPUModel  string
	GPUCount  int
	CPUs      int // logical CPUs
	MemoryGiB int
}

// Formats are the export formats by name.
var Formats = []string{"ansible", "prometheus-sd", "csv"}

// ContentType returns the media type of a format.
func ContentType(format string) string {
	switch format {
	case "ansible":
		return "application/yaml"
	case "prometheus-sd":
		return "application/json"
	case "csv":
		return "text/csv; charset=utf-8"
	}
	return "application/octet-stream"
}

// Options tune an export.
type Options struct {
	// Port is the scrape port of Prometheus targets (default 9100,
	// node_exporter).
	Port int
}

// Render writes hosts in format.
func Render(format string, hosts []Host, opt Options) ([]byte, error) {
	hosts = slices.Clone(hosts)
	slices.SortFunc(hosts, func(a, b Host) int {
		if c := strings.Compare(a.Rack, b.Rack); c != 0 {
			return c
		}
		if a.Slot != b.Slot {
			return a.Slot - b.Slot
		}
		return strings.Compare(a.Name, b.Name)
	})
	switch format {
	case "ansible":
		return Ansible(hosts)
	case "prometheus-sd":
		return PrometheusSD(hosts, opt.Port)
	case "csv":
		return CSV(hosts)
	}
	return nil, fmt.Errorf("unknown export format %q: use %s", format, strings.Join(Formats, ", "))
}

// group makes an Ansible group name: letters, digits and underscores.
func group(prefix, v string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range strings.ToLower(v) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// hostVars are the variables of one Ansible host.
type hostVars struct {
	AnsibleHost string   `yaml:"ansible_host,omitempty"`
	Rack        string   `yaml:"rackstrap_rack,omitempty"`
	Slot        int      `yaml:"rackstrap_slot,omitempty"`
	Serial      string   `yaml:"rackstrap_serial,omitempty"`
	UUID        string   `yaml:"rackstrap_uuid,omitempty"`
	Profile     string   `yaml:"rackstrap_profile,omitempty"`
	State       string   `yaml:"rackstrap_state"`
	Target      string   `yaml:"rackstrap_handoff,omitempty"`
	BMC         string   `yaml:"rackstrap_bmc,omitempty"`
	MACs        []string `yaml:"rackstrap_macs,omitempty"`
	GPUModel    string   `yaml:"rackstrap_gpu_model,omitempty"`
	GPUCount    int      `yaml:"rackstrap_gpu_count,omitempty"`
	CPUs        int      `yaml:"rackstrap_cpus,omitempty"`
	MemoryGiB   int      `yaml:"rackstrap_memory_gib,omitempty"`
}

// AnsibleGroup is a group of an Ansible YAML inventory.
type AnsibleGroup struct {
	Hosts    map[string]*hostVars     `yaml:"hosts,omitempty"`
	Children map[string]*AnsibleGroup `yaml:"children,omitempty"`
}

// Ansible writes a YAML inventory: every host with its facts as variables
// under all.hosts, and groups by rack (rack_<r>), profile (profile_<p>),
// GPU model (gpu_<m>), hand-off target (slurm, kubernetes) and state
// (state_<s>). Hosts without a known address get no ansible_host.
func Ansible(hosts []Host) ([]byte, error) {
	all := &AnsibleGroup{Hosts: map[string]*hostVars{}, Children: map[string]*AnsibleGroup{}}
	add := func(g, host string) {
		if all.Children[g] == nil {
			all.Children[g] = &AnsibleGroup{Hosts: map[string]*hostVars{}}
		}
		all.Children[g].Hosts[host] = nil
	}
	for _, h := range hosts {
		all.Hosts[h.Name] = &hostVars{AnsibleHost: h.Addr, Rack: h.Rack, Slot: h.Slot, Serial: h.Serial, UUID: h.UUID, Profile: h.Profile,
			State: h.State, Target: h.Target, BMC: h.BMC, MACs: h.MACs, GPUModel: h.GPUModel, GPUCount: h.GPUCount, CPUs: h.CPUs, MemoryGiB: h.MemoryGiB}
		if h.Rack != "" {
			add(group("rack_", h.Rack), h.Name)
		}
		if h.Profile != "" {
			add(group("profile_", h.Profile), h.Name)
		}
		if h.GPUModel != "" {
			add(group("gpu_", h.GPUModel), h.Name)
		}
		if h.Target != "" {
			add(group("", h.Target), h.Name)
		}
		if h.State != "" {
			add(group("state_", h.State), h.Name)
		}
	}
	var b bytes.Buffer
	b.WriteString("# Ansible inventory written by 'rackstrap export ansible'.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]*AnsibleGroup{"all": all}); err != nil {
		return nil, fmt.Errorf("export ansible: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// SDGroup is one entry of a Prometheus file_sd file.
type SDGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// PrometheusSD writes a file_sd_configs file: one group per host that has
// an address, target "addr:port", labelled with its facts (label names
// [a-zA-Z_][a-zA-Z0-9_]*, as Prometheus requires).
func PrometheusSD(hosts []Host, port int) ([]byte, error) {
	if port == 0 {
		port = 9100
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("export prometheus-sd: port %d is not a port number", port)
	}
	groups := []SDGroup{}
	for _, h := range hosts {
		if h.Addr == "" {
			continue
		}
		labels := map[string]string{"node": h.Name, "rack": h.Rack, "profile": h.Profile, "state": h.State,
			"handoff": h.Target, "serial": h.Serial, "gpu_model": h.GPUModel}
		if h.Slot > 0 {
			labels["slot"] = strconv.Itoa(h.Slot)
		}
		if h.GPUCount > 0 {
			labels["gpu_count"] = strconv.Itoa(h.GPUCount)
		}
		for k, v := range labels {
			if v == "" {
				delete(labels, k)
			}
		}
		groups = append(groups, SDGroup{Targets: []string{net.JoinHostPort(h.Addr, strconv.Itoa(port))}, Labels: labels})
	}
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("export prometheus-sd: %w", err)
	}
	return append(b, '\n'), nil
}

// CSVHeader is the first line of the CSV export.
var CSVHeader = []string{"name", "rack", "slot", "serial", "uuid", "profile", "state", "handoff", "address", "bmc", "macs", "gpu_model", "gpu_count", "cpus", "memory_gib"}

// CSV writes one row per host under CSVHeader (RFC 4180; MACs joined by
// spaces). Cells that a spreadsheet would run as a formula (starting with
// = + - @) are prefixed with a quote.
func CSV(hosts []Host) ([]byte, error) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(CSVHeader)
	itoa := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	for _, h := range hosts {
		row := []string{h.Name, h.Rack, itoa(h.Slot), h.Serial, h.UUID, h.Profile, h.State, h.Target, h.Addr, h.BMC,
			strings.Join(h.MACs, " "), h.GPUModel, itoa(h.GPUCount), itoa(h.CPUs), itoa(h.MemoryGiB)}
		for i, c := range row {
			if c != "" && strings.ContainsRune("=+-@", rune(c[0])) {
				row[i] = "'" + c
			}
		}
		w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return nil, fmt.Errorf("export csv: %w", err)
	}
	return b.Bytes(), nil
}
