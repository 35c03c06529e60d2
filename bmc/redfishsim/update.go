package redfishsim

// The UpdateService and TaskService: firmware updates run as tasks that
// change the reported version when they complete, through SimpleUpdate (the
// BMC is told where to fetch the image) or a multipart HTTP push (the image
// is the request body), with injectable faults (SetUpdateFault).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// UpdateFault is how a BMC's firmware updates misbehave. The zero value
// updates faithfully. A task takes the fault in force when it starts.
type UpdateFault struct {
	// TaskFails: tasks end in Exception (TaskStatus Critical) with
	// FailMessage (a default when empty); nothing is installed.
	TaskFails   bool
	FailMessage string
	// TaskHangs: tasks never finish; they report Running and creep
	// towards 99%.
	TaskHangs bool
	// Unchanged: tasks report Completed/OK, but the component keeps its
	// old version (a BMC that "succeeds" without installing).
	Unchanged bool
	// RebootDowntime: when a task completes the BMC reboots into the new
	// firmware and refuses connections for this long (it comes back late).
	RebootDowntime time.Duration
	// Multipart advertises UpdateService.MultipartHttpPushUri and accepts
	// pushed images there. PushStatus, when set, makes the push endpoint
	// answer that HTTP status with a Redfish error instead.
	Multipart  bool
	PushStatus int
}

// Update is one firmware update a BMC accepted: what a test counts to
// prove nothing was flashed twice.
type Update struct {
	Target  string    // the component id
	Version string    // the version the image installs
	Via     string    // "SimpleUpdate" or "MultipartHttpPush"
	Image   string    // SimpleUpdate: the ImageURI; push: the file name
	SHA256  string    // push: the sha256 of the bytes received
	Size    int       // push: how many bytes were received
	At      time.Time // when the BMC accepted it
	Task    string    // the task's URI
}

// updateFaults holds each BMC's update faults. The BMC's own fields are
// bmc.go's; keyed by BMC, so BMCs (and tests) never share state.
var updateFaults sync.Map // *BMC → UpdateFault

// SetUpdateFault replaces the BMC's firmware update faults; tasks already
// started keep theirs.
func (b *BMC) SetUpdateFault(f UpdateFault) { updateFaults.Store(b, f) }

// UpdateFault returns the BMC's firmware update faults.
func (b *BMC) UpdateFault() UpdateFault {
	if f, ok := updateFaults.Load(b); ok {
		return f.(UpdateFault)
	}
	return UpdateFault{}
}

// Updates lists the firmware updates the BMC accepted, oldest first.
func (b *BMC) Updates() []Update {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Update, len(b.tasks))
	for i, t := range b.tasks {
		out[i] = Update{Target: t.target, Version: t.version, Via: t.via, Image: t.image, SHA256: t.sha256, Size: t.size,
			At: t.started, Task: root + "/TaskService/Tasks/" + t.id}
	}
	return out
}

type task struct {
	id                string
	target, version   string // firmware component id and the version it installs
	image, via        string
	sha256            string
	size              int
	started, finishes time.Time
	applied           bool
	fault             UpdateFault
}

// pushURI is where the BMC takes multipart pushes.
const pushURI = root + "/UpdateService/upload"

// advanceTasksLocked completes the update tasks whose time has come and
// applies their firmware versions.
func (b *BMC) advanceTasksLocked() {
	now := b.opts.Clock()
	for _, t := range b.tasks {
		if t.applied || t.fault.TaskHangs || now.Before(t.finishes) {
			continue
		}
		t.applied = true
		switch {
		case t.fault.TaskFails:
			b.logLocked("Critical", fmt.Sprintf("Firmware update of %s failed", t.target))
			continue
		case t.fault.Unchanged:
			b.logLocked("OK", fmt.Sprintf("Firmware update of %s reported success", t.target))
		default:
			for i := range b.firmware {
				if b.firmware[i].ID == t.target {
					b.firmware[i].Version = t.version
				}
			}
			b.logLocked("OK", fmt.Sprintf("Firmware %s updated to %s", t.target, t.version))
		}
		if d := t.fault.RebootDowntime; d > 0 {
			b.logLocked("Warning", "BMC reboots into its new firmware")
			b.sessions = nil
			if until := t.finishes.Add(d); until.After(b.downUntil) {
				b.downUntil = until
			}
		}
	}
}

