// Package tasks is the agent's task loop: after check-in it polls the
// controller for the node's tasks with the session token from the check-in
// reply, runs each with the handler for its kind, and reports the result:
//
//	GET  {server}/api/v1/agent/task?wait=S   Authorization: Bearer <session>
//	     204: nothing yet; 200 {"key","node","kind","payload","status"};
//	     410: the node is Ready or handed off, no more tasks: stop
//	POST {server}/api/v1/agent/task/result   {"key","ok","message","result"}
//
// The controller hands a task out again until its result is recorded (the
// agent may have rebooted mid-task), so the agent treats the task key as
// idempotent: a state file records each key it started and each outcome;
// a key that ended is re-reported, never run again, and a key that was
// started and not finished is run again with Resume set.
package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/checkin"
)

// API paths below the server URL.
const (
	TaskPath   = "/api/v1/agent/task"
	ResultPath = "/api/v1/agent/task/result"
)

// Task is one task as the controller hands it out.
type Task struct {
	Key     string          `json:"key"`
	Node    string          `json:"node"`
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload,omitempty"`
	Status  string          `json:"status"`
}

// Outcome is what running a task came to.
type Outcome struct {
	OK      bool            `json:"ok"`
	Message string          `json:"message,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
}

// Failed is a failed outcome with a message.
func Failed(format string, args ...any) Outcome {
	return Outcome{Message: fmt.Sprintf(format, args...)}
}

// WithResult sets the outcome's result to v as JSON.
func (o Outcome) WithResult(v any) Outcome {
	b, err := json.Marshal(v)
	if err != nil {
		return Failed("encode result: %v", err)
	}
	o.Result = b
	return o
}

// Handler runs one task. resume says an earlier run of the same key
// started and did not finish (the agent restarted mid-task). A handler
// reports its errors in the outcome; it returns when ctx ends.
type Handler func(ctx context.Context, t Task, resume bool) Outcome

// report is the body of a result post.
type report struct {
	Key     string          `json:"key"`
	OK      bool            `json:"ok"`
	Message string          `json:"message,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
}

// Config configures a Runner.
type Config struct {
	// Server is the controller's base URL, as for check-in.
	Server string
	// Session is the session token from the check-in reply.
	Session string
	// HTTPClient talks to the controller (checkin.Client.HTTP: its CA, no
	// proxy).
	HTTPClient *http.Client
	// Handlers run tasks by kind; a task of another kind fails.
	Handlers map[string]Handler
	// StatePath is the state file that makes task keys idempotent across
	// restarts of the agent; "" keeps the state in memory only.
	StatePath string
	// MinPoll and MaxPoll bound the wait between polls when there is no task
	// (defaults 1s and 10s; the wait grows by half each empty poll and is
	// back to MinPoll after a task). Connection and server errors back off
	// the same way.
	MinPoll, MaxPoll time.Duration
	// IdleExit ends Run (nil error) once the controller has had no task for
	// this long; 0 polls until ctx ends.
	IdleExit time.Duration
	// RequestTimeout bounds one request (default 30s).
	RequestTimeout time.Duration
	// LongPoll is how long the controller may hold a poll open waiting for
	// a task (GET …/agent/task?wait=S): a task then starts as soon as it
	// is queued, and an idle agent costs the controller one parked request
	// instead of a read every few seconds. Default 20s, kept 5s under
	// RequestTimeout; negative polls without waiting. A controller that
	// answers at once (one without long polls) is polled every MinPoll to
	// MaxPoll as before.
	LongPoll time.Duration
	// Logger logs the loop; nil discards.
	Logger *slog.Logger
}

// Runner polls for tasks and runs them.
type Runner struct {
	cfg   Config
	base  string
	state *State
}

// New validates cfg and loads the state file.
func New(cfg Config) (*Runner, error) {
	u, err := url.Parse(cfg.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tasks: server %q is not an http:// or https:// URL", cfg.Server)
	}
	if cfg.Session == "" {
		return nil, errors.New("tasks: no session token: the controller's check-in reply carried none")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient, _ = checkin.HTTPClient(nil)
	}
	if cfg.MinPoll <= 0 {
		cfg.MinPoll = time.Second
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 10 * time.Second
	}
	cfg.MaxPoll = max(cfg.MaxPoll, cfg.MinPoll)
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.LongPoll == 0 {
		cfg.LongPoll = 20 * time.Second
	}
	cfg.LongPoll = min(cfg.LongPoll, cfg.RequestTimeout-5*time.Second)
	if cfg.LongPoll < time.Second {
		cfg.LongPoll = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := LoadState(cfg.StatePath)
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, base: strings.TrimSuffix(u.String(), "/"), state: st}, nil
}

// State is the runner's task state (for tests and the log).
func (r *Runner) State() *State { return r.state }

// ErrSession is a session the controller no longer accepts: the agent must
// check in again (with a new enrolment token) to get tasks.
var ErrSession = errors.New("the controller refused the agent session")

// ErrDone is the controller saying the session has no more tasks (410
// Gone: the node is Ready or handed off); Run ends without error.
var ErrDone = errors.New("the controller has no more tasks for this session")

