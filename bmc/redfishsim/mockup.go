package redfishsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// A DMTF mockup (the index.json tree of Redfish-Mockup-Server, such as
// public-rackmount1) as a BMC's base tree: documents are served as the
// mockup has them, overlaid with the BMC's own serial, UUID and MACs and
// its state (power, boot override, virtual media, event log), and the
// actions work (ComputerSystem.Reset, boot override PATCH,
// VirtualMedia.InsertMedia/EjectMedia, LogService.ClearLog, Manager.Reset,
// sessions). Rackstrap ships no mockup: the operator or the conformance
// tests point at one.

// Mockup limits: a mockup is read whole into memory.
const (
	maxMockupDocs  = 20000
	maxMockupDoc   = 4 << 20
	maxMockupBytes = 256 << 20
)

// Mockup is a loaded mockup tree.
type Mockup struct {
	dir  string
	docs map[string][]byte // by Redfish path without a trailing slash ("/redfish/v1", "/redfish/v1/Systems")
	// The first system, manager and chassis of the tree.
	system, manager, chassis string
}

// LoadMockup reads every index.json under dir (dir/index.json is the
// service root).
func LoadMockup(dir string) (*Mockup, error) {
	m := &Mockup{dir: dir, docs: map[string][]byte{}}
	total := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "index.json" {
			return nil
		}
		if len(m.docs) >= maxMockupDocs {
			return fmt.Errorf("more than %d documents", maxMockupDocs)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > maxMockupDoc {
			return fmt.Errorf("%s: larger than %d bytes", p, maxMockupDoc)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if total += len(data); total > maxMockupBytes {
			return fmt.Errorf("more than %d bytes of documents", maxMockupBytes)
		}
		if _, err := parseMockupDoc(data); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(p))
		m.docs[mockupPath(filepath.ToSlash(rel))] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redfish mockup %s: %w", dir, err)
	}
	if _, ok := m.docs[root]; !ok {
		return nil, fmt.Errorf("redfish mockup %s: no index.json (the service root) at its top; give the mockup's own directory", dir)
	}
	for _, x := range []struct {
		coll string
		dst  *string
	}{{"Systems", &m.system}, {"Managers", &m.manager}, {"Chassis", &m.chassis}} {
		if ms := m.members(root + "/" + x.coll); len(ms) > 0 {
			*x.dst = ms[0]
		}
	}
	if m.system == "" {
		return nil, fmt.Errorf("redfish mockup %s: lists no ComputerSystem", dir)
	}
	return m, nil
}

// mockupPath is the Redfish path of a mockup directory ("." is the root).
func mockupPath(rel string) string {
	if rel == "." || rel == "" {
		return root
	}
	return root + "/" + strings.Trim(rel, "/")
}

// parseMockupDoc decodes one mockup document, which must be a JSON object.
func parseMockupDoc(data []byte) (obj, error) {
	var doc obj
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if doc == nil {
		return nil, errors.New("not a JSON object")
	}
	return doc, nil
}

// doc returns a fresh copy of the document at p.
func (m *Mockup) doc(p string) (obj, bool) {
	data, ok := m.docs[p]
	if !ok {
		return nil, false
	}
	doc, err := parseMockupDoc(data)
	return doc, err == nil
}

// members are a collection document's member paths.
func (m *Mockup) members(p string) []string {
	doc, ok := m.doc(p)
	if !ok {
		return nil
	}
	list, _ := doc["Members"].([]any)
	var out []string
	for _, x := range list {
		if l, ok := x.(map[string]any); ok {
			if id, ok := l["@odata.id"].(string); ok {
				out = append(out, strings.TrimSuffix(id, "/"))
			}
		}
	}
	return out
}

