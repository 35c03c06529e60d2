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
	// FirmwareFeature is whether the firmware feature (and its gate) is on.
	FirmwareFeature bool
	Now             func() time.Time
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
	if p.File.Require.FirmwareCompliance && !env.FirmwareFeature {
		return refuse(&Violation{Rule: RuleFirmwareCompliance, Message: "the policy requires firmware compliance before imaging, but the firmware feature is off; start serve with --firmware-baseline FILE --firmware-hold imaging"})
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
// Ready → HandedOff.
func (p *Policy) Check(n model.Node, next model.State, image string, now time.Time) *Violation {
	if failed := errorFindings(n.Findings); failed > 0 {
		return &Violation{Rule: RuleValidation, Message: fmt.Sprintf("the node has %d failed validation finding(s); fix them and validate again ('rackstrap validate %s')", failed, n.Name)}
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

var _ lifecycle.Gate = (*gate)(nil)

func (g *gate) Name() string { return "policy" }

func (g *gate) Hold(ctx context.Context, n model.Node, next model.State) (string, error) {
	image := ""
	if g.env.ImageName != "" {
		image = g.env.ImageName + ":" + g.env.ImageVersion
	}
	if next == model.Imaging && g.env.ImageStore != "" {
		if v := g.p.CheckSignedImage(g.env.ImageStore, g.env.ImageName, g.env.ImageVersion); v != nil {
			return v.Error(), nil
		}
	}
	if v := g.p.Check(n, next, image, g.env.Now()); v != nil {
		return v.Error(), nil
	}
	return "", nil
}

// FailureClass classifies a violation for the lifecycle (lifecycle.Classified).
func (v *Violation) FailureClass() string { return "policy-refused" }

// WrapEdge refuses power actions (Boot, PowerOff) inside the policy's
// no-power windows with a *Violation. The lifecycle's gates are asked only
// before imaging and hand-off; this covers every power action the engine
// takes, for a controller that wires it (see the decision record).
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

func (g *powerGuard) Boot(ctx context.Context, n model.Node, key string) error {
	if v := g.p.PowerWindow(g.now()); v != nil {
		return v
	}
	return g.Edge.Boot(ctx, n, key)
}

func (g *powerGuard) PowerOff(ctx context.Context, n model.Node, key string) error {
	if v := g.p.PowerWindow(g.now()); v != nil {
		return v
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
		Routes: []api.Route{{Method: http.MethodGet, Path: "/api/v1/policy", Perm: api.PermAdmin,
			Handle: func(w http.ResponseWriter, r *http.Request) error {
				return api.WriteJSON(w, http.StatusOK, View{File: p.Path, Digest: p.Digest, Rules: p.Rules(), Policy: p.File, Power: p.PowerWindow(env.Now())})
			}}},
		OpenAPI: []byte(`{"paths":{"/api/v1/policy":{"get":{"summary":"The local policy in force: its file, digest, rules, and the no-power window in force now","operationId":"getPolicy","tags":["policy"],"responses":{"200":{"description":"the policy","content":{"application/json":{"schema":{"$ref":"#/components/schemas/PolicyView"}}}}}}}},
"components":{"schemas":{"PolicyView":{"type":"object","required":["file","digest","rules","policy"],"properties":{"file":{"type":"string"},"digest":{"type":"string"},"rules":{"type":"array","items":{"type":"string"}},"policy":{"type":"object"},"powerNow":{"type":"object","properties":{"rule":{"type":"string"},"message":{"type":"string"}}}}}}}}`),
	}
}
