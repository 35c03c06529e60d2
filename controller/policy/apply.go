package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
	imgstore "github.com/rackstrap/rackstrap/images/store"
)

// Env is what the policy needs of a starting controller.
type Env struct {
	Store  *store.DB
	API    *api.Server
	Engine *lifecycle.Engine
	Log    *slog.Logger
	// The image nodes receive: a signed one (ImageStore, ImageName,
	// ImageVersion), a plain file (PlainImage), or neither (simulated).
	ImageStore, ImageName, ImageVersion string
	PlainImage                          string
	// Firmware checks nodes against the site's firmware baseline (the
	// firmware feature with a baseline); nil when there is none.
	Firmware Firmware
	// Now is the clock no-power windows are read on; default time.Now.
	Now func() time.Time
}

// Firmware tells whether a node's firmware is behind the site's baseline;
// the firmware feature implements it.
type Firmware interface {
	// Behind returns a non-empty reason, naming the components and what
	// to run, when n's firmware is behind the baseline.
	Behind(ctx context.Context, n model.Node) (string, error)
}

// Rules lists the rules the policy turns on.
func (p *Policy) Rules() []string {
	r := []string{RuleValidation}
	if len(p.Signers) > 0 {
		r = append(r, RuleSignedImages)
	}
	if p.File.Require.FirmwareCompliance {
		r = append(r, RuleFirmwareCompliance)
	}
	if len(p.File.Images.ByProfile) > 0 || p.File.Images.Default != nil {
		r = append(r, RuleAllowedImages)
	}
	if len(p.windows) > 0 {
		r = append(r, RulePowerWindows)
	}
	return r
}

// Attach applies the policy to a starting controller: it refuses to start
// with an image the policy rejects, adds the policy's lifecycle gate,
// serves GET /api/v1/policy and audits which policy is in force.
func (p *Policy) Attach(ctx context.Context, env Env) error {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	refuse := func(v *Violation) error {
		_ = env.Store.Audit(ctx, store.AuditInput{Actor: "policy", Action: "policy.refused", Outcome: "refused",
			Detail: map[string]string{"rule": v.Rule, "reason": v.Message, "policy": p.Path}})
		return v
	}
	if p.File.Require.FirmwareCompliance && env.Firmware == nil {
		return refuse(&Violation{Rule: RuleFirmwareCompliance, Message: "the policy requires firmware compliance, but the firmware feature is off or has no baseline to check against; start serve with --firmware-dir DIR --firmware-baseline NAME"})
	}
	if len(p.Signers) > 0 && env.PlainImage != "" {
		return refuse(&Violation{Rule: RuleSignedImages, Message: fmt.Sprintf("--image %s is a plain file, not a signed image; import it into a store and serve it with --image-store and --image NAME:VERSION", env.PlainImage)})
	}
	if env.ImageStore != "" {
		if v := p.CheckSignedImage(env.ImageStore, env.ImageName, env.ImageVersion); v != nil {
			return refuse(v)
		}
	}
	g := &gate{p: p, env: env}
	env.Engine.AddGate(g)
	if len(p.windows) > 0 {
		// Every power action the engine takes (boot, power cycle, power
		// off) waits out the no-power windows; the engine holds the node
		// until the window ends, measured on the policy's clock.
		env.Engine.SetClock(env.Now)
		env.Engine.WrapEdge(func(e lifecycle.Edge) lifecycle.Edge { return p.WrapEdge(e, env.Now) })
	}
	if env.API != nil {
		if err := env.API.Extend(p.extension(env)); err != nil {
			return err
		}
	}
	signers := make([]string, len(p.Signers))
	for i, s := range p.Signers {
		signers[i] = imgstore.KeyID(s)
	}
	if err := env.Store.Audit(ctx, store.AuditInput{Actor: "policy", Action: "policy.loaded", Outcome: "ok",
		Detail: map[string]any{"file": p.Path, "digest": p.Digest, "rules": p.Rules(), "signers": signers}}); err != nil {
		return err
	}
	env.Log.Info("policy in force", "file", p.Path, "digest", p.Digest, "rules", p.Rules())
	return nil
}

// Check decides whether n may move to next at now: the first rule that
// refuses, or nil. The engine asks before Validated → Imaging and
// Ready → HandedOff. Firmware compliance is checked by the gate, which
// has the firmware feature at hand.
func (p *Policy) Check(n model.Node, next model.State, image string, now time.Time) *Violation {
	if v := checkValidation(n); v != nil {
		return v
	}
	if next != model.Imaging {
		return nil
	}
	if image != "" {
		if v := p.ImageAllowed(n.Profile, image); v != nil {
			return v
		}
	}
	// Imaging power-cycles the node into its network boot.
	return p.PowerWindow(now)
}

func checkValidation(n model.Node) *Violation {
	if failed := errorFindings(n.Findings); failed > 0 {
		return &Violation{Rule: RuleValidation, Message: fmt.Sprintf("the node has %d failed validation finding(s); fix them and validate again ('rackstrap validate %s')", failed, n.Name)}
	}
	return nil
}

