package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rackstrap/rackstrap/controller/model"
)

// Enlistments are upserted per BMC MAC (attempts counted, first sighting
// kept), audited on the node's timeline, and identical on both engines.
func TestEnlistments(t *testing.T) {
	t.Parallel()
	for name, db := range engines(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if _, _, err := db.CreateNode(ctx, model.Node{Name: "r1-n01", Identity: model.Identity{Serial: "SN-001", BMC: "https://10.9.0.5:443"}}, "test"); err != nil {
				t.Fatal(err)
			}
			fail := BMCEnlistment{MAC: "02:52:01:00:00:01", IP: "10.9.0.5", Status: EnlistFailed, Class: "bmc-auth-failed", Message: "refused"}
			if err := db.RecordEnlistment(ctx, fail, "enlist"); err != nil {
				t.Fatal(err)
			}
			first, err := db.Enlistment(ctx, fail.MAC)
			if err != nil {
				t.Fatal(err)
			}
			ok := BMCEnlistment{MAC: fail.MAC, IP: "10.9.0.5", Endpoint: "https://10.9.0.5:443", Node: "r1-n01", Status: EnlistEnrolled,
				Vendor: "Contoso", Model: "RS-1", Serial: "SN-001", UUID: "u-1", Firmware: "1.0", HostMACs: []string{"02:52:10:00:00:01"}, Quirks: []string{"session-auth-only"}}
			if err := db.RecordEnlistment(ctx, ok, "enlist"); err != nil {
				t.Fatal(err)
			}
			got, err := db.Enlistments(ctx)
			if err != nil || len(got) != 1 {
				t.Fatalf("Enlistments = %+v, %v", got, err)
			}
			want := ok
			want.Attempts, want.First = 2, first.First
			if d := cmp.Diff(want, got[0], cmpopts.IgnoreFields(BMCEnlistment{}, "Last")); d != "" {
				t.Errorf("enlistment (-want +got):\n%s", d)
			}
			entries, err := db.ListAudit(ctx, AuditFilter{Node: "r1-n01"})
			if err != nil {
				t.Fatal(err)
			}
			var audited bool
			for _, e := range entries {
				audited = audited || (e.Action == "bmc.enlist" && strings.Contains(string(e.Detail), "SN-001"))
			}
			if !audited {
				t.Errorf("the enrolment is not on the node's audit timeline: %+v", entries)
			}
			if n, err := db.NodeBySerial(ctx, "sn-001"); err != nil || n != "r1-n01" {
				t.Errorf("NodeBySerial(sn-001) = %q, %v", n, err)
			}
			if _, err := db.NodeBySerial(ctx, ""); !errors.Is(err, ErrNotFound) {
				t.Errorf("NodeBySerial(\"\") = %v, want ErrNotFound", err)
			}
			if _, err := db.Enlistment(ctx, "02:52:01:00:00:99"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Enlistment(unknown) = %v, want ErrNotFound", err)
			}
			// The BMC leased another address: the node follows, unless
			// someone set its BMC to something else.
			if moved, err := db.MoveEnlistedBMC(ctx, "r1-n01", "https://10.9.0.5:443", "https://10.9.0.7:443", "enlist"); err != nil || !moved {
				t.Errorf("MoveEnlistedBMC = %v, %v", moved, err)
			}
			if moved, err := db.MoveEnlistedBMC(ctx, "r1-n01", "https://10.9.0.5:443", "https://10.9.0.8:443", "enlist"); err != nil || moved {
				t.Errorf("MoveEnlistedBMC from a stale address = %v, %v; want no move", moved, err)
			}
			if n, _ := db.GetNode(ctx, "r1-n01"); n.Identity.BMC != "https://10.9.0.7:443" {
				t.Errorf("node BMC = %q", n.Identity.BMC)
			}
			if v, err := db.VerifyAudit(ctx); err != nil || v.Entries == 0 {
				t.Errorf("VerifyAudit = %+v, %v", v, err)
			}
		})
	}
}
