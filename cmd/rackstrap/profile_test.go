package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// execHW runs one of the hwprofiles verbs the way main would, returning
// stdout, stderr and the error RunE returned.
func execHW(t *testing.T, c *cobra.Command, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	c.SetArgs(args)
	c.SetOut(&out)
	c.SetErr(&errOut)
	c.SilenceUsage, c.SilenceErrors = true, true
	err := c.Execute()
	return out.String(), errOut.String(), err
}

func TestProfileList(t *testing.T) {
	t.Parallel()
	out, _, err := execHW(t, newProfileCmd(&globals{output: "table"}), "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAME", "nvidia-dgx-h100", "hgx-h100-8gpu", "(base profile)", "dell-poweredge-xe9680", "supermicro-sys-821ge-tnhr", "qemu-vm"} {
		if !strings.Contains(out, want) {
			t.Errorf("profile list lacks %q:\n%s", want, out)
		}
	}
	out, _, err = execHW(t, newProfileCmd(&globals{output: "json"}), "list")
	if err != nil {
		t.Fatal(err)
	}
	var entries []profileEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 5 {
		t.Fatalf("profile list -o json = %d entries, %v:\n%s", len(entries), err, out)
	}
	out, _, err = execHW(t, newProfileCmd(&globals{output: "yaml"}), "list")
	if err != nil || !strings.Contains(out, "name: dell-poweredge-xe9680") {
		t.Errorf("profile list -o yaml = %v:\n%s", err, out)
	}
}

func TestProfileShow(t *testing.T) {
	t.Parallel()
	// Table form: the resolved profile in profile YAML, inheritance applied.
	out, _, err := execHW(t, newProfileCmd(&globals{output: "table"}), "show", "nvidia-dgx-h100")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("profile show is not YAML: %v\n%s", err, out)
	}
	if gpus, _ := m["gpus"].(map[string]any); gpus["count"] != 8 || gpus["ecc"] != "enabled" {
		t.Errorf("profile show: inherited gpus = %v", m["gpus"])
	}
	// JSON and YAML through -o.
	for _, o := range []string{"json", "yaml"} {
		out, _, err := execHW(t, newProfileCmd(&globals{output: o}), "show", "qemu-vm")
		if err != nil || !strings.Contains(out, "virtio_net") {
			t.Errorf("profile show -o %s = %v:\n%s", o, err, out)
		}
	}
	// --raw keeps the citations.
	out, _, err = execHW(t, newProfileCmd(&globals{}), "show", "--raw", "dell-poweredge-xe9680")
	if err != nil || !strings.Contains(out, "# Dell PowerEdge XE9680") {
		t.Errorf("profile show --raw = %v:\n%s", err, out)
	}
	_, _, err = execHW(t, newProfileCmd(&globals{}), "show", "dgx-h99")
	if err == nil || !strings.Contains(err.Error(), "rackstrap profile list") {
		t.Errorf("profile show unknown = %v, want a hint to run profile list", err)
	}
}

func TestProfileLint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "site-dgx.yaml")
	bad := filepath.Join(dir, "broken.yaml")
	orphan := filepath.Join(dir, "orphan.yaml")
	for path, body := range map[string]string{
		good:   "name: site-dgx\nextends: nvidia-dgx-h100\nmatch: {vendor: NVIDIA, model: DGXH100, sku: SITE-*}\ngpus:\n  vbios: {min: 96.00.89.00.01}\n",
		bad:    "name: broken\ngpus:\n  count: 8\n  pcie_width: 16\nmemory:\n  total: lots\n",
		orphan: "name: orphan\nextends: no-such-base\n",
	} {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, err := execHW(t, newProfileCmd(&globals{}), "lint", good)
	if err != nil || !strings.Contains(out, good+": ok (site-dgx)") {
		t.Errorf("lint good = %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = execHW(t, newProfileCmd(&globals{}), "lint", good, bad, orphan)
	if err == nil || !strings.Contains(err.Error(), "3 problem(s) in 3 file(s)") {
		t.Fatalf("lint bad = %v, want 3 problems", err)
	}
	for _, want := range []string{
		bad + `:4:3: gpus.pcie_width: unknown field "pcie_width" (did you mean "pcieWidth"?)`,
		bad + `:6:10: memory.total: "lots" is not a size`,
		orphan + `: extends: profile "orphan" extends "no-such-base": profile not found`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("lint stderr lacks %q:\n%s", want, errOut)
		}
	}
	if !strings.Contains(out, good+": ok") {
		t.Errorf("lint stdout lacks the good file:\n%s", out)
	}
}

func TestProfileSchema(t *testing.T) {
	t.Parallel()
	out, _, err := execHW(t, newProfileCmd(&globals{}), "schema")
	var v map[string]any
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v["title"] != "Rackstrap hardware profile" {
		t.Errorf("profile schema = %v:\n%.200s", err, out)
	}
}
