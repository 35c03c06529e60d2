package checkin_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/checkin"
	"github.com/rackstrap/rackstrap/cmd/rackstrap-agent/internal/checkin/checkintest"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

func request(phase checkin.Phase) checkin.Request {
	return checkin.Request{
		Phase:        phase,
		AgentVersion: "rackstrap-agent test",
		Inventory: inventory.Inventory{
			Source: inventory.InBand,
			System: inventory.System{Vendor: "QEMU", Serial: "VM-1"},
			NICs:   []inventory.NIC{{Name: "ens3", MAC: "52:54:00:12:34:56"}},
		},
		Notes: []string{"dmi: absent"},
	}
}

func client(t *testing.T, srv *checkintest.Server, token string) *checkin.Client {
	t.Helper()
	c, err := checkin.New(checkin.Config{Server: srv.URL, Token: token, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckInContract(t *testing.T) {
	t.Parallel()
	srv := checkintest.New()
	defer srv.Close()
	srv.AddToken("tok-good", "rack1-node07", checkin.Netboot, time.Hour)
	srv.AddToken("tok-expired", "rack1-node08", checkin.Netboot, -time.Second)
	srv.AddToken("tok-firstboot", "rack1-node09", checkin.Firstboot, time.Hour)

	// Accepted once; the token is then used up.
	resp, err := client(t, srv, "tok-good").CheckIn(context.Background(), request(checkin.Netboot))
	if err != nil || resp != (checkin.Response{Node: "rack1-node07", Accepted: true}) {
		t.Fatalf("CheckIn(good) = %+v, %v; want node rack1-node07 accepted", resp, err)
	}
	got := srv.Received()
	if len(got) != 1 || got[0].Inventory.System.Serial != "VM-1" || got[0].Phase != checkin.Netboot || got[0].Notes[0] != "dmi: absent" {
		t.Errorf("controller received %+v", got)
	}

	for name, tc := range map[string]struct {
		token  string
		phase  checkin.Phase
		status int
		code   string
	}{
		"reused token":  {"tok-good", checkin.Netboot, 401, "token-used"},
		"expired token": {"tok-expired", checkin.Netboot, 401, "token-expired"},
		"unknown token": {"nope", checkin.Netboot, 401, "token-invalid"},
		"wrong phase":   {"tok-firstboot", checkin.Netboot, 409, "wrong-phase"},
	} {
		t.Run(name, func(t *testing.T) {
			c := client(t, srv, tc.token)
			before := srv.Attempts()
			_, n, err := c.Run(context.Background(), request(tc.phase))
			apiErr, ok := errors.AsType[*checkin.APIError](err)
			if !ok || apiErr.Status != tc.status || apiErr.Code != tc.code {
				t.Fatalf("Run() = %v, want HTTP %d %s", err, tc.status, tc.code)
			}
			if n != 1 || checkin.Retryable(err) {
				t.Errorf("Run() made %d attempts (retryable %v), want 1: a %d is final", n, checkin.Retryable(err), tc.status)
			}
			if apiErr.Hint == "" || !strings.Contains(err.Error(), apiErr.Hint) {
				t.Errorf("error %q does not carry the controller's hint %q", err, apiErr.Hint)
			}
			_ = before
		})
	}
}

func TestRunRetriesServerErrors(t *testing.T) {
	t.Parallel()
	srv := checkintest.New()
	defer srv.Close()
	srv.AddToken("tok", "node1", checkin.Firstboot, time.Hour)
	srv.FailNext(503, 500, 502, 429)
	resp, n, err := client(t, srv, "tok").Run(context.Background(), request(checkin.Firstboot))
	if err != nil || !resp.Accepted || n != 5 {
		t.Fatalf("Run() = %+v after %d attempts, %v; want accepted on the 5th", resp, n, err)
	}
}

func TestRunRetriesUntilControllerListens(t *testing.T) {
	t.Parallel()
	// A controller that is still starting: connections are accepted and
	// dropped at once. Only once the agent has knocked does it come up on
	// the same address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	knocked := make(chan struct{})
	go func() {
		var once sync.Once
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
			once.Do(func() { close(knocked) })
		}
	}()
	srv := checkintest.New() // its handler, served on addr later
	defer srv.Close()
	srv.AddToken("tok", "node1", checkin.Netboot, time.Hour)
	c, err := checkin.New(checkin.Config{Server: "http://" + addr, Token: "tok", MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		_, n, err := c.Run(context.Background(), request(checkin.Netboot))
		done <- result{n, err}
	}()
	select {
	case <-knocked:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent never tried to connect")
	}
	l.Close()
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("re-listen %s: %v", addr, err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(l2)
	defer hs.Close()
	select {
	case r := <-done:
		if r.err != nil || r.n < 2 {
			t.Fatalf("Run() = %d attempts, %v; want accepted after refused connections", r.n, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run() did not finish after the controller came up")
	}
}

func TestRunGivesUpAtDeadline(t *testing.T) {
	t.Parallel()
	srv := checkintest.New()
	defer srv.Close()
	srv.AddToken("tok", "node1", checkin.Netboot, time.Hour)
	statuses := make([]int, 1000)
	for i := range statuses {
		statuses[i] = 503
	}
	srv.FailNext(statuses...)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, n, err := client(t, srv, "tok").Run(ctx, request(checkin.Netboot))
	if !errors.Is(err, context.DeadlineExceeded) || n < 2 {
		t.Fatalf("Run() = %d attempts, %v; want several then the deadline", n, err)
	}
	if apiErr, ok := errors.AsType[*checkin.APIError](err); !ok || apiErr.Status != 503 {
		t.Errorf("Run() error %v does not carry the last 503", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Run() took %v past a 100ms deadline", el)
	}
}

func TestCheckInTLSWithCABundle(t *testing.T) {
	t.Parallel()
	srv := checkintest.NewTLS()
	defer srv.Close()
	srv.AddToken("tok", "node-tls", checkin.Netboot, time.Hour)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	// Without the bundle the controller's certificate is not trusted, and
	// that is final only in the sense that retrying does not fix it: one
	// attempt shows the error.
	plain, err := checkin.New(checkin.Config{Server: srv.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.CheckIn(context.Background(), request(checkin.Netboot)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("CheckIn without CA = %v, want a certificate error", err)
	}
	c, err := checkin.New(checkin.Config{Server: srv.URL, Token: "tok", CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.CheckIn(context.Background(), request(checkin.Netboot))
	if err != nil || resp.Node != "node-tls" {
		t.Fatalf("CheckIn with CA = %+v, %v", resp, err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "bad.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for name, tc := range map[string]struct {
		cfg  checkin.Config
		want string
	}{
		"no scheme":   {checkin.Config{Server: "10.0.0.1:8443", Token: "t"}, "not an http:// or https:// URL"},
		"ftp":         {checkin.Config{Server: "ftp://x", Token: "t"}, "not an http:// or https:// URL"},
		"no token":    {checkin.Config{Server: "http://x"}, "no enrolment token"},
		"space token": {checkin.Config{Server: "http://x", Token: "a b"}, "white space"},
		"missing CA":  {checkin.Config{Server: "https://x", Token: "t", CAFile: filepath.Join(dir, "none.pem")}, "read CA bundle"},
		"bad CA":      {checkin.Config{Server: "https://x", Token: "t", CAFile: notPEM}, "holds no PEM certificate"},
	} {
		if _, err := checkin.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New() = %v, want %q", name, err, tc.want)
		}
	}
	c, err := checkin.New(checkin.Config{Server: "https://ctl.example:8443/base/", Token: "t"})
	if err != nil || c.Endpoint() != "https://ctl.example:8443/base/api/v1/agent/checkin" {
		t.Errorf("Endpoint() = %q, %v", c.Endpoint(), err)
	}
}

func TestNotAcceptedIsRetried(t *testing.T) {
	t.Parallel()
	calls := 0
	srv := checkintest.New()
	srv.Close()
	hs := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls < 3 {
			w.Write([]byte(`{"node":"n","accepted":false}`))
			return
		}
		w.Write([]byte(`{"node":"n","accepted":true}`))
	})}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go hs.Serve(l)
	defer hs.Close()
	c, _ := checkin.New(checkin.Config{Server: "http://" + l.Addr().String(), Token: "t", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	resp, n, err := c.Run(context.Background(), request(checkin.Netboot))
	if err != nil || n != 3 || !resp.Accepted {
		t.Errorf("Run() = %+v, %d attempts, %v; want accepted on the 3rd", resp, n, err)
	}
	if _, err := c.CheckIn(context.Background(), request(checkin.Netboot)); err != nil {
		t.Errorf("CheckIn after acceptance = %v", err)
	}
}
