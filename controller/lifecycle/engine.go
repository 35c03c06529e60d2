package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

// Config tunes the engine. Zero fields take the defaults of withDefaults.
type Config struct {
	// Workers bounds the steps running at once across all nodes.
	Workers int
	// MaxInFlight bounds the nodes on their way to Ready at once (from
	// enrolment to burn-in: powered, booting, holding a DHCP lease, an
	// agent connection and their state in memory). The others wait their
	// turn, the furthest along first, so a boot storm of thousands costs
	// the controller the nodes in flight, not the whole fleet. 0: 16 per
	// worker.
	MaxInFlight int
	// RackLimit bounds BMC steps running at once per rack.
	RackLimit int
	// RackStreams bounds image streams running at once per rack (the
	// rack's uplink); 0: RackLimit.
	RackStreams int
	// PowerOnStagger is the least time between two power-ons in one rack
	// (inrush current, PDU limits); 0: none.
	PowerOnStagger time.Duration
	// MaxAttempts is how many times a step is tried before the node fails.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the retry delay: base·2^(n-1), capped,
	// with ±25% jitter.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Deadlines per step name; steps not listed get DefaultDeadline.
	Deadlines       map[string]time.Duration
	DefaultDeadline time.Duration
	// Poll is how often the engine looks for nodes with work besides wakeups.
	Poll time.Duration
	// Actor names this controller in the audit log.
	Actor string
}

func (c Config) withDefaults() Config {
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 16 * c.Workers
	}
	if c.RackLimit <= 0 {
		c.RackLimit = 8
	}
	if c.RackStreams <= 0 {
		c.RackStreams = c.RackLimit
	}
	if c.PowerOnStagger < 0 {
		c.PowerOnStagger = 0
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 2 * time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = time.Minute
	}
	if c.DefaultDeadline <= 0 {
		c.DefaultDeadline = 2 * time.Minute
	}
	d := map[string]time.Duration{
		StepWaitNetboot:   15 * time.Minute,
		StepWaitFirstBoot: 20 * time.Minute,
		StepImage:         60 * time.Minute,
		StepBurnIn:        2 * time.Hour,
	}
	for k, v := range c.Deadlines {
		d[k] = v
	}
	c.Deadlines = d
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Actor == "" {
		c.Actor = "controller"
	}
	return c
}

// Engine runs the lifecycle of every node in the store.
type Engine struct {
	cfg     Config
	db      *store.DB
	edge    Edge
	log     *slog.Logger
	metrics *Metrics

	workers *slots
	flight  *slots // nodes on their way to Ready (Config.MaxInFlight)
	mu      sync.Mutex
	racks   map[string]*slots
	streams map[string]*slots
	nextOn  map[string]time.Time // rack → earliest next power-on (stagger)
	bmcs    map[string]*sync.Mutex
	running map[string]bool
	wake    chan struct{}
	gates   []Gate
	holds   map[string]Hold  // node → why it is held (audited when it changes)
	now     func() time.Time // the clock hold retries are measured on
	queue   map[string]bool  // nodes to look at on the next pass (Act, held nodes)
	owns    func(rack string) bool
}

// New builds an engine. metrics may be nil.
func New(cfg Config, db *store.DB, edge Edge, log *slog.Logger, metrics *Metrics) (*Engine, error) {
	if db == nil || edge == nil || log == nil {
		return nil, errors.New("lifecycle: New needs a store, an edge and a logger")
	}
	cfg = cfg.withDefaults()
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Engine{
		cfg: cfg, db: db, edge: edge, log: log, metrics: metrics,
		workers: newSlots(cfg.Workers),
		flight:  newSlots(cfg.MaxInFlight),
		racks:   map[string]*slots{},
		streams: map[string]*slots{},
		nextOn:  map[string]time.Time{},
		bmcs:    map[string]*sync.Mutex{},
		running: map[string]bool{},
		holds:   map[string]Hold{},
		now:     time.Now,
		queue:   map[string]bool{},
		wake:    make(chan struct{}, 1),
	}, nil
}

