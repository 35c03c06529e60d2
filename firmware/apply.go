package firmware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/hwprofiles/version"
)

// Request is one component update on one node.
type Request struct {
	// Key is the idempotency key: a key this Client already carried out is
	// answered from memory; after a restart the query before acting makes a
	// replay safe (see Apply).
	Key string
	// Component is the component's id in the BMC's firmware inventory.
	Component string
	// Package is verified (sha256, signature) before anything is sent.
	Package Package
	// ImageURI is where the BMC fetches the package for SimpleUpdate: an
	// http(s) URL served by the caller, whose bytes are Package.File's.
	// Without one, only a multipart push can send the package.
	ImageURI string
	// Transfer chooses how the package reaches the BMC: TransferAuto (the
	// default) pushes it when the UpdateService advertises
	// MultipartHttpPushUri and has no ImageURI to fetch, or is told to
	// prefer the push by PreferPush; otherwise SimpleUpdate.
	Transfer Transfer
	// ResumeTask is the task of an earlier attempt with this key (from
	// OnTask or Result.Task, as the caller persisted it): Apply waits for it
	// and reports its outcome instead of starting another update.
	ResumeTask string
	// OnTask, when set, is called with the task's URI as soon as the BMC
	// accepted the update, before polling: the moment to persist it.
	OnTask func(task string)
}

// Result is the outcome of an Apply.
type Result struct {
	Key       string `json:"key"`
	Component string `json:"component"`
	From      string `json:"from,omitempty"` // the version before
	To        string `json:"to"`             // the target version; after a no-op or a mismatch, the version the BMC reports
	// Changed is false when nothing was sent to the BMC: the component
	// already ran the version (or a newer one), or the key was carried out
	// before by this Client.
	Changed bool   `json:"changed"`
	Task    string `json:"task,omitempty"` // the BMC's task URI
	Reset   Reset  `json:"reset,omitempty"`
	// Via is how the package went to the BMC: "SimpleUpdate" or
	// "MultipartHttpPush" (empty when nothing was sent).
	Via  string `json:"via,omitempty"`
	Note string `json:"note,omitempty"`
	// Duration is the time Apply took.
	Duration time.Duration `json:"duration"`
}

// Apply brings one component of one node to the version of its package:
//
//  1. verify the package's sha256 and signature (nothing is sent when they
//     do not match);
//  2. read the firmware inventory: a component already at the package's
//     version, or newer, is a no-op that says so;
//  3. wait for an update task already running on the BMC (a controller that
//     died mid-update resumes here rather than flashing twice), then read
//     again;
//  4. POST UpdateService.SimpleUpdate with ImageURI and the component as
//     target, and poll the task to completion within TaskTimeout;
//  5. apply the package's reset (BMC or host);
//  6. re-read the inventory until the component reports the new version,
//     within VerifyTimeout (the BMC may be rebooting meanwhile).
func (c *Client) Apply(ctx context.Context, ep bmc.Endpoint, req Request) (res Result, err error) {
	start := time.Now()
	op := "update " + req.Component
	res = Result{Key: req.Key, Component: req.Component, To: req.Package.Version, Reset: req.Package.Reset}
	defer func() {
		res.Duration = time.Since(start)
		if err == nil { // errors are returned, not logged
			c.cfg.Logger.Info("firmware apply", "bmc", ep.String(), "key", req.Key, "component", req.Component,
				"from", res.From, "to", res.To, "changed", res.Changed, "task", res.Task, "note", res.Note)
		}
	}()
	if err := req.validate(); err != nil {
		return res, fwErr(op, ep.String(), "", err)
	}
	c.mu.Lock()
	prev, replay := c.done[req.Key]
	c.mu.Unlock()
	if replay {
		prev.Changed, prev.Note = false, "key "+req.Key+" already carried out: "+prev.Note
		return prev, nil
	}
	if err := VerifyPackage(req.Package, c.cfg.TrustedKeys, c.cfg.AllowUnsigned); err != nil {
		var fe *Error
		if errors.As(err, &fe) {
			fe.Host = ep.String()
		}
		return res, err
	}

	release, err := c.lock(ctx, ep)
	if err != nil {
		return res, wrapBMC(op, ep, err)
	}
	defer release()
	r, err := c.open(ep)
	if err != nil {
		return res, err
	}
	defer r.close()
	a := &applier{c: c, r: r, ep: ep, op: op, req: req, res: &res}
	if err := a.run(ctx); err != nil {
		return res, err
	}
	c.mu.Lock()
	if len(c.done) >= maxRemembered {
		clear(c.done) // the query before acting still makes a replay safe
	}
	c.done[req.Key] = res
	c.mu.Unlock()
	return res, nil
}

