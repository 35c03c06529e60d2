package firmware

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzRedfishDocuments feeds BMC replies to every parser of this package:
// none may panic, and what reaches a table is clean.
func FuzzRedfishDocuments(f *testing.F) {
	for _, seed := range []string{
		`{"UpdateService":{"@odata.id":"/redfish/v1/UpdateService"},"Tasks":{"@odata.id":"/redfish/v1/TaskService"}}`,
		`{"FirmwareInventory":{"@odata.id":"/x"},"Actions":{"#UpdateService.SimpleUpdate":{"target":"/y"}}}`,
		`{"FirmwareInventory":{"@odata.id":"/x"},"MultipartHttpPushUri":"/redfish/v1/UpdateService/upload","HttpPushUri":7}`,
		`{"Members":[{"@odata.id":"/a"},{"@odata.id":"/b","Id":"b","Version":"1"}],"Members@odata.nextLink":"/c"}`,
		`{"@odata.id":"/redfish/v1/UpdateService/FirmwareInventory/BMC","Id":"BMC","Name":"BMC\u001b[2J","Version":1.5,"Updateable":false,"Status":{"State":"Enabled"}}`,
		`{"Id":"1","TaskState":"Exception","TaskStatus":"Critical","PercentComplete":"40","Messages":[{"MessageId":"x","Message":"boom"}],"Payload":{"TargetUri":"/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate"}}`,
		`{"error":{"message":"bad","@Message.ExtendedInfo":[{"Message":"worse"}]}}`,
		`{"PowerState":"On","Actions":{"#ComputerSystem.Reset":{"target":"/r"}}}`,
		`{"Version":null,"Name":["x"]}`,
		`{} {}`,
		`[`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseRoot(data)
		_, _ = parseUpdateService(data)
		_, _ = parseTaskService(data)
		_, _ = parseResettable(data)
		if c, err := parseCollection(data); err == nil {
			for _, m := range c.Members {
				if m.link == "" {
					t.Fatal("member without a link")
				}
				if m.inline != nil {
					checkClean(t, m.inline.component().ID)
				}
			}
		}
		if sw, err := parseSoftware(data); err == nil {
			c := sw.component()
			for _, s := range []string{c.ID, c.Name, c.Version} {
				checkClean(t, s)
			}
		}
		if task, err := parseTask(data); err == nil {
			_ = task.finished()
			_ = task.succeeded()
			_ = task.looksLikeUpdate()
			checkClean(t, task.message())
		}
		checkClean(t, redfishMessage(data))
	})
}

func checkClean(t *testing.T, s string) {
	t.Helper()
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) >= 0 {
		t.Fatalf("%q has control characters", s)
	}
	if !utf8.ValidString(s) {
		t.Fatalf("%q is not UTF-8", s)
	}
}