// Wake makes the engine look for work now (after an API action).
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// enqueue makes the engine look at one node on its next pass, without a
// scan of every node.
func (e *Engine) enqueue(name string) {
	e.mu.Lock()
	e.queue[name] = true
	e.mu.Unlock()
	e.Wake()
}

// OwnRacks restricts the engine to nodes of racks for which owns returns
// true (several controllers sharing one store each drive the racks they
// hold a lease on). A node whose rack is given up stops after the step it
// is in. nil drives every rack. Call it before Serve.
func (e *Engine) OwnRacks(owns func(rack string) bool) {
	e.mu.Lock()
	e.owns = owns
	e.mu.Unlock()
}

func (e *Engine) owned(rack string) bool {
	e.mu.Lock()
	owns := e.owns
	e.mu.Unlock()
	return owns == nil || owns(rack)
}

// Serve drives nodes until ctx ends, then waits for in-flight steps to
// notice. A step cut short by shutdown keeps its intent open; the next start
// resumes it with the same idempotency key.
//
// A node, once picked up, is driven by its own goroutine until it rests, so
// the engine looks for work only where something outside it may have
// changed: nodes queued by Act and nodes held by a gate, every Poll; and,
// as a safety net for changes made behind its back (another process, a
// direct store write), a scan of every node that may have work, at most
// every Poll and never taking more than a twentieth of the time.
func (e *Engine) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(e.cfg.Poll)
	defer t.Stop()
	var (
		lastScan time.Time
		scanCost time.Duration
	)
	for {
		if since := time.Since(lastScan); since >= e.cfg.Poll && since >= 20*scanCost {
			start := time.Now()
			if err := e.dispatch(ctx, &wg); err != nil && ctx.Err() == nil {
				e.log.Error("lifecycle: look for work", "err", err)
			}
			lastScan, scanCost = time.Now(), time.Since(start)
		} else {
			e.dispatchQueued(ctx, &wg)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-e.wake:
		}
	}
}

// active are the states that may have work; Failed and Quarantined wait for
// an operator (whose action moves them).
var active = []model.State{model.Discovered, model.Enrolled, model.Inspecting, model.Validated, model.Imaging,
	model.FirstBoot, model.BurnIn, model.Ready, model.HandedOff, model.Decommissioning}

func (e *Engine) dispatch(ctx context.Context, wg *sync.WaitGroup) error {
	nodes, err := e.db.ListWork(ctx, active)
	if err != nil {
		return err
	}
	e.mu.Lock()
	queued := e.queue
	e.queue = map[string]bool{}
	e.mu.Unlock()
	now := e.clock()
	for _, n := range nodes {
		if plan(n) == nil || !e.owned(n.Identity.Rack) || (!queued[n.Name] && !e.due(n.Name, now)) {
			continue
		}
		e.start(ctx, wg, n.Name)
	}
	return nil
}

// dispatchQueued starts the nodes queued since the last pass and re-asks
// the gates about held nodes (a node held inside a step once its retry
// time has come).
func (e *Engine) dispatchQueued(ctx context.Context, wg *sync.WaitGroup) {
	now := e.clock()
	e.mu.Lock()
	names := make([]string, 0, len(e.queue)+len(e.holds))
	for name := range e.queue {
		names = append(names, name)
	}
	for name, h := range e.holds {
		if !e.queue[name] && (h.RetryAt.IsZero() || !now.Before(h.RetryAt)) {
			names = append(names, name)
		}
	}
	clear(e.queue)
	e.mu.Unlock()
	for _, name := range names {
		e.start(ctx, wg, name)
	}
}

// start drives name in its own goroutine unless one already does.
func (e *Engine) start(ctx context.Context, wg *sync.WaitGroup, name string) {
	e.mu.Lock()
	busy := e.running[name]
	e.running[name] = true
	e.mu.Unlock()
	if busy {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			e.mu.Lock()
			delete(e.running, name)
			e.mu.Unlock()
		}()
		if err := e.drive(ctx, name); err != nil && ctx.Err() == nil {
			e.log.Error("lifecycle: drive node", "node", name, "err", err)
		}
	}()
}