// maxRemembered bounds the keys a Client remembers.
const maxRemembered = 10000

func (q Request) validate() error {
	switch {
	case strings.TrimSpace(q.Key) == "":
		return errors.New("no idempotency key")
	case q.Component == "":
		return errors.New("no component")
	case q.Package.Version == "" || !version.Valid(q.Package.Version):
		return fmt.Errorf("the package names no comparable version (%q)", q.Package.Version)
	}
	switch q.Transfer {
	case TransferAuto, TransferSimple, TransferPush:
	default:
		return fmt.Errorf("transfer %q: want auto, simple-update or multipart-push", q.Transfer)
	}
	if q.ImageURI == "" {
		if q.Transfer == TransferSimple {
			return errors.New("SimpleUpdate needs an image URI the BMC can fetch the package from")
		}
		return nil
	}
	u, err := url.Parse(q.ImageURI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("image URI %q: want an http(s) URL the BMC can fetch the package from", q.ImageURI)
	}
	return nil
}

// applier is one Apply in progress.
type applier struct {
	c   *Client
	r   *rf
	ep  bmc.Endpoint
	op  string
	req Request
	res *Result

	root rfRoot
	us   rfUpdateService
	// completed: the BMC's task said it completed, so a version that stays
	// wrong fails the verification early (without a task, or with one that
	// vanished, the update may still be running: wait the full time).
	completed bool
}

func (a *applier) run(ctx context.Context) error {
	cfg := a.c.cfg

	// Query before acting. A BMC that is away for a moment (rebooting into
	// firmware an earlier attempt installed) is waited for: within Timeout,
	// or VerifyTimeout when resuming a recorded task.
	wait := cfg.Timeout
	if a.req.ResumeTask != "" {
		wait = max(wait, cfg.VerifyTimeout)
	}
	comp, err := a.readPatiently(ctx, wait)
	if err != nil {
		return err
	}
	a.res.From = comp.Version
	if done := a.already(comp); done {
		return nil
	}
	if !comp.updateable {
		return &bmc.Error{Op: a.op, Host: a.ep.String(), Class: bmc.ClassUnsupported, Err: fmt.Errorf("the BMC marks %s as not updateable", comp.ID)}
	}

	// An update already running on the BMC: ours from before a restart, or
	// someone else's. Wait for it rather than start a second one.
	task := a.req.ResumeTask
	if task == "" {
		if task, err = a.runningTask(ctx); err != nil {
			return err
		}
	}
	if task != "" {
		err := a.wait(ctx, task)
		if task == a.req.ResumeTask {
			a.res.Task = task
			if err != nil {
				return err
			}
			a.res.Changed = true
			return a.finish(ctx)
		}
		if err != nil {
			if errors.Is(err, ErrTaskTimeout) {
				return fwErr(a.op, a.ep.String(), ClassBusy, fmt.Errorf("update task %s, started before this attempt, still runs on the BMC after %s", task, cfg.TaskTimeout))
			}
			if !errors.Is(err, ErrTaskFailed) {
				return err
			}
		}
		readCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		comp, err = a.read(readCtx, false)
		cancel()
		if err != nil {
			return err
		}
		if a.already(comp) {
			a.res.Task = task
			a.res.Note = "an update task already running on the BMC (" + task + ") brought it to " + comp.Version
			return nil
		}
	}

	// Act.
	rep, err := a.send(ctx, comp)
	if err != nil {
		return err
	}
	a.res.Changed = true
	task = taskOf(rep)
	a.res.Task = task
	if task != "" && a.req.OnTask != nil {
		a.req.OnTask(task)
	}
	if task != "" {
		if err := a.wait(ctx, task); err != nil {
			return err
		}
	} else {
		a.note("the BMC named no task; verified by reading the inventory")
	}
	return a.finish(ctx)
}

