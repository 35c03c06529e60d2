package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackstrap/rackstrap/controller/lifecycle"
	"github.com/rackstrap/rackstrap/controller/model"
	"github.com/rackstrap/rackstrap/controller/secrets"
	"github.com/rackstrap/rackstrap/controller/store"
)

// storeActor applies actions straight to the store (no engine running).
type storeActor struct{ db *store.DB }

func (a storeActor) Act(ctx context.Context, r lifecycle.Request) (model.Operation, error) {
	return lifecycle.Act(ctx, a.db, r)
}

func newTestServer(t *testing.T) (*httptest.Server, *store.DB) {
	t.Helper()
	s, db := newServer(t)
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close() })
	return ts, db
}

// newTestServerF is newTestServer for fuzz targets: the handler itself.
func newTestServerF(f *testing.F) (*Server, *store.DB) {
	s, db := newServer(f)
	db.CreateNode(context.Background(), model.Node{Name: "n1"}, "test")
	return s, db
}

func newServer(t testing.TB) (*Server, *store.DB) {
	t.Helper()
	db, err := store.Open(context.Background(), "", t.TempDir(), store.Options{RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(db, storeActor{db}, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	box, err := secrets.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	s.SetSecrets(box)
	t.Cleanup(func() { db.Close() })
	return s, db
}

// TestOpenAPIMatchesRoutes checks the document against the real routes both
// ways: every documented operation is served, and every route is documented.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	ts, db := newTestServer(t)
	db.CreateNode(context.Background(), model.Node{Name: "n1", Identity: model.Identity{Rack: "r1"}}, "test")

	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	resp, err := http.Get(ts.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q, want 3.x", doc.OpenAPI)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	for _, r := range ts.Config.Handler.(*Server).Routes() {
		served = append(served, r.Method+" "+r.Path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Errorf("openapi.json and the routes differ:\ndocumented:\n%s\nserved:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
	// Every documented operation answers (not the catch-all 404, not 405).
	fill := strings.NewReplacer("{name}", "n1", "{rack}", "r1", "{id}", "1")
	body := map[string]string{"/api/v1/nodes": `{"name":"n2"}`, "/api/v1/nodes/{name}/actions": `{"action":"provision"}`,
		"/api/v1/nodes/{name}/bmc-credentials": `{"username":"admin","password":"x"}`}
	for _, d := range documented {
		method, path, _ := strings.Cut(d, " ")
		req, _ := http.NewRequest(method, ts.URL+fill.Replace(path), strings.NewReader(body[path]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusMethodNotAllowed || strings.Contains(string(b), `"no route`) {
			t.Errorf("%s %s = %d %s: documented but not served", method, path, resp.StatusCode, b)
		}
		if resp.StatusCode >= 400 && path != "/api/v1/operations/{id}" && !strings.HasPrefix(path, "/api/v1/agent/") {
			t.Errorf("%s %s = %d %s", method, path, resp.StatusCode, b)
		}
	}
}

func TestErrorsAreClearJSON(t *testing.T) {
	t.Parallel()
	ts, db := newTestServer(t)
	db.CreateNode(context.Background(), model.Node{Name: "n1"}, "test")
	cases := map[string]struct {
		method, path, body string
		status             int
		code, contains     string
	}{
		"bad json":         {"POST", "/api/v1/nodes", `{"name":`, 400, "bad_request", "not valid"},
		"unknown field":    {"POST", "/api/v1/nodes", `{"name":"x","colour":"red"}`, 400, "bad_request", "colour"},
		"trailing data":    {"POST", "/api/v1/nodes", `{"name":"x"} {}`, 400, "bad_request", "after the JSON"},
		"bad name":         {"POST", "/api/v1/nodes", `{"name":"a b"}`, 400, "bad_request", "invalid node name"},
		"bad mac":          {"POST", "/api/v1/nodes", `{"name":"x","identity":{"macs":["zz"]}}`, 400, "bad_request", "invalid MAC"},
		"bad desired":      {"POST", "/api/v1/nodes", `{"name":"x","desired":"gone"}`, 400, "bad_request", "unknown desired"},
		"unknown node":     {"GET", "/api/v1/nodes/ghost", "", 404, "not_found", "ghost"},
		"unknown timeline": {"GET", "/api/v1/nodes/ghost/timeline", "", 404, "not_found", "ghost"},
		"act unknown node": {"POST", "/api/v1/nodes/ghost/actions", `{"action":"retry"}`, 404, "not_found", "ghost"},
		"unknown action":   {"POST", "/api/v1/nodes/n1/actions", `{"action":"explode"}`, 400, "bad_request", "unknown action"},
		"not allowed":      {"POST", "/api/v1/nodes/n1/actions", `{"action":"retry"}`, 409, "not_allowed", "only to Failed"},
		"bad state":        {"GET", "/api/v1/nodes?state=Happy", "", 400, "bad_request", "unknown state"},
		"bad limit":        {"GET", "/api/v1/audit?limit=-1", "", 400, "bad_request", "limit"},
		"bad op id":        {"GET", "/api/v1/operations/x", "", 400, "bad_request", "not a number"},
		"unknown op":       {"GET", "/api/v1/operations/99", "", 404, "not_found", "99"},
		"unknown rack":     {"GET", "/api/v1/racks/nowhere", "", 404, "not_found", "nowhere"},
		"unknown route":    {"GET", "/api/v2/things", "", 404, "not_found", "no route"},
		"checkin no token": {"POST", "/api/v1/agent/checkin", `{"phase":"netboot"}`, 401, "unauthorized", "no enrolment token"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.status || e.Code != tc.code || !strings.Contains(e.Message, tc.contains) {
				t.Errorf("%s %s = %d %+v; want %d %s containing %q", tc.method, tc.path, resp.StatusCode, e, tc.status, tc.code, tc.contains)
			}
			if resp.StatusCode != 400 && e.Hint == "" && tc.code != "bad_request" {
				t.Errorf("%s %s: error has no hint", tc.method, tc.path)
			}
		})
	}
}

func TestClientAgainstServer(t *testing.T) {
	t.Parallel()
	ts, _ := newTestServer(t)
	c, err := NewClient(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n, created, err := c.CreateNode(ctx, NodeCreate{Name: "n1", Identity: model.Identity{Rack: "r1", MACs: []string{"52-54-00-AA-BB-CC"}}})
	if err != nil || !created || n.State != model.Discovered || n.Identity.MACs[0] != "52:54:00:aa:bb:cc" {
		t.Fatalf("CreateNode = %+v, %v, %v", n, created, err)
	}
	if _, created, err := c.CreateNode(ctx, NodeCreate{Name: "n1"}); err != nil || created {
		t.Errorf("CreateNode again = %v, %v; want the existing node", created, err)
	}
	op, err := c.Act(ctx, "n1", lifecycle.ActProvision, true)
	if err != nil || op.Status != model.OpRunning {
		t.Fatalf("Act = %+v, %v", op, err)
	}
	if got, _ := c.Node(ctx, "n1"); got.Desired != model.WantHandedOff {
		t.Errorf("desired after provision --hand-off = %s", got.Desired)
	}
	nodes, err := c.Nodes(ctx, "Discovered", "r1")
	if err != nil || len(nodes) != 1 {
		t.Errorf("Nodes = %d, %v", len(nodes), err)
	}
	v, err := c.VerifyAudit(ctx)
	if err != nil || !v.Intact || v.Entries != 2 {
		t.Errorf("VerifyAudit = %+v, %v", v, err)
	}
	ops, _ := c.Operations(ctx, "n1")
	racks, _ := c.Racks(ctx)
	if len(ops) != 1 || len(racks) != 1 {
		t.Errorf("operations %d racks %d", len(ops), len(racks))
	}
	_, err = c.Node(ctx, "ghost")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(err.Error(), "nodes list") {
		t.Errorf("Node(ghost) = %v; want a 404 with a hint", err)
	}
	dead, _ := NewClient("http://127.0.0.1:1")
	if _, err := dead.Nodes(ctx, "", ""); err == nil || !strings.Contains(err.Error(), "rackstrap serve") {
		t.Errorf("unreachable controller error = %v; want a hint to start it", err)
	}
	if _, err := NewClient("localhost:8080"); err == nil {
		t.Error("NewClient accepted an address without a scheme")
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ts, db := newTestServer(t)
	db.CreateNode(context.Background(), model.Node{Name: "n1"}, "test")
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`rackstrap_nodes{state="Discovered"} 1`, `rackstrap_nodes{state="Ready"} 0`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestAgentCheckIn(t *testing.T) {
	t.Parallel()
	ts, db := newTestServer(t)
	ctx := context.Background()
	db.CreateNode(ctx, model.Node{Name: "n1"}, "test")
	tok, _ := db.IssueToken(ctx, "n1", "netboot", time.Hour, "test")
	post := func(token, body string) (int, string) {
		req, _ := http.NewRequest("POST", ts.URL+"/api/v1/agent/checkin", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	inv := `{"source":"in-band","system":{"vendor":"QEMU","serial":"S1"}}`
	if code, body := post(tok, `{"phase":"firstboot","inventory":`+inv+`}`); code != 409 || !strings.Contains(body, "wrong_phase") {
		t.Errorf("wrong phase = %d %s", code, body)
	}
	if code, body := post(tok, `{"phase":"netboot","inventory":{"nonsense":1}}`); code != 400 {
		t.Errorf("bad inventory = %d %s", code, body)
	}
	if code, body := post(tok, `{"phase":"netboot","agentVersion":"t","inventory":`+inv+`}`); code != 200 || !strings.Contains(body, `"node": "n1"`) {
		t.Errorf("check-in = %d %s", code, body)
	}
	if code, body := post(tok, `{"phase":"netboot"}`); code != 401 || !strings.Contains(body, "already used") {
		t.Errorf("reused token = %d %s", code, body)
	}
	if c, _ := db.LatestCheckIn(ctx, "n1", "netboot", time.Time{}); c == nil || !strings.Contains(string(c.Inventory), "S1") {
		t.Errorf("check-in not stored: %+v", c)
	}
	// n1 has no BMC yet (a discovery boot): it keeps what its agent reported.
	if n, _ := db.GetNode(ctx, "n1"); !strings.Contains(string(n.Inventory), "S1") {
		t.Errorf("a discovered machine's inventory is not on its node: %s", n.Inventory)
	}
}

func TestAgentTasks(t *testing.T) {
	t.Parallel()
	ts, db := newTestServer(t)
	ctx := context.Background()
	db.CreateNode(ctx, model.Node{Name: "n1"}, "test")
	db.CreateNode(ctx, model.Node{Name: "n2"}, "test")
	tok, _ := db.IssueToken(ctx, "n1", "netboot", time.Hour, "test")
	call := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := call("POST", "/api/v1/agent/checkin", tok, `{"phase":"netboot"}`)
	var reply CheckInReply
	if json.Unmarshal([]byte(body), &reply); code != 200 || reply.Session == "" {
		t.Fatalf("check-in = %d %s", code, body)
	}
	if code, _ := call("GET", "/api/v1/agent/task", reply.Session, ""); code != 204 {
		t.Errorf("no task yet = %d, want 204", code)
	}
	if code, _ := call("GET", "/api/v1/agent/task", tok, ""); code != 401 {
		t.Errorf("enrolment token used as session = %d, want 401", code)
	}
	db.PutTask(ctx, store.Task{Key: "n2/image/1", Node: "n2", Kind: "image"}, "test")
	db.PutTask(ctx, store.Task{Key: "n1/image/1", Node: "n1", Kind: "image", Payload: json.RawMessage(`{"url":"http://x/i"}`)}, "test")
	code, body = call("GET", "/api/v1/agent/task", reply.Session, "")
	if code != 200 || !strings.Contains(body, "n1/image/1") {
		t.Fatalf("next task = %d %s", code, body)
	}
	if code, _ := call("POST", "/api/v1/agent/task/result", reply.Session, `{"key":"n2/image/1","ok":true}`); code != 404 {
		t.Errorf("finishing another node's task = %d, want 404", code)
	}
	if code, body := call("POST", "/api/v1/agent/task/result", reply.Session, `{"key":"n1/image/1","ok":true,"result":{"sha256":"ab"}}`); code != 200 {
		t.Errorf("task result = %d %s", code, body)
	}
	got, _ := db.GetTask(ctx, "n1/image/1")
	other, _ := db.GetTask(ctx, "n2/image/1")
	if got.Status != store.TaskDone || string(got.Result) != `{"sha256":"ab"}` || other.Status != store.TaskPending {
		t.Errorf("tasks after report: mine %+v, other %+v", got, other)
	}

	// A long poll waits for the next task and is answered as soon as one
	// is queued.
	if code, body := call("GET", "/api/v1/agent/task?wait=31", reply.Session, ""); code != 400 || !strings.Contains(body, "0 to 30") {
		t.Errorf("wait=31 = %d %s; want 400 naming the range", code, body)
	}
	start := time.Now()
	go func() {
		time.Sleep(300 * time.Millisecond)
		db.PutTask(ctx, store.Task{Key: "n1/burn-in/1", Node: "n1", Kind: "burn-in"}, "test")
	}()
	code, body = call("GET", "/api/v1/agent/task?wait=20", reply.Session, "")
	if code != 200 || !strings.Contains(body, "n1/burn-in/1") {
		t.Fatalf("long poll = %d %s; want the task queued while it waited", code, body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("long poll answered after %v; want it woken when the task was queued", d)
	}
	call("POST", "/api/v1/agent/task/result", reply.Session, `{"key":"n1/burn-in/1","ok":true}`)

	// A node that is Ready has no more tasks: its agent is told to stop.
	n1, _ := db.GetNode(ctx, "n1")
	if _, _, err := db.Apply(ctx, store.Change{Node: "n1", FromSeq: n1.Seq, To: model.Ready, Actor: "test", Action: "state.change"}); err != nil {
		t.Fatal(err)
	}
	if code, body := call("GET", "/api/v1/agent/task?wait=20", reply.Session, ""); code != 410 || !strings.Contains(body, "session_done") {
		t.Errorf("poll of a Ready node = %d %s; want 410 session_done", code, body)
	}
}

func TestBMCCredentialsAreSealedAndNeverReturned(t *testing.T) {
	t.Parallel()
	ts, db := newTestServer(t)
	ctx := context.Background()
	db.CreateNode(ctx, model.Node{Name: "n1"}, "test")
	c, _ := NewClient(ts.URL)
	const secret = "Planted-Password-91c2"
	if err := c.SetBMCCredentials(ctx, "n1", "root", secret); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBMCCredentials(ctx, "ghost", "root", secret); err == nil {
		t.Error("credentials for an unknown node were accepted")
	}
	l, err := db.BMCLogin(ctx, "n1")
	if err != nil || l.Username != "root" || strings.Contains(l.PasswordSealed, secret) || l.PasswordSealed == "" {
		t.Fatalf("stored login = %+v, %v; want the password sealed", l, err)
	}
	for _, path := range []string{"/api/v1/nodes", "/api/v1/nodes/n1", "/api/v1/audit"} {
		resp, _ := http.Get(ts.URL + path)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), secret) {
			t.Errorf("GET %s reveals the password", path)
		}
	}
}

func TestCreateExistingFillsOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	ts, db := newTestServer(t)
	ctx := context.Background()
	// Found by its own network boot: a MAC, no BMC, no serial.
	db.CreateNode(ctx, model.Node{Name: "unknown-52540000aa01", Desired: model.WantEnrolled,
		Identity: model.Identity{MACs: []string{"52:54:00:00:aa:01"}, Serial: "FROM-AGENT"}}, "netboot")
	c, _ := NewClient(ts.URL)
	n, created, err := c.CreateNode(ctx, NodeCreate{Name: "unknown-52540000aa01", Profile: "qemu-vm",
		Identity: model.Identity{BMC: "10.0.12.40", Serial: "FROM-MANIFEST", Rack: "r12", Slot: 40}})
	if err != nil || created {
		t.Fatalf("CreateNode(existing) = %v, %v", created, err)
	}
	if n.Identity.BMC != "10.0.12.40" || n.Identity.Rack != "r12" || n.Identity.Slot != 40 || n.Profile != "qemu-vm" {
		t.Errorf("missing fields not filled: %+v", n)
	}
	if n.Identity.Serial != "FROM-AGENT" || n.Desired != model.WantEnrolled {
		t.Errorf("a learned field was overwritten: %+v", n)
	}
	entries, _ := db.ListAudit(ctx, store.AuditFilter{Node: n.Name})
	if last := entries[len(entries)-1]; last.Action != "node.identity.fill" {
		t.Errorf("the fill is not audited: last entry %s", last.Action)
	}
}
