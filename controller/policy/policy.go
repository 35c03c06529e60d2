// Package policy applies a site's local policy file to the controller:
// which signers' images are trusted, that nodes pass validation (and
// optionally firmware compliance) before imaging and hand-off, which images
// each hardware profile may receive, and windows in which no power action
// may happen. A violation holds the node (a lifecycle gate) or refuses the
// action, naming the rule; holds are audited on the node's timeline.
package policy

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // time zones without the system's tzdata (air-gapped hosts)

	"go.yaml.in/yaml/v3"

	"github.com/rackstrap/rackstrap/controller/model"
	imgstore "github.com/rackstrap/rackstrap/images/store"
	"github.com/rackstrap/rackstrap/internal/strictyaml"
)

// APIVersion is the policy file's api_version.
const APIVersion = "rackstrap.io/policy/v1"

// Rule names, as refusals and audit entries name them.
const (
	RuleSignedImages       = "signed-images"
	RuleValidation         = "validation"
	RuleFirmwareCompliance = "firmware-compliance"
	RuleAllowedImages      = "allowed-images"
	RulePowerWindows       = "power-windows"
)

// File is the policy file as written.
type File struct {
	APIVersion     string   `yaml:"api_version" json:"api_version"`
	TrustedSigners []Signer `yaml:"trusted_signers" json:"trusted_signers"`
	Require        Require  `yaml:"require" json:"require"`
	Images         Images   `yaml:"images" json:"images"`
	Power          Power    `yaml:"power" json:"power"`
}

// Signer is a key whose image signatures the site trusts.
type Signer struct {
	Name string `yaml:"name" json:"name"`
	// KeyFile is a PEM public key (a keyring's trusted/<id>.pub);
	// relative paths are relative to the policy file.
	KeyFile string `yaml:"key_file" json:"key_file,omitempty"`
	// KeysDir trusts every key of a keyring's trust store (its trusted/
	// directory, less revoked/): 'rackstrap keys' manages it.
	KeysDir string `yaml:"keys_dir" json:"keys_dir,omitempty"`
}

// Require lists the checks a node must pass before imaging and hand-off.
type Require struct {
	// Validation is always on (a node that fails validation is quarantined
	// and never reaches imaging); writing false is an error.
	Validation *bool `yaml:"validation" json:"validation"`
	// FirmwareCompliance holds a node whose firmware is behind the
	// firmware feature's baseline (serve --firmware-baseline) before the
	// moves FirmwareComplianceBefore names.
	FirmwareCompliance bool `yaml:"firmware_compliance" json:"firmware_compliance"`
	// FirmwareComplianceBefore lists the moves held: imaging, handoff;
	// empty: both.
	FirmwareComplianceBefore []string `yaml:"firmware_compliance_before" json:"firmware_compliance_before,omitempty"`
}

// Moves FirmwareComplianceBefore may name.
const (
	BeforeImaging = "imaging"
	BeforeHandoff = "handoff"
)

// FirmwareBefore reports whether the policy holds a node behind its
// firmware baseline from moving to next.
func (p *Policy) FirmwareBefore(next model.State) bool {
	r := p.File.Require
	if !r.FirmwareCompliance {
		return false
	}
	want := ""
	switch next {
	case model.Imaging:
		want = BeforeImaging
	case model.HandedOff:
		want = BeforeHandoff
	default:
		return false
	}
	return len(r.FirmwareComplianceBefore) == 0 || slices.Contains(r.FirmwareComplianceBefore, want)
}

// Images says which images each hardware profile may receive: NAME:VERSION
// patterns (path.Match: gpu-node:2026.11.*). A profile not listed gets
// Default; with no Default, any image.
type Images struct {
	ByProfile map[string][]string `yaml:"by_profile" json:"by_profile"`
	Default   []string            `yaml:"default" json:"default"`
}

// Power lists the windows in which no power action may happen.
type Power struct {
	// Timezone is an IANA zone (Europe/Paris); default the host's.
	Timezone string   `yaml:"timezone" json:"timezone"`
	Freeze   []Window `yaml:"no_power_windows" json:"no_power_windows"`
}