// readPatiently reads the inventory (discovering the UpdateService),
// polling through transient errors until wait has passed.
func (a *applier) readPatiently(ctx context.Context, wait time.Duration) (swComponent, error) {
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		comp, err := a.read(rctx, true)
		if err == nil || !transient(err) || ctx.Err() != nil {
			return comp, err
		}
		select {
		case <-rctx.Done():
			return comp, err
		case <-time.After(a.c.cfg.PollInterval):
		}
	}
}

// already says whether the component needs nothing, and notes why.
func (a *applier) already(comp swComponent) bool {
	to := a.req.Package.Version
	switch version.Compare(comp.Version, to) {
	case 0:
		a.res.To = comp.Version
		a.res.Note = "already at " + comp.Version + "; nothing sent"
		return true
	case 1:
		a.res.To = comp.Version
		a.res.Note = fmt.Sprintf("runs %s, newer than the package's %s; not downgraded", comp.Version, to)
		return true
	}
	return false
}

// finish resets what the package needs and verifies the new version.
func (a *applier) finish(ctx context.Context) error {
	if err := a.reset(ctx); err != nil {
		return err
	}
	return a.verify(ctx)
}

// read reads the inventory and finds the component. discover also reads
// the service root and the UpdateService (for the action and tasks).
func (a *applier) read(ctx context.Context, discover bool) (swComponent, error) {
	if discover || a.us.FirmwareInventory == "" {
		root, us, err := a.r.discover(ctx)
		if err != nil {
			return swComponent{}, wrapBMC(a.op+": read firmware inventory", a.ep, err)
		}
		a.root, a.us = root, us
	}
	comps, err := a.r.components(ctx, a.us)
	if err != nil {
		return swComponent{}, wrapBMC(a.op+": read firmware inventory", a.ep, err)
	}
	for _, sc := range comps {
		if sc.ID == a.req.Component {
			return sc, nil
		}
	}
	for _, sc := range comps {
		if strings.EqualFold(sc.ID, a.req.Component) {
			return sc, nil
		}
	}
	ids := make([]string, len(comps))
	for i, sc := range comps {
		ids[i] = sc.ID
	}
	return swComponent{}, fwErr(a.op, a.ep.String(), ClassComponentMissing,
		fmt.Errorf("the BMC lists no component %q (it lists %s)", a.req.Component, strings.Join(ids, ", ")))
}

// maxTasksScanned bounds the tasks read when looking for a running update.
const maxTasksScanned = 32

// runningTask finds an update task the BMC has not finished, or "".
func (a *applier) runningTask(ctx context.Context) (string, error) {
	if a.root.TaskService == "" {
		return "", nil
	}
	tasks, err := get(ctx, a.r, a.root.TaskService, parseTaskService)
	if err != nil || tasks == "" {
		return "", nil // no task service to read: nothing known to wait for
	}
	members, err := a.r.members(ctx, tasks, 0)
	if err != nil {
		return "", wrapBMC(a.op+": list tasks", a.ep, err)
	}
	if len(members) > maxTasksScanned {
		members = members[len(members)-maxTasksScanned:] // the newest, as BMCs list them
	}
	for i := len(members) - 1; i >= 0; i-- {
		t, err := get(ctx, a.r, members[i].link, parseTask)
		if err != nil {
			var he *httpError
			if errors.As(err, &he) && he.Status == http.StatusNotFound {
				continue // deleted meanwhile
			}
			return "", wrapBMC(a.op+": read task", a.ep, err)
		}
		if !t.finished() && t.looksLikeUpdate() {
			return members[i].link, nil
		}
	}
	return "", nil
}