// drive moves one node through transitions until it rests.
func (e *Engine) drive(ctx context.Context, name string) error {
	n, err := e.db.GetNode(ctx, name)
	if err != nil {
		return err
	}
	if provisioning(n.State) && plan(n) != nil {
		if err := e.flight.acquire(ctx, progress(n.State)); err != nil {
			return nil // the engine is stopping
		}
		defer e.flight.release()
		// The wait may have been long: start from the node as it is now.
		if n, err = e.db.GetNode(ctx, name); err != nil {
			return err
		}
	}
	for ctx.Err() == nil {
		tr := plan(n)
		if tr == nil {
			return e.clearHold(ctx, n.Name, nil) // at rest: nothing is held
		}
		if !e.owned(n.Identity.Rack) {
			return nil
		}
		// A hold on a move or a step this transition no longer makes (an
		// operator moved the node) has ended.
		if err := e.clearHold(ctx, n.Name, func(h Hold) bool {
			if h.Step == "" {
				return h.Next == tr.guard
			}
			return slices.ContainsFunc(tr.steps, func(s step) bool { return s.name == h.Step })
		}); err != nil {
			return err
		}
		if tr.guard != "" && len(e.gates) > 0 {
			if held, err := e.held(ctx, n, tr.guard); held || err != nil {
				return err
			}
		}
		next, err := e.transition(ctx, n, tr)
		var sh *stepHeld
		if errors.As(err, &sh) {
			h := sh.held
			gate := h.Gate
			if gate == "" {
				gate = "edge"
			}
			return e.setHold(ctx, Hold{Node: n.Name, Gate: gate, Rule: h.Rule, Reason: h.Error(), Step: sh.step, RetryAt: h.Until})
		}
		if err != nil {
			if errors.Is(err, store.ErrConflict) {
				// Someone (an operator) moved the node: look again.
				if n, err = e.db.GetNode(ctx, name); err != nil {
					return err
				}
				continue
			}
			return err
		}
		n = next
	}
	return nil
}

// stepFailure ends a node in Failed.
type stepFailure struct {
	step  string
	class model.FailureClass
	msg   string
}

func (f *stepFailure) Error() string {
	return fmt.Sprintf("step %s failed (%s): %s", f.step, f.class, f.msg)
}

// transition runs tr's steps for n and records where n goes; it returns
// the node as committed.
func (e *Engine) transition(ctx context.Context, n model.Node, tr *transition) (model.Node, error) {
	res := results{}
	var hist map[string]store.StepHistory
	if len(tr.steps) > 0 {
		var err error
		if hist, err = e.db.PassHistory(ctx, n.Name, n.Seq); err != nil {
			return n, err
		}
	}
	for _, s := range tr.steps {
		out, err := e.runStep(ctx, n, s, res, hist[s.name])
		var sf *stepFailure
		if errors.As(err, &sf) {
			got, _, err := e.db.Apply(ctx, store.Change{Node: n.Name, FromSeq: n.Seq, To: model.Failed, Actor: e.cfg.Actor,
				Action: "state.change", Failure: &store.Failure{Class: sf.class, Message: sf.Error(), From: n.State},
				FinishOps: model.OpFailed})
			if err == nil {
				e.metrics.transitions.WithLabelValues(string(n.State), string(model.Failed)).Inc()
				e.log.Warn("node failed", "node", n.Name, "state", n.State, "step", sf.step, "class", sf.class, "err", sf.msg)
			}
			return got, err
		}
		if err != nil {
			return n, err
		}
		res[s.name] = out
	}
	next, err := tr.next(res)
	if err != nil {
		return n, err
	}
	c := store.Change{Node: n.Name, FromSeq: n.Seq, To: next, Actor: e.cfg.Actor, Action: "state.change"}
	if raw, ok := res[StepEnroll]; ok {
		var id model.Identity
		if err := json.Unmarshal(raw, &id); err != nil {
			return n, fmt.Errorf("read enrolled identity: %w", err)
		}
		c.Identity = &id
	}
	if inv, ok := res[StepInspect]; ok {
		c.Inventory = inv
	}
	if raw, ok := res[StepValidate]; ok {
		var v Verdict
		if json.Unmarshal(raw, &v) == nil && v.Findings != nil {
			c.Findings = v.Findings
		}
	}
	if resting(next, n.Desired) {
		c.FinishOps = model.OpSucceeded
		if next == model.Quarantined {
			c.FinishOps = model.OpFailed
		}
	}
	got, _, err := e.db.Apply(ctx, c)
	if err != nil {
		return n, err
	}
	e.metrics.transitions.WithLabelValues(string(n.State), string(next)).Inc()
	e.log.Info("node state", "node", n.Name, "from", n.State, "to", next)
	return got, nil
}