func (b *BMC) updateService(q request) reply {
	switch {
	case q.is(1):
		doc := b.updateServiceResource()
		if b.UpdateFault().Multipart {
			doc["MultipartHttpPushUri"] = pushURI
		}
		return q.readOnly(doc)
	case q.segs[1] == "FirmwareInventory":
		b.advanceTasksLocked()
		ids := make([]string, len(b.firmware))
		for i, c := range b.firmware {
			ids[i] = safeID(c.ID)
		}
		return b.items(q, 3, "SoftwareInventoryCollection", "Firmware Inventory Collection", ids, b.softwareResource)
	case q.is(3) && q.segs[1] == "Actions" && q.segs[2] == "UpdateService.SimpleUpdate":
		return q.post(func() reply { return b.simpleUpdate(q.body) })
	case q.is(2) && q.segs[1] == "upload" && b.UpdateFault().Multipart:
		return q.post(func() reply { return b.multipartPush(q.r.Header.Get("Content-Type"), q.body) })
	}
	return notFound(q.path())
}

// simpleUpdate starts a task that "installs" an image: the target's new
// version is the image file name's last '-'-separated field, without a
// final extension that has no digits ("http://x/bmc-1.5.0.bin" installs
// version "1.5.0").
func (b *BMC) simpleUpdate(body []byte) reply {
	var req struct {
		ImageURI string
		Targets  []string
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return redfishError(http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
	}
	u, err := url.Parse(req.ImageURI)
	if req.ImageURI == "" || err != nil || u.Scheme == "" || u.Host == "" {
		return redfishError(http.StatusBadRequest, "ActionParameterValueFormatError", "The value "+req.ImageURI+" for the parameter ImageURI is not a URI.")
	}
	target, rep := b.target(req.Targets)
	if target == "" {
		return rep
	}
	return b.startTask(&task{target: target, version: versionOf(u.Path), image: req.ImageURI, via: "SimpleUpdate"})
}

// target resolves the one entry of Targets to a component id, or answers
// the error.
func (b *BMC) target(targets []string) (string, reply) {
	if len(targets) != 1 {
		return "", redfishError(http.StatusBadRequest, "ActionParameterMissing", "The update requires exactly one entry in Targets.")
	}
	id := targets[0][strings.LastIndex(targets[0], "/")+1:]
	for _, c := range b.firmware {
		if safeID(c.ID) == id {
			return c.ID, reply{}
		}
	}
	return "", redfishError(http.StatusBadRequest, "ActionParameterValueNotInList", "The target "+targets[0]+" is not in the firmware inventory.")
}

// versionOf is the version an image file installs: its name's last
// '-'-separated field without a final extension that has no digits.
func versionOf(path string) string {
	name := path[strings.LastIndex(path, "/")+1:]
	if ext := strings.LastIndex(name, "."); ext >= 0 && !strings.ContainsAny(name[ext+1:], "0123456789") {
		name = name[:ext]
	}
	return name[strings.LastIndex(name, "-")+1:]
}

// multipartPush takes a pushed image (Redfish UpdateService
// MultipartHttpPushUri): a multipart/form-data body with an
// UpdateParameters part (JSON, with Targets) and an UpdateFile part.
func (b *BMC) multipartPush(contentType string, body []byte) reply {
	f := b.UpdateFault()
	if f.PushStatus != 0 {
		return redfishError(f.PushStatus, "InternalError", "The pushed image could not be accepted (injected).")
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return redfishError(http.StatusUnsupportedMediaType, "UnsupportedMediaType", "A multipart push must be multipart/form-data.")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var (
		upd      struct{ Targets []string }
		gotParam bool
		file     []byte
		name     string
	)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return redfishError(http.StatusBadRequest, "MalformedRequest", "The multipart body is malformed: "+err.Error())
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return redfishError(http.StatusBadRequest, "MalformedRequest", "The multipart body is cut short.")
		}
		switch p.FormName() {
		case "UpdateParameters":
			if err := json.Unmarshal(data, &upd); err != nil {
				return redfishError(http.StatusBadRequest, "MalformedJSON", "UpdateParameters is not JSON.")
			}
			gotParam = true
		case "UpdateFile":
			file, name = data, p.FileName()
		}
	}
	if !gotParam || name == "" {
		return redfishError(http.StatusBadRequest, "ActionParameterMissing", "A multipart push needs an UpdateParameters part and an UpdateFile part with a file name.")
	}
	target, rep := b.target(upd.Targets)
	if target == "" {
		return rep
	}
	sum := sha256.Sum256(file)
	return b.startTask(&task{target: target, version: versionOf(name), image: name, via: "MultipartHttpPush",
		sha256: hex.EncodeToString(sum[:]), size: len(file)})
}