// taskOf finds the task an accepted SimpleUpdate started: the Location
// header (a task or a task monitor), or the Task in the body.
func taskOf(rep reply) string {
	if loc := rep.header.Get("Location"); loc != "" {
		return loc
	}
	if t, err := parseTask(rep.body); err == nil && t.Link != "" {
		return t.Link
	}
	return ""
}

// wait polls a task (or task monitor) until it ends, within TaskTimeout.
// A task that vanishes (404) after it was seen is left to the verification
// (a BMC that rebooted to run its own new firmware forgets its tasks), as
// is a task monitor that answers the operation's outcome. Transient errors
// (a BMC rebooting, busy, 5xx) are polled through.
func (a *applier) wait(ctx context.Context, task string) error {
	cfg := a.c.cfg
	tctx, cancel := context.WithTimeout(ctx, cfg.TaskTimeout)
	defer cancel()
	tick := time.NewTicker(cfg.PollInterval)
	defer tick.Stop()
	var last rfTask
	var lastErr error
	seen := false
	for {
		rep, err := a.r.do(tctx, http.MethodGet, task, nil)
		switch {
		case err == nil:
			seen, lastErr = true, nil
			t, perr := parseTask(rep.body)
			if perr != nil {
				if rep.status == http.StatusAccepted {
					break // a task monitor: still running
				}
				a.note("the task monitor answered the outcome; verified by reading the inventory")
				return nil
			}
			last = t
			if t.finished() {
				if t.succeeded() {
					a.completed = true
					return nil
				}
				msg := t.message()
				if msg == "" {
					msg = "no message"
				}
				return fwErr(a.op, a.ep.String(), ClassTaskFailed, fmt.Errorf("task %s ended %s (%s): %s", task, t.TaskState, t.TaskStatus, msg))
			}
		case isNotFound(err) && (seen || task == a.req.ResumeTask):
			a.note("the task " + task + " vanished (the BMC restarted?); verified by reading the inventory")
			return nil
		case ctx.Err() != nil:
			return wrapBMC(a.op+": wait for task", a.ep, ctx.Err())
		case tctx.Err() != nil:
			// the deadline passed during the request: reported below
		case transient(wrapBMC("", a.ep, err)):
			lastErr = err
		default:
			return wrapBMC(a.op+": read task "+task, a.ep, err)
		}
		select {
		case <-ctx.Done():
			return wrapBMC(a.op+": wait for task", a.ep, ctx.Err())
		case <-tctx.Done():
			if ctx.Err() != nil {
				// tctx ends with its parent too: the caller's deadline, not the task's
				return wrapBMC(a.op+": wait for task", a.ep, ctx.Err())
			}
			state := "never answered"
			if last.TaskState != "" {
				state = fmt.Sprintf("was %s at %.0f%%", last.TaskState, float64(last.PercentComplete))
			}
			if lastErr != nil {
				state += fmt.Sprintf("; last poll: %v", lastErr)
			}
			return fwErr(a.op, a.ep.String(), ClassTaskTimeout, fmt.Errorf("task %s did not finish within %s (it %s)", task, cfg.TaskTimeout, state))
		case <-tick.C:
		}
	}
}

func isNotFound(err error) bool {
	var he *httpError
	return errors.As(err, &he) && he.Status == http.StatusNotFound
}

// reset applies the package's reset.
func (a *applier) reset(ctx context.Context) error {
	switch a.req.Package.Reset {
	case ResetBMC:
		return a.resetOne(ctx, a.root.Managers, "GracefulRestart", "reset BMC", false)
	case ResetHost:
		return a.resetOne(ctx, a.root.Systems, "ForceRestart", "restart host", true)
	}
	return nil
}