// Run polls and runs tasks until ctx ends (its error is returned), the
// session is refused (ErrSession), the controller has no more tasks for the
// node (ErrDone: nil), or IdleExit passes without a task (nil).
func (r *Runner) Run(ctx context.Context) error {
	log := r.cfg.Logger
	wait := r.cfg.MinPoll
	idleSince := time.Now()
	for {
		asked := time.Now()
		t, err := r.next(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrSession):
			return err
		case errors.Is(err, ErrDone):
			log.Info("the controller has no more tasks for this node; stopping", "reason", err)
			return nil
		case err != nil:
			log.Warn("task poll failed; retrying", "wait", wait, "err", err)
		case t == nil:
			if r.cfg.IdleExit > 0 && time.Since(idleSince) >= r.cfg.IdleExit {
				log.Info("no task from the controller; stopping", "idle", time.Since(idleSince).Round(time.Millisecond))
				return nil
			}
			if r.cfg.LongPoll > 0 && time.Since(asked) >= r.cfg.LongPoll/2 {
				continue // the controller held the poll: ask again at once
			}
		default:
			if err := r.do(ctx, *t); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, ErrSession) {
					return err
				}
				log.Warn("task result not recorded; it will come back", "key", t.Key, "err", err)
			}
			wait = r.cfg.MinPoll
			idleSince = time.Now()
			continue
		}
		if err := sleep(ctx, wait/2+rand.N(wait/2+1)); err != nil {
			return err
		}
		wait = min(wait*3/2, r.cfg.MaxPoll)
	}
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

// do runs (or, when its key already ended, re-reports) one task.
func (r *Runner) do(ctx context.Context, t Task) error {
	log := r.cfg.Logger.With("key", t.Key, "kind", t.Kind)
	rec, known := r.state.Get(t.Key)
	var out Outcome
	if known && rec.Done {
		log.Info("task handed out again after it ended; reporting its result again without running it", "ok", rec.Outcome.OK)
		out = rec.Outcome
	} else {
		resume := known
		if resume {
			log.Info("task handed out again after a run that did not finish; running it again, resuming")
		} else {
			log.Info("task started")
		}
		if err := r.state.Start(t.Key, t.Kind); err != nil {
			return err
		}
		out = r.run(ctx, t, resume)
		if ctx.Err() != nil && !out.OK {
			return ctx.Err() // interrupted: not done, runs again (resuming) when handed out again
		}
		if err := r.state.Finish(t.Key, out); err != nil {
			log.Error("could not record the task's outcome in the state file", "err", err)
		}
		log.Info("task ended", "ok", out.OK, "message", out.Message)
	}
	return r.report(ctx, report{Key: t.Key, OK: out.OK, Message: out.Message, Result: out.Result})
}

func (r *Runner) run(ctx context.Context, t Task, resume bool) (out Outcome) {
	h := r.cfg.Handlers[t.Kind]
	if h == nil {
		kinds := make([]string, 0, len(r.cfg.Handlers))
		for k := range r.cfg.Handlers {
			kinds = append(kinds, k)
		}
		return Failed("this agent does not run %q tasks (it runs: %s)", t.Kind, strings.Join(sorted(kinds), ", "))
	}
	defer func() {
		if p := recover(); p != nil {
			out = Failed("agent bug: %s task panicked: %v", t.Kind, p)
		}
	}()
	return h(ctx, t, resume)
}

// report posts a result, retrying connection and server errors until ctx
// ends. A result the controller refuses (4xx) is logged and dropped.
func (r *Runner) report(ctx context.Context, rep report) error {
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	wait := r.cfg.MinPoll
	for attempt := 1; ; attempt++ {
		status, data, err := r.do1(ctx, http.MethodPost, ResultPath, body)
		switch {
		case err == nil && status == http.StatusOK:
			if err := r.state.Reported(rep.Key); err != nil {
				r.cfg.Logger.Warn("could not record the report in the state file", "err", err)
			}
			return nil
		case err == nil && status == http.StatusUnauthorized:
			return fmt.Errorf("%w: %s", ErrSession, apiMessage(status, data))
		case err == nil && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout:
			r.cfg.Logger.Error("controller refused the task result; dropping it", "key", rep.Key, "status", status, "answer", apiMessage(status, data))
			return nil
		case err == nil:
			err = errors.New(apiMessage(status, data))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.cfg.Logger.Warn("task result not delivered; retrying", "key", rep.Key, "attempt", attempt, "wait", wait, "err", err)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(wait*2, r.cfg.MaxPoll)
	}
}

// next polls once: nil when the controller has no task.
func (r *Runner) next(ctx context.Context) (*Task, error) {
	path := TaskPath
	if r.cfg.LongPoll > 0 {
		path += "?wait=" + strconv.Itoa(int(r.cfg.LongPoll/time.Second))
	}
	status, data, err := r.do1(ctx, http.MethodGet, path, nil)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusNoContent:
		return nil, nil
	case status == http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: %s", ErrSession, apiMessage(status, data))
	case status == http.StatusGone:
		return nil, fmt.Errorf("%w: %s", ErrDone, apiMessage(status, data))
	case status != http.StatusOK:
		return nil, errors.New(apiMessage(status, data))
	}
	var t Task
	if err := json.Unmarshal(data, &t); err != nil || t.Key == "" || t.Kind == "" {
		return nil, fmt.Errorf("controller answered a task poll with a body that is not a task (%v): %.200q", err, data)
	}
	return &t, nil
}

func (r *Runner) do1(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.Session)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	return resp.StatusCode, data, nil
}

// apiMessage renders a controller error answer ({"code","message","hint"}).
func apiMessage(status int, data []byte) string {
	var e struct{ Code, Message, Hint string }
	if json.Unmarshal(data, &e) == nil && e.Message != "" {
		s := fmt.Sprintf("HTTP %d %s: %s", status, e.Code, e.Message)
		if e.Hint != "" {
			s += "; " + e.Hint
		}
		return s
	}
	return fmt.Sprintf("HTTP %d: %.200s", status, strings.TrimSpace(string(data)))
}
