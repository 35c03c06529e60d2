package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rackstrap/rackstrap/hwprofiles/fixtures"
	"github.com/rackstrap/rackstrap/hwprofiles/validate"
)

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateVerb(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeJSON(t, filepath.Join(dir, "good.json"), fixtures.DGXH100("1650323000101"))
	oob := writeJSON(t, filepath.Join(dir, "oob.json"), fixtures.DGXH100OutOfBand("1650323000101"))
	broken := fixtures.DGXH100("1650323000101")
	broken.GPUs[4].PCIeWidth = 8
	bad := writeJSON(t, filepath.Join(dir, "bad.json"), broken)

	// A healthy node passes; the profile is found from the system's model.
	out, _, err := execHW(t, newValidateCmd(&globals{output: "table"}), "--inventory", good, "--oob", oob)
	if err != nil || !strings.Contains(out, "profile nvidia-dgx-h100: PASS (0 errors, 0 warnings)") {
		t.Errorf("validate good = %v:\n%s", err, out)
	}
	// A GPU at x8 quarantines: the finding is printed and the error says so.
	out, _, err = execHW(t, newValidateCmd(&globals{output: "table"}), "--profile", "nvidia-dgx-h100", "--inventory", bad, "--oob", oob)
	if !errors.Is(err, errQuarantine) {
		t.Fatalf("validate bad = %v, want errQuarantine", err)
	}
	for _, want := range []string{"QUARANTINE (1 errors", "gpu.pcie-width", "SXM5 (0000:9d:00.0)", "reseat GPU in slot SXM5: link is x8, expected x16"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate bad output lacks %q:\n%s", want, out)
		}
	}
	// -o json is the validation result.
	out, _, err = execHW(t, newValidateCmd(&globals{output: "json"}), "--inventory", bad)
	var res validate.Result
	if !errors.Is(err, errQuarantine) || json.Unmarshal([]byte(out), &res) != nil || res.Verdict != validate.Quarantine || res.Findings[0].Rule != "gpu.pcie-width" {
		t.Errorf("validate -o json = %v, %+v:\n%s", err, res, out)
	}
	// A profile file extending a bundled one.
	site := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(site, []byte("name: site\nextends: nvidia-dgx-h100\ngpus: {pcieWidth: {min: 8}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := execHW(t, newValidateCmd(&globals{}), "--profile", site, "--inventory", bad); err != nil {
		t.Errorf("validate with a lenient site profile = %v:\n%s", err, out)
	}
	// The QEMU VM fixture matches the qemu-vm profile.
	vm := writeJSON(t, filepath.Join(dir, "vm.json"), fixtures.QEMUVM("52:54:00:12:34:01"))
	if out, _, err := execHW(t, newValidateCmd(&globals{}), "--inventory", vm); err != nil || !strings.Contains(out, "profile qemu-vm: PASS") {
		t.Errorf("validate vm = %v:\n%s", err, out)
	}
	// Bad inputs say what to do.
	typo := filepath.Join(dir, "typo.json")
	if err := os.WriteFile(typo, []byte(`{"source":"in-band","sytem":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for args, want := range map[string]string{
		"":                    "give --inventory",
		"--inventory " + typo: `unknown field "sytem"`,
		"--inventory " + filepath.Join(dir, "none.json"): "no such file",
		"--inventory " + good + " --profile nope":        "rackstrap profile list",
	} {
		_, _, err := execHW(t, newValidateCmd(&globals{}), strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate %s = %v, want error containing %q", args, err, want)
		}
	}
	unknown := fixtures.QEMUVM("52:54:00:12:34:01")
	unknown.System.Vendor = "ACME"
	u := writeJSON(t, filepath.Join(dir, "acme.json"), unknown)
	if _, _, err := execHW(t, newValidateCmd(&globals{}), "--inventory", u); err == nil || !strings.Contains(err.Error(), "pass --profile") {
		t.Errorf("validate unknown system = %v", err)
	}
}