// runStep runs one step to success, retrying, or returns *stepFailure when
// its attempts are spent. A step already done in this pass is not run again;
// one left running by a killed controller resumes with its own key. h is
// what the store knew of the step when the transition began.
func (e *Engine) runStep(ctx context.Context, n model.Node, s step, prior results, h store.StepHistory) (json.RawMessage, error) {
	var (
		st  model.Step
		err error
	)
	if h.Last != nil {
		switch h.Last.Outcome {
		case model.Succeeded:
			return h.Last.Result, nil
		case model.Running:
			st = *h.Last
			e.log.Info("resuming step", "node", n.Name, "step", s.name, "key", st.Key)
		}
	}
	failures := h.Failures
	for {
		if st.ID == 0 {
			if failures >= e.cfg.MaxAttempts {
				return nil, e.exhausted(n, s, h.Last)
			}
			if st, err = e.db.BeginStep(ctx, n.Name, n.Seq, s.name, e.cfg.Actor); err != nil {
				return nil, err
			}
		}
		out, runErr := e.attempt(ctx, n, s, st.Key, prior)
		if ctx.Err() != nil {
			return nil, ctx.Err() // shutting down: leave the intent open
		}
		if he := (*HeldError)(nil); errors.As(runErr, &he) {
			// Refused for now, nothing done: the intent stays open and
			// is resumed with its key once the hold ends.
			return nil, &stepHeld{step: s.name, held: he}
		}
		if runErr == nil {
			st.Outcome, st.Result = model.Succeeded, out
		} else {
			st.Outcome, st.Class, st.Message = model.FailedOut, classify(runErr, s.class), runErr.Error()
			if errors.Is(runErr, context.DeadlineExceeded) {
				st.Outcome, st.Class = model.TimedOut, classify(runErr, s.timeoutClass)
				st.Message = fmt.Sprintf("no result within %s: %v", e.deadline(s), runErr)
			}
		}
		done, err := e.db.FinishStep(ctx, st, e.cfg.Actor)
		if err != nil {
			return nil, err
		}
		e.metrics.stepSeconds.WithLabelValues(s.name, string(st.Outcome)).Observe(done.Duration(time.Now()).Seconds())
		if runErr == nil {
			if err := e.clearHold(ctx, n.Name, func(h Hold) bool { return h.Step != s.name }); err != nil {
				return nil, err
			}
			return out, nil
		}
		e.metrics.errors.WithLabelValues(string(st.Class)).Inc()
		failures++
		e.log.Warn("step failed", "node", n.Name, "step", s.name, "attempt", st.Attempt, "class", st.Class, "err", runErr)
		if failures >= e.cfg.MaxAttempts {
			return nil, e.exhausted(n, s, &done)
		}
		if err := sleep(ctx, e.backoff(failures)); err != nil {
			return nil, err
		}
		st = model.Step{}
	}
}

func (e *Engine) exhausted(n model.Node, s step, last *model.Step) error {
	f := &stepFailure{step: s.name, class: s.class, msg: fmt.Sprintf("gave up after %d attempts", e.cfg.MaxAttempts)}
	if last != nil {
		if last.Class != "" {
			f.class = last.Class
		}
		f.msg = fmt.Sprintf("%s (after %d attempts)", last.Message, e.cfg.MaxAttempts)
	}
	return f
}

