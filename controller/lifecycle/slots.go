package lifecycle

import (
	"container/heap"
	"context"
	"sync"

	"github.com/rackstrap/rackstrap/controller/model"
)

// slots is a counting semaphore that hands a freed slot to the waiter of
// highest rank (first come among equals). The engine ranks a step by how
// far its node has come: with first-come slots, a thousand new nodes each
// took their first step before any node took its second, so every node sat
// half-way at once (every agent parked on the controller, every node's
// state in memory) and the first node was Ready only when the last one was.
// Ranking by progress finishes nodes before starting new ones, so the nodes
// in flight stay few and the rack reaches Ready node by node.
type slots struct {
	mu   sync.Mutex
	free int
	q    waitQueue
	seq  uint64
}

func newSlots(n int) *slots { return &slots{free: n} }

type waiter struct {
	rank  int
	seq   uint64
	ready chan struct{} // closed when the slot is handed over
	index int           // in the heap; -1 once handed over
}

// acquire takes a slot, waiting for one until ctx ends.
func (s *slots) acquire(ctx context.Context, rank int) error {
	s.mu.Lock()
	if s.free > 0 && s.q.Len() == 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	s.seq++
	w := &waiter{rank: rank, seq: s.seq, ready: make(chan struct{})}
	heap.Push(&s.q, w)
	s.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		if w.index >= 0 {
			heap.Remove(&s.q, w.index)
			s.mu.Unlock()
			return ctx.Err()
		}
		s.mu.Unlock()
		s.release() // handed over as ctx ended: pass it on
		return ctx.Err()
	}
}

// release gives a slot back: to the best waiter, else to the free count.
func (s *slots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.q.Len() == 0 {
		s.free++
		return
	}
	w := heap.Pop(&s.q).(*waiter)
	w.index = -1
	close(w.ready)
}

// waitQueue is a max-heap by rank, then first come.
type waitQueue []*waiter

func (q waitQueue) Len() int { return len(q) }
func (q waitQueue) Less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank > q[j].rank
	}
	return q[i].seq < q[j].seq
}
func (q waitQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *waitQueue) Push(x any) {
	w := x.(*waiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *waitQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return w
}

// progress ranks a node's steps for slots: the further along the way to
// Ready, the sooner its next step runs. Operator work on machines already
// out of provisioning (decommissioning, a quarantined or failed machine's
// power-off) comes first.
func progress(s model.State) int {
	switch s {
	case model.Discovered:
		return 0
	case model.Enrolled:
		return 1
	case model.Inspecting:
		return 2
	case model.Validated:
		return 3
	case model.Imaging:
		return 4
	case model.FirstBoot:
		return 5
	case model.BurnIn:
		return 6
	case model.Ready:
		return 7
	case model.HandedOff:
		return 8
	}
	return 9
}

// provisioning reports whether a node in state s is on its way to Ready:
// the nodes Config.MaxInFlight counts.
func provisioning(s model.State) bool {
	switch s {
	case model.Discovered, model.Enrolled, model.Inspecting, model.Validated, model.Imaging, model.FirstBoot, model.BurnIn:
		return true
	}
	return false
}