func errorFindings(raw json.RawMessage) int {
	var fs []struct {
		Severity string `json:"severity"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &fs) != nil {
		return 0
	}
	n := 0
	for _, f := range fs {
		if f.Severity == "error" {
			n++
		}
	}
	return n
}

type gate struct {
	p   *Policy
	env Env
}

var _ lifecycle.RuledGate = (*gate)(nil)

func (g *gate) Name() string { return "policy" }

func (g *gate) Hold(ctx context.Context, n model.Node, next model.State) (string, error) {
	_, reason, err := g.HoldRule(ctx, n, next)
	return reason, err
}

// HoldRule asks the policy's rules in order: validation, signed and
// allowed images, firmware compliance, then the no-power window.
func (g *gate) HoldRule(ctx context.Context, n model.Node, next model.State) (string, string, error) {
	image := ""
	if g.env.ImageName != "" {
		image = g.env.ImageName + ":" + g.env.ImageVersion
	}
	if next == model.Imaging && g.env.ImageStore != "" {
		if v := g.p.CheckSignedImage(g.env.ImageStore, g.env.ImageName, g.env.ImageVersion); v != nil {
			return v.Rule, v.Error(), nil
		}
	}
	if g.p.FirmwareBefore(next) {
		if g.env.Firmware == nil {
			v := &Violation{Rule: RuleFirmwareCompliance, Message: "the policy requires firmware compliance but no firmware baseline is configured; start serve with --firmware-baseline"}
			return v.Rule, v.Error(), nil
		}
		if v := checkValidation(n); v != nil {
			return v.Rule, v.Error(), nil
		}
		behind, err := g.env.Firmware.Behind(ctx, n)
		if err != nil {
			return RuleFirmwareCompliance, "", fmt.Errorf("policy rule %s: %w", RuleFirmwareCompliance, err)
		}
		if behind != "" {
			v := &Violation{Rule: RuleFirmwareCompliance, Message: fmt.Sprintf("firmware must comply with the baseline before %s: %s", moveName(next), behind)}
			return v.Rule, v.Error(), nil
		}
	}
	if v := g.p.Check(n, next, image, g.env.Now()); v != nil {
		return v.Rule, v.Error(), nil
	}
	return "", "", nil
}

func moveName(s model.State) string {
	if s == model.HandedOff {
		return "hand-off"
	}
	return "imaging"
}

// FailureClass classifies a violation for the lifecycle (lifecycle.Classified).
func (v *Violation) FailureClass() string { return "policy-refused" }

// WrapEdge refuses power actions (Boot: power on or cycle; PowerOff)
// inside the policy's no-power windows with a *lifecycle.HeldError that
// wraps the *Violation and says when the window ends: the engine holds
// the node, its step's intent open, and tries again then. Nothing reaches
// the machine while it is refused. Attach wraps the engine's edge with it.
func (p *Policy) WrapEdge(e lifecycle.Edge, now func() time.Time) lifecycle.Edge {
	if now == nil {
		now = time.Now
	}
	return &powerGuard{Edge: e, p: p, now: now}
}

type powerGuard struct {
	lifecycle.Edge
	p   *Policy
	now func() time.Time
}

func (g *powerGuard) refuse() error {
	if h := g.p.PowerHold(g.now()); h != nil {
		return h
	}
	return nil
}

// HasPowerWindows reports whether the policy has no-power windows.
func (p *Policy) HasPowerWindows() bool { return len(p.windows) > 0 }

// PowerHold returns the hold a power action at t is under (the window in
// force, until when), or nil when power actions are allowed.
func (p *Policy) PowerHold(t time.Time) *lifecycle.HeldError {
	v := p.PowerWindow(t)
	if v == nil {
		return nil
	}
	end, _ := p.PowerResumes(t)
	return &lifecycle.HeldError{Gate: "policy", Rule: v.Rule, Reason: v.Error(), Until: end, Err: v}
}

func (g *powerGuard) Boot(ctx context.Context, n model.Node, key string) error {
	if err := g.refuse(); err != nil {
		return err
	}
	return g.Edge.Boot(ctx, n, key)
}

func (g *powerGuard) PowerOff(ctx context.Context, n model.Node, key string) error {
	if err := g.refuse(); err != nil {
		return err
	}
	return g.Edge.PowerOff(ctx, n, key)
}

// View is what GET /api/v1/policy shows.
type View struct {
	File   string     `json:"file"`
	Digest string     `json:"digest"`
	Rules  []string   `json:"rules"`
	Policy File       `json:"policy"`
	Power  *Violation `json:"powerNow,omitempty"` // the window in force now, if any
}

func (p *Policy) extension(env Env) api.Extension {
	return api.Extension{
		Name: "policy",
		Routes: []api.Route{{Method: http.MethodGet, Path: "/api/v1/policy", Perm: api.PermRead,
			Handle: func(w http.ResponseWriter, r *http.Request) error {
				return api.WriteJSON(w, http.StatusOK, View{File: p.Path, Digest: p.Digest, Rules: p.Rules(), Policy: p.File, Power: p.PowerWindow(env.Now())})
			}}},
		OpenAPI: []byte(`{"paths":{"/api/v1/policy":{"get":{"summary":"The local policy in force: its file, digest, rules, and the no-power window in force now","operationId":"getPolicy","tags":["policy"],"responses":{"200":{"description":"the policy","content":{"application/json":{"schema":{"$ref":"#/components/schemas/PolicyView"}}}}}}}},
"components":{"schemas":{"PolicyView":{"type":"object","required":["file","digest","rules","policy"],"properties":{"file":{"type":"string"},"digest":{"type":"string"},"rules":{"type":"array","items":{"type":"string"}},"policy":{"type":"object"},"powerNow":{"type":"object","properties":{"rule":{"type":"string"},"message":{"type":"string"}}}}}}}}`),
	}
}
