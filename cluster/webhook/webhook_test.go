package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestSendSignsAndReportsStatus(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []http.Header
		fail = 2
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Header.Clone())
		if !Verify(secret, body, r.Header.Get(HeaderSignature)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if fail > 0 {
			fail--
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s, err := New(Config{URL: srv.URL + "/hook", Secret: secret}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"audit-7","event":"node.handed-off"}`)
	var se *StatusError
	for attempt := 1; attempt <= 2; attempt++ {
		if err := s.Send(context.Background(), "audit-7", HandedOff, body, attempt); !errors.As(err, &se) || se.Status != 503 {
			t.Fatalf("Send attempt %d = %v, want a 503 StatusError", attempt, err)
		}
	}
	if err := s.Send(context.Background(), "audit-7", HandedOff, body, 3); err != nil {
		t.Fatalf("Send attempt 3 = %v", err)
	}
	if len(seen) != 3 || seen[2].Get(HeaderID) != "audit-7" || seen[2].Get(HeaderAttempt) != "3" || seen[2].Get(HeaderEvent) != HandedOff {
		t.Errorf("headers = %v", seen)
	}
	if seen[0].Get(HeaderSignature) != seen[2].Get(HeaderSignature) {
		t.Error("the signature changed between attempts of the same body")
	}
	// A wrong secret is refused by a verifying receiver.
	bad, _ := New(Config{URL: srv.URL, Secret: []byte("another secret of 16+ bytes")}, srv.Client())
	if err := bad.Send(context.Background(), "x", HandedOff, body, 1); !errors.As(err, &se) || se.Status != 401 {
		t.Errorf("Send with the wrong secret = %v, want 401", err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	c := Config{MinBackoff: time.Second, MaxBackoff: 10 * time.Second}
	var got []time.Duration
	for a := 1; a <= 6; a++ {
		got = append(got, c.Backoff(a))
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Backoff (-want +got):\n%s", d)
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	good := "url: https://hooks.example/rackstrap\nsecretFile: webhook.secret\nevents: [node.handed-off]\ntimeout: 3s\nmaxBackoff: 1m\n"
	c, sf, err := ParseConfig("w.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if sf != "webhook.secret" || c.URL != "https://hooks.example/rackstrap" || c.Timeout != 3*time.Second || c.MaxBackoff != time.Minute || !c.Wants(HandedOff) || c.Wants(Quarantined) {
		t.Errorf("ParseConfig = %+v, %q", c, sf)
	}
	for name, tc := range map[string]struct{ doc, want string }{
		"unknown key":   {"url: http://h/\nsecretFile: s\nretries: 3\n", "field retries not found"},
		"no secret":     {"url: http://h/\n", "no secretFile"},
		"bad url":       {"url: ftp://h/\nsecretFile: s\n", "http:// or https://"},
		"bad event":     {"url: http://h/\nsecretFile: s\nevents: [node.exploded]\n", "unknown event"},
		"bad duration":  {"url: http://h/\nsecretFile: s\ntimeout: soon\n", "not a positive duration"},
		"empty":         {"", "empty webhook configuration"},
		"backoff order": {"url: http://h/\nsecretFile: s\nminBackoff: 2m\nmaxBackoff: 1m\n", "minBackoff at most maxBackoff"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := ParseConfig("w.yaml", []byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "w.yaml") {
				t.Errorf("ParseConfig = %v, want an error naming w.yaml containing %q", err, tc.want)
			}
		})
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "webhook.secret"), append(secret, '\n'), 0o600)
	os.WriteFile(filepath.Join(dir, "w.yaml"), []byte(good), 0o600)
	c, err = LoadConfig(filepath.Join(dir, "w.yaml"))
	if err != nil || string(c.Secret) != string(secret) {
		t.Errorf("LoadConfig = %+v, %v", c, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("url: https://hooks.example/rackstrap\nsecretFile: webhook.secret\nevents: [node.handed-off]\ntimeout: 3s\n"))
	f.Add([]byte("url: http://h/\nsecretFile: s\nminBackoff: 2m\nmaxBackoff: 1m\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, sf, err := ParseConfig("f.yaml", data)
		if err == nil && (sf == "" || c.URL == "") {
			t.Fatalf("accepted a configuration without url or secretFile: %+v", c)
		}
	})
}