// startTask records an accepted update and answers 202 with its task.
func (b *BMC) startTask(t *task) reply {
	now := b.opts.Clock()
	t.id = strconv.Itoa(len(b.tasks) + 1)
	t.started, t.finishes, t.fault = now, now.Add(b.opts.UpdateDuration), b.UpdateFault()
	b.tasks = append(b.tasks, t)
	b.advanceTasksLocked()
	loc := root + "/TaskService/Tasks/" + t.id
	return reply{status: http.StatusAccepted, body: b.taskResource(loc, t), header: http.Header{"Location": {loc}}}
}

func (b *BMC) taskService(q request) reply {
	b.advanceTasksLocked()
	ids := make([]string, len(b.tasks))
	for i, t := range b.tasks {
		ids[i] = t.id
	}
	switch {
	case q.is(1):
		return q.readOnly(b.taskServiceResource())
	case q.segs[1] == "Tasks":
		return b.items(q, 3, "TaskCollection", "Task Collection", ids, func(path, id string) obj {
			return b.taskResource(path, b.tasks[slices.Index(ids, id)])
		})
	}
	return notFound(q.path())
}

func (b *BMC) taskResource(path string, t *task) obj {
	percent := 0
	if d := b.opts.UpdateDuration; d > 0 {
		percent = min(99, int(100*b.opts.Clock().Sub(t.started)/d))
	} else if t.fault.TaskHangs {
		percent = 42
	}
	doc := obj{
		"@odata.id":       path,
		"@odata.type":     "#Task.v1_7_0.Task",
		"Id":              t.id,
		"Name":            "Firmware update of " + t.target,
		"TaskState":       "Running",
		"TaskStatus":      "OK",
		"PercentComplete": percent,
		"StartTime":       t.started.UTC().Format(time.RFC3339),
		"Payload":         obj{"TargetUri": root + "/UpdateService/Actions/UpdateService.SimpleUpdate", "HttpOperation": "POST"},
		"Messages":        []obj{},
	}
	if t.via == "MultipartHttpPush" {
		doc["Payload"] = obj{"TargetUri": pushURI, "HttpOperation": "POST"}
	}
	if !t.applied {
		return doc
	}
	doc["EndTime"] = t.finishes.UTC().Format(time.RFC3339)
	if t.fault.TaskFails {
		msg := first(t.fault.FailMessage, "The image failed verification on the BMC.")
		doc["TaskState"], doc["TaskStatus"] = "Exception", "Critical"
		doc["Messages"] = []obj{{"MessageId": "Update.1.0.ApplyFailed", "Message": msg, "Severity": "Critical"}}
		return doc
	}
	doc["TaskState"] = "Completed"
	doc["PercentComplete"] = 100
	doc["Messages"] = []obj{{"MessageId": "Update.1.0.UpdateSuccessful", "Message": "Installed " + t.target + " version " + t.version + "."}}
	return doc
}
