package lifecycle

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A freed slot goes to the waiter of highest rank, first come among
// equals; a waiter that gives up takes no slot with it.
func TestSlotsServeTheFurthestFirst(t *testing.T) {
	s := newSlots(1)
	ctx := context.Background()
	if err := s.acquire(ctx, 0); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 4)
	start := func(name string, rank int) {
		before := queued(s)
		go func() {
			if err := s.acquire(ctx, rank); err != nil {
				t.Error(err)
				return
			}
			order <- name
		}()
		waitQueued(t, s, before+1)
	}
	start("new node", 0)
	start("imaging node", 4)
	start("second new node", 0)
	start("burn-in node", 6)
	// One that gives up while waiting.
	cctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	before := queued(s)
	go func() { gaveUp <- s.acquire(cctx, 9) }()
	waitQueued(t, s, before+1)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire = %v", err)
	}
	var got []string
	for range 4 {
		s.release()
		got = append(got, <-order)
	}
	want := []string{"burn-in node", "imaging node", "new node", "second new node"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("served %q, want %q", got, want)
		}
	}
	s.release()
	if s.free != 1 || s.q.Len() != 0 {
		t.Errorf("after all released: free %d, %d waiting; want 1 free, none waiting", s.free, s.q.Len())
	}
}

// queued is how many waiters have ever queued.
func queued(s *slots) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// waitQueued waits until want waiters have ever queued.
func waitQueued(t *testing.T, s *slots, want uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if queued(s) >= want {
			return
		}
	}
	t.Fatal("the waiter never queued")
}
