package controller_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rackstrap/rackstrap/controller"
	"github.com/rackstrap/rackstrap/controller/model"
)

// An agent's long poll (up to 30 s) ends when the controller stops,
// rather than holding the shutdown or outliving the store.
func TestLongPollEndsWithTheController(t *testing.T) {
	t.Parallel()
	c, stop := runController(t, controller.Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0", Simulate: &controller.SimConfig{Nodes: 0}})
	ctx := context.Background()
	if _, _, err := c.Store.CreateNode(ctx, model.Node{Name: "n1"}, "test"); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Store.IssueToken(ctx, "n1", "netboot", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+c.API+"/api/v1/agent/checkin", strings.NewReader(`{"phase":"netboot"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	session := between(string(b), `"session": "`, `"`)
	if resp.StatusCode != 200 || session == "" {
		t.Fatalf("check-in = %d %s", resp.StatusCode, b)
	}

	polled := make(chan time.Duration, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+c.API+"/api/v1/agent/task?wait=30", nil)
		req.Header.Set("Authorization", "Bearer "+session)
		start := time.Now()
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		polled <- time.Since(start)
	}()
	time.Sleep(500 * time.Millisecond) // the poll is parked
	stopped := time.Now()
	stop()
	select {
	case d := <-polled:
		if d > 10*time.Second {
			t.Errorf("the long poll ended %v after it began; want it ended by the stop", d)
		}
	case <-time.After(25 * time.Second):
		t.Fatalf("the long poll was still parked %v after the controller stopped", time.Since(stopped))
	}
}

func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	out, _, _ := strings.Cut(rest, to)
	return out
}
