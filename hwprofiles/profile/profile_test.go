package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/schema"
)

func bundled(t testing.TB) *Catalog {
	t.Helper()
	c, err := Bundled()
	if err != nil {
		t.Fatalf("Bundled() = %v", err)
	}
	return c
}

func TestBundled(t *testing.T) {
	t.Parallel()
	c := bundled(t)
	want := []string{"dell-poweredge-xe9680", "hgx-h100-8gpu", "nvidia-dgx-h100", "qemu-vm", "supermicro-sys-821ge-tnhr"}
	if diff := cmp.Diff(want, c.Names()); diff != "" {
		t.Errorf("Names() (-want +got):\n%s", diff)
	}
	for _, name := range want {
		src, err := BundledSource(name)
		if err != nil {
			t.Fatalf("BundledSource(%s) = %v", name, err)
		}
		// Every expectation cites its source: the file has a comment line
		// for every few lines of values.
		var values, comments int
		for _, l := range strings.Split(string(src), "\n") {
			switch l = strings.TrimSpace(l); {
			case strings.HasPrefix(l, "#"):
				comments++
			case l != "":
				values++
			}
		}
		if comments*3 < values {
			t.Errorf("%s: %d comment lines for %d value lines; cite the public spec of each value", name, comments, values)
		}
	}
	for _, name := range []string{"nvidia-dgx-h100", "dell-poweredge-xe9680", "supermicro-sys-821ge-tnhr"} {
		p, err := c.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := p.GPUs.Count.Exact(); n != 8 || p.GPUs.ECC != "enabled" || len(p.BurnIn) == 0 {
			t.Errorf("%s: inherited GPU expectations missing: %+v", name, p.GPUs)
		}
	}
}

func TestCatalogMatch(t *testing.T) {
	t.Parallel()
	c := bundled(t)
	tests := map[string]struct {
		sys  inventory.System
		want []string
	}{
		"dgx":        {inventory.System{Vendor: "NVIDIA", Model: "DGXH100"}, []string{"nvidia-dgx-h100"}},
		"dell":       {inventory.System{Vendor: "Dell Inc.", Model: "PowerEdge XE9680"}, []string{"dell-poweredge-xe9680"}},
		"supermicro": {inventory.System{Vendor: "Supermicro", Model: "SYS-821GE-TNHR"}, []string{"supermicro-sys-821ge-tnhr"}},
		"qemu q35":   {inventory.System{Vendor: "QEMU", Model: "Standard PC (Q35 + ICH9, 2009)"}, []string{"qemu-vm"}},
		"unknown":    {inventory.System{Vendor: "ACME", Model: "Box"}, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ps, err := c.Match(tc.sys)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.Name)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Match(%+v) (-want +got):\n%s", tc.sys, diff)
			}
		})
	}
}

// compileSchema compiles the published JSON Schema.
func compileSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.Profile))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("profile.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("profile.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return s
}

