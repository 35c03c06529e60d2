package store

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A learned quirk is kept once (learning it again writes nothing), audited,
// and listed identically on both engines.
func TestLearnedQuirks(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			nomode := LearnedQuirk{Vendor: "Contoso", Model: "RS-1", Quirk: "boot-without-mode", BMC: "https://10.9.0.5"}
			cycle := LearnedQuirk{Manufacturer: "Fabrikam", Product: "FX-2", Quirk: "cycle-with-power-cycle"}
			for _, q := range []LearnedQuirk{nomode, cycle, nomode} {
				if err := db.LearnQuirk(ctx, q, "controller"); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.LearnQuirk(ctx, LearnedQuirk{Model: "RS-1"}, "controller"); err == nil {
				t.Error("LearnQuirk without a quirk succeeded")
			}
			got, err := db.LearnedQuirks(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]LearnedQuirk{cycle, nomode}, got); diff != "" {
				t.Errorf("LearnedQuirks (-want +got):\n%s", diff)
			}
			entries, err := db.ListAudit(ctx, AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, e := range entries {
				if e.Action == "bmc.quirk-learned" {
					n++
				}
			}
			if n != 2 {
				t.Errorf("%d bmc.quirk-learned audit entries, want 2 (one per new quirk)", n)
			}
		})
	}
}
