package redfishsim

// The UpdateService and TaskService: firmware updates run as tasks that
// change the reported version when they complete.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
)

type task struct {
	id                string
	target, version   string // firmware component id and the version it installs
	image             string
	started, finishes time.Time
	applied           bool
}

// advanceTasksLocked completes the update tasks whose time has come and
// applies their firmware versions.
func (b *BMC) advanceTasksLocked() {
	now := b.opts.Clock()
	for _, t := range b.tasks {
		if t.applied || now.Before(t.finishes) {
			continue
		}
		t.applied = true
		for i := range b.firmware {
			if b.firmware[i].ID == t.target {
				b.firmware[i].Version = t.version
			}
		}
		b.logLocked("OK", fmt.Sprintf("Firmware %s updated to %s", t.target, t.version))
	}
}

func (b *BMC) updateService(q request) reply {
	switch {
	case q.is(1):
		return q.readOnly(b.updateServiceResource())
	case q.segs[1] == "FirmwareInventory":
		b.advanceTasksLocked()
		ids := make([]string, len(b.firmware))
		for i, c := range b.firmware {
			ids[i] = safeID(c.ID)
		}
		return b.items(q, 3, "SoftwareInventoryCollection", "Firmware Inventory Collection", ids, b.softwareResource)
	case q.is(3) && q.segs[1] == "Actions" && q.segs[2] == "UpdateService.SimpleUpdate":
		return q.post(func() reply { return b.simpleUpdate(q.body) })
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
	if len(req.Targets) != 1 {
		return redfishError(http.StatusBadRequest, "ActionParameterMissing", "The action SimpleUpdate requires exactly one entry in Targets.")
	}
	target := req.Targets[0][strings.LastIndex(req.Targets[0], "/")+1:]
	if !slices.ContainsFunc(b.firmware, func(c inventory.FirmwareComponent) bool { return safeID(c.ID) == target }) {
		return redfishError(http.StatusBadRequest, "ActionParameterValueNotInList", "The target "+req.Targets[0]+" is not in the firmware inventory.")
	}
	for i := range b.firmware {
		if safeID(b.firmware[i].ID) == target {
			target = b.firmware[i].ID
		}
	}
	name := u.Path[strings.LastIndex(u.Path, "/")+1:]
	if ext := strings.LastIndex(name, "."); ext >= 0 && !strings.ContainsAny(name[ext+1:], "0123456789") {
		name = name[:ext]
	}
	version := name[strings.LastIndex(name, "-")+1:]
	now := b.opts.Clock()
	t := &task{id: strconv.Itoa(len(b.tasks) + 1), target: target, version: version, image: req.ImageURI, started: now, finishes: now.Add(b.opts.UpdateDuration)}
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
	doc := obj{
		"@odata.id":       path,
		"@odata.type":     "#Task.v1_7_0.Task",
		"Id":              t.id,
		"Name":            "Firmware update of " + t.target,
		"TaskState":       "Running",
		"TaskStatus":      "OK",
		"PercentComplete": 0,
		"StartTime":       t.started.UTC().Format(time.RFC3339),
		"Payload":         obj{"TargetUri": root + "/UpdateService/Actions/UpdateService.SimpleUpdate", "HttpOperation": "POST"},
		"Messages":        []obj{},
	}
	if t.applied {
		doc["TaskState"] = "Completed"
		doc["PercentComplete"] = 100
		doc["EndTime"] = t.finishes.UTC().Format(time.RFC3339)
		doc["Messages"] = []obj{{"MessageId": "Update.1.0.UpdateSuccessful", "Message": "Installed " + t.target + " version " + t.version + "."}}
	}
	return doc
}
