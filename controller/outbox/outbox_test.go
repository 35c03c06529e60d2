package outbox

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/cluster/webhook"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

var secret = []byte("an outbox test secret, 32 bytes!")

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// receiver is a real HTTP receiver that answers 503 to the first fail
// requests and verifies every signature.
type receiver struct {
	mu       sync.Mutex
	fail     int
	bodies   map[string][]string // event id → body of every attempt
	accepted map[string]int
	attempts map[string][]string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !webhook.Verify(secret, body, req.Header.Get(webhook.HeaderSignature)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	id := req.Header.Get(webhook.HeaderID)
	r.bodies[id] = append(r.bodies[id], string(body))
	r.attempts[id] = append(r.attempts[id], req.Header.Get(webhook.HeaderAttempt))
	if r.fail > 0 {
		r.fail--
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	r.accepted[id]++
	w.WriteHeader(http.StatusAccepted)
}

func (r *receiver) done(n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.accepted) >= n
}

// TestRedeliversAcrossRestart: events queued and failed by one controller
// are delivered, exactly as recorded and each accepted once, by the next
// one on the same store.
func TestRedeliversAcrossRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(tlog{t}, nil))
	rcv := &receiver{fail: 3, bodies: map[string][]string{}, accepted: map[string]int{}, attempts: map[string][]string{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	sender, err := webhook.New(webhook.Config{URL: srv.URL, Secret: secret, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Timeout: 5 * time.Second}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	// Controller 1: the node is handed off, then quarantined; the first
	// delivery of both fails, then the controller stops.
	db, err := store.Open(ctx, "", dir, store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	inv := `{"source":"in-band","gpus":[{"index":0,"name":"NVIDIA H100 80GB HBM3"},{"index":1,"name":"NVIDIA H100 80GB HBM3"}]}`
	if _, _, err := db.CreateNode(ctx, model.Node{Name: "r1-n01", Identity: model.Identity{Rack: "r1", Slot: 1, Serial: "SN1"}, Profile: "dgx-h100"}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetHandOffTarget(ctx, "r1-n01", "kubernetes", "test"); err != nil {
		t.Fatal(err)
	}
	o1, err := New(Config{Sender: sender, Poll: 10 * time.Millisecond}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := o1.Collect(ctx); err != nil || n != 0 {
		t.Fatalf("first Collect = %d, %v, want 0 (starts at the head)", n, err)
	}
	for _, to := range []model.State{model.Ready, model.HandedOff, model.Quarantined} {
		c := store.Change{Node: "r1-n01", FromSeq: -1, To: to, Actor: "test", Action: "state.change"}
		if to == model.Ready {
			c.Inventory = json.RawMessage(inv)
		}
		if _, _, err := db.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := o1.Collect(ctx); err != nil || n != 2 {
		t.Fatalf("Collect = %d, %v, want 2 events (hand-off, quarantine)", n, err)
	}
	if n, err := o1.Collect(ctx); err != nil || n != 0 {
		t.Fatalf("Collect again = %d, %v, want 0: an event is queued once", n, err)
	}
	if n, err := o1.Deliver(ctx); err != nil || n != 0 {
		t.Fatalf("Deliver = %d, %v, want 0 delivered (the receiver refuses)", n, err)
	}
	recorded, err := db.ListOutbox(ctx, Sink, true, 10)
	if err != nil || len(recorded) != 2 {
		t.Fatalf("pending = %+v, %v", recorded, err)
	}
	db.Close()

	// Controller 2, same store: delivers both, retrying through the
	// remaining refusal.
	db2, err := store.Open(ctx, "", dir, store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	o2, err := New(Config{Sender: sender, Poll: 10 * time.Millisecond}, db2, log)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- o2.Serve(sctx) }()
	// Done when the store has nothing pending (the receiver may accept a
	// delivery whose answer the sender never reads; it is sent again).
	deadline := time.Now().Add(20 * time.Second)
	for {
		pending, err := db2.ListOutbox(ctx, Sink, true, 10)
		if err == nil && len(pending) == 0 && rcv.done(2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered after a restart: %+v", rcv.attempts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, e := range recorded {
		id := e.Key[len(Sink)+1:]
		if rcv.accepted[id] != 1 {
			t.Errorf("%s accepted %d times, want once", id, rcv.accepted[id])
		}
		for i, b := range rcv.bodies[id] {
			if b != string(e.Body) {
				t.Errorf("%s attempt %d body = %s, want as recorded %s", id, i+1, b, e.Body)
			}
		}
		for i, a := range rcv.attempts[id] {
			if a != strconv.Itoa(i+1) {
				t.Errorf("%s attempts = %v, want 1, 2, …", id, rcv.attempts[id])
				break
			}
		}
	}
	var ev webhook.Event
	if err := json.Unmarshal(recorded[1].Body, &ev); err != nil { // newest first: [1] is the hand-off
		t.Fatal(err)
	}
	if ev.Kind != webhook.HandedOff || ev.Node != "r1-n01" || ev.GPUModel != "h100" || ev.GPUCount != 2 || ev.Target != "kubernetes" || ev.Rack != "r1" || ev.Profile != "dgx-h100" {
		t.Errorf("hand-off event = %+v", ev)
	}
	if pending, _ := db2.ListOutbox(ctx, Sink, true, 10); len(pending) != 0 {
		t.Errorf("still pending: %+v", pending)
	}
	entries, _ := db2.ListAudit(ctx, store.AuditFilter{Node: "r1-n01"})
	delivered := 0
	for _, e := range entries {
		if e.Action == "webhook.delivered" {
			delivered++
		}
	}
	if delivered != 2 {
		t.Errorf("audit has %d webhook.delivered entries, want 2", delivered)
	}
}
