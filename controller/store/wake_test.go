package store

import "testing"

// A wake reaches every waiter of its key, and no key stays behind once
// its waiters stop or are woken: a finished task's key, which nobody wakes
// again, must not pile up.
func TestWaitersWakeAndForget(t *testing.T) {
	var w waiters
	a, stopA := w.wait("k")
	b, stopB := w.wait("k")
	other, stopOther := w.wait("other")
	w.wake("k")
	for name, ch := range map[string]<-chan struct{}{"a": a, "b": b} {
		select {
		case <-ch:
		default:
			t.Errorf("waiter %s was not woken", name)
		}
	}
	select {
	case <-other:
		t.Error("a wake of k woke the waiter of another key")
	default:
	}
	stopA()
	stopB()
	stopB() // twice is harmless
	_, stopC := w.wait("k")
	stopOther()
	if len(w.m) != 1 {
		t.Errorf("%d keys held with one waiter left; want 1 (a woken waiter's stop removed a newer one's key?)", len(w.m))
	}
	stopC()
	if len(w.m) != 0 {
		t.Errorf("%d keys held after every waiter stopped; want none", len(w.m))
	}
}
