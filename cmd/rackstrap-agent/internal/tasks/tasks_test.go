package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fake is a controller stand-in: a queue of tasks handed out until a result
// for their key arrives, and the results.
type fake struct {
	mu         sync.Mutex
	queue      []Task
	results    []report
	failPosts  int // answer this many result posts with 503
	refuseKeys map[string]int
	session    string
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.session {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]string{"code": "unauthorized", "message": "agent session: unknown enrolment token", "hint": "check in again"})
		return
	}
	switch r.URL.Path {
	case TaskPath:
		if len(f.queue) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		json.NewEncoder(w).Encode(f.queue[0])
	case ResultPath:
		var rep report
		json.NewDecoder(r.Body).Decode(&rep)
		if f.failPosts > 0 {
			f.failPosts--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if st := f.refuseKeys[rep.Key]; st != 0 {
			w.WriteHeader(st)
			json.NewEncoder(w).Encode(map[string]string{"code": "not_found", "message": "task " + rep.Key + " of node n1: not found"})
		} else {
			f.results = append(f.results, rep)
		}
		for i, t := range f.queue {
			if t.Key == rep.Key {
				f.queue = append(f.queue[:i], f.queue[i+1:]...)
				break
			}
		}
	}
}

func runner(t *testing.T, f *fake, state string, handlers map[string]Handler) *Runner {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	r, err := New(Config{Server: srv.URL, Session: "s1", Handlers: handlers, StatePath: state, MinPoll: time.Millisecond, MaxPoll: 5 * time.Millisecond, IdleExit: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunner(t *testing.T) {
	t.Parallel()
	f := &fake{session: "s1", failPosts: 2, refuseKeys: map[string]int{"k4": 404}, queue: []Task{
		{Key: "k1", Kind: "echo", Payload: json.RawMessage(`{"say":"hi"}`)},
		{Key: "k2", Kind: "teleport"},
		{Key: "k3", Kind: "panic"},
		{Key: "k4", Kind: "echo", Payload: json.RawMessage(`{}`)},
	}}
	runs := map[string]int{}
	handlers := map[string]Handler{
		"echo": func(_ context.Context, t Task, resume bool) Outcome {
			runs[t.Key]++
			return Outcome{OK: true, Message: "echo"}.WithResult(t.Payload)
		},
		"panic": func(context.Context, Task, bool) Outcome { panic("boom") },
	}
	state := filepath.Join(t.TempDir(), "state", "tasks.json")
	r := runner(t, f, state, handlers)
	if err := r.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v", err)
	}
	got := map[string]report{}
	for _, rep := range f.results {
		got[rep.Key] = rep
	}
	if len(f.results) != 3 || !got["k1"].OK || string(got["k1"].Result) != `{"say":"hi"}` || runs["k1"] != 1 {
		t.Errorf("results = %+v, runs %v", f.results, runs)
	}
	if got["k2"].OK || got["k2"].Message != `this agent does not run "teleport" tasks (it runs: echo, panic)` {
		t.Errorf("unknown kind = %+v", got["k2"])
	}
	if got["k3"].OK || !strings.Contains(got["k3"].Message, "panicked: boom") {
		t.Errorf("panicking handler = %+v", got["k3"])
	}
	// k4's result was refused (404): dropped, not retried forever.
	if runs["k4"] != 1 {
		t.Errorf("k4 ran %d times", runs["k4"])
	}
	st, err := LoadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := st.Get("k1"); !rec.Done || !rec.Reported || rec.Runs != 1 || rec.Kind != "echo" {
		t.Errorf("state of k1 = %+v", rec)
	}
	if b, _ := os.Stat(state); b.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v", b.Mode().Perm())
	}
}

func TestRedeliveryAndResume(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "tasks.json")
	// An earlier agent ran "done" to the end and started "half".
	st, _ := LoadState(state)
	st.Start("done", "echo")
	st.Finish("done", Outcome{OK: true, Message: "earlier"})
	st.Start("half", "echo")

	f := &fake{session: "s1", queue: []Task{{Key: "done", Kind: "echo"}, {Key: "half", Kind: "echo"}}}
	var resumed []bool
	r := runner(t, f, state, map[string]Handler{"echo": func(_ context.Context, t Task, resume bool) Outcome {
		if t.Key == "done" {
			panic("a task that ended ran again")
		}
		resumed = append(resumed, resume)
		return Outcome{OK: true, Message: "now"}
	}})
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.results) != 2 || f.results[0].Message != "earlier" || f.results[1].Message != "now" || len(resumed) != 1 || !resumed[0] {
		t.Errorf("results %+v, resumed %v", f.results, resumed)
	}
	if rec, _ := r.State().Get("half"); rec.Runs != 2 || !rec.Done {
		t.Errorf("state of half = %+v", rec)
	}
}

func TestSessionRefused(t *testing.T) {
	t.Parallel()
	f := &fake{session: "other"}
	r := runner(t, f, "", nil)
	err := r.Run(context.Background())
	if !errors.Is(err, ErrSession) || !strings.Contains(err.Error(), "check in again") {
		t.Errorf("Run = %v, want ErrSession", err)
	}
}

// 410 Gone (the node is Ready): the agent stops at once, without error,
// rather than polling until its idle exit.
func TestControllerSaysDone(t *testing.T) {
	t.Parallel()
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		if r.URL.Query().Get("wait") != "20" {
			t.Errorf("poll %s: want a long poll of 20 s", r.URL)
		}
		w.WriteHeader(http.StatusGone)
		json.NewEncoder(w).Encode(map[string]string{"code": "session_done", "message": "node n1 is Ready: the controller has no more tasks for this agent session"})
	}))
	t.Cleanup(srv.Close)
	r, err := New(Config{Server: srv.URL, Session: "s1", MinPoll: time.Millisecond, MaxPoll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); err != nil {
		t.Errorf("Run = %v; want nil once the controller says the node needs no more tasks", err)
	}
	if n := polls.Load(); n != 1 {
		t.Errorf("%d polls; want 1", n)
	}
}

func TestConfigAndState(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{Server: "x", Session: "s"}); err == nil {
		t.Error("New with a bad server succeeded")
	}
	if _, err := New(Config{Server: "http://x"}); err == nil || !strings.Contains(err.Error(), "no session") {
		t.Errorf("New without a session = %v", err)
	}
	bad := filepath.Join(t.TempDir(), "tasks.json")
	os.WriteFile(bad, []byte("{"), 0o600)
	if _, err := LoadState(bad); err == nil || !strings.Contains(err.Error(), "remove it to start afresh") {
		t.Errorf("LoadState(garbage) = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r := runner(t, &fake{session: "s1"}, "", nil)
	r.cfg.IdleExit = 0
	if err := r.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run without IdleExit = %v, want the context's deadline", err)
	}
}
