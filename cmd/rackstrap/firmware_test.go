package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/firmware"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/images/store"
)

// firmwareRig is a simulated rack of two BMCs over HTTP on loopback, a
// password file and a baseline.
type firmwareRig struct {
	sims     []*redfishsim.BMC
	pass     string
	baseline string
	dir      string
}

func newFirmwareRig(t *testing.T) firmwareRig {
	t.Helper()
	f, err := redfishsim.Start(redfishsim.Config{HTTP: true}, redfishsim.SampleNode(51), redfishsim.SampleNode(52))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	dir := t.TempDir()
	r := firmwareRig{sims: f.BMCs(), dir: dir, pass: filepath.Join(dir, "bmc.pass"), baseline: filepath.Join(dir, "fleet.yaml")}
	if err := os.WriteFile(r.pass, []byte("password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("bmc 1.5.0"))
	baseline := `name: rs8h100-2026q4
components:
  - id: BMC
    version: 1.5.0
    package: {file: bmc-1.5.0.bin, sha256: ` + hex.EncodeToString(sum[:]) + `, reset: bmc}
  - id: BIOS
    minimum: 2.0.0
  - id: CPLD
    version: F1.0A
  - name: "ConnectX-6*"
    version: 26.30.1000
  - id: "PSU*"
    version: 1.0.0
`
	if err := os.WriteFile(r.baseline, []byte(baseline), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r firmwareRig) creds() []string {
	return []string{"--username", "admin", "--password-file", r.pass}
}

func TestFirmwareInventoryVerb(t *testing.T) {
	t.Parallel()
	r := newFirmwareRig(t)
	args := append([]string{"inventory", "--bmc", r.sims[0].Endpoint()}, r.creds()...)
	out, _, err := execHW(t, newFirmwareCmd(&globals{output: "table"}), args...)
	if err != nil {
		t.Fatalf("firmware inventory = %v", err)
	}
	want := "ID    NAME            VERSION\n" +
		"BMC   BMC Firmware    1.4.2\n" +
		"BIOS  BIOS            2.1.7\n" +
		"CPLD  Mainboard CPLD  F1.0A\n" +
		"NIC1  ConnectX-6 Lx   26.36.1010\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("firmware inventory table mismatch (-want +got):\n%s", diff)
	}
	out, _, err = execHW(t, newFirmwareCmd(&globals{output: "json"}), args...)
	var got []inventory.FirmwareComponent
	if err != nil || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("firmware inventory -o json = %v:\n%s", err, out)
	}
	if diff := cmp.Diff(r.sims[0].Firmware(), got); diff != "" {
		t.Errorf("firmware inventory -o json mismatch (-want +got):\n%s", diff)
	}
}

func TestFirmwareComplianceVerb(t *testing.T) {
	t.Parallel()
	r := newFirmwareRig(t)
	args := append([]string{"compliance", "--baseline", r.baseline, "--bmc", r.sims[0].Endpoint(), "--bmc", r.sims[1].Endpoint()}, r.creds()...)
	out, _, err := execHW(t, newFirmwareCmd(&globals{output: "table"}), args...)
	if !errors.Is(err, errBehind) || !strings.Contains(err.Error(), "2 component(s) behind baseline rs8h100-2026q4") {
		t.Errorf("firmware compliance = %v, want errBehind", err)
	}
	wantTable := "redfish " + r.sims[0].Endpoint() + ": baseline rs8h100-2026q4: 2 compliant, 1 behind, 1 ahead, 1 unknown\n" +
		"COMPONENT  NAME            CURRENT     REQUIRED    STATE      PACKAGE        NOTE\n" +
		"BMC        BMC Firmware    1.4.2       1.5.0       BEHIND     bmc-1.5.0.bin  -\n" +
		"BIOS       BIOS            2.1.7       >= 2.0.0    COMPLIANT  -              -\n" +
		"CPLD       Mainboard CPLD  F1.0A       F1.0A       COMPLIANT  -              -\n" +
		"NIC1       ConnectX-6 Lx   26.36.1010  26.30.1000  AHEAD      -              newer than the baseline; not downgraded\n" +
		"id PSU*    -               -           1.0.0       UNKNOWN    -              the BMC lists no component matching id PSU*\n"
	first, _, _ := strings.Cut(out, "\n\n")
	if diff := cmp.Diff(wantTable, first+"\n"); diff != "" {
		t.Errorf("firmware compliance table mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(out, "redfish "+r.sims[1].Endpoint()+": baseline rs8h100-2026q4: 2 compliant, 1 behind") {
		t.Errorf("firmware compliance lacks the second BMC:\n%s", out)
	}

	// -o json and -o yaml carry the same statuses.
	for _, format := range []string{"json", "yaml"} {
		out, _, err := execHW(t, newFirmwareCmd(&globals{output: format}), args...)
		var got []struct {
			BMC     string
			Summary map[string]int
			Status  []firmware.Status
		}
		var derr error
		if format == "json" {
			derr = json.Unmarshal([]byte(out), &got)
		} else {
			derr = yaml.Unmarshal([]byte(out), &got)
		}
		if !errors.Is(err, errBehind) || derr != nil || len(got) != 2 || len(got[0].Status) != 5 ||
			got[0].Status[0].State != firmware.Behind || got[0].Status[0].Package != "bmc-1.5.0.bin" || got[1].Summary["compliant"] != 2 {
			t.Errorf("firmware compliance -o %s = %v, %v, %+v:\n%s", format, err, derr, got, out)
		}
	}
}

func TestFirmwareVerbErrors(t *testing.T) {
	t.Parallel()
	r := newFirmwareRig(t)
	down := newFirmwareRig(t).sims[0]
	down.SetFaults(redfishsim.Faults{Refuse: true})
	badBaseline := filepath.Join(r.dir, "bad.yaml")
	if err := os.WriteFile(badBaseline, []byte("name: x\ncomponents:\n  - id: BMC\n    verison: 1.5.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(r.dir, "empty.pass")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bmcURL := r.sims[0].Endpoint()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no bmc":             {[]string{"inventory", "--username", "admin", "--password-file", r.pass}, "give --bmc URL"},
		"two bmcs":           {[]string{"inventory", "--bmc", bmcURL, "--bmc", bmcURL, "--username", "admin", "--password-file", r.pass}, "give one --bmc"},
		"no username":        {[]string{"inventory", "--bmc", bmcURL, "--password-file", r.pass}, "give --username"},
		"no password file":   {[]string{"inventory", "--bmc", bmcURL, "--username", "admin"}, "give --password-file FILE"},
		"missing pass file":  {[]string{"inventory", "--bmc", bmcURL, "--username", "admin", "--password-file", r.dir + "/none"}, "no such file"},
		"empty pass file":    {[]string{"inventory", "--bmc", bmcURL, "--username", "admin", "--password-file", empty}, "is empty"},
		"wrong password":     {[]string{"inventory", "--bmc", bmcURL, "--username", "admin", "--password-file", badBaseline}, "check the BMC credentials"},
		"BMC down":           {[]string{"inventory", "--bmc", down.Endpoint(), "--username", "admin", "--password-file", r.pass}, "check that the BMC is powered"},
		"no baseline":        {append([]string{"compliance", "--bmc", bmcURL}, r.creds()...), "give --baseline FILE"},
		"bad baseline":       {append([]string{"compliance", "--baseline", badBaseline, "--bmc", bmcURL}, r.creds()...), badBaseline + `:4:5: components[0].verison: unknown field "verison"`},
		"one BMC down":       {append([]string{"compliance", "--baseline", r.baseline, "--bmc", bmcURL, "--bmc", down.Endpoint()}, r.creds()...), "check that the BMC is powered"},
		"sign without a key": {[]string{"sign", "x.bin"}, "create one with 'rackstrap image keygen'"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, _, err := execHW(t, newFirmwareCmd(&globals{output: "table"}), tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("firmware %v = %v, want an error with %q:\n%s", tc.args, err, tc.want, out)
			}
			if strings.Contains(out+errString(err), "password\n") {
				t.Errorf("the password leaked")
			}
		})
	}
	// A BMC that fails is reported in the table beside the others.
	out, _, _ := execHW(t, newFirmwareCmd(&globals{output: "table"}), append([]string{"compliance", "--baseline", r.baseline, "--bmc", bmcURL, "--bmc", down.Endpoint()}, r.creds()...)...)
	if !regexp.MustCompile(`redfish http://[0-9.:]+: baseline rs8h100-2026q4: ERROR .*check that the BMC is powered`).MatchString(out) {
		t.Errorf("compliance with a BMC down:\n%s", out)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestFirmwareSignVerb(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "fw.key"), filepath.Join(dir, "fw.pub")
	pk, err := store.GenerateKey(key, pub)
	if err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dir, "bmc-1.5.0.bin")
	if err := os.WriteFile(pkg, []byte("bmc 1.5.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := execHW(t, newFirmwareCmd(&globals{}), "sign", "--key", key, pkg)
	sum := sha256.Sum256([]byte("bmc 1.5.0"))
	sha := hex.EncodeToString(sum[:])
	if err != nil || out != "bmc-1.5.0.bin  sha256: "+sha+"  signature: bmc-1.5.0.bin.sig\n" {
		t.Fatalf("firmware sign = %v:\n%s", err, out)
	}
	p := firmware.Package{File: pkg, SHA256: sha, Signature: pkg + ".sig", Version: "1.5.0"}
	if err := firmware.VerifyPackage(p, []ed25519.PublicKey{pk}, false); err != nil {
		t.Errorf("VerifyPackage after sign = %v", err)
	}
}

// The demo's compliance table: a line per node, every BMC behind, and an
// unreadable BMC said so.
func TestDemoFirmwareCompliance(t *testing.T) {
	t.Parallel()
	rig := newFirmwareRig(t)
	nodes := []model.Node{
		{Name: "r1-n01", Identity: model.Identity{BMC: rig.sims[0].Endpoint()}},
		{Name: "r1-n02", Identity: model.Identity{BMC: rig.sims[1].Endpoint()}},
	}
	rig.sims[1].SetFaults(redfishsim.Faults{Refuse: true})
	var out bytes.Buffer
	if err := demoFirmwareCompliance(context.Background(), &out, nodes, "admin", "password"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`Firmware compliance with baseline demo-2026q4`,
		`r1-n01\s+1\.4\.2 BEHIND \(1\.5\.0\)\s+2\.1\.7 compliant\s+F1\.0A compliant\s+26\.36\.1010 compliant`,
		`r1-n02\s+BMC unreadable: bmc-unreachable`,
		`1 component\(s\) behind`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("demo compliance table lacks %q:\n%s", want, out.String())
		}
	}
}
