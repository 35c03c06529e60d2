package redfishsim

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzMultipartPush sends arbitrary bodies to the multipart push endpoint:
// every one is answered without a panic and never with a 5xx.
func FuzzMultipartPush(f *testing.F) {
	good := "--B\r\nContent-Disposition: form-data; name=\"UpdateParameters\"\r\nContent-Type: application/json\r\n\r\n" +
		`{"Targets":["/redfish/v1/UpdateService/FirmwareInventory/BMC"]}` +
		"\r\n--B\r\nContent-Disposition: form-data; name=\"UpdateFile\"; filename=\"bmc-1.5.0.bin\"\r\n\r\nbytes\r\n--B--\r\n"
	for _, s := range []struct{ ct, body string }{
		{"multipart/form-data; boundary=B", good},
		{"multipart/form-data; boundary=B", good[:len(good)/2]},
		{"multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"UpdateParameters\"\r\n\r\n{\"Targets\":[]}\r\n--B--\r\n"},
		{"multipart/form-data", good},
		{"application/json", `{"Targets":["x"]}`},
		{"multipart/form-data; boundary=\"\"", "--\r\n"},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	b, err := New(SampleNode(1), Options{})
	if err != nil {
		f.Fatal(err)
	}
	b.SetUpdateFault(UpdateFault{Multipart: true})
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "http://bmc"+pushURI, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.SetBasicAuth("admin", "password")
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("push %q %q = %d %s", ct, body, rec.Code, rec.Body)
		}
	})
}

// The push endpoint exists only where the BMC advertises it, and a good
// push starts a task that installs the file's version.
func TestMultipartPush(t *testing.T) {
	t.Parallel()
	b, err := New(SampleNode(2), Options{})
	if err != nil {
		t.Fatal(err)
	}
	body := "--B\r\nContent-Disposition: form-data; name=\"UpdateParameters\"\r\nContent-Type: application/json\r\n\r\n" +
		`{"Targets":["/redfish/v1/UpdateService/FirmwareInventory/BIOS"]}` +
		"\r\n--B\r\nContent-Disposition: form-data; name=\"UpdateFile\"; filename=\"bios-2.2.0.bin\"\r\n\r\nbios bytes\r\n--B--\r\n"
	push := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "http://bmc"+pushURI, bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=B")
		req.SetBasicAuth("admin", "password")
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, req)
		return rec
	}
	if rec := push(); rec.Code != http.StatusNotFound {
		t.Errorf("push without Multipart = %d, want 404", rec.Code)
	}
	b.SetUpdateFault(UpdateFault{Multipart: true})
	if rec := push(); rec.Code != http.StatusAccepted || rec.Header().Get("Location") != "/redfish/v1/TaskService/Tasks/1" {
		t.Fatalf("push = %d %s", rec.Code, rec.Body)
	}
	ups := b.Updates()
	if len(ups) != 1 || ups[0].Via != "MultipartHttpPush" || ups[0].Version != "2.2.0" || ups[0].Size != len("bios bytes") {
		t.Errorf("Updates = %+v", ups)
	}
	for _, c := range b.Firmware() {
		if c.ID == "BIOS" && c.Version != "2.2.0" {
			t.Errorf("BIOS = %s after the push, want 2.2.0", c.Version)
		}
	}
}
