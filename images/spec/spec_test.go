package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

const minimal = `api_version: rackstrap.io/image/v1
name: tiny
version: "1"
source_date_epoch: 1700000000
base:
  dir: rootfs
kernel:
  version: 6.1.0-28-amd64
outputs:
  netboot: {}
`

func TestParseExample(t *testing.T) {
	t.Parallel()
	s, err := Parse(Example, "example.yaml")
	if err != nil {
		t.Fatalf("Parse(example) = %v", err)
	}
	if s.Name != "gpu-node" || s.Outputs.Disk.Size != 8<<30 || s.Outputs.Disk.ESPSize != 256<<20 {
		t.Errorf("Parse(example) = %+v", s)
	}
	if got := *s.Layers[1].Files[0].Mode; got != 0o644 {
		t.Errorf("mode = %o, want 644", got)
	}
	if p, ok := s.PosOf("outputs.disk.size"); !ok || p.Line != 55 {
		t.Errorf("PosOf(outputs.disk.size) = %v, %v; want line 55", p, ok)
	}
}

func TestDigestIgnoresFormatting(t *testing.T) {
	t.Parallel()
	a, err := Parse([]byte(minimal), "a")
	if err != nil {
		t.Fatal(err)
	}
	reordered := "# comment\nname: tiny\napi_version: rackstrap.io/image/v1\nversion: '1'\nsource_date_epoch: 1700000000\nbase: {dir: rootfs}\nkernel: {version: 6.1.0-28-amd64}\noutputs: {netboot: {compression: zstd}}\n"
	b, err := Parse([]byte(reordered), "b")
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest() != b.Digest() {
		t.Errorf("digests differ: %s vs %s", a.Digest(), b.Digest())
	}
	c, _ := Parse([]byte(strings.Replace(minimal, "tiny", "tiny2", 1)), "c")
	if c.Digest() == a.Digest() {
		t.Error("a different name gave the same digest")
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		doc  string
		want []string // each must appear, in order, in the error text
	}{
		"unknown key with suggestion": {
			doc:  strings.Replace(minimal, "  dir: rootfs", "  dirr: rootfs", 1),
			want: []string{`s.yaml:6:3: base: unknown key "dirr"; did you mean "dir"?`},
		},
		"unknown top key lists known": {
			doc:  minimal + "frobnicate: 1\n",
			want: []string{`s.yaml:11:1: unknown key "frobnicate"; known keys here: agent, api_version`},
		},
		"camelCase key": {
			doc:  strings.Replace(minimal, "source_date_epoch", "sourceDateEpoch", 1),
			want: []string{`s.yaml:4:1: unknown key "sourceDateEpoch"; did you mean "source_date_epoch"?`},
		},
		"every unknown key reported": {
			doc:  minimal + "x1: 1\nx2: 2\n",
			want: []string{`s.yaml:11:1: unknown key "x1"`, `s.yaml:12:1: unknown key "x2"`},
		},
		"wrong type": {
			doc:  strings.Replace(minimal, "source_date_epoch: 1700000000", "source_date_epoch: soon", 1),
			want: []string{`s.yaml:4:20: source_date_epoch: want a whole number, got "soon"`},
		},
		"list where mapping": {
			doc:  strings.Replace(minimal, "  dir: rootfs", "  - rootfs", 1),
			want: []string{`s.yaml:6:3: base: want a mapping of keys (dir, oci, tarball), got a list`},
		},
		"unknown boot loader": {
			doc:  minimal + "boot: {loader: lilo}\n",
			want: []string{`boot.loader: "lilo" is not supported; use systemd-boot or grub`},
		},
		"shim without grub": {
			doc:  minimal + "boot: {shim: /usr/lib/shim/shimx64.efi.signed}\n",
			want: []string{`boot.shim: shim only goes in front of GRUB`},
		},
		"bad size": {
			doc:  minimal + "  disk: {size: 12 parsecs}\n",
			want: []string{`s.yaml:11:16: outputs.disk.size: "12 parsecs" is not a size`},
		},
		"bad mode": {
			doc:  minimal + "layers:\n  - name: x\n    files:\n      - {path: /etc/x, mode: \"0999\"}\n",
			want: []string{`s.yaml:14:30: layers[0].files[0].mode: "0999" is not a file mode`},
		},
		"missing api version": {
			doc:  strings.Replace(minimal, "api_version: rackstrap.io/image/v1\n", "", 1),
			want: []string{`api_version: missing; add 'api_version: rackstrap.io/image/v1'`},
		},
		"two base sources": {
			doc:  strings.Replace(minimal, "  dir: rootfs", "  dir: rootfs\n  tarball: x.tar", 1),
			want: []string{`s.yaml:6:3: base: set only one of dir, tarball or oci (found 2)`},
		},
		"gpu driver kernel mismatch": {
			doc:  minimal + "gpu_driver:\n  vendor: nvidia\n  version: 550.127.05\n  kernel_version: 6.1.0-27-amd64\n  dir: nv\n",
			want: []string{`s.yaml:14:19: gpu_driver.kernel_version: driver nvidia 550.127.05 was built for kernel 6.1.0-27-amd64 but the image boots kernel 6.1.0-28-amd64; rebuild the driver for 6.1.0-28-amd64 or set kernel.version to 6.1.0-27-amd64`},
		},
		"gpu driver without kernel": {
			doc:  strings.Replace(strings.Replace(minimal, "kernel:\n  version: 6.1.0-28-amd64\n", "", 1), "netboot: {}", "squashfs: {}", 1) + "gpu_driver: {vendor: nvidia, version: '1', kernel_version: 6.1.0-1-amd64, dir: nv}\n",
			want: []string{`gpu_driver: a GPU driver layer needs a kernel section`},
		},
		"escaping path": {
			doc:  minimal + "layers:\n  - name: x\n    files:\n      - {path: /etc/../../x, content: hi}\n",
			want: []string{`layers[0].files[0].path: "/etc/../../x" escapes the image root with '..'`},
		},
		"duplicate key": {
			doc:  minimal + "name: again\n",
			want: []string{`s.yaml:11:1: name: key given twice (first on line 2); keep one`},
		},
		"two documents": {
			doc:  minimal + "---\nname: x\n",
			want: []string{`s.yaml:11:1: more than one YAML document`},
		},
		"empty": {
			doc:  "",
			want: []string{`s.yaml: spec is empty`},
		},
		"not yaml": {
			doc:  "name: [unclosed\n",
			want: []string{`s.yaml:`, `did not find expected`},
		},
		"no outputs": {
			doc:  strings.Replace(minimal, "  netboot: {}\n", "", 1),
			want: []string{`outputs: no output formats; add at least one of disk, squashfs, netboot or iso`},
		},
		"disk too small": {
			doc:  minimal + "  disk: {size: 64MiB}\n",
			want: []string{`s.yaml:11:16: outputs.disk.size: 64MiB leaves no room for a root filesystem after the 128MiB ESP; use at least 138MiB`},
		},
		"CIDATA too small": {
			doc:  minimal + "  disk: {size: 1GiB, cidata_size: 8MiB}\n",
			want: []string{`outputs.disk.cidata_size: 8MiB cannot hold the FAT32 NoCloud seed partition; use a whole number of MiB, at least 33MiB`},
		},
		"disk too small for CIDATA": {
			doc:  minimal + "  disk: {size: 170MiB, cidata_size: 64MiB}\n",
			want: []string{`outputs.disk.size: 170MiB leaves no room for a root filesystem after the 128MiB ESP and the 64MiB CIDATA partition; use at least 202MiB`},
		},
		"bad ssh key": {
			doc:  minimal + "users:\n  - {name: ops, uid: 1000, ssh_authorized_keys: [hunter2]}\n",
			want: []string{`users[0].ssh_authorized_keys[0]: "hunter2" is not an OpenSSH public key line`},
		},
		"bad user name and duplicate uid": {
			doc:  minimal + "users:\n  - {name: Ops, uid: 1000}\n  - {name: ops, uid: 1000}\n",
			want: []string{`users[0].name: "Ops" is not a user name`, `users[1].uid: uid 1000 is also used by "Ops"`},
		},
		"hook with both": {
			doc:  minimal + "first_boot:\n  - {name: 10-x, run: 'true', script: x.sh}\n",
			want: []string{`first_boot[0]: set exactly one of run (inline script) or script (a file)`},
		},
		"squashfs compression": {
			doc:  minimal + "  squashfs: {compression: brotli}\n",
			want: []string{`outputs.squashfs.compression: "brotli" is not one of zstd, xz, gzip, lzo, lz4`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.doc), "s.yaml")
			if err == nil {
				t.Fatalf("Parse() = nil error, want %q", tc.want)
			}
			got := err.Error()
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("Parse() error =\n%s\nwant it to contain (in order)\n%s", got, w)
				}
				rest = rest[i+len(w):]
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Errorf("Parse() error is %T, want spec.Errors", err)
			}
		})
	}
}

func TestLintHostPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := minimal + "agent: missing-agent\nlayers:\n  - {name: a, dir: agent-file}\n"
	if err := os.WriteFile(filepath.Join(dir, "agent-file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	es := Lint([]byte(doc), "s.yaml", dir)
	got := es.Error()
	for _, w := range []string{
		"s.yaml:11:8: agent: missing-agent does not exist",
		"s.yaml:13:20: layers[0].dir: agent-file is not a directory",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("Lint() =\n%s\nwant it to contain %q", got, w)
		}
	}
	if !es.HasErrors() {
		t.Error("HasErrors() = false")
	}
	clean := Lint([]byte(minimal), "s.yaml", dir)
	if clean.HasErrors() {
		t.Errorf("Lint(minimal) = %v, want warnings only", clean)
	}
}

func TestSizeRoundTrip(t *testing.T) {
	t.Parallel()
	tests := map[string]Size{"512": 512, "4KiB": 4096, "1.5GiB": 3 << 29, "2G": 2 << 30, "10MB": 10e6, "7 MiB": 7 << 20}
	for in, want := range tests {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "x", "1XB", "1e30GiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = nil error", bad)
		}
	}
}

func compileSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// yamlToJSON turns a YAML document into the generic JSON value the schema checks.
func yamlToJSON(t testing.TB, doc string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSchemaAgreesWithParse(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	good := map[string]string{"example": string(Example), "minimal": minimal}
	for name, doc := range good {
		if err := sch.Validate(yamlToJSON(t, doc)); err != nil {
			t.Errorf("schema rejects %s: %v", name, err)
		}
		if _, err := Parse([]byte(doc), name); err != nil {
			t.Errorf("Parse rejects %s: %v", name, err)
		}
	}
	bad := map[string]string{
		"unknown key":    minimal + "frob: 1\n",
		"two sources":    strings.Replace(minimal, "  dir: rootfs", "  dir: rootfs\n  tarball: x", 1),
		"bad api":        strings.Replace(minimal, "image/v1", "image/v9", 1),
		"bad size":       minimal + "  disk: {size: lots}\n",
		"bad kernel":     strings.Replace(minimal, "6.1.0-28-amd64", "latest", 1),
		"layer no src":   minimal + "layers: [{name: x}]\n",
		"hook no body":   minimal + "first_boot: [{name: x}]\n",
		"no outputs key": strings.Replace(minimal, "outputs:\n  netboot: {}\n", "", 1),
	}
	for name, doc := range bad {
		if err := sch.Validate(yamlToJSON(t, doc)); err == nil {
			t.Errorf("schema accepts bad doc %q", name)
		}
		if _, err := Parse([]byte(doc), name); err == nil {
			t.Errorf("Parse accepts bad doc %q", name)
		}
	}
}

// TestSchemaMatchesTypes keeps schema.json and the Go types in step: every
// object in the schema lists exactly the YAML keys of its Go struct.
func TestSchemaMatchesTypes(t *testing.T) {
	t.Parallel()
	var root map[string]any
	if err := json.Unmarshal(Schema, &root); err != nil {
		t.Fatal(err)
	}
	defs := root["$defs"].(map[string]any)
	var walk func(path string, node map[string]any, typ reflect.Type)
	walk = func(path string, node map[string]any, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if ref, ok := node["$ref"].(string); ok {
			node = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		if typ.Kind() != reflect.Struct {
			return
		}
		if items, ok := node["items"].(map[string]any); ok {
			node = items
			if ref, ok := node["$ref"].(string); ok {
				node = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
			}
		}
		props, _ := node["properties"].(map[string]any)
		var schemaKeys []string
		for k := range props {
			schemaKeys = append(schemaKeys, k)
		}
		sort.Strings(schemaKeys)
		if diff := cmp.Diff(knownKeys(typ), schemaKeys); diff != "" {
			t.Errorf("%s: schema keys differ from %s (-go +schema):\n%s", path, typ, diff)
		}
		if node["additionalProperties"] != false {
			t.Errorf("%s: schema allows additional properties", path)
		}
		fields := structFields(typ)
		for k, sub := range props {
			if ft, ok := fields[k]; ok {
				walk(path+"."+k, sub.(map[string]any), ft)
			}
		}
	}
	walk("spec", root, reflect.TypeOf(Spec{}))
}

func TestWithDefaults(t *testing.T) {
	t.Parallel()
	s, err := Parse([]byte(minimal+"  disk: {size: 1GiB}\n  iso: {}\n"), "s")
	if err != nil {
		t.Fatal(err)
	}
	d := s.WithDefaults()
	if d.Outputs.Disk.ESPSize != DefaultESPSize || !*d.Outputs.Disk.Sparse || d.Outputs.ISO.VolumeID != "TINY" ||
		d.Kernel.Image != "/boot/vmlinuz-6.1.0-28-amd64" || d.Outputs.Netboot.Compression != "zstd" || d.Boot.EFI != DefaultEFI {
		t.Errorf("WithDefaults() = %+v", d)
	}
	if s.Outputs.Disk.Sparse != nil {
		t.Error("WithDefaults changed its receiver")
	}
	g, err := Parse([]byte(minimal+"  disk: {size: 1GiB}\nboot: {loader: grub}\n"), "s")
	if err != nil {
		t.Fatal(err)
	}
	if d := g.WithDefaults(); d.Boot.EFI != DefaultGRUB {
		t.Errorf("WithDefaults().Boot.EFI = %q for loader grub, want %q", d.Boot.EFI, DefaultGRUB)
	}
}
