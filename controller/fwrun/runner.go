// Package fwrun is the controller's side of firmware updates (issue 9): a
// staged, durable, resumable run of firmware.Apply across many nodes, the
// policy gate that holds nodes behind their baseline from imaging or
// hand-off, and the API that starts and shows runs.
//
// A run is planned once (which nodes need which packages, in which waves)
// and stored before anything is sent. Each package's step is recorded
// before its package leaves, and the BMC's task URI the moment the BMC
// accepts it, so a controller killed at any instant resumes the run
// without flashing anything twice: a step with a recorded task polls that
// task; a component already at the package's version is verified, not
// flashed again. The canary wave runs first; the run stops when failures
// reach the limit; a failed node is quarantined with the reason. Nodes are
// updated only while the lifecycle leaves them at rest, and the gate holds
// them there until their update is verified.
package fwrun

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/secrets"
	"github.com/rackstrap/rackstrap/controller/store"
	"github.com/rackstrap/rackstrap/firmware"
	"github.com/rackstrap/rackstrap/hwprofiles/validate"
)

// Hold says which moves a node behind its baseline is held from.
type Hold string

const (
	HoldNone    Hold = "none"
	HoldImaging Hold = "imaging" // held before imaging, and before hand-off
	HoldHandoff Hold = "handoff" // held before hand-off only
)

// ParseHold reads a --firmware-hold value.
func ParseHold(s string) (Hold, error) {
	switch h := Hold(s); h {
	case HoldNone, HoldImaging, HoldHandoff:
		return h, nil
	case "":
		return HoldNone, nil
	}
	return "", fmt.Errorf("firmware hold %q: want none, imaging or handoff", s)
}

// Config configures firmware runs.
type Config struct {
	// Dir is the local firmware artifact store: baseline YAML files and the
	// packages they name (package files must lie under Dir).
	Dir string
	// Baseline is the baseline the policy gate checks nodes against (a
	// file name under Dir, ".yaml" optional), and the default of a run.
	Baseline string
	// Hold is the policy: which moves a node behind Baseline is held from.
	Hold Hold
	// TrustedKeys verify package signatures; AllowUnsigned lets unsigned
	// packages through (trials only).
	TrustedKeys   []ed25519.PublicKey
	AllowUnsigned bool
	// ImageBase is the base URL BMCs fetch packages from for SimpleUpdate
	// (the API's packages route; default the API's own URL).
	ImageBase string
	// Transfer forces SimpleUpdate or multipart push; default: what each
	// BMC advertises.
	Transfer firmware.Transfer
	// Client tunes the Redfish client (deadlines, polling).
	Client firmware.Config
	// Parallel bounds the nodes of a wave updated at once (default 8).
	Parallel int
	// Poll is how often the runner looks for a run to drive (default 2s).
	Poll time.Duration
	// Actor names the runner in the audit log (default "firmware").
	Actor string
}

func (c Config) withDefaults() Config {
	if c.Hold == "" {
		c.Hold = HoldNone
	}
	if c.Parallel <= 0 {
		c.Parallel = 8
	}
	if c.Poll <= 0 {
		c.Poll = 2 * time.Second
	}
	if c.Actor == "" {
		c.Actor = "firmware"
	}
	return c
}

// Deps are the controller parts a Runner uses.
type Deps struct {
	Store   *store.DB
	Secrets *secrets.Box // opens stored BMC passwords; nil: only the default login
	Log     *slog.Logger
	// APIURL is the API's base URL (the default ImageBase).
	APIURL string
	// DefaultUser and DefaultPassword log in to BMCs without a stored login.
	DefaultUser, DefaultPassword string
	// Wake, when set, makes the lifecycle engine look again (after a node
	// is released or quarantined).
	Wake func()
	// Registry, when set, gets the firmware runs' Prometheus series.
	Registry prometheus.Registerer
	// PowerHold, when set, says whether power actions must wait now (the
	// local policy's no-power windows): a package that restarts the host
	// waits, its intent recorded and nothing sent, until it returns nil.
	PowerHold func() *lifecycle.HeldError
}

// Runner plans and drives firmware runs.
type Runner struct {
	cfg    Config
	db     *store.DB
	box    *secrets.Box
	log    *slog.Logger
	deps   Deps
	client *firmware.Client
	wake   chan struct{}

	mu       sync.Mutex
	packages map[string]string // sha256 → file, the packages BMCs may fetch
	baseline *cachedBaseline

	flashes *prometheus.CounterVec // packages applied, by component and outcome
	nodes   *prometheus.CounterVec // nodes of runs, by outcome
}

