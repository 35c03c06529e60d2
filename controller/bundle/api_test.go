package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/store"
)

type noActor struct{}

func (noActor) Act(context.Context, lifecycle.Request) (model.Operation, error) {
	return model.Operation{}, errors.New("no engine in this test")
}

// TestBundlesAPI imports through the API: a good bundle is imported and
// audited, a tampered one refused (400, naming the entry) and audited.
func TestBundlesAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSite(t, 8<<10)
	k, dir := trustingSite(t, s.keys)
	db, err := store.Open(ctx, "", t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	srv, err := api.New(db, noActor{}, slog.New(slog.DiscardHandler), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{Dir: dir, Keys: k, DB: db}
	if err := srv.Extend(svc.Extension()); err != nil {
		t.Fatal(err)
	}
	if err := srv.CheckOpenAPI(); err != nil {
		t.Fatal(err)
	}
	for _, r := range srv.Routes() {
		if strings.HasPrefix(r.Path, "/api/v1/bundles") && r.Perm != api.PermAdmin {
			t.Errorf("%s %s needs %s, want admin", r.Method, r.Path, r.Perm)
		}
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	post := func(b []byte) (int, string) {
		resp, err := http.Post(hs.URL+"/api/v1/bundles", "application/octet-stream", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	good := s.export(t, true)
	bad := append([]byte(nil), s.export(t, false)...)
	bad = bytes.Replace(bad, s.payload["firmware/bmc-1.2.bin"][:64], bytes.Repeat([]byte{'X'}, 64), 1)
	if code, body := post(bad); code != http.StatusBadRequest || !strings.Contains(body, "firmware/bmc-1.2.bin") {
		t.Errorf("POST tampered bundle = %d %s, want 400 naming the entry", code, body)
	}
	code, body := post(good)
	var res Result
	if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || res.Added+res.Resumed != res.Entries {
		t.Fatalf("POST good bundle = %d %s", code, body)
	}
	resp, err := http.Get(hs.URL + "/api/v1/bundles")
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(lb), res.Digest) {
		t.Errorf("GET /api/v1/bundles = %s, want the imported bundle", lb)
	}
	entries, err := db.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, ","); !strings.Contains(got, "bundle.refused,bundle.imported") {
		t.Errorf("audit actions = %s, want bundle.refused then bundle.imported", got)
	}
	if v, err := db.VerifyAudit(ctx); err != nil {
		t.Errorf("audit chain: %v %v", v, err)
	}
}
