package export

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

var hosts = []Host{
	{Name: "r12-n02", Rack: "r12", Slot: 2, Serial: "SN2", Profile: "nvidia-dgx-h100", State: "HandedOff", Target: "kubernetes", Addr: "10.0.12.102",
		MACs: []string{"aa:bb:cc:00:00:02"}, GPUModel: "h100", GPUCount: 8, CPUs: 224, MemoryGiB: 2048},
	{Name: "r12-n01", Rack: "r12", Slot: 1, Serial: "=cmd|' /C calc'!A0", Profile: "nvidia-dgx-h100", State: "HandedOff", Target: "slurm", Addr: "10.0.12.101",
		BMC: "10.0.12.11", MACs: []string{"aa:bb:cc:00:00:01", "aa:bb:cc:00:01:01"}, GPUModel: "h100", GPUCount: 8},
	{Name: "r13-n01", Rack: "r13", Slot: 1, Profile: "cpu-1u", State: "Enrolled"},
}

func TestAnsibleInventory(t *testing.T) {
	t.Parallel()
	out, err := Render("ansible", hosts, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Strict decode of our own shape.
	var inv map[string]*AnsibleGroup
	dec := yaml.NewDecoder(bytes.NewReader(out))
	dec.KnownFields(true)
	if err := dec.Decode(&inv); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Ansible itself reads it.
	bin, err := exec.LookPath("ansible-inventory")
	if err != nil {
		t.Fatal("ansible-inventory not found: install Debian's ansible-core (listed in test/apt-packages.txt)")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "inventory.yaml")
	os.WriteFile(p, out, 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-i", p, "--list")
	cmd.Env = append(os.Environ(), "HOME="+dir, "ANSIBLE_LOCAL_TEMP="+dir, "ANSIBLE_INVENTORY_UNPARSED_FAILED=true", "ANSIBLE_INVENTORY_ENABLED=yaml")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	list, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory --list: %v\n%s\n%s", err, stderr.String(), out)
	}
	if bytes.Contains(stderr.Bytes(), []byte("WARNING")) {
		t.Errorf("ansible-inventory warned:\n%s", stderr.String())
	}
	var got struct {
		Meta struct {
			HostVars map[string]map[string]any `json:"hostvars"`
		} `json:"_meta"`
		Groups map[string]json.RawMessage `json:"-"`
	}
	if err := json.Unmarshal(list, &got); err != nil {
		t.Fatal(err)
	}
	var groups map[string]struct {
		Hosts []string `json:"hosts"`
	}
	json.Unmarshal(list, &groups)
	want := map[string][]string{
		"rack_r12":                {"r12-n01", "r12-n02"},
		"rack_r13":                {"r13-n01"},
		"slurm":                   {"r12-n01"},
		"kubernetes":              {"r12-n02"},
		"gpu_h100":                {"r12-n01", "r12-n02"},
		"profile_nvidia_dgx_h100": {"r12-n01", "r12-n02"},
		"state_handedoff":         {"r12-n01", "r12-n02"},
	}
	for g, members := range want {
		if d := cmp.Diff(members, groups[g].Hosts); d != "" {
			t.Errorf("group %s (-want +got):\n%s", g, d)
		}
	}
	v := got.Meta.HostVars["r12-n02"]
	if v["ansible_host"] != "10.0.12.102" || v["rackstrap_gpu_count"] != float64(8) || v["rackstrap_handoff"] != "kubernetes" {
		t.Errorf("hostvars of r12-n02 = %v", v)
	}
	if _, ok := got.Meta.HostVars["r13-n01"]["ansible_host"]; ok {
		t.Error("a host without an address got ansible_host")
	}
}

func TestPrometheusSD(t *testing.T) {
	t.Parallel()
	out, err := Render("prometheus-sd", hosts, Options{Port: 9400})
	if err != nil {
		t.Fatal(err)
	}
	// The file_sd format (Prometheus docs, <file_sd_config>): a JSON list
	// of {targets: ["host:port"...], labels: {name: value}}; label names
	// match [a-zA-Z_][a-zA-Z0-9_]* and do not start with __.
	var groups []SDGroup
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&groups); err != nil {
		t.Fatal(err)
	}
	nameRE := regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	var targets []string
	for _, g := range groups {
		for _, tg := range g.Targets {
			if _, _, err := net.SplitHostPort(tg); err != nil {
				t.Errorf("target %q is not host:port", tg)
			}
			targets = append(targets, tg)
		}
		for k := range g.Labels {
			if !nameRE.MatchString(k) || k[:2] == "__" {
				t.Errorf("label name %q is not valid", k)
			}
		}
	}
	if d := cmp.Diff([]string{"10.0.12.101:9400", "10.0.12.102:9400"}, targets); d != "" {
		t.Errorf("targets (-want +got):\n%s", d)
	}
	if l := groups[1].Labels; l["gpu_model"] != "h100" || l["gpu_count"] != "8" || l["handoff"] != "kubernetes" || l["rack"] != "r12" || l["slot"] != "2" {
		t.Errorf("labels = %v", l)
	}
	if _, err := Render("prometheus-sd", hosts, Options{Port: 70000}); err == nil {
		t.Error("port 70000 accepted")
	}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	out, err := Render("csv", hosts, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(bytes.NewReader(out))
	r.FieldsPerRecord = len(CSVHeader)
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(CSVHeader, rows[0]); d != "" {
		t.Errorf("header (-want +got):\n%s", d)
	}
	if len(rows) != 4 || rows[1][0] != "r12-n01" || rows[2][0] != "r12-n02" || rows[3][0] != "r13-n01" {
		t.Fatalf("rows = %v", rows)
	}
	if rows[1][3] != "'=cmd|' /C calc'!A0" {
		t.Errorf("formula-looking serial = %q, want it quoted", rows[1][3])
	}
	if rows[1][10] != "aa:bb:cc:00:00:01 aa:bb:cc:00:01:01" || rows[2][12] != "8" {
		t.Errorf("row = %v", rows[1])
	}
	if _, err := Render("xml", hosts, Options{}); err == nil {
		t.Error("unknown format accepted")
	}
}
