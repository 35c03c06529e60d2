package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/rackstrap/rackstrap/controller/model"
)

// Many writers at once share transactions; one writer's conflict rolls
// back only its own change; the audit chain stays whole and in order.
func TestGroupCommitManyWritersOneChain(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const writers = 60
			for i := range writers {
				if _, _, err := db.CreateNode(ctx, model.Node{Name: fmt.Sprintf("g%02d", i), Identity: model.Identity{Rack: "r1", Slot: i}}, "test"); err != nil {
					t.Fatal(err)
				}
			}
			var (
				wg        sync.WaitGroup
				mu        sync.Mutex
				conflicts int
				errs      []error
			)
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					node := fmt.Sprintf("g%02d", i)
					st, err := db.BeginStep(ctx, node, 0, "enroll", "test")
					if err == nil {
						st.Outcome = model.Succeeded
						_, err = db.FinishStep(ctx, st, "test")
					}
					if err == nil {
						// Half the writers race a stale change against a good one.
						if i%2 == 0 {
							_, _, stale := db.Apply(ctx, Change{Node: node, FromSeq: 7, To: model.Enrolled, Actor: "test", Action: "state.change"})
							mu.Lock()
							if errors.Is(stale, ErrConflict) {
								conflicts++
							} else {
								errs = append(errs, fmt.Errorf("stale Apply on %s = %v, want ErrConflict", node, stale))
							}
							mu.Unlock()
						}
						var n model.Node
						n, _, err = db.Apply(ctx, Change{Node: node, FromSeq: 0, To: model.Enrolled, Actor: "test", Action: "state.change"})
						if err == nil && (n.State != model.Enrolled || n.Seq != 1) {
							err = fmt.Errorf("Apply(%s) returned state %s seq %d, want Enrolled 1", node, n.State, n.Seq)
						}
					}
					if err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if conflicts != writers/2 {
				t.Errorf("conflicts = %d, want %d", conflicts, writers/2)
			}
			counts, err := db.CountByState(ctx)
			if err != nil || counts[model.Enrolled] != writers {
				t.Errorf("CountByState = %v, %v; want %d Enrolled", counts, err, writers)
			}
			res, err := db.VerifyAudit(ctx)
			// create + begin + end + state change per writer.
			if err != nil || res.Entries != 4*writers {
				t.Errorf("VerifyAudit = %+v, %v; want %d entries, chain intact", res, err, 4*writers)
			}
		})
	}
}

// A writer whose context ended before its batch ran is answered with that
// error and changes nothing; after Close, writes fail with ErrClosed.
func TestGroupCommitCancelledAndClosed(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, _, err := db.CreateNode(ctx, model.Node{Name: "c1"}, "test"); !errors.Is(err, context.Canceled) {
				t.Errorf("CreateNode(cancelled) = %v, want context.Canceled", err)
			}
			if _, err := db.GetNode(context.Background(), "c1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetNode(c1) after a cancelled create = %v, want ErrNotFound", err)
			}
			db.Close()
			if err := db.Audit(context.Background(), AuditInput{Actor: "t", Action: "x", Outcome: "ok"}); !errors.Is(err, ErrClosed) {
				t.Errorf("Audit after Close = %v, want ErrClosed", err)
			}
		})
	}
}