// Window is a weekly window of local time. From > To wraps past midnight
// (22:00-06:00 on fri: Friday 22:00 to Saturday 06:00); From == To is the
// whole day.
type Window struct {
	Name string   `yaml:"name" json:"name"`
	Days []string `yaml:"days" json:"days"` // mon … sun; empty: every day
	From string   `yaml:"from" json:"from"` // HH:MM
	To   string   `yaml:"to" json:"to"`
}

// Policy is a checked policy, ready to apply.
type Policy struct {
	File    File
	Path    string
	Digest  string // sha256 of the file's bytes
	Signers []ed25519.PublicKey
	loc     *time.Location
	windows []window
}

type window struct {
	name     string
	days     [7]bool
	from, to int // minutes of the day
}

var hhmm = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])$`)

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// Load reads and checks a policy file.
func Load(file string) (*Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(data, file)
}

// Parse checks policy bytes strictly: unknown keys (with a suggestion),
// duplicate keys, wrong types and bad values are errors naming file, line
// and key (Errors). Signer key files are read relative to file's directory.
func Parse(data []byte, file string) (*Policy, error) {
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("policy %s: %d bytes is too large for a policy", file, len(data))
	}
	doc, err := strictyaml.ReadDocument(data)
	switch {
	case errors.Is(err, strictyaml.ErrEmpty):
		return nil, Errors{{File: file, Line: 1, Column: 1, Msg: "empty policy; start with 'api_version: " + APIVersion + "'"}}
	case err != nil:
		return nil, fmt.Errorf("policy %s: not YAML: %w", file, err)
	case doc.Next != nil:
		return nil, Errors{{File: file, Line: doc.Next.Line, Column: doc.Next.Column, Msg: "a second YAML document; a policy is one document"}}
	case doc.Root == doc.Node:
		return nil, Errors{{File: file, Line: 1, Column: 1, Msg: "empty policy; start with 'api_version: " + APIVersion + "'"}}
	}
	c := &checker{}
	c.check(doc.Root, reflect.TypeFor[File](), "", 0)
	if len(c.errs) == 0 {
		var f File
		if err := doc.Root.Decode(&f); err != nil {
			c.add(doc.Root, "", "%v", err)
		} else {
			p := &Policy{File: f, Path: file}
			sum := sha256.Sum256(data)
			p.Digest = "sha256:" + hex.EncodeToString(sum[:])
			p.semantic(c, doc.Root)
			if len(c.errs) == 0 {
				return p, nil
			}
		}
	}
	for _, e := range c.errs {
		e.File = file
	}
	return nil, c.errs
}

// find returns the node at a dotted key path, for error positions.
func find(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n.Kind != yaml.MappingNode {
			return n
		}
		next := n
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == n {
			return n
		}
		n = next
	}
	return n
}

func (p *Policy) semantic(c *checker, root *yaml.Node) {
	f := p.File
	if f.APIVersion != APIVersion {
		c.add(find(root, "api_version"), "api_version", "is %q; write %q", f.APIVersion, APIVersion)
	}
	dir := filepath.Dir(p.Path)
	names := map[string]bool{}
	for i, s := range f.TrustedSigners {
		at := find(root, "trusted_signers")
		if at.Kind == yaml.SequenceNode && i < len(at.Content) {
			at = at.Content[i]
		}
		key := fmt.Sprintf("trusted_signers[%d]", i)
		if s.Name == "" {
			c.add(at, key, "give the signer a name")
		} else if names[s.Name] {
			c.add(at, key, "signer %q is listed twice", s.Name)
		}
		names[s.Name] = true
		if (s.KeyFile == "") == (s.KeysDir == "") {
			c.add(at, key, "give either key_file (the signer's PEM public key; 'rackstrap keys list' shows the files) or keys_dir (a keyring)")
			continue
		}
		if s.KeysDir != "" {
			kd := s.KeysDir
			if !filepath.IsAbs(kd) {
				kd = filepath.Join(dir, kd)
			}
			pubs, err := keyringTrusted(kd)
			if err != nil {
				c.add(at, key+".keys_dir", "%v", err)
			}
			p.Signers = append(p.Signers, pubs...)
			continue
		}
		kf := s.KeyFile
		if !filepath.IsAbs(kf) {
			kf = filepath.Join(dir, kf)
		}
		pub, err := imgstore.LoadPublicKey(kf)
		if err != nil {
			c.add(at, key+".key_file", "%v", err)
			continue
		}
		p.Signers = append(p.Signers, pub)
	}
	for _, b := range f.Require.FirmwareComplianceBefore {
		if b != BeforeImaging && b != BeforeHandoff {
			c.add(find(root, "require", "firmware_compliance_before"), "require.firmware_compliance_before", "%q is not a move; use imaging, handoff or both", b)
		}
	}
	if len(f.Require.FirmwareComplianceBefore) > 0 && !f.Require.FirmwareCompliance {
		c.add(find(root, "require", "firmware_compliance_before"), "require.firmware_compliance_before", "says when to check firmware compliance, but firmware_compliance is not true; add 'firmware_compliance: true' or remove the line")
	}
	if v := f.Require.Validation; v != nil && !*v {
		c.add(find(root, "require", "validation"), "require.validation", "cannot be false: a node that fails validation is never imaged or handed off; remove the line")
	}
	checkRefs := func(key string, refs []string, at *yaml.Node) {
		for _, r := range refs {
			name, ver, ok := strings.Cut(r, ":")
			_, err1 := path.Match(name, "x")
			_, err2 := path.Match(ver, "x")
			if !ok || name == "" || ver == "" || err1 != nil || err2 != nil {
				c.add(at, key, "%q is not an image pattern; write NAME:VERSION, e.g. gpu-node:2026.11.1 or gpu-node:*", r)
			}
		}
	}
	for prof, refs := range f.Images.ByProfile {
		checkRefs("images.by_profile."+prof, refs, find(root, "images", "by_profile", prof))
		if len(refs) == 0 {
			c.add(find(root, "images", "by_profile", prof), "images.by_profile."+prof, "an empty list allows no image at all; list the images, or remove the profile")
		}
	}
	checkRefs("images.default", f.Images.Default, find(root, "images", "default"))
	p.loc = time.Local
	if f.Power.Timezone != "" {
		loc, err := time.LoadLocation(f.Power.Timezone)
		if err != nil {
			c.add(find(root, "power", "timezone"), "power.timezone", "%q is not a time zone; use an IANA name such as Europe/Paris or UTC", f.Power.Timezone)
		} else {
			p.loc = loc
		}
	}
	for i, w := range f.Power.Freeze {
		at := find(root, "power", "no_power_windows")
		if at.Kind == yaml.SequenceNode && i < len(at.Content) {
			at = at.Content[i]
		}
		key := fmt.Sprintf("power.no_power_windows[%d]", i)
		win := window{name: w.Name}
		if win.name == "" {
			win.name = fmt.Sprintf("window %d", i+1)
		}
		var ok bool
		if win.from, ok = minutes(w.From); !ok {
			c.add(at, key+".from", "%q is not a time; write HH:MM (24-hour)", w.From)
		}
		if win.to, ok = minutes(w.To); !ok {
			c.add(at, key+".to", "%q is not a time; write HH:MM (24-hour)", w.To)
		}
		if len(w.Days) == 0 {
			for d := range win.days {
				win.days[d] = true
			}
		}
		for _, d := range w.Days {
			idx := slices.Index(dayNames, strings.ToLower(d))
			if idx < 0 {
				c.add(at, key+".days", "%q is not a day; use mon, tue, wed, thu, fri, sat, sun", d)
				continue
			}
			win.days[idx] = true
		}
		p.windows = append(p.windows, win)
	}
}

func minutes(s string) (int, bool) {
	m := hhmm.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	h, mm := int(m[1][0]-'0')*10+int(m[1][1]-'0'), int(m[2][0]-'0')*10+int(m[2][1]-'0')
	return h*60 + mm, true
}

// Violation is a refusal: the rule and why.
type Violation struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

func (v *Violation) Error() string { return "policy rule " + v.Rule + ": " + v.Message }

// ErrViolation is wrapped by every Violation returned as an error.
var ErrViolation = errors.New("refused by the local policy")

// Unwrap makes errors.Is(v, ErrViolation) true.
func (v *Violation) Unwrap() error { return ErrViolation }

// PowerWindow returns the window that forbids power actions at t, if any.
// Its message names the window and when power actions may resume; it stays
// the same throughout the window (a hold is audited once, not each minute).
func (p *Policy) PowerWindow(t time.Time) *Violation {
	w, _ := p.windowAt(t)
	if w == nil {
		return nil
	}
	resume := "when the policy allows it"
	if end, ok := p.PowerResumes(t); ok {
		resume = "at " + end.In(p.loc).Format("Mon 2006-01-02 15:04 MST")
	}
	return &Violation{Rule: RulePowerWindows, Message: fmt.Sprintf("no power actions during %q (%s, %s); the node moves on %s",
		w.name, w.spec(), p.loc, resume)}
}

// PowerResumes returns when power actions are allowed again after t: t
// itself outside every window; false when the windows cover the next
// weeks without a gap (a permanent freeze).
func (p *Policy) PowerResumes(t time.Time) (time.Time, bool) {
	for range 64 {
		_, end := p.windowAt(t)
		if end.IsZero() {
			return t, true
		}
		t = end
	}
	return t, false
}

// windowAt returns the first window in force at t and when it ends.
func (p *Policy) windowAt(t time.Time) (*window, time.Time) {
	lt := t.In(p.loc)
	m := lt.Hour()*60 + lt.Minute()
	day := int(lt.Weekday())
	prev := (day + 6) % 7
	y, mo, d := lt.Date()
	at := func(dayOffset, minute int) time.Time {
		return time.Date(y, mo, d+dayOffset, minute/60, minute%60, 0, 0, p.loc)
	}
	for i := range p.windows {
		w := &p.windows[i]
		switch {
		case w.from == w.to:
			if w.days[day] {
				return w, at(1, 0)
			}
		case w.from < w.to:
			if w.days[day] && m >= w.from && m < w.to {
				return w, at(0, w.to)
			}
		default: // wraps past midnight
			if w.days[day] && m >= w.from {
				return w, at(1, w.to)
			}
			if w.days[prev] && m < w.to {
				return w, at(0, w.to)
			}
		}
	}
	return nil, time.Time{}
}

// spec writes a window as the policy gave it: "mon,tue 22:00-06:00".
func (w *window) spec() string {
	var days []string
	for i, on := range w.days {
		if on {
			days = append(days, dayNames[i])
		}
	}
	when := "every day"
	if len(days) < 7 {
		when = strings.Join(days, ",")
	}
	if w.from == w.to {
		return when + ", all day"
	}
	return fmt.Sprintf("%s %02d:%02d-%02d:%02d", when, w.from/60, w.from%60, w.to/60, w.to%60)
}

// ImageAllowed checks that image (NAME:VERSION) may go to nodes of profile.
func (p *Policy) ImageAllowed(profile, image string) *Violation {
	allowed, ok := p.File.Images.ByProfile[profile]
	if !ok {
		allowed = p.File.Images.Default
		if allowed == nil {
			return nil
		}
	}
	for _, pat := range allowed {
		if m, _ := path.Match(pat, image); m {
			return nil
		}
	}
	return &Violation{Rule: RuleAllowedImages, Message: fmt.Sprintf("image %s is not allowed for profile %q (allowed: %s); change the policy or serve an allowed image",
		image, profile, strings.Join(allowed, ", "))}
}

// CheckSignedImage checks that a stored image is signed by one of the
// policy's signers (when it names any).
func (p *Policy) CheckSignedImage(storeDir, name, version string) *Violation {
	if len(p.Signers) == 0 {
		return nil
	}
	st, err := imgstore.Open(storeDir)
	if err == nil {
		_, err = st.Manifest(name, version, p.Signers...)
	}
	if err != nil {
		return &Violation{Rule: RuleSignedImages, Message: fmt.Sprintf("image %s:%s: %v; it must be signed by a signer the policy names (trusted_signers)", name, version, err)}
	}
	return nil
}

// keyringTrusted reads a keyring's trust store without changing it.
func keyringTrusted(dir string) ([]ed25519.PublicKey, error) {
	files, err := filepath.Glob(filepath.Join(dir, "trusted", "*.pub"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s has no trusted keys (trusted/*.pub); add them with 'rackstrap keys trust --keys-dir %s FILE'", dir, dir)
	}
	var out []ed25519.PublicKey
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, "revoked", filepath.Base(f))); err == nil {
			continue
		}
		pub, err := imgstore.LoadPublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, pub)
	}
	return out, nil
}