func (e *Engine) deadline(s step) time.Duration {
	if d, ok := e.cfg.Deadlines[s.name]; ok {
		return d
	}
	return e.cfg.DefaultDeadline
}

// attempt runs a step once under its limits and deadline.
func (e *Engine) attempt(ctx context.Context, n model.Node, s step, key string, prior results) (json.RawMessage, error) {
	release, err := e.acquire(ctx, n, s.kind)
	if err != nil {
		return nil, err
	}
	defer release()
	if s.name == StepBootNetwork || s.name == StepBootDisk {
		if err := e.stagger(ctx, n.Identity.Rack); err != nil {
			return nil, err
		}
	}
	sctx, cancel := context.WithTimeout(ctx, e.deadline(s))
	defer cancel()
	out, err := s.run(sctx, e.getEdge(), n, key, prior)
	if err != nil && sctx.Err() == context.DeadlineExceeded && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return out, err
}

// acquire takes the slots a step of kind k needs, in a fixed order (BMC,
// rack, worker) so that two steps never wait on each other; the nodes
// furthest along get slots first (slots.go).
func (e *Engine) acquire(ctx context.Context, n model.Node, k kind) (func(), error) {
	var undo []func()
	release := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if k == kindBMC {
		m := e.bmcLock(n)
		m.Lock()
		undo = append(undo, m.Unlock)
	}
	rank := progress(n.State)
	if k == kindBMC || k == kindStream {
		r := e.rackSlots(n.Identity.Rack, k)
		if err := r.acquire(ctx, rank); err != nil {
			release()
			return nil, err
		}
		undo = append(undo, r.release)
	}
	if k != kindWait {
		if err := e.workers.acquire(ctx, rank); err != nil {
			release()
			return nil, err
		}
		undo = append(undo, e.workers.release)
	}
	return release, nil
}

func (e *Engine) bmcLock(n model.Node) *sync.Mutex {
	key := n.Identity.BMC
	if key == "" {
		key = "node:" + n.Name
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.bmcs[key]
	if m == nil {
		m = &sync.Mutex{}
		e.bmcs[key] = m
	}
	return m
}

// rackSlots returns the rack's slots for steps of kind k: BMC steps and
// image streams are limited apart.
func (e *Engine) rackSlots(rack string, k kind) *slots {
	e.mu.Lock()
	defer e.mu.Unlock()
	m, size := e.racks, e.cfg.RackLimit
	if k == kindStream {
		m, size = e.streams, e.cfg.RackStreams
	}
	r := m[rack]
	if r == nil {
		r = newSlots(size)
		m[rack] = r
	}
	return r
}

// stagger waits for the rack's next power-on turn.
func (e *Engine) stagger(ctx context.Context, rack string) error {
	e.mu.Lock()
	if e.cfg.PowerOnStagger <= 0 {
		e.mu.Unlock()
		return nil
	}
	at := time.Now()
	if next := e.nextOn[rack]; next.After(at) {
		at = next
	}
	e.nextOn[rack] = at.Add(e.cfg.PowerOnStagger)
	e.mu.Unlock()
	return sleep(ctx, time.Until(at))
}

// SetRackLimits changes the image streams allowed at once per rack and the
// power-on stagger (0 keeps a setting). Call it before Serve.
func (e *Engine) SetRackLimits(streams int, stagger time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if streams > 0 {
		e.cfg.RackStreams = streams
	}
	if stagger > 0 {
		e.cfg.PowerOnStagger = stagger
	}
}

func (e *Engine) backoff(failures int) time.Duration {
	d := e.cfg.BackoffBase << (failures - 1)
	if d > e.cfg.BackoffMax || d <= 0 {
		d = e.cfg.BackoffMax
	}
	return time.Duration(float64(d) * (0.75 + rand.Float64()/2))
}

func classify(err error, def model.FailureClass) model.FailureClass {
	var c Classified
	if errors.As(err, &c) && c.FailureClass() != "" {
		return model.FailureClass(c.FailureClass())
	}
	return def
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