type cachedBaseline struct {
	b      *firmware.Baseline
	mtime  time.Time
	loaded time.Time
}

// New validates cfg and returns a Runner.
func New(cfg Config, deps Deps) (*Runner, error) {
	cfg = cfg.withDefaults()
	if deps.Store == nil || deps.Log == nil {
		return nil, errors.New("firmware runs need a store and a logger")
	}
	if cfg.Dir == "" {
		return nil, errors.New("firmware runs need a firmware directory (--firmware-dir) holding baselines and packages")
	}
	if fi, err := os.Stat(cfg.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("firmware directory %s: not a readable directory; create it and put the baselines and packages there", cfg.Dir)
	}
	if _, err := ParseHold(string(cfg.Hold)); err != nil {
		return nil, err
	}
	if cfg.Hold != HoldNone && cfg.Baseline == "" {
		return nil, fmt.Errorf("--firmware-hold %s needs --firmware-baseline: the baseline nodes are held against", cfg.Hold)
	}
	if cfg.ImageBase == "" {
		cfg.ImageBase = deps.APIURL
	}
	if cfg.ImageBase != "" {
		if u, err := url.Parse(cfg.ImageBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("firmware image URL %q: want http(s)://host:port, the address BMCs reach the controller's API at", cfg.ImageBase)
		}
	}
	cc := cfg.Client
	cc.TrustedKeys, cc.AllowUnsigned, cc.Logger = cfg.TrustedKeys, cfg.AllowUnsigned, deps.Log
	r := &Runner{cfg: cfg, db: deps.Store, box: deps.Secrets, log: deps.Log, deps: deps, client: firmware.New(cc),
		wake: make(chan struct{}, 1), packages: map[string]string{},
		flashes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackstrap_firmware_packages_total",
			Help: "Firmware packages applied by firmware runs, by component and outcome (flashed, unchanged, failed).",
		}, []string{"component", "outcome"}),
		nodes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackstrap_firmware_nodes_total",
			Help: "Nodes of firmware runs that ended, by outcome (succeeded, failed, skipped).",
		}, []string{"outcome"}),
	}
	if deps.Registry != nil {
		if err := deps.Registry.Register(r.flashes); err != nil {
			return nil, fmt.Errorf("firmware metrics: %w", err)
		}
		if err := deps.Registry.Register(r.nodes); err != nil {
			return nil, fmt.Errorf("firmware metrics: %w", err)
		}
	}
	if cfg.Baseline != "" {
		if _, err := r.loadBaseline(cfg.Baseline); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Wake makes the runner look for a run now.
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// loadBaseline reads a baseline by name from Dir and checks that its
// packages lie under Dir.
func (r *Runner) loadBaseline(name string) (*firmware.Baseline, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("baseline %q: give the name of a baseline file in the firmware directory %s", name, r.cfg.Dir)
	}
	var file string
	for _, cand := range []string{name, name + ".yaml", name + ".yml"} {
		if fi, err := os.Stat(filepath.Join(r.cfg.Dir, cand)); err == nil && fi.Mode().IsRegular() {
			file = filepath.Join(r.cfg.Dir, cand)
			break
		}
	}
	if file == "" {
		return nil, fmt.Errorf("baseline %q: no %s[.yaml] in the firmware directory %s; copy the baseline and its packages there", name, name, r.cfg.Dir)
	}
	b, err := firmware.Load(file)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(r.cfg.Dir)
	if err != nil {
		return nil, err
	}
	for _, c := range b.Components {
		if c.Package == nil {
			continue
		}
		abs, err := filepath.Abs(c.Package.File)
		if err != nil {
			return nil, err
		}
		if rel, err := filepath.Rel(dir, abs); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return nil, fmt.Errorf("baseline %s: package %s lies outside the firmware directory %s; copy it there", name, c.Package.File, r.cfg.Dir)
		}
		c.Package.File = abs
		if c.Package.Signature != "" {
			if c.Package.Signature, err = filepath.Abs(c.Package.Signature); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// policyBaseline is the gate's baseline, re-read when its file changes
// (looked at no more than once a second).
func (r *Runner) policyBaseline() (*firmware.Baseline, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.baseline
	if c != nil && time.Since(c.loaded) < time.Second {
		return c.b, nil
	}
	var mtime time.Time
	for _, cand := range []string{r.cfg.Baseline, r.cfg.Baseline + ".yaml", r.cfg.Baseline + ".yml"} {
		if fi, err := os.Stat(filepath.Join(r.cfg.Dir, cand)); err == nil && fi.Mode().IsRegular() {
			mtime = fi.ModTime()
			break
		}
	}
	if c != nil && mtime.Equal(c.mtime) {
		c.loaded = time.Now()
		return c.b, nil
	}
	b, err := r.loadBaseline(r.cfg.Baseline)
	if err != nil {
		return nil, err
	}
	r.baseline = &cachedBaseline{b: b, mtime: mtime, loaded: time.Now()}
	return b, nil
}

// offer lets BMCs fetch a package (by its sha256) from the packages route.
func (r *Runner) offer(p firmware.Package) string {
	sha := strings.ToLower(p.SHA256)
	r.mu.Lock()
	r.packages[sha] = p.File
	r.mu.Unlock()
	if r.cfg.ImageBase == "" {
		return ""
	}
	return strings.TrimSuffix(r.cfg.ImageBase, "/") + "/api/v1/firmware/packages/" + sha + "/" + url.PathEscape(filepath.Base(p.File))
}

// endpoint is a node's BMC with its login: the stored one, or the default.
func (r *Runner) endpoint(ctx context.Context, n model.Node) (bmc.Endpoint, error) {
	if n.Identity.BMC == "" {
		return bmc.Endpoint{}, fmt.Errorf("node %s has no BMC address; declare it in the rack manifest", n.Name)
	}
	ep := bmc.Endpoint{Address: n.Identity.BMC, Protocol: bmc.Redfish, Username: r.deps.DefaultUser, Password: r.deps.DefaultPassword}
	l, err := r.db.BMCLogin(ctx, n.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return ep, err
	default:
		ep.CertSHA256 = l.CertSHA256
		if l.PasswordSealed != "" {
			if r.box == nil {
				return ep, fmt.Errorf("node %s: its stored BMC password cannot be opened here", n.Name)
			}
			pw, err := r.box.Open(l.PasswordSealed, n.Name)
			if err != nil {
				return ep, fmt.Errorf("stored BMC password of %s: %w; set it again with PUT /api/v1/nodes/%s/bmc-credentials", n.Name, err, n.Name)
			}
			ep.Username, ep.Password = l.Username, pw
		}
	}
	if ep.Username == "" {
		return ep, fmt.Errorf("node %s has no BMC login: set one with PUT /api/v1/nodes/%s/bmc-credentials or run serve with --bmc-username/--bmc-password-file", n.Name, n.Name)
	}
	return ep, nil
}

// Serve drives the running run, if any, until ctx ends; a run started
// through the API wakes it.
func (r *Runner) Serve(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		run, err := r.db.RunningFirmwareRun(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Error("firmware: look for a run", "err", err)
		case run != nil:
			if err := r.drive(ctx, run); err != nil && ctx.Err() == nil {
				r.log.Error("firmware: drive run", "run", run.ID, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.wake:
		}
	}
}

// outcomeOf maps a stored outcome onto the wave planner's.
func outcomeOf(s string) (firmware.Outcome, bool) {
	switch s {
	case store.FirmwareFailed:
		return firmware.Failed, true
	case store.FirmwareSucceeded:
		return firmware.Succeeded, true
	case store.FirmwareSkipped:
		return firmware.Outcome(store.FirmwareSkipped), true
	}
	return "", false
}

// drive runs a stored run to its end: wave by wave, the canary first,
// stopping when failures reach the limit. It is what a restarted
// controller calls again: nodes with an outcome are never touched again.
func (r *Runner) drive(ctx context.Context, run *store.FirmwareRun) error {
	var (
		waves  [][]string
		policy firmware.WavePolicy
	)
	if err := json.Unmarshal(run.Waves, &waves); err != nil {
		return fmt.Errorf("firmware run %d: waves: %w", run.ID, err)
	}
	if err := json.Unmarshal(run.Policy, &policy); err != nil {
		return fmt.Errorf("firmware run %d: policy: %w", run.ID, err)
	}
	plans := map[string][]firmware.Update{}
	outcomes := map[string]firmware.Outcome{}
	for _, n := range run.Nodes {
		var ups []firmware.Update
		if err := json.Unmarshal(n.Plan, &ups); err != nil {
			return fmt.Errorf("firmware run %d: plan of %s: %w", run.ID, n.Node, err)
		}
		plans[n.Node] = ups
		for _, u := range ups {
			r.offer(u.Package)
		}
		if o, ok := outcomeOf(n.Outcome); ok {
			outcomes[n.Node] = o
			if o == firmware.Failed {
				// A controller killed between the outcome and the
				// quarantine finishes the quarantine now.
				if err := r.quarantine(ctx, run.ID, n.Node, n.Message); err != nil {
					return err
				}
			}
		}
	}
	var mu sync.Mutex
	for ctx.Err() == nil {
		if over, err := r.over(ctx, run.ID); over || err != nil {
			return err
		}
		mu.Lock()
		d := firmware.NextWave(waves, outcomes, policy)
		mu.Unlock()
		switch {
		case d.Stop:
			r.log.Warn("firmware run stopped", "run", run.ID, "reason", d.Reason)
			return r.db.FinishFirmwareRun(ctx, run.ID, store.FirmwareStopped, d.Reason, r.cfg.Actor)
		case d.Done:
			r.log.Info("firmware run done", "run", run.ID)
			return r.db.FinishFirmwareRun(ctx, run.ID, store.FirmwareDone, "", r.cfg.Actor)
		}
		r.log.Info("firmware wave", "run", run.ID, "wave", d.Wave, "nodes", d.Nodes)
		slots := make(chan struct{}, r.cfg.Parallel)
		var wg sync.WaitGroup
		var errs []error
		for _, node := range d.Nodes {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			// Failures of this wave may have reached the limit already:
			// start no more nodes.
			mu.Lock()
			stop := firmware.NextWave(waves, outcomes, policy).Stop
			mu.Unlock()
			if over, err := r.over(ctx, run.ID); over || err != nil {
				stop = true // cancelled: nodes being updated finish, no other starts
			}
			if stop {
				<-slots
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				o, err := r.applyNode(ctx, run.ID, node, plans[node])
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				outcomes[node] = o
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
}

// over says whether a run has ended (an operator cancelled it).
func (r *Runner) over(ctx context.Context, id int64) (bool, error) {
	run, err := r.db.GetFirmwareRun(ctx, id)
	if err != nil {
		return false, err
	}
	return run.Status != store.FirmwareRunning, nil
}

// Cancel ends a running run: nodes being updated are finished (a flash is
// never cut short), no other node starts.
func (r *Runner) Cancel(ctx context.Context, id int64, actor string) (store.FirmwareRun, error) {
	run, err := r.db.GetFirmwareRun(ctx, id)
	if err != nil {
		return run, err
	}
	if run.Status != store.FirmwareRunning {
		return run, fmt.Errorf("%w: firmware run %d is %s already", errConflict, id, run.Status)
	}
	if err := r.db.FinishFirmwareRun(ctx, id, store.FirmwareCancelled, "cancelled by "+actor, actor); err != nil {
		return run, err
	}
	r.Wake()
	return r.db.GetFirmwareRun(ctx, id)
}

// errStopped: the controller is shutting down; the step stays open.
var errStopped = errors.New("shutting down")

// applyNode applies a node's updates in order and records its outcome.
// An error means nothing was recorded (the controller is stopping, or the
// store failed): the node is taken up again on the next look.
func (r *Runner) applyNode(ctx context.Context, run int64, name string, ups []firmware.Update) (firmware.Outcome, error) {
	n, err := r.db.GetNode(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		r.nodes.WithLabelValues(store.FirmwareSkipped).Inc()
		return firmware.Outcome(store.FirmwareSkipped), r.db.FinishFirmwareNode(ctx, run, name, store.FirmwareSkipped, "the node no longer exists", r.cfg.Actor)
	}
	if err != nil {
		return "", err
	}
	if ok, why := r.atRest(ctx, n); !ok {
		msg := fmt.Sprintf("node is %s (%s): the lifecycle has it, so it was left alone; run again once it rests", n.State, why)
		r.log.Info("firmware: node skipped", "run", run, "node", name, "why", msg)
		r.nodes.WithLabelValues(store.FirmwareSkipped).Inc()
		return firmware.Outcome(store.FirmwareSkipped), r.db.FinishFirmwareNode(ctx, run, name, store.FirmwareSkipped, msg, r.cfg.Actor)
	}
	fail := func(class, msg string) (firmware.Outcome, error) {
		if err := r.db.FinishFirmwareNode(ctx, run, name, store.FirmwareFailed, msg, r.cfg.Actor); err != nil {
			return "", err
		}
		r.nodes.WithLabelValues(store.FirmwareFailed).Inc()
		if err := r.quarantine(ctx, run, name, msg); err != nil {
			return "", err
		}
		r.log.Warn("firmware: node failed", "run", run, "node", name, "class", class, "err", msg)
		return firmware.Failed, nil
	}
	ep, err := r.endpoint(ctx, n)
	if err != nil {
		return fail("bmc-login", err.Error())
	}
	var done []string
	for _, u := range ups {
		key := fmt.Sprintf("run%d/%s", run, u.Key(name))
		st, created, err := r.db.BeginFirmwareStep(ctx, store.FirmwareStep{Key: key, RunID: run, Node: name, Component: u.Component}, r.cfg.Actor,
			map[string]any{"run": run, "key": key, "component": u.Component, "from": u.From, "to": u.To, "package": filepath.Base(u.Package.File), "sha256": u.Package.SHA256})
		if err != nil {
			return "", err
		}
		switch st.Status {
		case store.FirmwareStepDone:
			done = append(done, fmt.Sprintf("%s %s", u.Component, u.To))
			continue
		case store.FirmwareStepFailed:
			return fail("", st.Message)
		}
		if !created {
			r.log.Info("firmware: resuming step", "run", run, "node", name, "key", key, "task", st.Task)
		}
		if u.Package.Reset == firmware.ResetHost {
			if err := r.waitPower(ctx, run, name, key, u.Component); err != nil {
				return "", err
			}
		}
		req := firmware.Request{Key: key, Component: u.Component, Package: u.Package, ImageURI: r.offer(u.Package),
			Transfer: r.cfg.Transfer, ResumeTask: st.Task,
			OnTask: func(task string) {
				if err := r.db.SetFirmwareTask(ctx, key, name, task, r.cfg.Actor); err != nil {
					// The BMC's task list still shows the running update
					// to a resumed Apply, which waits for it.
					r.log.Error("firmware: record task", "node", name, "key", key, "task", task, "err", err)
				}
			}}
		res, applyErr := r.client.Apply(ctx, ep, req)
		if ctx.Err() != nil {
			return "", errStopped
		}
		result, _ := json.Marshal(res)
		if applyErr != nil {
			class := bmc.FailureClass(applyErr)
			msg := fmt.Sprintf("%s %s → %s: %v", u.Component, u.From, u.To, applyErr)
			if err := r.db.FinishFirmwareStep(ctx, key, store.FirmwareStepFailed, result, msg, []store.AuditInput{{
				Actor: r.cfg.Actor, Action: "firmware.flash", Node: name, Outcome: "failed",
				Detail: map[string]any{"run": run, "key": key, "component": u.Component, "class": class, "error": applyErr.Error(), "task": res.Task}}}); err != nil {
				return "", err
			}
			r.flashes.WithLabelValues(u.Component, "failed").Inc()
			return fail(class, msg)
		}
		audits := []store.AuditInput{{Actor: r.cfg.Actor, Action: "firmware.flash", Node: name, Outcome: flashOutcome(res),
			Detail: map[string]any{"run": run, "key": key, "component": u.Component, "from": res.From, "to": res.To, "task": res.Task, "via": res.Via, "note": res.Note}}}
		if res.Changed && res.Reset != "" && res.Reset != firmware.ResetNone {
			audits = append(audits, store.AuditInput{Actor: r.cfg.Actor, Action: "firmware.reset", Node: name, Outcome: "ok",
				Detail: map[string]any{"run": run, "key": key, "reset": res.Reset, "note": res.Note}})
		}
		audits = append(audits, store.AuditInput{Actor: r.cfg.Actor, Action: "firmware.verify", Node: name, Outcome: "ok",
			Detail: map[string]any{"run": run, "key": key, "component": u.Component, "version": res.To}})
		if err := r.db.FinishFirmwareStep(ctx, key, store.FirmwareStepDone, result, res.Note, audits); err != nil {
			return "", err
		}
		r.flashes.WithLabelValues(u.Component, flashOutcome(res)).Inc()
		done = append(done, fmt.Sprintf("%s %s", u.Component, res.To))
	}
	if comps, err := r.client.Inventory(ctx, ep); err == nil {
		if raw, err := json.Marshal(comps); err == nil {
			_ = r.db.PutFirmwareInventory(ctx, name, raw) // best effort: the gate reads the BMC again without it
		}
	}
	msg := "at " + strings.Join(done, ", ")
	if err := r.db.FinishFirmwareNode(ctx, run, name, store.FirmwareSucceeded, msg, r.cfg.Actor); err != nil {
		return "", err
	}
	r.nodes.WithLabelValues(store.FirmwareSucceeded).Inc()
	if r.deps.Wake != nil {
		r.deps.Wake() // the gate lets the node move on now
	}
	return firmware.Succeeded, nil
}

// waitPower waits, before a package that restarts the host, until power
// actions are allowed (Deps.PowerHold); the wait and its end are audited
// once each, naming the rule.
func (r *Runner) waitPower(ctx context.Context, run int64, name, key, component string) error {
	if r.deps.PowerHold == nil {
		return nil
	}
	held := false
	for {
		h := r.deps.PowerHold()
		if h == nil {
			if held {
				if err := r.db.Audit(ctx, store.AuditInput{Actor: r.cfg.Actor, Action: "firmware.released", Node: name, Outcome: "released",
					Detail: map[string]any{"run": run, "key": key, "component": component}}); err != nil {
					return err
				}
			}
			return nil
		}
		if !held {
			held = true
			detail := map[string]any{"run": run, "key": key, "component": component, "gate": h.Gate, "rule": h.Rule, "reason": h.Error()}
			if !h.Until.IsZero() {
				detail["until"] = h.Until.UTC().Format(time.RFC3339)
			}
			if err := r.db.Audit(ctx, store.AuditInput{Actor: r.cfg.Actor, Action: "firmware.held", Node: name, Outcome: "held", Detail: detail}); err != nil {
				return err
			}
			r.log.Info("firmware: host restart waits for the power window to end", "run", run, "node", name, "component", component, "rule", h.Rule, "reason", h.Error())
		}
		t := time.NewTimer(r.cfg.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return errStopped
		case <-t.C:
		}
	}
}

func flashOutcome(res firmware.Result) string {
	if res.Changed {
		return "flashed"
	}
	return "unchanged"
}

// quarantine moves a node whose update failed to Quarantined with the
// reason as a finding (done once per run: a step row records it).
func (r *Runner) quarantine(ctx context.Context, run int64, name, reason string) error {
	key := fmt.Sprintf("run%d/firmware/%s/quarantine", run, name)
	st, _, err := r.db.BeginFirmwareStep(ctx, store.FirmwareStep{Key: key, RunID: run, Node: name, Component: "-"}, r.cfg.Actor,
		map[string]any{"run": run, "key": key, "quarantine": reason})
	if err != nil || st.Status == store.FirmwareStepDone {
		return err
	}
	for attempt := 0; ; attempt++ {
		n, err := r.db.GetNode(ctx, name)
		if err != nil {
			return err
		}
		if n.State == model.Quarantined || n.State == model.Failed {
			break
		}
		findings, _ := json.Marshal([]validate.Finding{{Rule: "firmware.update-failed", Severity: validate.Error, Component: "firmware",
			Message: reason, Hint: "firmware update failed: read the BMC's event log, then run the update again or 'rackstrap nodes act " + name + " revalidate'"}})
		_, _, err = r.db.Apply(ctx, store.Change{Node: name, FromSeq: n.Seq, To: model.Quarantined, Actor: r.cfg.Actor, Action: "firmware.quarantine",
			Failure: &store.Failure{Class: "firmware-update-failed", Message: reason, From: n.State}, Findings: findings, FinishOps: model.OpFailed,
			Detail: map[string]any{"run": run, "reason": reason}})
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 3 {
			return err
		}
	}
	if r.deps.Wake != nil {
		r.deps.Wake()
	}
	return r.db.FinishFirmwareStep(ctx, key, store.FirmwareStepDone, nil, reason, nil)
}
