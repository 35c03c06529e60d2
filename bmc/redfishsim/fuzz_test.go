package redfishsim

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzHandler sends arbitrary requests to a BMC: routing and request
// parsing must answer every one without panicking, and never with a 5xx
// (no fault is set).
func FuzzHandler(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"GET", "/redfish/v1/Systems/1/Processors/GPU1", ""},
		{"PATCH", "/redfish/v1/Systems/1", `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once","BootOrder":["a"]}}`},
		{"POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", `{"ResetType":"PowerCycle"}`},
		{"POST", "/redfish/v1/Managers/1/VirtualMedia/CD1/Actions/VirtualMedia.InsertMedia", `{"Image":"http://x/y.iso"}`},
		{"POST", "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate", `{"ImageURI":"http://x/bmc-1.2.bin","Targets":["/redfish/v1/UpdateService/FirmwareInventory/BMC"]}`},
		{"POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"admin","Password":"password"}`},
		{"DELETE", "/redfish/v1/SessionService/Sessions/1", ""},
		{"GET", "/redfish/v1/Chassis/1/PCIeDevices/GPU2/PCIeFunctions/1", ""},
		{"GET", "/redfish/v1/Managers/1/LogServices/SEL/Entries/1", ""},
		{"POST", "/redfish/v1/Chassis/1/LogServices/SEL/Actions/LogService.ClearLog", "{}"},
		{"GET", "/redfish/v1/Systems/1/Storage/1/Drives", ""},
		{"PUT", "/redfish/v1/%2e%2e/x", "\x00"},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	b, err := New(SampleNode(1), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		u, err := url.Parse("http://bmc" + path)
		if err != nil || !validMethod(method) {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "http://bmc/", bytes.NewReader(body))
		req.Method, req.URL = method, u
		req.SetBasicAuth("admin", "password")
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("%s %s %q = %d %s", method, path, body, rec.Code, rec.Body)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
