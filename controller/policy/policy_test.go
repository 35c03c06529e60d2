package policy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
	imgstore "github.com/rackstrap/rackstrap/images/store"
)

const good = `api_version: rackstrap.io/policy/v1
trusted_signers:
  - name: site
    key_file: site.pub
require:
  validation: true
  firmware_compliance: false
images:
  by_profile:
    hgx-h100-8gpu: ["gpu-node:2026.11.*"]
  default: ["gpu-node:*"]
power:
  timezone: Europe/Paris
  no_power_windows:
    - name: business-hours
      days: [mon, tue, wed, thu, fri]
      from: "09:00"
      to: "18:00"
    - name: night-change-freeze
      days: [sat]
      from: "22:00"
      to: "06:00"
`

func writePolicy(t *testing.T, doc string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := imgstore.GenerateKey(filepath.Join(dir, "site.key"), filepath.Join(dir, "site.pub")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func TestParseGood(t *testing.T) {
	t.Parallel()
	file, _ := writePolicy(t, good)
	p, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Rules(), ","); got != "validation,signed-images,allowed-images,power-windows" {
		t.Errorf("Rules() = %s", got)
	}
	if len(p.Signers) != 1 || !strings.HasPrefix(p.Digest, "sha256:") {
		t.Errorf("signers %d, digest %q", len(p.Signers), p.Digest)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ doc, want string }{
		"typo":           {strings.Replace(good, "require:", "requier:", 1), `policy.yaml:5:1: unknown key "requier"; did you mean "require"?`},
		"nested typo":    {strings.Replace(good, "  timezone:", "  timezon:", 1), `policy.yaml:13:3: power: unknown key "timezon"; did you mean "timezone"?`},
		"bad bool":       {strings.Replace(good, "firmware_compliance: false", "firmware_compliance: maybe", 1), `require.firmware_compliance: want true or false, got "maybe"`},
		"validation off": {strings.Replace(good, "validation: true", "validation: false", 1), `require.validation: cannot be false`},
		"bad time":       {strings.Replace(good, `"18:00"`, `"6pm"`, 1), `power.no_power_windows[0].to: "6pm" is not a time; write HH:MM`},
		"bad day":        {strings.Replace(good, "[sat]", "[caturday]", 1), `"caturday" is not a day`},
		"bad zone":       {strings.Replace(good, "Europe/Paris", "Mars/Olympus", 1), `power.timezone: "Mars/Olympus" is not a time zone`},
		"bad ref":        {strings.Replace(good, `"gpu-node:*"`, `"gpu-node"`, 1), `images.default: "gpu-node" is not an image pattern`},
		"missing key":    {strings.Replace(good, "key_file: site.pub", "key_file: nope.pub", 1), `trusted_signers[0].key_file: public key: open`},
		"version":        {strings.Replace(good, "policy/v1", "policy/v0", 1), `api_version: is "rackstrap.io/policy/v0"`},
		"duplicate":      {good + "images: {}\n", `duplicate key (first at line 8)`},
		"alias":          {strings.Replace(good, "default: [\"gpu-node:*\"]", "default: *x", 1), `policy.yaml`},
		"two docs":       {good + "---\napi_version: x\n", `a second YAML document`},
		"empty":          {"", `empty policy`},
		"both key kinds": {strings.Replace(good, "key_file: site.pub", "key_file: site.pub\n    keys_dir: keys", 1), `give either key_file`},
		"empty keyring":  {strings.Replace(good, "key_file: site.pub", "keys_dir: nokeys", 1), `has no trusted keys`},
		"wrong shape":    {"api_version: rackstrap.io/policy/v1\ntrusted_signers: yes\n", `trusted_signers: want a list, got "yes"`},
		"bad move":       {strings.Replace(good, "firmware_compliance: false", "firmware_compliance: true\n  firmware_compliance_before: [imagin]", 1), `require.firmware_compliance_before: "imagin" is not a move`},
		"before alone":   {strings.Replace(good, "firmware_compliance: false", "firmware_compliance_before: [handoff]", 1), `firmware_compliance is not true`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			file, _ := writePolicy(t, tc.doc)
			_, err := Load(file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(%s) = %v, want an error containing %q", name, err, tc.want)
			}
		})
	}
}

func TestKeysDirSigner(t *testing.T) {
	t.Parallel()
	file, dir := writePolicy(t, strings.Replace(good, "key_file: site.pub", "keys_dir: keys", 1))
	os.MkdirAll(filepath.Join(dir, "keys", "trusted"), 0o755)
	os.MkdirAll(filepath.Join(dir, "keys", "revoked"), 0o755)
	imgstore.GenerateKey(filepath.Join(dir, "a.key"), filepath.Join(dir, "keys", "trusted", "a.pub"))
	imgstore.GenerateKey(filepath.Join(dir, "b.key"), filepath.Join(dir, "keys", "trusted", "b.pub"))
	data, _ := os.ReadFile(filepath.Join(dir, "keys", "trusted", "b.pub"))
	os.WriteFile(filepath.Join(dir, "keys", "revoked", "b.pub"), data, 0o644)
	p, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Signers) != 1 {
		t.Errorf("signers from a keyring with one trusted and one revoked key: %d, want 1", len(p.Signers))
	}
}

