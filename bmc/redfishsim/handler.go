package redfishsim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	root        = "/redfish/v1"
	maxReqBody  = 64 << 10
	contentJSON = "application/json; charset=utf-8"
)

type obj = map[string]any

// reply is what a route answers.
type reply struct {
	status int
	body   any // JSON-encoded; nil for no body
	header http.Header
}

func ok(body any) reply { return reply{status: http.StatusOK, body: body} }

func noContent() reply { return reply{status: http.StatusNoContent} }

// redfishError answers status with a Redfish error body naming a Base
// registry message.
func redfishError(status int, messageID, message string) reply {
	return reply{status: status, body: obj{"error": obj{
		"code":    "Base.1.8.GeneralError",
		"message": message,
		"@Message.ExtendedInfo": []obj{{
			"@odata.type": "#Message.v1_1_1.Message",
			"MessageId":   "Base.1.8." + messageID,
			"Message":     message,
			"Severity":    "Warning",
			"Resolution":  "Correct the request and resubmit it.",
		}},
	}}}
}

func notFound(path string) reply {
	return redfishError(http.StatusNotFound, "ResourceNotFound", "The resource at "+path+" was not found.")
}

func methodNotAllowed(allow ...string) reply {
	r := redfishError(http.StatusMethodNotAllowed, "OperationNotAllowed", "The method is not allowed on this resource.")
	r.header = http.Header{"Allow": {strings.Join(allow, ", ")}}
	return r
}

// statusWriter remembers the status a reply was sent with, for the
// request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP answers one Redfish request.
func (b *BMC) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	w := &statusWriter{ResponseWriter: rw}
	defer func() { b.logRequest(r.Method, r.URL.Path, w.status) }()
	b.mu.Lock()
	f := b.faults
	down := b.opts.Clock().Before(b.downUntil)
	b.mu.Unlock()

	ctx := r.Context()
	if f.Refuse || down {
		// A kept-alive connection dies with the BMC: reset it. (HTTP/2 and
		// recorders cannot be hijacked; they get a 503.)
		if hj, ok := rw.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				reset(c)
				return
			}
		}
		writeReply(w, redfishError(http.StatusServiceUnavailable, "ServiceTemporarilyUnavailable", "The BMC is not available."))
		return
	}
	if f.Blackhole {
		<-ctx.Done()
		hangUp(rw)
		return
	}
	hit := f.Path == "" || strings.HasPrefix(r.URL.Path, f.Path)
	if hit && f.Latency > 0 && !sleep(ctx, f.Latency) {
		hangUp(rw)
		return
	}
	if hit && f.RedirectLoop {
		http.Redirect(w, r, r.URL.RequestURI(), http.StatusFound)
		return
	}
	if hit && f.Status != 0 {
		writeReply(w, redfishError(f.Status, "InternalError", "The request failed due to an internal service error (injected)."))
		return
	}
	if hit && f.HugeBody {
		w.Header().Set("Content-Type", contentJSON)
		w.WriteHeader(http.StatusOK)
		endless(ctx, w)
		return
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxReqBody+1))
	var rep reply
	var ev events
	switch {
	case err != nil:
		rep = redfishError(http.StatusBadRequest, "MalformedJSON", "The request body could not be read.")
	case len(body) > maxReqBody:
		rep = redfishError(http.StatusRequestEntityTooLarge, "RequestTooLarge", "The request body is too large.")
	default:
		b.mu.Lock()
		rep = b.route(r, body, &ev)
		b.mu.Unlock()
	}
	b.fire(ev)

	if !hit {
		f = Faults{}
	}
	if rep.body == nil {
		writeReply(w, rep)
		return
	}
	data, err := json.Marshal(rep.body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if f.MalformedJSON {
		data = append(data[:len(data)/2:len(data)/2], "\",,}"...)
	}
	for k, v := range rep.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", contentJSON)
	if f.WrongContentType {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	}
	w.Header().Set("OData-Version", "4.0")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(rep.status)
	if r.Method == http.MethodHead {
		return
	}
	if f.SlowBody > 0 {
		trickle(ctx, w, data, f.SlowBody)
		return
	}
	_, _ = w.Write(data)
}

