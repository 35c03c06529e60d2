package firmware

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/rackstrap/rackstrap/bmc"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

// Redfish documents, as far as this package reads them, and their parsers:
// the one entry point for bytes a BMC sent. Strings are cleaned (control
// characters dropped, length capped) so that a hostile BMC cannot write
// terminal escapes into a table.

type odataLink struct {
	ID string `json:"@odata.id"`
}

type rfRoot struct {
	UpdateService string
	TaskService   string
	Managers      string
	Systems       string
}

func parseRoot(data []byte) (rfRoot, error) {
	var doc struct {
		UpdateService odataLink
		Tasks         odataLink
		Managers      odataLink
		Systems       odataLink
	}
	if err := decode(data, &doc); err != nil {
		return rfRoot{}, err
	}
	return rfRoot{UpdateService: doc.UpdateService.ID, TaskService: doc.Tasks.ID, Managers: doc.Managers.ID, Systems: doc.Systems.ID}, nil
}

type rfUpdateService struct {
	FirmwareInventory string
	SimpleUpdate      string // the action target
	// MultipartPush is the MultipartHttpPushUri: where the BMC takes an
	// image as a multipart/form-data body.
	MultipartPush string
}

func parseUpdateService(data []byte) (rfUpdateService, error) {
	var doc struct {
		FirmwareInventory    odataLink
		MultipartHTTPPushURI string `json:"MultipartHttpPushUri"`
		Actions              struct {
			SimpleUpdate struct {
				Target string `json:"target"`
			} `json:"#UpdateService.SimpleUpdate"`
		}
	}
	if err := decode(data, &doc); err != nil {
		return rfUpdateService{}, err
	}
	return rfUpdateService{FirmwareInventory: doc.FirmwareInventory.ID, SimpleUpdate: doc.Actions.SimpleUpdate.Target,
		MultipartPush: doc.MultipartHTTPPushURI}, nil
}

type rfCollection struct {
	Members  []member
	NextLink string
}

func parseCollection(data []byte) (rfCollection, error) {
	var doc struct {
		Members  []json.RawMessage
		NextLink string `json:"Members@odata.nextLink"`
	}
	if err := decode(data, &doc); err != nil {
		return rfCollection{}, err
	}
	out := rfCollection{NextLink: doc.NextLink}
	for _, raw := range doc.Members {
		var m rfSoftware
		if err := decode(raw, &m); err != nil {
			return rfCollection{}, fmt.Errorf("member: %w", err)
		}
		if m.Link == "" {
			continue
		}
		mem := member{link: m.Link}
		if m.Version != "" { // an expanded member ($expand) needs no second read
			mem.inline = &m
		}
		out.Members = append(out.Members, mem)
	}
	return out, nil
}

// rfSoftware is a SoftwareInventory resource.
type rfSoftware struct {
	Link       string     `json:"@odata.id"`
	ID         flexString `json:"Id"`
	Name       flexString
	Version    flexString
	SoftwareID flexString `json:"SoftwareId"`
	Updateable *bool
	Status     struct{ State string }
}

func parseSoftware(data []byte) (rfSoftware, error) {
	var sw rfSoftware
	if err := decode(data, &sw); err != nil {
		return sw, err
	}
	return sw, nil
}

func (sw rfSoftware) component() inventory.FirmwareComponent {
	id := clean(string(sw.ID))
	if id == "" {
		id = clean(sw.Link[strings.LastIndex(sw.Link, "/")+1:])
	}
	if id == "" {
		id = clean(string(sw.SoftwareID))
	}
	return inventory.FirmwareComponent{ID: id, Name: clean(string(sw.Name)), Version: clean(string(sw.Version))}
}

// rfTask is a Redfish Task.
type rfTask struct {
	Link            string `json:"@odata.id"`
	ID              flexString
	Name            flexString
	TaskState       string
	TaskStatus      string
	PercentComplete bmc.FlexNum
	Messages        []struct {
		MessageID string `json:"MessageId"`
		Message   flexString
	}
	Payload struct {
		TargetURI string `json:"TargetUri"`
	}
}

func parseTask(data []byte) (rfTask, error) {
	var t rfTask
	if err := decode(data, &t); err != nil {
		return t, err
	}
	if t.TaskState == "" {
		return t, errors.New("not a task: no TaskState")
	}
	return t, nil
}

// Task states (Redfish Task.TaskState).
func (t rfTask) finished() bool {
	switch t.TaskState {
	case "Completed", "Killed", "Exception", "Cancelled", "Interrupted":
		return true
	}
	return false
}

func (t rfTask) succeeded() bool {
	return t.TaskState == "Completed" && t.TaskStatus != "Critical"
}

// message joins the task's messages: what the BMC says happened.
func (t rfTask) message() string {
	var parts []string
	for _, m := range t.Messages {
		s := clean(string(m.Message))
		if s == "" {
			s = clean(m.MessageID)
		}
		if s != "" {
			parts = append(parts, s)
		}
		if len(parts) == 5 {
			break
		}
	}
	return strings.Join(parts, "; ")
}

// looksLikeUpdate says whether a task is a firmware update (as far as a
// vendor-neutral reading can tell).
func (t rfTask) looksLikeUpdate() bool {
	if strings.Contains(t.Payload.TargetURI, "UpdateService") {
		return true
	}
	n := strings.ToLower(string(t.Name))
	return strings.Contains(n, "firmware") || strings.Contains(n, "update")
}

// redfishMessage is the message of a Redfish error body, or "".
func redfishMessage(data []byte) string {
	var doc struct {
		Error struct {
			Message string `json:"message"`
			Info    []struct {
				Message string
			} `json:"@Message.ExtendedInfo"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &doc) != nil {
		return ""
	}
	var parts []string
	if m := clean(doc.Error.Message); m != "" {
		parts = append(parts, m)
	}
	for i, in := range doc.Error.Info {
		if m := clean(in.Message); m != "" && i < 3 && !strings.Contains(doc.Error.Message, m) {
			parts = append(parts, m)
		}
	}
	return strings.Join(parts, " ")
}

// decode is json.Unmarshal that accepts no trailing data.
func decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

// clean drops control and format characters and caps a string at 256 bytes.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 256 {
		s = strings.ToValidUTF8(s[:256], "")
	}
	return s
}

// flexString decodes a JSON string, number or null (BMCs send versions as
// numbers now and then).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a string or number, got %.20s", b)
		}
		*f = flexString(n.String())
	}
	return nil
}

func parseTaskService(data []byte) (string, error) {
	var doc struct{ Tasks odataLink }
	if err := decode(data, &doc); err != nil {
		return "", err
	}
	return doc.Tasks.ID, nil
}

// rfResettable is a Manager or ComputerSystem, as far as a reset needs it.
type rfResettable struct {
	PowerState string
	Target     string // the reset action's target
}

func parseResettable(data []byte) (rfResettable, error) {
	var doc struct {
		PowerState string
		Actions    struct {
			Manager struct {
				Target string `json:"target"`
			} `json:"#Manager.Reset"`
			System struct {
				Target string `json:"target"`
			} `json:"#ComputerSystem.Reset"`
		}
	}
	if err := decode(data, &doc); err != nil {
		return rfResettable{}, err
	}
	t := doc.Actions.Manager.Target
	if t == "" {
		t = doc.Actions.System.Target
	}
	return rfResettable{PowerState: doc.PowerState, Target: t}, nil
}