func TestPowerWindows(t *testing.T) {
	t.Parallel()
	file, _ := writePolicy(t, good)
	p, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC() // the policy converts to its own zone
	}
	for when, want := range map[string]string{
		"2026-11-24 10:00": "business-hours",      // Tuesday
		"2026-11-24 08:59": "",                    // before
		"2026-11-24 18:00": "",                    // end is exclusive
		"2026-11-28 10:00": "",                    // Saturday
		"2026-11-28 23:30": "night-change-freeze", // Saturday night
		"2026-11-29 05:59": "night-change-freeze", // wraps into Sunday
		"2026-11-29 06:00": "",
		"2026-11-27 23:00": "", // Friday night is not Saturday
	} {
		v := p.PowerWindow(at(when))
		got := ""
		if v != nil {
			got = v.Message
			if v.Rule != RulePowerWindows {
				t.Errorf("rule %q", v.Rule)
			}
		}
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("PowerWindow(%s) = %q, want window %q", when, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	file, _ := writePolicy(t, strings.Replace(good, "    - name: business-hours\n      days: [mon, tue, wed, thu, fri]\n      from: \"09:00\"\n      to: \"18:00\"\n", "", 1))
	p, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	noon := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	failing, _ := json.Marshal([]map[string]string{{"severity": "error", "message": "GPU at x8"}, {"severity": "warning"}})
	cases := map[string]struct {
		n     model.Node
		next  model.State
		image string
		rule  string
	}{
		"allowed":               {model.Node{Name: "a", Profile: "hgx-h100-8gpu"}, model.Imaging, "gpu-node:2026.11.1", ""},
		"profile pattern":       {model.Node{Name: "a", Profile: "hgx-h100-8gpu"}, model.Imaging, "gpu-node:2026.10.1", RuleAllowedImages},
		"default":               {model.Node{Name: "a", Profile: "qemu-vm"}, model.Imaging, "gpu-node:1", ""},
		"default refuses":       {model.Node{Name: "a", Profile: "qemu-vm"}, model.Imaging, "other:1", RuleAllowedImages},
		"failed validation":     {model.Node{Name: "a", Findings: failing}, model.HandedOff, "", RuleValidation},
		"hand-off not an image": {model.Node{Name: "a", Profile: "qemu-vm"}, model.HandedOff, "other:1", ""},
	}
	for name, tc := range cases {
		v := p.Check(tc.n, tc.next, tc.image, noon)
		got := ""
		if v != nil {
			got = v.Rule
			if !errors.Is(v, ErrViolation) || !strings.HasPrefix(v.Error(), "policy rule "+v.Rule+": ") {
				t.Errorf("%s: violation %v does not name its rule", name, v)
			}
		}
		if got != tc.rule {
			t.Errorf("%s: Check() = %v, want rule %q", name, v, tc.rule)
		}
	}
}

func TestCheckSignedImage(t *testing.T) {
	t.Parallel()
	file, dir := writePolicy(t, good)
	p, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := imgstore.Open(filepath.Join(dir, "store"))
	raw := filepath.Join(dir, "os.raw")
	os.WriteFile(raw, []byte("image"), 0o644)
	m := &imgstore.Manifest{SchemaVersion: imgstore.ManifestVersion, Name: "gpu-node", Version: "1", SpecDigest: "sha256:" + strings.Repeat("0", 64),
		BuildTime: "2026-11-24T00:00:00Z", Builder: "t", Artifacts: []imgstore.Artifact{{Name: "os.raw", Format: "raw", Size: 5,
			Digest: "sha256:6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d"}}}
	site, _ := imgstore.LoadPrivateKey(filepath.Join(dir, "site.key"))
	if _, err := st.Import(m, map[string]string{"os.raw": raw}, site); err != nil {
		t.Fatal(err)
	}
	if v := p.CheckSignedImage(st.Dir(), "gpu-node", "1"); v != nil {
		t.Errorf("image signed by the policy's signer refused: %v", v)
	}
	imgstore.GenerateKey(filepath.Join(dir, "other.key"), filepath.Join(dir, "other.pub"))
	other, _ := imgstore.LoadPrivateKey(filepath.Join(dir, "other.key"))
	st.Sign("gpu-node", "1", other)
	if v := p.CheckSignedImage(st.Dir(), "gpu-node", "1"); v == nil || v.Rule != RuleSignedImages || !errors.Is(v, ErrViolation) {
		t.Errorf("image signed by another key = %v, want a signed-images violation", v)
	}
	_ = context.Background
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("api_version: rackstrap.io/policy/v1\npower: {no_power_windows: [{from: '25:00', to: '00:00'}]}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("images: {by_profile: {p: [\"[\"]}}\n"))
	f.Add([]byte("- - - -\n"))
	f.Add([]byte("api_version: rackstrap.io/policy/v1\nrequire: {firmware_compliance: true, firmware_compliance_before: [handoff]}\npower: {timezone: UTC, no_power_windows: [{from: '22:00', to: '06:00', days: [fri]}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		p.PowerWindow(time.Now())
		p.ImageAllowed("x", "a:b")
		p.Check(model.Node{}, model.Imaging, "a:b", time.Now())
		p.PowerResumes(time.Now())
		p.FirmwareBefore(model.HandedOff)
	})
}