// resetOne posts a reset to the first member of a collection (the BMC's
// manager or its system).
func (a *applier) resetOne(ctx context.Context, coll, resetType, what string, host bool) error {
	op := a.op + ": " + what
	rctx, cancel := context.WithTimeout(ctx, a.c.cfg.Timeout)
	defer cancel()
	if coll == "" {
		return &bmc.Error{Op: op, Host: a.ep.String(), Class: bmc.ClassUnsupported, Err: errors.New("the service root links no such collection")}
	}
	members, err := a.r.members(rctx, coll, 0)
	if err != nil {
		return wrapBMC(op, a.ep, err)
	}
	if len(members) == 0 {
		return &bmc.Error{Op: op, Host: a.ep.String(), Class: bmc.ClassUnsupported, Err: fmt.Errorf("%s lists no members", coll)}
	}
	doc, err := get(rctx, a.r, members[0].link, parseResettable)
	if err != nil {
		return wrapBMC(op, a.ep, err)
	}
	if host && doc.PowerState != "On" {
		a.note(fmt.Sprintf("host is %s: the new firmware runs from its next power-on", strings.ToLower(first(doc.PowerState, "off"))))
		return nil
	}
	target := doc.Target
	if target == "" {
		action := "Manager.Reset"
		if host {
			action = "ComputerSystem.Reset"
		}
		target = members[0].link + "/Actions/" + action
	}
	if _, err := a.r.do(rctx, http.MethodPost, target, map[string]string{"ResetType": resetType}); err != nil {
		return wrapBMC(op, a.ep, err)
	}
	a.note(what + " (" + resetType + ")")
	return nil
}

func (a *applier) note(s string) {
	if a.res.Note != "" {
		a.res.Note += "; "
	}
	a.res.Note += s
}

func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// stableMismatch is how many answered reads in a row showing another
// version fail the verification early, when the task said it completed and
// no reset was asked for.
const stableMismatch = 3

// verify re-reads the inventory until the component reports the package's
// version, within VerifyTimeout; a BMC that is away (rebooting) is waited
// for.
func (a *applier) verify(ctx context.Context) error {
	cfg := a.c.cfg
	to := a.req.Package.Version
	vctx, cancel := context.WithTimeout(ctx, cfg.VerifyTimeout)
	defer cancel()
	tick := time.NewTicker(cfg.PollInterval)
	defer tick.Stop()
	var lastErr error
	seen, wrong := "", 0
	for {
		comp, err := a.read(vctx, a.us.FirmwareInventory == "")
		switch {
		case err == nil:
			lastErr = nil
			seen = comp.Version
			if version.Compare(comp.Version, to) == 0 {
				a.res.To = comp.Version
				if a.res.Note == "" {
					a.res.Note = fmt.Sprintf("updated from %s to %s", a.res.From, comp.Version)
				} else {
					a.res.Note = fmt.Sprintf("updated from %s to %s; %s", a.res.From, comp.Version, a.res.Note)
				}
				return nil
			}
			wrong++
			if a.completed && a.req.Package.Reset == ResetNone && wrong >= stableMismatch {
				return a.mismatch(seen)
			}
		case ctx.Err() != nil:
			return wrapBMC(a.op+": verify", a.ep, ctx.Err())
		case vctx.Err() != nil:
		case transient(err):
			lastErr = err
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return wrapBMC(a.op+": verify", a.ep, ctx.Err())
		case <-vctx.Done():
			if seen == "" && lastErr != nil {
				return fwErr(a.op, a.ep.String(), ClassVersionMismatch, fmt.Errorf("the BMC did not come back within %s to report the new version: %w", cfg.VerifyTimeout, lastErr))
			}
			return a.mismatch(seen)
		case <-tick.C:
		}
	}
}

func (a *applier) mismatch(seen string) error {
	a.res.To = seen
	return fwErr(a.op, a.ep.String(), ClassVersionMismatch,
		fmt.Errorf("the update task succeeded but %s reports version %q, want %s", a.req.Component, seen, a.req.Package.Version))
}