func yamlToJSONValue(t testing.TB, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// TestSchema checks that the published JSON Schema accepts every bundled
// profile and agrees with the strict parser on broken ones.
func TestSchema(t *testing.T) {
	t.Parallel()
	s := compileSchema(t)
	c := bundled(t)
	for _, name := range c.Names() {
		src, err := BundledSource(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlToJSONValue(t, src)); err != nil {
			t.Errorf("schema rejects bundled profile %s: %v", name, err)
		}
	}
	for name, tc := range parseErrorCases {
		if tc.schemaToo {
			if err := s.Validate(yamlToJSONValue(t, []byte(tc.in))); err == nil {
				t.Errorf("%s: schema accepts a profile Parse rejects:\n%s", name, tc.in)
			}
		}
	}
}

var parseErrorCases = map[string]struct {
	in        string
	want      string
	schemaToo bool // the JSON Schema must reject it too
}{
	"unknown top-level key with suggestion": {
		in:        "name: x\ngpu:\n  count: 8\n",
		want:      `f.yaml:2:1: gpu: unknown field "gpu" (did you mean "gpus"?); known fields: name, description, extends, match, cpu, memory, disks, nics, gpus, firmware, burnin`,
		schemaToo: true,
	},
	"unknown nested key": {
		in:        "name: x\ngpus:\n  count: 8\n  pcie_width: 16\n",
		want:      `f.yaml:4:3: gpus.pcie_width: unknown field "pcie_width" (did you mean "pcieWidth"?); known fields: model, count, memory, pcieGen, pcieWidth, nvlinks, ecc, vbios, driver`,
		schemaToo: true,
	},
	"bad count": {
		in:        "name: x\ngpus:\n  count: eight\n",
		want:      `f.yaml:3:10: gpus.count: "eight" is not a non-negative whole number`,
		schemaToo: true,
	},
	"bad range key": {
		in:        "name: x\ncpu:\n  cores: {minimum: 2}\n",
		want:      `f.yaml:3:11: cpu.cores: unknown field "minimum"; known: min, max, oneOf`,
		schemaToo: true,
	},
	"min above max": {
		in:   "name: x\ncpu:\n  cores: {min: 8, max: 2}\n",
		want: `f.yaml:3:10: cpu.cores: min is greater than max`,
	},
	"bad size": {
		in:        "name: x\nmemory:\n  total: 2 tebibytes\n",
		want:      `f.yaml:3:10: memory.total: "2 tebibytes" is not a size; write e.g. 80GB, 1.92TB or 512GiB`,
		schemaToo: true,
	},
	"list expected": {
		in:        "name: x\nnics:\n  name: mgmt\n",
		want:      `f.yaml:3:3: nics: want a list, got a mapping`,
		schemaToo: true,
	},
	"missing name": {
		in:        "description: nameless\n",
		want:      `f.yaml:1:1: name: missing: every profile needs a name`,
		schemaToo: true,
	},
	"bad name": {
		in:        "name: DGX_H100\n",
		want:      `f.yaml:1:7: name: "DGX_H100" is not a valid name; use lower-case letters, digits and dashes`,
		schemaToo: true,
	},
	"duplicate key": {
		in:   "name: x\nname: y\n",
		want: `f.yaml:2:1: name: duplicate key (first at line 1)`,
	},
	"bad ecc and disk type": {
		in: "name: x\ngpus:\n  ecc: on\ndisks:\n  - name: os\n    type: floppy\n",
		want: "f.yaml:6:11: disks[0].type[0]: unknown drive type \"floppy\"; one of nvme, ssd, hdd, virtual\n" +
			"f.yaml:3:8: gpus.ecc: \"on\" is not an ECC mode; use enabled or disabled",
		schemaToo: true,
	},
	"unknown burn-in": {
		in:        "name: x\nburnin:\n  - name: prime95\n",
		want:      `f.yaml:3:11: burnin[0].name: unknown burn-in check "prime95"; one of dcgm-diag, gpu-burn, nccl-allreduce, nvbandwidth, memtester, stress-ng, fio, smart, nic-link, ib-loopback`,
		schemaToo: true,
	},
	"bad duration": {
		in:   "name: x\nburnin:\n  - name: fio\n    duration: forever\n",
		want: `f.yaml:4:15: burnin[0].duration: "forever" is not a positive duration; write e.g. 10m or 1h30m`,
	},
	"bad version": {
		in:   "name: x\nfirmware:\n  bios: {min: \"...\"}\n",
		want: `f.yaml:3:15: firmware.bios: want a version string such as "2.19.0"`,
	},
	"several errors at once": {
		in: "name: x\ncpu:\n  sockts: 2\n  cores: -1\n",
		want: "f.yaml:3:3: cpu.sockts: unknown field \"sockts\" (did you mean \"sockets\"?); known fields: model, sockets, cores, threads\n" +
			"f.yaml:4:10: cpu.cores: \"-1\" is not a non-negative whole number",
		schemaToo: true,
	},
	"syntax error": {
		in:   "name: x\ngpus:\n  count: [8\n",
		want: `f.yaml:2:1: invalid YAML: did not find expected ',' or ']'`,
	},
	"two documents": {
		in:   "name: x\n---\nname: y\n",
		want: `f.yaml:2:1: more than one YAML document; put one profile per file`,
	},
	"empty": {
		in:   "",
		want: `f.yaml:1:1: empty profile; a profile needs at least a name`,
	},
	"not a mapping": {
		in:        "- name: x\n",
		want:      `f.yaml:1:1: want a mapping of keys, got a list`,
		schemaToo: true,
	},
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range parseErrorCases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p, err := Parse("f.yaml", []byte(tc.in))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want error %s", tc.in, p, tc.want)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse(%q) error %T is not Errors", tc.in, err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Parse(%q) error =\n%s\nwant\n%s", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseOK(t *testing.T) {
	t.Parallel()
	in := `
name: site-dgx
extends: nvidia-dgx-h100
match: {vendor: NVIDIA, model: DGXH100, sku: "DGXH100-SITE*"}
gpus:
  vbios: {min: 96.00.89.00.01}
  driver: {oneOf: ["550.90.07", "550.127.05"]}
nics:
  - name: management
    model: "*X550*"
    speedGbps: {min: 10}
burnin:
  - name: dcgm-diag
    duration: 1h
    args: {level: 4}
`
	p, err := Parse("site.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	c := bundled(t)
	r, err := c.Resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	got := mustJSON(t, r)
	for _, want := range []string{
		`"vbios":{"min":"96.00.89.00.01"}`,
		`"driver":{"oneOf":["550.90.07","550.127.05"]}`,
		`"sku":["DGXH100-SITE*"]`,
		`{"name":"dcgm-diag","duration":"1h0m0s","args":{"level":"4"}}`,
		`{"name":"management","model":["*X550*"],"speedGbps":{"min":10}}`,
		`"count":8`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("resolved profile lacks %s:\n%s", want, got)
		}
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInherit(t *testing.T) {
	t.Parallel()
	parse := func(s string) *Profile {
		p, err := Parse("t.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := parse(`
name: base
description: the base
match: {vendor: ACME}
cpu: {sockets: 2, cores: {min: 32}}
memory: {total: 1TiB, dimms: {count: 16, size: 64GiB}}
disks:
  - {name: os, type: nvme, count: 2}
  - {name: data, type: nvme, count: 8}
nics:
  - {name: mgmt, count: 1}
gpus: {count: 8, ecc: enabled}
firmware:
  bios: {min: "1.0"}
  components:
    - {id: CPLD, version: {min: "2"}}
burnin:
  - {name: dcgm-diag, duration: 10m}
`)
	child := parse(`
name: child
extends: base
match: {model: "Box 9*"}
cpu: {cores: {min: 48}}
memory: {dimms: {count: 32}}
disks:
  - {name: data, type: nvme, count: 4}
  - {name: scratch, type: ssd, count: 2}
gpus: {count: 4}
firmware:
  bmc: {min: "3.1"}
  components:
    - {id: CPLD, version: {min: "3"}}
    - {id: PSU*, version: {min: "1.2"}}
burnin:
  - {name: dcgm-diag, duration: 1h}
  - {name: fio}
`)
	c, err := NewCatalog(base, child)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Get("child")
	if err != nil {
		t.Fatal(err)
	}
	want := parse(`
name: child
extends: base
description: the base
match: {vendor: ACME, model: "Box 9*"}
cpu: {sockets: 2, cores: {min: 48}}
memory: {total: 1TiB, dimms: {count: 32, size: 64GiB}}
disks:
  - {name: os, type: nvme, count: 2}
  - {name: data, type: nvme, count: 4}
  - {name: scratch, type: ssd, count: 2}
nics:
  - {name: mgmt, count: 1}
gpus: {count: 4, ecc: enabled}
firmware:
  bios: {min: "1.0"}
  bmc: {min: "3.1"}
  components:
    - {id: CPLD, version: {min: "3"}}
    - {id: PSU*, version: {min: "1.2"}}
burnin:
  - {name: dcgm-diag, duration: 1h}
  - {name: fio}
`)
	if diff := cmp.Diff(mustJSON(t, want), mustJSON(t, got)); diff != "" {
		t.Errorf("Inherit (-want +got):\n%s", diff)
	}
	// The inputs are untouched.
	if n, _ := base.GPUs.Count.Exact(); n != 8 {
		t.Errorf("Inherit modified the base: gpus.count %v", base.GPUs.Count)
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	a, _ := Parse("a.yaml", []byte("name: a\nextends: b\n"))
	b, _ := Parse("b.yaml", []byte("name: b\nextends: a\n"))
	orphan, _ := Parse("o.yaml", []byte("name: o\nextends: nowhere\n"))
	c, err := NewCatalog(a, b, orphan)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get("a"); err == nil || !strings.Contains(err.Error(), "extends cycle") {
		t.Errorf("Get(a) = %v, want an extends cycle error", err)
	}
	if _, err := c.Get("o"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(o) = %v, want ErrNotFound", err)
	}
	if _, err := c.Get("zzz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(zzz) = %v, want ErrNotFound", err)
	}
	if err := c.Add(a); err == nil {
		t.Error("Add of a duplicate name succeeded")
	}
}

func TestConstraints(t *testing.T) {
	t.Parallel()
	decode := func(s string, v yaml.Unmarshaler) {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(s), &n); err != nil {
			t.Fatal(err)
		}
		if err := v.UnmarshalYAML(n.Content[0]); err != nil {
			t.Fatalf("decode %s: %v", s, err)
		}
	}
	var ir IntRange
	decode("{oneOf: [48, 56]}", &ir)
	if !ir.OK(56) || ir.OK(50) || ir.String() != "one of 48, 56" {
		t.Errorf("IntRange oneOf: %v", ir)
	}
	decode("{min: 2}", &ir)
	if !ir.OK(3) || ir.OK(1) || ir.String() != "at least 2" {
		t.Errorf("IntRange min: %v", ir)
	}
	var br ByteRange
	decode("{min: 1.9TB, max: 2TB}", &br)
	if !br.OK(1920383410176) || br.OK(2*1e12+1) || br.String() != "1.9 TB to 2 TB" {
		t.Errorf("ByteRange: %v", br)
	}
	decode("80GiB", &br)
	if br.String() != "80 GiB" || !br.OK(80<<30) {
		t.Errorf("ByteRange exact: %v", br)
	}
	var vr VersionRange
	decode(`{min: "28.40.1000"}`, &vr)
	if !vr.OK("28.40.1000") || !vr.OK("28.43.2566") || vr.OK("28.39.1002") || vr.String() != "at least 28.40.1000" {
		t.Errorf("VersionRange: %v", vr)
	}
	for pat, cases := range map[string]map[string]bool{
		"*ConnectX-7*":                    {"MT2910 Family [ConnectX-7]": true, "ConnectX-6 Dx": false},
		"Standard PC (Q35 + ICH9, 2009)*": {"Standard PC (Q35 + ICH9, 2009)": true, "Standard PC (i440FX + PIIX, 1996)": false},
		"dgx?100":                         {"DGXH100": true, "DGXA100": true, "DGX100": false},
	} {
		for s, want := range cases {
			if got := (Patterns{pat}).Match(s); got != want {
				t.Errorf("Patterns{%q}.Match(%q) = %v, want %v", pat, s, got, want)
			}
		}
	}
	for _, v := range []uint64{0, 123, 80 << 30, 2e12, 1920383410176, 81559 << 20} {
		s := FormatSizeExact(v)
		back, err := ParseSize(s)
		if err != nil || uint64(back) != v {
			t.Errorf("ParseSize(FormatSizeExact(%d) = %q) = %v, %v", v, s, back, err)
		}
	}
}

// FuzzParse checks that the profile reader never panics, and that what it
// accepts survives a round trip through YAML unchanged.
func FuzzParse(f *testing.F) {
	c, err := Bundled()
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range c.Names() {
		src, _ := BundledSource(n)
		f.Add(src)
	}
	for _, tc := range parseErrorCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Parse error %v is not a non-empty Errors", err)
			}
			return
		}
		out, err := yaml.Marshal(p)
		if err != nil {
			t.Fatalf("yaml.Marshal(%+v) = %v", p, err)
		}
		back, err := Parse("again.yaml", out)
		if err != nil {
			t.Fatalf("re-parse of\n%s\nfailed: %v", out, err)
		}
		if a, b := mustJSON(t, p), mustJSON(t, back); a != b {
			t.Fatalf("round trip changed the profile:\n%s\n%s", a, b)
		}
	})
}

// TestREADMEExample keeps the example in hwprofiles/README.md valid.
func TestREADMEExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no yaml example")
	}
	p, err := Parse("README.md", []byte(example))
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if _, err := bundled(t).Resolve(p); err != nil {
		t.Fatalf("README example: %v", err)
	}
	if err := compileSchema(t).Validate(yamlToJSONValue(t, []byte(example))); err != nil {
		t.Errorf("README example fails the schema: %v", err)
	}
}
