package bmc

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A hostile or broken BMC cannot hold or exhaust the client: what the
// simulator's faults do not cover (header floods, headers that never end,
// collections of a million members) ends in a classified failure within
// the operation's deadline. (Endless bodies, redirect loops, slow bodies,
// silence and links to other hosts: TestFaultsAreClassified and
// TestLinksStayOnTheBMC.)
func TestHostileBMC(t *testing.T) {
	t.Parallel()
	// rawServer answers every connection with serve (no net/http server
	// in between, so it can break HTTP as a hostile BMC would).
	rawServer := func(t *testing.T, serve func(c net.Conn)) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					bufio.NewReader(c).ReadString('\n') // the request line is enough
					serve(c)
				}()
			}
		}()
		return "http://" + l.Addr().String()
	}
	members := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/redfish/v1/":
			fmt.Fprint(w, `{"RedfishVersion":"1.15.0","Systems":{"@odata.id":"/redfish/v1/Systems"}}`)
		default:
			fmt.Fprint(w, `{"Members":[`)
			for i := range 5000 {
				if i > 0 {
					fmt.Fprint(w, ",")
				}
				fmt.Fprintf(w, `{"@odata.id":"/redfish/v1/Systems/%d"}`, i)
			}
			fmt.Fprint(w, `]}`)
		}
	}))
	t.Cleanup(members.Close)
	cases := map[string]struct {
		addr  string
		class string
	}{
		"header flood": {rawServer(t, func(c net.Conn) {
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nX-Flood: ")
			chunk := []byte(strings.Repeat("a", 64<<10))
			for range 64 { // 4 MiB of one header
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}), ClassProtocol},
		"headers that never end": {rawServer(t, func(c net.Conn) {
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\n")
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(c, "X-%d: a\r\n", i); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}), ClassUnreachable},
		"a million members": {members.URL, ClassProtocol},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := New(Config{Timeout: 3 * time.Second, Logger: testLogger(t)})
			start := time.Now()
			_, err := c.Identify(context.Background(), Endpoint{Address: tc.addr, Username: "admin", Password: "password"})
			if got := FailureClass(err); got != tc.class {
				t.Errorf("Identify = %v; want class %s", err, tc.class)
			}
			if took := time.Since(start); took > 8*time.Second {
				t.Errorf("took %v; the deadline is 3s", took)
			}
		})
	}
}
