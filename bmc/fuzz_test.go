package bmc

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

func FuzzParseServiceRoot(f *testing.F) {
	f.Add([]byte(`{"@odata.type":"#ServiceRoot.v1_15_0.ServiceRoot","RedfishVersion":"1.15.0","UUID":"92384634-2938-2342-8820-489239905423","Vendor":"Dell","Product":"PowerEdge R760"}`))
	f.Add([]byte(`{"RedfishVersion":"1.0.2","Oem":{"Hpe":{},"Hp":{}}}`))
	f.Add([]byte(`<html>not redfish</html>`))
	f.Add([]byte(`{"RedfishVersion":7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		root, err := ParseServiceRoot(data)
		if err == nil && root.RedfishVersion == "" && !bytes.Contains(data, []byte("#ServiceRoot.")) {
			t.Errorf("accepted a document that is no service root: %q", data)
		}
	})
}

func FuzzParseAuthCapsReply(f *testing.F) {
	good := []byte{0x06, 0x00, 0xff, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
		0x81, 0x1c, 0x63, 0x20, 0x00, 0x38, 0x00, 0x01, 0x95, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0}
	good[len(good)-1] = checksum(good[17 : len(good)-1])
	f.Add(good)
	f.Add(authCapsRequest)
	f.Add([]byte{0x06, 0x00, 0xff, 0x07, 0x02})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseAuthCapsReply(data)
	})
}

// fakeBMC answers GETs from a map of path to document, in memory.
type fakeBMC map[string]json.RawMessage

func (m fakeBMC) RoundTrip(req *http.Request) (*http.Response, error) {
	doc, ok := m[req.URL.Path]
	code := http.StatusOK
	if !ok {
		code, doc = http.StatusNotFound, json.RawMessage(`{"error":{"message":"not found"}}`)
	}
	return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(doc)), Request: req}, nil
}

// FuzzReadInventory walks arbitrary Redfish trees: a JSON object mapping
// paths to documents. The walk must end, without panicking, on any tree.
func FuzzReadInventory(f *testing.F) {
	f.Add([]byte(`{
"/redfish/v1/": {"RedfishVersion":"1.15.0","Systems":{"@odata.id":"/redfish/v1/Systems"},"UpdateService":{"@odata.id":"/u"}},
"/redfish/v1/Systems": {"Members":[{"@odata.id":"/s"}]},
"/s": {"SerialNumber":"S1","UUID":"X","MemorySummary":{"TotalSystemMemoryGiB":"96"},"Processors":{"@odata.id":"/p"},"Memory":{"@odata.id":"/m"},
  "EthernetInterfaces":{"@odata.id":"/e"},"Storage":{"@odata.id":"/st"},"Links":{"Chassis":[{"@odata.id":"/c"}],"ManagedBy":[{"@odata.id":"/mg"}]}},
"/p": {"Members":[{"@odata.id":"/p/1"},{"@odata.id":"/p/2"}]},
"/p/1": {"ProcessorType":"CPU","TotalCores":56,"MaxSpeedMHz":null},
"/p/2": {"ProcessorType":"GPU","Manufacturer":"NVIDIA","UUID":"38947555-7742-3448-3784-823347823834","ProcessorMemory":[{"CapacityMiB":81920}]},
"/m": {"Members":[{"@odata.id":"/m/1"}],"Members@odata.nextLink":"/m"},
"/m/1": {"CapacityMiB":"65536","Status":{"State":"Enabled"}},
"/e": {"Members":[{"@odata.id":"/e/1"}]},
"/e/1": {"MACAddress":"AA:BB:CC:DD:EE:FF","LinkStatus":"LinkUp","SpeedMbps":25000},
"/st": {"Members":[{"@odata.id":"/st/1"}]},
"/st/1": {"Drives":[{"@odata.id":"/d/1"},{"@odata.id":"/d/missing"}]},
"/d/1": {"Protocol":"NVMe","CapacityBytes":3840755982336},
"/c": {"SerialNumber":"S1"},
"/mg": {"FirmwareVersion":"1.0","EthernetInterfaces":{"@odata.id":"/e"}},
"/u": {"FirmwareInventory":{"@odata.id":"/fw"}},
"/fw": {"Members":[{"@odata.id":"/fw/1"}]},
"/fw/1": {"Id":"BMC","Version":"1.0"}
}`))
	f.Add([]byte(`{"/redfish/v1/": {"RedfishVersion":"1.0.0"}}`))
	f.Add([]byte(`{"/redfish/v1/": {"Systems":{"@odata.id":"/redfish/v1/Systems"}}, "/redfish/v1/Systems": {"Members":[{"@odata.id":"/redfish/v1/"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var tree map[string]json.RawMessage
		if json.Unmarshal(data, &tree) != nil {
			return
		}
		r := &rfReader{base: "http://bmc.invalid", hc: &http.Client{Transport: fakeBMC(tree)}}
		_, _ = r.readInventory(context.Background(), "bmc.invalid")
	})
}
