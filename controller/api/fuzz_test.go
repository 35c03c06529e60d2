package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequestBodies feeds arbitrary bodies to the routes that parse JSON:
// every reply must be a JSON error or success, never a 5xx or a panic.
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{
		`{"name":"n1"}`, `{"name":"n1","identity":{"macs":["52:54:00:00:00:01"],"rack":"r1","slot":3}}`,
		`{"action":"provision","handOff":true}`, `{"action":"retry"}`, `{`, `[]`, `null`, `{"name":"a b"}`,
		`{"name":"x","desired":"ready"}{}`, "\x00\xff", `{"identity":{"slot":"three"}}`,
	} {
		f.Add("/api/v1/nodes", seed)
		f.Add("/api/v1/nodes/n1/actions", seed)
	}
	ts, db := newTestServerF(f)
	_ = db
	f.Fuzz(func(t *testing.T, path, body string) {
		if path != "/api/v1/nodes" && path != "/api/v1/nodes/n1/actions" {
			return
		}
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		rec := httptest.NewRecorder()
		ts.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST %s %q = %d %s", path, body, rec.Code, rec.Body)
		}
		var v any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("POST %s %q: reply is not JSON: %q", path, body, rec.Body)
		}
		if rec.Code >= 400 && rec.Code != http.StatusConflict {
			var e Error
			json.Unmarshal(rec.Body.Bytes(), &e)
			if e.Code == "" || e.Message == "" {
				t.Fatalf("POST %s %q: error reply without code and message: %s", path, body, rec.Body)
			}
		}
	})
}