func writeReply(w http.ResponseWriter, rep reply) {
	for k, v := range rep.header {
		w.Header()[k] = v
	}
	if rep.body == nil {
		w.WriteHeader(rep.status)
		return
	}
	data, _ := json.Marshal(rep.body)
	w.Header().Set("Content-Type", contentJSON)
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(rep.status)
	_, _ = w.Write(data)
}

// hangUp ends a request the BMC never answered: the connection is closed
// with no reply, as a BMC that hangs would leave it. Returning from the
// handler instead would send an empty 200, which a client whose request
// ended at that instant may read as the BMC's answer.
func hangUp(rw http.ResponseWriter) {
	if hj, ok := rw.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// endless writes a JSON array that never ends, until the client goes away
// (or 1 GiB, so that a client with no limit at all still ends the test).
func endless(ctx context.Context, w http.ResponseWriter) {
	chunk := bytes.Repeat([]byte(`{"Id":"x"},`), 6000)
	_, _ = w.Write([]byte(`{"Members":[`))
	for n := 0; n < 1<<30 && ctx.Err() == nil; n += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// trickle writes data one byte per interval (a slow-loris BMC).
func trickle(ctx context.Context, w http.ResponseWriter, data []byte, every time.Duration) {
	fl, _ := w.(http.Flusher)
	for i := range data {
		if _, err := w.Write(data[i : i+1]); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		if !sleep(ctx, every) {
			return
		}
	}
}

// route answers a request with the BMC's lock held.
func (b *BMC) route(r *http.Request, body []byte, ev *events) reply {
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch p {
	case "/redfish":
		return ok(obj{"v1": root + "/"})
	case root:
		if b.mock != nil {
			return b.mockupGet(root)
		}
		return b.serviceRoot()
	case root + "/odata":
		return ok(b.odata())
	case root + "/$metadata":
		return reply{status: http.StatusOK, body: nil}
	}
	rest, found := strings.CutPrefix(p, root+"/")
	if !found {
		return notFound(p)
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		if u, err := url.PathUnescape(s); err == nil {
			segs[i] = u
		}
	}
	login := len(segs) == 2 && segs[0] == "SessionService" && segs[1] == "Sessions" && r.Method == http.MethodPost
	if login {
		return b.login(r, body)
	}
	if !b.authenticatedLocked(r) {
		rep := redfishError(http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
		if !b.spec.sessionOnly { // a session-only BMC does not invite basic auth
			rep.header = http.Header{"Www-Authenticate": {`Basic realm="Redfish"`}}
		}
		return rep
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPatch, http.MethodDelete:
	default:
		return methodNotAllowed("GET", "HEAD", "POST", "PATCH", "DELETE")
	}
	req := request{r: r, body: body, segs: segs, ev: ev}
	if b.mock != nil && segs[0] != "SessionService" {
		return b.mockupRoute(req)
	}
	switch segs[0] {
	case "Systems":
		return b.systems(req)
	case "Managers":
		return b.managers(req)
	case "Chassis":
		return b.chassis(req)
	case "UpdateService":
		return b.updateService(req)
	case "TaskService":
		return b.taskService(req)
	case "SessionService":
		return b.sessionService(req)
	case "AccountService":
		return b.accountService(req)
	}
	return notFound(p)
}

// request is one routed request.
type request struct {
	r    *http.Request
	body []byte
	segs []string
	ev   *events
}

func (q request) is(n int) bool { return len(q.segs) == n }

func (q request) get() bool { return q.r.Method == http.MethodGet || q.r.Method == http.MethodHead }

func (q request) path() string { return root + "/" + strings.Join(q.segs, "/") }

// readOnly answers a GET resource, refusing other methods.
func (q request) readOnly(body obj) reply {
	if !q.get() {
		return methodNotAllowed("GET", "HEAD")
	}
	return ok(body)
}

// post answers an action target.
func (q request) post(fn func() reply) reply {
	if q.r.Method != http.MethodPost {
		return methodNotAllowed("POST")
	}
	return fn()
}

// badCredentialsLocked says whether the BadCredentials fault applies to a
// request for path.
func (b *BMC) badCredentialsLocked(path string) bool {
	return b.faults.BadCredentials && (b.faults.Path == "" || strings.HasPrefix(path, b.faults.Path))
}

func (b *BMC) authenticatedLocked(r *http.Request) bool {
	if b.badCredentialsLocked(r.URL.Path) {
		return false
	}
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		for _, s := range b.sessions {
			if subtle.ConstantTimeCompare([]byte(s.token), []byte(tok)) == 1 {
				return true
			}
		}
		return false
	}
	if b.spec.sessionOnly {
		return false // basic authentication is off on this BMC
	}
	user, pass, ok := r.BasicAuth()
	return ok && b.credentialsOK(user, pass)
}

func (b *BMC) credentialsOK(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(b.node.Username))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(b.node.Password))
	return u&p == 1
}

