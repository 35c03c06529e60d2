package controller

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/controller/store"
)

// A quirk the BMC client learns is kept in the store and handed to the
// next controller's client.
func TestLearnedQuirksOutliveTheController(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := newBMCAudit(db, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	q := bmc.LearnedQuirk{Vendor: "Contoso", Model: "RS-1", Quirk: bmc.QuirkBootWithoutMode}
	a.Learn(q)
	a.Learn(q) // a second client's sighting: kept once
	var got []bmc.LearnedQuirk
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got, err = learnedQuirks(ctx, db); err != nil || len(got) > 0 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]bmc.LearnedQuirk{q}, got); diff != "" {
		t.Errorf("learned quirks after a restart (-want +got):\n%s", diff)
	}
	cancel()
	<-done
}
