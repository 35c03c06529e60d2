package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rackstrap/rackstrap/hwprofiles/fixtures"
	"github.com/rackstrap/rackstrap/hwprofiles/report"
)

// reportDir writes rack r07's node files: two DGX H100 (one with old NIC
// firmware), a manifest that also expects a third.
func reportDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "manifest.json"), report.Manifest{Rack: "r07", Slots: []report.ExpectedSlot{
		{Slot: 2, Height: 8, Name: "n1", Profile: "nvidia-dgx-h100"},
		{Slot: 10, Height: 8, Name: "n2", Profile: "nvidia-dgx-h100"},
		{Slot: 18, Height: 8, Name: "n3", Profile: "nvidia-dgx-h100"},
	}})
	old := fixtures.DGXH100("1650323000202")
	old.NICs[0].Firmware = "28.38.1002"
	writeJSON(t, filepath.Join(dir, "n1.json"), report.NodeInput{Name: "n1", Rack: "r07", Profile: "nvidia-dgx-h100",
		InBand: fixtures.DGXH100("1650323000201"), OutOfBand: fixtures.DGXH100OutOfBand("1650323000201")})
	writeJSON(t, filepath.Join(dir, "n2.json"), report.NodeInput{Name: "n2", Rack: "r07", Profile: "nvidia-dgx-h100", InBand: old})
	writeJSON(t, filepath.Join(dir, "elsewhere.json"), report.NodeInput{Name: "x9", Rack: "r99", InBand: fixtures.QEMUVM("52:54:00:00:00:09")})
	return dir
}

func TestReportVerb(t *testing.T) {
	t.Parallel()
	dir := reportDir(t)
	for _, f := range []string{"json", "html", "junit", "csv"} {
		out, _, err := execHW(t, newReportCmd(&globals{}), "--rack", "r07", "--format", f, "--from", dir)
		if err != nil {
			t.Fatalf("report --format %s = %v", f, err)
		}
		switch f {
		case "json":
			var r report.Report
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatal(err)
			}
			if r.Summary.Expected != 3 || r.Summary.Missing != 1 || r.Summary.Quarantined != 1 || r.Summary.Passed != 1 || r.Accepted {
				t.Errorf("report json summary = %+v accepted %v", r.Summary, r.Accepted)
			}
		case "html":
			if !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, "update the adapter firmware") {
				t.Errorf("report html:\n%.300s", out)
			}
		case "junit":
			if !strings.Contains(out, `<testsuites name="rack r07 acceptance"`) || !strings.Contains(out, `type="missing"`) {
				t.Errorf("report junit:\n%.500s", out)
			}
		case "csv":
			rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil || len(rows) < 4 {
				t.Errorf("report csv = %v, %d rows", err, len(rows))
			}
		}
	}
}

func TestReportSignAndVerify(t *testing.T) {
	t.Parallel()
	dir := reportDir(t)
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "..", "acceptance.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(key.Public())
	pubFile := filepath.Join(t.TempDir(), "acceptance.pub")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(t.TempDir(), "r07.json")
	_, errOut, err := execHW(t, newReportCmd(&globals{}), "--from", dir, "--format", "json", "--out", outFile, "--sign-key", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "rack r07: NOT ACCEPTED (3 expected, 2 found, 1 missing, 0 unexpected, 1 quarantined)") {
		t.Errorf("report summary line = %q", errOut)
	}
	out, _, err := execHW(t, newReportCmd(&globals{}), "verify", "--key", pubFile, outFile)
	if err != nil || !strings.Contains(out, "signature valid (key acceptance)") {
		t.Errorf("report verify = %v:\n%s", err, out)
	}
	data, _ := os.ReadFile(outFile)
	if err := os.WriteFile(outFile, bytes.Replace(data, []byte(`"accepted": false`), []byte(`"accepted": true`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := execHW(t, newReportCmd(&globals{}), "verify", "--key", pubFile, outFile); err == nil || !strings.Contains(err.Error(), "changed after signing") {
		t.Errorf("report verify(tampered) = %v", err)
	}
}

func TestReportVerbErrors(t *testing.T) {
	t.Parallel()
	dir := reportDir(t)
	for args, want := range map[string]string{
		"--from " + dir + " --format pdf": "use json, html, junit or csv",
		"--rack r07":                      "invalid controller address",
		"":                                "give --rack R",
		"--from " + t.TempDir():           "no *.json node files",
		"--from " + dir + " --rack r08":   `manifest.json is for rack "r07"`,
		"--from " + dir + " --sign-key " + filepath.Join(dir, "n1.json"): "not an ed25519 key",
	} {
		_, _, err := execHW(t, newReportCmd(&globals{}), strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("report %s = %v, want error containing %q", args, err, want)
		}
	}
}
