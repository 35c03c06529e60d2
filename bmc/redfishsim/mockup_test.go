package redfishsim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeMockup writes a small mockup tree (path → document) into a
// directory, the layout of DMTF's Redfish-Mockup-Server.
func writeMockup(t testing.TB, docs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, doc := range docs {
		d := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, "/redfish/v1"), "/")))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "index.json"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var tinyMockup = map[string]string{
	"/redfish/v1":                                      `{"RedfishVersion":"1.15.0","UUID":"00000000-0000-0000-0000-000000000001","Systems":{"@odata.id":"/redfish/v1/Systems"},"Managers":{"@odata.id":"/redfish/v1/Managers"}}`,
	"/redfish/v1/Systems":                              `{"Members":[{"@odata.id":"/redfish/v1/Systems/S1"}]}`,
	"/redfish/v1/Systems/S1":                           `{"@odata.type":"#ComputerSystem.v1_20_0.ComputerSystem","Id":"S1","SerialNumber":"MOCK","PowerState":"On","Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideTarget":"Pxe"},"EthernetInterfaces":{"@odata.id":"/redfish/v1/Systems/S1/EthernetInterfaces"}}`,
	"/redfish/v1/Systems/S1/EthernetInterfaces":        `{"Members":[{"@odata.id":"/redfish/v1/Systems/S1/EthernetInterfaces/A"}]}`,
	"/redfish/v1/Systems/S1/EthernetInterfaces/A":      `{"MACAddress":"12:44:6A:3B:04:11","PermanentMACAddress":"12:44:6a:3b:04:11"}`,
	"/redfish/v1/Systems/S1/VirtualMedia/CD1":          `{"@odata.type":"#VirtualMedia.v1_6_0.VirtualMedia","MediaTypes":["CD","DVD"],"Image":"http://old/x.iso","Inserted":true}`,
	"/redfish/v1/Managers":                             `{"Members":[{"@odata.id":"/redfish/v1/Managers/BMC"}]}`,
	"/redfish/v1/Managers/BMC":                         `{"@odata.type":"#Manager.v1_19_0.Manager","LogServices":{"@odata.id":"/redfish/v1/Managers/BMC/LogServices"}}`,
	"/redfish/v1/Managers/BMC/LogServices/Log":         `{"@odata.type":"#LogService.v1_1_0.LogService"}`,
	"/redfish/v1/Managers/BMC/LogServices/Log/Entries": `{"Members":[{"@odata.id":"/redfish/v1/Managers/BMC/LogServices/Log/Entries/1"}]}`,
}

func mockupGetJSON(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.SetBasicAuth("admin", "password")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var doc map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &doc)
	return rec.Code, doc
}

// A mockup BMC overlays its node's identity and state on the mockup's
// documents and carries out the actions; bad mockups are refused.
func TestMockupBMC(t *testing.T) {
	t.Parallel()
	m, err := LoadMockup(writeMockup(t, tinyMockup))
	if err != nil {
		t.Fatal(err)
	}
	node := SampleNode(9)
	b, err := NewFromMockup(m, node, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b.PowerState() != PowerOn || b.BootOverride().Target != "Pxe" {
		t.Errorf("initial state %s %+v, want the mockup's", b.PowerState(), b.BootOverride())
	}
	_, sys := mockupGetJSON(t, b, "GET", "/redfish/v1/Systems/S1", "")
	if sys["SerialNumber"] != node.Hardware.System.Serial || sys["UUID"] != node.Hardware.System.UUID {
		t.Errorf("system = %v", sys)
	}
	_, nic := mockupGetJSON(t, b, "GET", "/redfish/v1/Systems/S1/EthernetInterfaces/A", "")
	if nic["MACAddress"] != node.Hardware.NICs[0].MAC || nic["PermanentMACAddress"] != node.Hardware.NICs[0].MAC {
		t.Errorf("host interface = %v", nic)
	}
	if code, _ := mockupGetJSON(t, b, "POST", "/redfish/v1/Systems/S1/Actions/ComputerSystem.Reset", `{"ResetType":"ForceOff"}`); code != 204 || b.PowerState() != PowerOff {
		t.Errorf("reset = %d, power %s", code, b.PowerState())
	}
	if code, _ := mockupGetJSON(t, b, "PATCH", "/redfish/v1/Systems/S1", `{"Boot":{"BootSourceOverrideTarget":"Hdd"}}`); code != 204 || b.BootOverride().Target != "Hdd" {
		t.Errorf("boot PATCH = %d, %+v", code, b.BootOverride())
	}
	if code, _ := mockupGetJSON(t, b, "POST", "/redfish/v1/Systems/S1/VirtualMedia/CD1/Actions/VirtualMedia.EjectMedia", `{}`); code != 204 || b.Media()[0].Inserted {
		t.Errorf("eject = %d, %+v", code, b.Media())
	}
	if code, _ := mockupGetJSON(t, b, "POST", "/redfish/v1/Managers/BMC/LogServices/Log/Actions/LogService.ClearLog", `{}`); code != 204 {
		t.Errorf("clear = %d", code)
	}
	if _, entries := mockupGetJSON(t, b, "GET", "/redfish/v1/Managers/BMC/LogServices/Log/Entries", ""); entries["Members@odata.count"] != float64(1) {
		t.Errorf("entries after clear = %v", entries)
	}
	if code, _ := mockupGetJSON(t, b, "GET", "/redfish/v1/Nope", ""); code != 404 {
		t.Errorf("GET of a path the mockup lacks = %d", code)
	}
	for name, docs := range map[string]map[string]string{
		"no root":       {"/redfish/v1/Systems": `{"Members":[]}`},
		"no system":     {"/redfish/v1": `{"RedfishVersion":"1.0.0"}`},
		"not an object": {"/redfish/v1": `[1,2]`},
	} {
		if _, err := LoadMockup(writeMockup(t, docs)); err == nil {
			t.Errorf("%s: LoadMockup accepted it", name)
		}
	}
}

// FuzzMockupDoc serves arbitrary documents as a mockup's system and
// service root: loading and rendering them never panics.
func FuzzMockupDoc(f *testing.F) {
	f.Add([]byte(tinyMockup["/redfish/v1/Systems/S1"]))
	f.Add([]byte(`{"Boot":7,"PowerState":["On"],"MACAddress":null,"Actions":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := parseMockupDoc(data)
		if err != nil {
			return
		}
		m := &Mockup{docs: map[string][]byte{}, system: "/redfish/v1/Systems/S1"}
		m.docs[root] = data
		m.docs[m.system] = data
		m.docs[m.system+"/EthernetInterfaces"] = data
		b, err := NewFromMockup(m, SampleNode(1), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{root, m.system} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", p, bytes.NewReader(nil))
			req.SetBasicAuth("admin", "password")
			b.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Errorf("GET %s = %d for %v", p, rec.Code, doc)
			}
		}
	})
}
