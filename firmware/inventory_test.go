package firmware

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/bmc/redfishsim"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

func TestInventoryEveryFlavor(t *testing.T) {
	t.Parallel()
	for _, flavor := range []redfishsim.Flavor{redfishsim.FlavorSupermicro, redfishsim.FlavorDell, redfishsim.FlavorHPE, redfishsim.FlavorOpenBMC, redfishsim.FlavorGeneric} {
		t.Run(string(flavor), func(t *testing.T) {
			t.Parallel()
			node := redfishsim.SampleNode(20)
			node.Flavor = flavor
			node.Hardware.Firmware = append(node.Hardware.Firmware, inventory.FirmwareComponent{ID: "PSU1", Name: "Power Supply 1", Version: "01.02.03"})
			// HTTPS, as real BMCs serve it, with the certificate pinned.
			sim := startFleet(t, redfishsim.Config{}, node).BMCs()[0]
			ep := endpointOf(sim)
			ep.CertSHA256 = "sha256:" + certOf(t, sim)
			got, err := Inventory(context.Background(), ep)
			if err != nil {
				t.Fatalf("Inventory = %v", err)
			}
			if diff := cmp.Diff(sim.Firmware(), got); diff != "" {
				t.Errorf("Inventory mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func certOf(t *testing.T, sim *redfishsim.BMC) string {
	t.Helper()
	conn, err := tls.Dial("tcp", sim.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the certificate is the point
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return bmc.Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
}

func TestInventoryFaults(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		faults redfishsim.Faults
		ep     func(bmc.Endpoint) bmc.Endpoint
		class  string
		want   string
	}{
		"refused":            {faults: redfishsim.Faults{Refuse: true}, class: bmc.ClassUnreachable, want: "check that the BMC is powered"},
		"no answer":          {faults: redfishsim.Faults{Blackhole: true}, class: bmc.ClassUnreachable, want: "deadline exceeded"},
		"slow body":          {faults: redfishsim.Faults{SlowBody: 50 * time.Millisecond}, class: bmc.ClassUnreachable, want: "deadline exceeded"},
		"bad credentials":    {faults: redfishsim.Faults{BadCredentials: true}, class: bmc.ClassAuth, want: `credentials for user "admin" refused`},
		"wrong password":     {ep: func(ep bmc.Endpoint) bmc.Endpoint { ep.Password = "nope"; return ep }, class: bmc.ClassAuth, want: "HTTP 401"},
		"endless body":       {faults: redfishsim.Faults{HugeBody: true}, class: bmc.ClassProtocol, want: "exceeds the size limit"},
		"malformed JSON":     {faults: redfishsim.Faults{MalformedJSON: true}, class: bmc.ClassProtocol, want: "GET /redfish/v1/"},
		"HTML":               {faults: redfishsim.Faults{WrongContentType: true}, class: bmc.ClassProtocol, want: `Content-Type "text/html`},
		"server error":       {faults: redfishsim.Faults{Path: "/redfish/v1/UpdateService", Status: 500}, class: bmc.ClassBMCError, want: "HTTP 500: The request failed due to an internal service error (injected)."},
		"redirect loop":      {faults: redfishsim.Faults{RedirectLoop: true}, class: bmc.ClassProtocol, want: "redirects"},
		"not found":          {faults: redfishsim.Faults{Path: "/redfish/v1/UpdateService/FirmwareInventory", Status: 404}, class: bmc.ClassUnsupported, want: "HTTP 404"},
		"wrong certificate":  {ep: func(ep bmc.Endpoint) bmc.Endpoint { ep.CertSHA256 = strings.Repeat("00", 32); return ep }, class: bmc.ClassCertChanged, want: "TLS certificate changed"},
		"IPMI endpoint":      {ep: func(ep bmc.Endpoint) bmc.Endpoint { ep.Protocol = bmc.IPMI; return ep }, class: bmc.ClassUnsupported, want: "use the BMC's Redfish endpoint"},
		"bad address":        {ep: func(ep bmc.Endpoint) bmc.Endpoint { ep.Address = "ftp://x"; return ep }, class: bmc.ClassProtocol, want: "want host[:port]"},
		"nothing listening":  {ep: func(ep bmc.Endpoint) bmc.Endpoint { ep.Address = "https://127.0.0.1:1"; return ep }, class: bmc.ClassUnreachable, want: "connection refused"},
		"slow BMC, deadline": {faults: redfishsim.Faults{Latency: time.Hour}, class: bmc.ClassUnreachable, want: "deadline exceeded"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := startFleet(t, redfishsim.Config{}, redfishsim.SampleNode(21)).BMCs()[0]
			sim.SetFaults(tc.faults)
			ep := endpointOf(sim)
			if tc.ep != nil {
				ep = tc.ep(ep)
			}
			c := New(Config{Timeout: 400 * time.Millisecond, MaxBody: 64 << 10, Logger: testLogger(t)})
			start := time.Now()
			_, err := c.Inventory(context.Background(), ep)
			if got := bmc.FailureClass(err); got != tc.class || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Inventory = %v (class %q), want class %s mentioning %q", err, got, tc.class, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Inventory took %s past a 400ms deadline", d)
			}
			if strings.Contains(err.Error(), "password") && !strings.Contains(err.Error(), "check") {
				t.Errorf("error may leak the password: %v", err)
			}
		})
	}
}

// A BMC with Dell's rollback entries, expanded members, paged collections,
// numeric versions and a hostile name.
func TestInventoryQuirks(t *testing.T) {
	t.Parallel()
	docs := map[string]string{
		"/redfish/v1/":              `{"UpdateService":{"@odata.id":"/redfish/v1/UpdateService"}}`,
		"/redfish/v1/UpdateService": `{"FirmwareInventory":{"@odata.id":"/redfish/v1/UpdateService/FirmwareInventory"}}`,
		"/redfish/v1/UpdateService/FirmwareInventory": `{"Members":[
			{"@odata.id":"/redfish/v1/UpdateService/FirmwareInventory/Installed-1__iDRAC","Id":"Installed-1__iDRAC","Name":"Integrated Dell Remote Access Controller","Version":"7.00.00.00"},
			{"@odata.id":"/redfish/v1/UpdateService/FirmwareInventory/Previous-1__iDRAC","Id":"Previous-1__iDRAC","Name":"Integrated Dell Remote Access Controller","Version":"6.10.30.00"},
			{"@odata.id":"/redfish/v1/UpdateService/FirmwareInventory/CPLD"}],
			"Members@odata.nextLink":"/redfish/v1/UpdateService/FirmwareInventory?page=2"}`,
		"/redfish/v1/UpdateService/FirmwareInventory?page=2": `{"Members":[{"@odata.id":"/redfish/v1/UpdateService/FirmwareInventory/PSU"},{"@odata.id":"/redfish/v1/UpdateService/FirmwareInventory/Gone"}]}`,
		"/redfish/v1/UpdateService/FirmwareInventory/CPLD":   `{"Id":"CPLD","Name":"CPLD\u001b[31m","Version":1.07}`,
		"/redfish/v1/UpdateService/FirmwareInventory/PSU":    `{"Name":"PSU","Version":"00.1A","SoftwareId":"psu","@odata.id":"/redfish/v1/UpdateService/FirmwareInventory/PSU"}`,
		"/redfish/v1/UpdateService/FirmwareInventory/Gone":   `{"Id":"Gone","Version":"1","Status":{"State":"Absent"}}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		doc, ok := docs[r.URL.RequestURI()]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(doc))
	}))
	t.Cleanup(srv.Close)
	got, err := Inventory(context.Background(), bmc.Endpoint{Address: srv.URL, Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	want := []inventory.FirmwareComponent{
		{ID: "Installed-1__iDRAC", Name: "Integrated Dell Remote Access Controller", Version: "7.00.00.00"},
		{ID: "CPLD", Name: "CPLD[31m", Version: "1.07"},
		{ID: "PSU", Name: "PSU", Version: "00.1A"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Inventory mismatch (-want +got):\n%s", diff)
	}
}

func TestInventoryRefusesOtherHosts(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"UpdateService":{"@odata.id":"http://169.254.169.254/latest/meta-data"}}`))
	}))
	t.Cleanup(srv.Close)
	_, err := Inventory(context.Background(), bmc.Endpoint{Address: srv.URL})
	if !errors.Is(err, bmc.ErrProtocol) || !strings.Contains(err.Error(), "points at another host") {
		t.Errorf("Inventory = %v, want a protocol error", err)
	}
}

// A BMC that answers a GET with an empty 200 is named for what it did, not
// reported as a bare "EOF".
func TestInventoryEmptyReply(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ep := bmc.Endpoint{Address: srv.URL, Username: "admin", Password: "pw"}
	_, err := New(Config{Timeout: time.Minute, Logger: testLogger(t)}).Inventory(context.Background(), ep)
	if err == nil || !strings.Contains(err.Error(), "GET /redfish/v1/: an empty HTTP 200 reply where a JSON resource was expected") {
		t.Errorf("Inventory of an empty reply = %v", err)
	}
}