func (b *BMC) login(r *http.Request, body []byte) reply {
	var cred struct{ UserName, Password string }
	if err := json.Unmarshal(body, &cred); err != nil {
		return redfishError(http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
	}
	if !b.credentialsOK(cred.UserName, cred.Password) || b.badCredentialsLocked(r.URL.Path) {
		return redfishError(http.StatusUnauthorized, "InsufficientPrivilege", "Invalid username or password.")
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	b.sessSeq++
	s := &session{id: strconv.Itoa(b.sessSeq), token: hex.EncodeToString(tok), user: cred.UserName, created: b.opts.Clock().UTC()}
	b.sessions = append(b.sessions, s)
	if over := len(b.sessions) - b.opts.MaxSessions; over > 0 {
		b.sessions = slices.Delete(b.sessions, 0, over)
	}
	loc := root + "/SessionService/Sessions/" + s.id
	return reply{
		status: http.StatusCreated,
		body:   b.sessionResource(s),
		header: http.Header{"X-Auth-Token": {s.token}, "Location": {loc}},
	}
}

func (b *BMC) sessionService(q request) reply {
	switch {
	case q.is(1):
		return q.readOnly(b.sessionServiceResource())
	case q.is(2) && q.segs[1] == "Sessions":
		if !q.get() {
			return methodNotAllowed("GET", "POST")
		}
		ids := make([]string, len(b.sessions))
		for i, s := range b.sessions {
			ids[i] = s.id
		}
		return ok(collection(q.path(), "SessionCollection", "Session Collection", ids))
	case q.is(3) && q.segs[1] == "Sessions":
		i := slices.IndexFunc(b.sessions, func(s *session) bool { return s.id == q.segs[2] })
		if i < 0 {
			return notFound(q.path())
		}
		switch {
		case q.get():
			return ok(b.sessionResource(b.sessions[i]))
		case q.r.Method == http.MethodDelete:
			b.sessions = slices.Delete(b.sessions, i, i+1)
			return noContent()
		}
		return methodNotAllowed("GET", "DELETE")
	}
	return notFound(q.path())
}

func (b *BMC) accountService(q request) reply {
	switch {
	case q.is(1):
		return q.readOnly(b.accountServiceResource())
	case q.is(2) && q.segs[1] == "Accounts":
		return q.readOnly(collection(q.path(), "ManagerAccountCollection", "Accounts Collection", []string{"1"}))
	case q.is(3) && q.segs[1] == "Accounts" && q.segs[2] == "1":
		return q.readOnly(b.accountResource())
	}
	return notFound(q.path())
}

// checkETag enforces If-Match on the ComputerSystem.
func (b *BMC) checkETag(r *http.Request) (reply, bool) {
	m := r.Header.Get("If-Match")
	if m == "" || m == "*" || m == b.etag() {
		return reply{}, true
	}
	return redfishError(http.StatusPreconditionFailed, "PreconditionFailed", "The ETag supplied did not match the ETag required to change this resource."), false
}

func (b *BMC) etag() string { return `"` + strconv.FormatUint(b.gen, 10) + `"` }

func (b *BMC) systems(q request) reply {
	s := b.spec
	if q.is(1) {
		return q.readOnly(collection(q.path(), "ComputerSystemCollection", "Computer System Collection", []string{s.systemID}))
	}
	if q.segs[1] != s.systemID {
		return notFound(q.path())
	}
	if q.is(2) {
		switch {
		case q.get():
			rep := ok(b.systemResource())
			rep.header = http.Header{"Etag": {b.etag()}}
			return rep
		case q.r.Method == http.MethodPatch:
			if rep, ok := b.checkETag(q.r); !ok {
				return rep
			}
			return b.patchSystem(q.body)
		}
		return methodNotAllowed("GET", "PATCH")
	}
	sub := q.segs[2]
	switch {
	case sub == "Actions" && q.is(4) && q.segs[3] == "ComputerSystem.Reset":
		return q.post(func() reply {
			if rep, ok := b.checkETag(q.r); !ok {
				return rep
			}
			return b.resetSystem(q.body, q.ev)
		})
	case sub == "ResetActionInfo" && q.is(3):
		return q.readOnly(b.resetActionInfo(q.path()))
	case sub == "Processors":
		return b.items(q, 4, "ProcessorCollection", "Processors Collection", b.processorIDs(), b.processorResource)
	case sub == "Memory":
		return b.items(q, 4, "MemoryCollection", "Memory Module Collection", b.dimmIDs(), b.memoryResource)
	case sub == "EthernetInterfaces":
		return b.items(q, 4, "EthernetInterfaceCollection", "Ethernet Interface Collection", b.nicIDs(), b.hostNICResource)
	case sub == "Storage":
		switch {
		case q.is(3):
			return q.readOnly(collection(q.path(), "StorageCollection", "Storage Collection", []string{"1"}))
		case q.segs[3] != "1":
			return notFound(q.path())
		case q.is(4):
			return q.readOnly(b.storageResource(q.path()))
		case q.segs[4] == "Drives":
			return b.items(q, 6, "DriveCollection", "Drive Collection", b.driveIDs(), b.driveResource)
		}
	case sub == "Bios" && q.is(3):
		return q.readOnly(b.biosResource(q.path()))
	case sub == "LogServices":
		return b.logServices(q, 3)
	case sub == "VirtualMedia" && s.virtualMediaOnSystem:
		return b.virtualMedia(q, 3)
	}
	return notFound(q.path())
}

// items serves a collection at segs[:n-1] and its members at segs[n-1].
func (b *BMC) items(q request, n int, typ, name string, ids []string, member func(path, id string) obj) reply {
	switch {
	case q.is(n - 1):
		return q.readOnly(collection(q.path(), typ, name, ids))
	case q.is(n) && slices.Contains(ids, q.segs[n-1]):
		return q.readOnly(member(q.path(), q.segs[n-1]))
	}
	return notFound(q.path())
}

var bootTargets = []string{"None", "Pxe", "Floppy", "Cd", "Usb", "Hdd", "BiosSetup", "Utilities", "Diags", "UefiShell", "UefiTarget", "SDCard", "UefiHttp", "RemoteDrive"}

func (b *BMC) patchSystem(body []byte) reply {
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(body, &patch); err != nil {
		return redfishError(http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
	}
	next := b.boot
	for k, v := range patch {
		switch k {
		case "AssetTag", "IndicatorLED", "LocationIndicatorActive":
			// accepted and forgotten
		case "Boot":
			var boot map[string]json.RawMessage
			if err := json.Unmarshal(v, &boot); err != nil {
				return redfishError(http.StatusBadRequest, "PropertyValueTypeError", "The value for the property Boot is of a different type than the property can accept.")
			}
			for bk, bv := range boot {
				var s string
				if bk != "BootOrder" {
					if err := json.Unmarshal(bv, &s); err != nil {
						return redfishError(http.StatusBadRequest, "PropertyValueTypeError", "The value for the property "+bk+" is of a different type than the property can accept.")
					}
				}
				switch bk {
				case "BootSourceOverrideEnabled":
					if !slices.Contains([]string{"Disabled", "Once", "Continuous"}, s) {
						return redfishError(http.StatusBadRequest, "PropertyValueNotInList", "The value "+s+" for the property BootSourceOverrideEnabled is not in the list of acceptable values.")
					}
					next.Enabled = s
				case "BootSourceOverrideTarget":
					if !slices.Contains(bootTargets, s) {
						return redfishError(http.StatusBadRequest, "PropertyValueNotInList", "The value "+s+" for the property BootSourceOverrideTarget is not in the list of acceptable values.")
					}
					next.Target = s
				case "BootSourceOverrideMode":
					if b.spec.rejectBootMode {
						return redfishError(http.StatusBadRequest, "PropertyNotWritable", "The property BootSourceOverrideMode is a read only property and cannot be assigned a value.")
					}
					if s != "UEFI" && s != "Legacy" {
						return redfishError(http.StatusBadRequest, "PropertyValueNotInList", "The value "+s+" for the property BootSourceOverrideMode is not in the list of acceptable values.")
					}
					next.Mode = s
				case "HttpBootUri":
					next.HTTPBootURI = s
				case "UefiTargetBootSourceOverride", "BootNext", "BootOrder":
					// accepted and forgotten
				default:
					return redfishError(http.StatusBadRequest, "PropertyUnknown", "The property "+bk+" is not in the list of valid properties for the resource.")
				}
			}
		default:
			return redfishError(http.StatusBadRequest, "PropertyUnknown", "The property "+k+" is not in the list of valid properties for the resource.")
		}
	}
	if next != b.boot {
		b.boot = next
		b.gen++
	}
	return noContent()
}

func (b *BMC) resetSystem(body []byte, ev *events) reply {
	var req struct{ ResetType string }
	if err := json.Unmarshal(body, &req); err != nil {
		return redfishError(http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
	}
	rt := req.ResetType
	if !slices.Contains(b.resetTypes(), rt) {
		return redfishError(http.StatusBadRequest, "ActionParameterValueNotInList", "The value "+rt+" for the parameter ResetType is not in the list of acceptable values.")
	}
	if b.faults.StuckPower {
		return noContent()
	}
	conflict := func() reply {
		return redfishError(http.StatusConflict, "ActionNotSupported", "The action "+rt+" cannot be performed while the system is "+string(b.power)+".")
	}
	switch rt {
	case "On":
		b.powerOnLocked(rt, ev)
	case "ForceOff", "GracefulShutdown":
		b.powerOffLocked(rt, ev)
	case "ForceRestart", "GracefulRestart":
		if b.power == PowerOff {
			return conflict()
		}
		b.powerOffLocked(rt, ev)
		b.powerOnLocked(rt, ev)
	case "PowerCycle":
		b.powerOffLocked(rt, ev)
		b.powerOnLocked(rt, ev)
	case "PushPowerButton":
		if b.power == PowerOn {
			b.powerOffLocked(rt, ev)
		} else {
			b.powerOnLocked(rt, ev)
		}
	case "Nmi":
		if b.power == PowerOff {
			return conflict()
		}
		b.logLocked("Critical", "NMI / diagnostic interrupt")
	}
	return noContent()
}

var resetTypes = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle", "PushPowerButton", "Nmi"}

// resetTypes are the ComputerSystem.Reset types this BMC accepts.
func (b *BMC) resetTypes() []string {
	if len(b.spec.resetTypes) > 0 {
		return b.spec.resetTypes
	}
	return resetTypes
}

func (b *BMC) managers(q request) reply {
	s := b.spec
	if q.is(1) {
		return q.readOnly(collection(q.path(), "ManagerCollection", "Manager Collection", []string{s.managerID}))
	}
	if q.segs[1] != s.managerID {
		return notFound(q.path())
	}
	if q.is(2) {
		return q.readOnly(b.managerResource(q.r))
	}
	switch sub := q.segs[2]; {
	case sub == "Actions" && q.is(4) && q.segs[3] == "Manager.Reset":
		return q.post(func() reply { return b.resetManager(q.body) })
	case sub == "EthernetInterfaces":
		return b.items(q, 4, "EthernetInterfaceCollection", "Manager Ethernet Interface Collection", []string{"eth0"},
			func(path, _ string) obj { return b.bmcNICResource(path, q.r) })
	case sub == "NetworkProtocol" && q.is(3):
		return q.readOnly(b.networkProtocolResource(q.path()))
	case sub == "LogServices":
		return b.logServices(q, 3)
	case sub == "VirtualMedia" && !s.virtualMediaOnSystem:
		return b.virtualMedia(q, 3)
	}
	return notFound(q.path())
}

func (b *BMC) resetManager(body []byte) reply {
	var req struct{ ResetType string }
	if err := json.Unmarshal(body, &req); err != nil {
		return redfishError(http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
	}
	if req.ResetType != "GracefulRestart" && req.ResetType != "ForceRestart" {
		return redfishError(http.StatusBadRequest, "ActionParameterValueNotInList", "The value "+req.ResetType+" for the parameter ResetType is not in the list of acceptable values.")
	}
	b.logLocked("Warning", "BMC reset ("+req.ResetType+")")
	b.sessions = nil
	b.downUntil = b.opts.Clock().Add(b.opts.ResetDowntime)
	return noContent()
}

// logServices serves the one event log under a parent resource: segs[n-1]
// is "LogServices".
func (b *BMC) logServices(q request, n int) reply {
	switch {
	case q.is(n):
		return q.readOnly(collection(q.path(), "LogServiceCollection", "Log Service Collection", []string{"SEL"}))
	case q.segs[n] != "SEL":
		return notFound(q.path())
	case q.is(n + 1):
		return q.readOnly(b.logServiceResource(q.path()))
	case q.is(n+3) && q.segs[n+1] == "Actions" && q.segs[n+2] == "LogService.ClearLog":
		return q.post(func() reply {
			b.sel = nil
			b.logLocked("OK", "Log area reset/cleared")
			return noContent()
		})
	case q.segs[n+1] == "Entries":
		ids := make([]string, len(b.sel))
		for i, e := range b.sel {
			ids[i] = e.ID
		}
		return b.items(q, n+3, "LogEntryCollection", "Log Entry Collection", ids, b.logEntryResource)
	}
	return notFound(q.path())
}

// virtualMedia serves the media slots under a parent: segs[n-1] is
// "VirtualMedia".
func (b *BMC) virtualMedia(q request, n int) reply {
	ids := make([]string, len(b.media))
	for i, m := range b.media {
		ids[i] = m.ID
	}
	if q.is(n) {
		return q.readOnly(collection(q.path(), "VirtualMediaCollection", "Virtual Media Collection", ids))
	}
	i := slices.Index(ids, q.segs[n])
	if i < 0 {
		return notFound(q.path())
	}
	m := b.media[i]
	switch {
	case q.is(n + 1):
		return q.readOnly(b.mediaResource(q.path(), m))
	case q.is(n+3) && q.segs[n+1] == "Actions" && q.segs[n+2] == "VirtualMedia.InsertMedia":
		return q.post(func() reply { return b.insertMedia(m, q.body) })
	case q.is(n+3) && q.segs[n+1] == "Actions" && q.segs[n+2] == "VirtualMedia.EjectMedia":
		return q.post(func() reply {
			m.Image, m.Inserted = "", false
			return noContent()
		})
	}
	return notFound(q.path())
}

func (b *BMC) insertMedia(m *Media, body []byte) reply {
	var req struct {
		Image    string
		Inserted *bool
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return redfishError(http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
	}
	u, err := url.Parse(req.Image)
	if req.Image == "" || err != nil || !slices.Contains([]string{"http", "https", "nfs", "cifs"}, u.Scheme) || u.Host == "" {
		return redfishError(http.StatusBadRequest, "ActionParameterValueFormatError", "The value "+req.Image+" for the parameter Image is not an http, https, nfs or cifs URI.")
	}
	if m.Inserted {
		return redfishError(http.StatusConflict, "ResourceInUse", "Virtual media "+m.ID+" already has an image inserted; eject it first.")
	}
	m.Image, m.Inserted = req.Image, req.Inserted == nil || *req.Inserted
	return noContent()
}

func (b *BMC) chassis(q request) reply {
	s := b.spec
	if q.is(1) {
		return q.readOnly(collection(q.path(), "ChassisCollection", "Chassis Collection", []string{s.chassisID}))
	}
	if q.segs[1] != s.chassisID {
		return notFound(q.path())
	}
	if q.is(2) {
		return q.readOnly(b.chassisResource())
	}
	switch sub := q.segs[2]; {
	case sub == "LogServices" && !s.noChassisLog:
		return b.logServices(q, 3)
	case sub == "PCIeDevices":
		ids := b.gpuIDs()
		switch {
		case q.is(3), q.is(4):
			return b.items(q, 4, "PCIeDeviceCollection", "PCIe Device Collection", ids, b.pcieDeviceResource)
		case !slices.Contains(ids, q.segs[3]) || q.segs[4] != "PCIeFunctions":
			return notFound(q.path())
		}
		return b.items(q, 6, "PCIeFunctionCollection", "PCIe Function Collection", []string{"1"},
			func(path, _ string) obj { return b.pcieFunctionResource(path, q.segs[3]) })
	}
	return notFound(q.path())
}

func (b *BMC) String() string {
	return fmt.Sprintf("redfishsim BMC %s at %s", b.Serial(), b.Endpoint())
}
