package firmware

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sha1 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
const sha2 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

var goodBaseline = `# a fleet baseline
name: dgx-h100-2026q4
description: Q4 firmware for the H100 racks
components:
  - id: BMC
    version: 1.5.0
    package:
      file: bmc-1.5.0.bin
      sha256: ` + sha1 + `
      signature: bmc-1.5.0.bin.sig
      reset: bmc
  - name: "ConnectX-6*"
    minimum: 26.36.1010
    package: {file: /srv/fw/cx6-26.40.1000.bin, sha256: ` + strings.ToUpper(sha2) + `, version: 26.40.1000}
  - id: CPLD
    version: F1.0A
`

func TestLoadBaseline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(file, []byte(goodBaseline), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	want := &Baseline{
		Name: "dgx-h100-2026q4", Description: "Q4 firmware for the H100 racks", File: file,
		Components: []Rule{
			{ID: "BMC", Version: "1.5.0", Line: 5, Package: &Package{File: filepath.Join(dir, "bmc-1.5.0.bin"), SHA256: sha1,
				Signature: filepath.Join(dir, "bmc-1.5.0.bin.sig"), Version: "1.5.0", Reset: ResetBMC}},
			{Name: "ConnectX-6*", Minimum: "26.36.1010", Line: 12, Package: &Package{File: "/srv/fw/cx6-26.40.1000.bin", SHA256: sha2, Version: "26.40.1000", Reset: ResetNone}},
			{ID: "CPLD", Version: "F1.0A", Line: 15},
		},
	}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
	if got := b.Components[1].Required(); got != ">= 26.36.1010" {
		t.Errorf("Required() = %q", got)
	}
}

func TestParseBaselineErrors(t *testing.T) {
	t.Parallel()
	pkg := "\n    package: {file: f.bin, sha256: " + sha1 + "}"
	for name, tc := range map[string]struct{ yaml, want string }{
		"empty":                   {"", "1:1: the baseline is empty"},
		"unknown key":             {"name: x\ncomponent: []\n", `2:1: component: unknown field "component"; known fields: name, description, components`},
		"unknown rule key":        {"name: x\ncomponents:\n  - id: BMC\n    verison: 1.0\n", `4:5: components[0].verison: unknown field "verison"`},
		"duplicate key":           {"name: x\nname: y\ncomponents: [{id: a, version: '1'}]\n", "2:1: name: duplicate key (first at line 1)"},
		"not a list":              {"name: x\ncomponents: {id: a}\n", "2:13: components: want a list, got a mapping"},
		"list as string":          {"name: x\ncomponents:\n  - id: [a, b]\n    version: '1'\n", "3:9: components[0].id: want a string, got a list"},
		"no name":                 {"components: [{id: a, version: '1'}]\n", "name: a baseline needs a name"},
		"no components":           {"name: x\n", "components: a baseline needs at least one component rule"},
		"no selector":             {"name: x\ncomponents:\n  - version: '1'\n", "3:5: components[0]: give id or name"},
		"no version":              {"name: x\ncomponents:\n  - id: a\n", "3:5: components[0]: give version (exactly) or minimum"},
		"both":                    {"name: x\ncomponents:\n  - id: a\n    version: '1'\n    minimum: '1'\n", "5:14: components[0].minimum: give version or minimum, not both"},
		"bad version":             {"name: x\ncomponents:\n  - id: a\n    version: '--'\n", `components[0].version: "--" is not a comparable version`},
		"bad pattern":             {"name: x\ncomponents:\n  - id: 'NIC[1'\n    version: '1'\n", `3:9: components[0].id: bad pattern "NIC[1"`},
		"same selector":           {"name: x\ncomponents:\n  - id: a\n    version: '1'\n  - id: A\n    version: '2'\n", "5:5: components[1]: selects the same components as the rule at line 3"},
		"bad sha256":              {"name: x\ncomponents:\n  - id: a\n    version: '1'\n    package: {file: f, sha256: abc}\n", `5:32: components[0].package.sha256: want the package's sha256 as 64 hex digits (sha256sum FILE), got "abc"`},
		"no file":                 {"name: x\ncomponents:\n  - id: a\n    version: '1'\n    package: {sha256: " + sha1 + "}\n", "5:14: components[0].package: a package needs a file"},
		"bad reset":               {"name: x\ncomponents:\n  - id: a\n    version: '1'" + pkg[:len(pkg)-1] + ", reset: cold}\n", `components[0].package.reset: unknown reset "cold"; use none, bmc or host`},
		"minimum, no pkg version": {"name: x\ncomponents:\n  - id: a\n    minimum: '2'" + pkg + "\n", "components[0].package.version: a rule with minimum needs the version its package installs"},
		"package too old":         {"name: x\ncomponents:\n  - id: a\n    minimum: '2'" + pkg[:len(pkg)-1] + ", version: '1.9'}\n", "the package installs 1.9, below the minimum 2"},
		"package not required":    {"name: x\ncomponents:\n  - id: a\n    version: '2'" + pkg[:len(pkg)-1] + ", version: '2.1'}\n", "the package installs 2.1, not the required 2"},
		"syntax":                  {"name: x\ncomponents:\n  - id: a\n   version: 1\n", "2:1: did not find expected '-' indicator"},
		"two documents":           {"name: x\ncomponents: [{id: a, version: '1'}]\n---\nname: y\n", "3:1: more than one YAML document"},
		"null package file":       {"name: x\ncomponents:\n  - id: a\n    version: '1'\n    package: {file: null, sha256: " + sha1 + "}\n", "components[0].package.file: want a string, got nothing"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := Parse([]byte(tc.yaml))
			var pes ParseErrors
			if !errors.As(err, &pes) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %+v, %v; want ParseErrors with %q", tc.yaml, b, err, tc.want)
			}
		})
	}
}

func TestLoadBaselineErrorsNameTheFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "rack.yaml")
	if err := os.WriteFile(file, []byte("name: x\ncomponents:\n  - id: a\n    vresion: '1'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	if err == nil || !strings.HasPrefix(err.Error(), file+":4:5: components[0].vresion: unknown field") {
		t.Errorf("Load = %v, want file:line:col", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Load(missing) = %v", err)
	}
}

func FuzzParseBaseline(f *testing.F) {
	f.Add([]byte(goodBaseline))
	f.Add([]byte("name: x\ncomponents: [{id: a, version: '1'}]\n"))
	f.Add([]byte("name: x\ncomponents:\n  - name: 'N*'\n    minimum: '2'\n    package: {file: f, sha256: " + sha1 + ", version: '3'}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("name: &n x\ncomponents: [{id: *n, version: *n}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			var pes ParseErrors
			if !errors.As(err, &pes) || len(pes) == 0 {
				t.Fatalf("Parse error %v is not ParseErrors", err)
			}
			for _, pe := range pes {
				if pe.Line < 1 {
					t.Fatalf("error without a line: %v", pe)
				}
			}
			return
		}
		if b.Name == "" || len(b.Components) == 0 {
			t.Fatalf("Parse accepted %+v", b)
		}
		for _, r := range b.Components {
			if (r.ID == "" && r.Name == "") || (r.Version == "") == (r.Minimum == "") {
				t.Fatalf("Parse accepted rule %+v", r)
			}
			if p := r.Package; p != nil && (p.Version == "" || !validSHA256(p.SHA256) || p.Reset == "") {
				t.Fatalf("Parse accepted package %+v", p)
			}
		}
	})
}