// paths lists the documents under prefix, sorted.
func (m *Mockup) paths(prefix string) []string {
	var out []string
	for p := range m.docs {
		if strings.HasPrefix(p, prefix+"/") {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// MockupFlag registers --mockup DIR on fl; the function it returns loads
// the directory (when given) into cfg.Mockup, for `rackstrap simulate bmc`.
func MockupFlag(fl *pflag.FlagSet) func(cfg *Config) error {
	dir := fl.String("mockup", "", "serve each BMC from the DMTF Redfish mockup in `DIR` (index.json files, e.g. public-rackmount1), overlaid with its own serial, UUID and MACs, instead of the built-in tree")
	return func(cfg *Config) error {
		if *dir == "" {
			return nil
		}
		m, err := LoadMockup(*dir)
		if err != nil {
			return fmt.Errorf("--mockup: %w", err)
		}
		cfg.Mockup = m
		return nil
	}
}

// mockState is a mockup BMC's own view of its tree.
type mockState struct {
	m       *Mockup
	media   map[string]*Media // virtual media slots by path
	cleared map[string]bool   // log services cleared (their entries are the BMC's event log since)
	macs    map[string]string // the mockup's MACs (upper case) → this BMC's
}

// NewFromMockup makes a BMC that serves mockup m as node's machine: the
// mockup's tree with node's serial, UUID, host and BMC MACs, starting in the
// mockup's power state, boot override and virtual media.
func NewFromMockup(m *Mockup, node Node, opts Options) (*BMC, error) {
	b, err := New(node, opts)
	if err != nil {
		return nil, err
	}
	st := &mockState{m: m, media: map[string]*Media{}, cleared: map[string]bool{}, macs: map[string]string{}}
	b.media = nil
	for _, p := range m.paths(root) {
		doc, _ := m.doc(p)
		if t, _ := doc["@odata.type"].(string); !strings.HasPrefix(t, "#VirtualMedia.") {
			continue
		}
		md := &Media{ID: path.Base(p)}
		for _, t := range asSlice(doc["MediaTypes"]) {
			if s, ok := t.(string); ok {
				md.MediaTypes = append(md.MediaTypes, s)
			}
		}
		md.Image, _ = doc["Image"].(string)
		md.Inserted, _ = doc["Inserted"].(bool)
		st.media[p] = md
		b.media = append(b.media, md)
	}
	if sys, ok := m.doc(m.system); ok {
		if ps, _ := sys["PowerState"].(string); ps == string(PowerOn) {
			b.power = PowerOn
		}
		if boot, ok := sys["Boot"].(map[string]any); ok {
			str := func(k, def string) string {
				if s, ok := boot[k].(string); ok && s != "" {
					return s
				}
				return def
			}
			b.boot = BootOverride{Enabled: str("BootSourceOverrideEnabled", "Disabled"), Target: str("BootSourceOverrideTarget", "None"), Mode: str("BootSourceOverrideMode", "UEFI")}
		}
	}
	hw := node.Hardware
	var host []string
	for _, n := range hw.NICs {
		host = append(host, n.MAC)
	}
	st.mapMACs(m.members(m.system+"/EthernetInterfaces"), host, node, "host")
	var mgr []string
	if hw.BMC.MAC != "" {
		mgr = []string{hw.BMC.MAC}
	}
	if m.manager != "" {
		st.mapMACs(m.members(m.manager+"/EthernetInterfaces"), mgr, node, "bmc")
	}
	b.mock = st
	return b, nil
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// mapMACs gives the MACs of the interface documents at paths, in order of
// first appearance (MACAddress before PermanentMACAddress), the node's own
// (then made-up, locally administered ones).
func (st *mockState) mapMACs(paths []string, own []string, node Node, kind string) {
	i := 0
	for _, p := range paths {
		doc, ok := st.m.doc(p)
		if !ok {
			continue
		}
		for _, k := range []string{"MACAddress", "PermanentMACAddress"} {
			orig, _ := doc[k].(string)
			orig = strings.ToUpper(orig)
			if orig == "" || st.macs[orig] != "" {
				continue
			}
			if i < len(own) {
				st.macs[orig] = own[i]
			} else {
				u := nameUUID(fmt.Sprintf("mockup-mac/%s/%s/%d", node.Hardware.System.Serial, kind, i))
				st.macs[orig] = "02:" + u[2:4] + ":" + u[4:6] + ":" + u[6:8] + ":" + u[9:11] + ":" + u[11:13]
			}
			i++
		}
	}
}

// mockupRoute answers a request from the mockup tree (with the BMC's lock
// held and the request authenticated).
func (b *BMC) mockupRoute(q request) reply {
	st := b.mock
	p := q.path()
	switch q.r.Method {
	case http.MethodGet, http.MethodHead:
		return b.mockupGet(p)
	case http.MethodPatch:
		if p != st.m.system {
			return methodNotAllowed("GET")
		}
		if rep, ok := b.checkETag(q.r); !ok {
			return rep
		}
		return b.patchSystem(q.body)
	case http.MethodPost:
		parent, action, ok := strings.Cut(p, "/Actions/")
		if !ok {
			return methodNotAllowed("GET")
		}
		switch {
		case parent == st.m.system && action == "ComputerSystem.Reset":
			if rep, ok := b.checkETag(q.r); !ok {
				return rep
			}
			return b.resetSystem(q.body, q.ev)
		case parent == st.m.manager && action == "Manager.Reset":
			return b.resetManager(q.body)
		case action == "VirtualMedia.InsertMedia" && st.media[parent] != nil:
			return b.insertMedia(st.media[parent], q.body)
		case action == "VirtualMedia.EjectMedia" && st.media[parent] != nil:
			m := st.media[parent]
			m.Image, m.Inserted = "", false
			return noContent()
		case action == "LogService.ClearLog" && b.isLogService(parent):
			b.sel = nil
			b.logLocked("OK", "Log area reset/cleared")
			st.cleared[parent] = true
			return noContent()
		}
		return notFound(p)
	}
	return methodNotAllowed("GET", "HEAD", "POST", "PATCH")
}

func (b *BMC) isLogService(p string) bool {
	doc, ok := b.mock.m.doc(p)
	t, _ := doc["@odata.type"].(string)
	return ok && strings.HasPrefix(t, "#LogService.")
}

// mockupGet renders the document at p with the BMC's overlay.
func (b *BMC) mockupGet(p string) reply {
	st := b.mock
	p = strings.TrimSuffix(p, "/")
	// A cleared log service lists the BMC's own event log since.
	if svc, rest, cut := strings.Cut(p, "/Entries"); cut && st.cleared[svc] {
		ids := make([]string, len(b.sel))
		for i, e := range b.sel {
			ids[i] = e.ID
		}
		if rest == "" {
			return ok(collection(p, "LogEntryCollection", "Log Entry Collection", ids))
		}
		if id := strings.TrimPrefix(rest, "/"); slices.Contains(ids, id) {
			return ok(b.logEntryResource(p, id))
		}
		return notFound(p)
	}
	doc, found := st.m.doc(p)
	if !found {
		return notFound(p)
	}
	hw := b.node.Hardware
	switch {
	case p == root:
		doc["UUID"] = b.managerUUID()
	case p == st.m.system:
		doc["SerialNumber"], doc["UUID"], doc["PowerState"] = hw.System.Serial, hw.System.UUID, b.reportedPowerLocked()
		boot, _ := doc["Boot"].(map[string]any)
		if boot == nil {
			boot = obj{}
		}
		boot["BootSourceOverrideEnabled"], boot["BootSourceOverrideTarget"], boot["BootSourceOverrideMode"] = b.boot.Enabled, b.boot.Target, b.boot.Mode
		doc["Boot"] = boot
		actions, _ := doc["Actions"].(map[string]any)
		if actions == nil {
			actions = obj{}
		}
		actions["#ComputerSystem.Reset"] = obj{"target": p + "/Actions/ComputerSystem.Reset", "ResetType@Redfish.AllowableValues": b.resetTypes()}
		doc["Actions"] = actions
	case p == st.m.chassis:
		doc["SerialNumber"] = first(hw.Chassis.Serial, hw.System.Serial)
	case p == st.m.manager:
		doc["UUID"] = b.managerUUID()
	case st.media[p] != nil:
		m := st.media[p]
		doc["Inserted"], doc["Image"] = m.Inserted, nil
		if m.Inserted {
			doc["Image"] = m.Image
		}
		doc["Actions"] = obj{
			"#VirtualMedia.InsertMedia": obj{"target": p + "/Actions/VirtualMedia.InsertMedia"},
			"#VirtualMedia.EjectMedia":  obj{"target": p + "/Actions/VirtualMedia.EjectMedia"},
		}
	}
	for _, k := range []string{"MACAddress", "PermanentMACAddress"} {
		if s, ok := doc[k].(string); ok {
			if mac := st.macs[strings.ToUpper(s)]; mac != "" {
				doc[k] = mac
			}
		}
	}
	rep := ok(doc)
	if p == st.m.system {
		rep.header = http.Header{"Etag": {b.etag()}}
	}
	return rep
}
