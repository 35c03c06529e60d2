package report

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/net/html"

	"github.com/rackstrap/rackstrap/hwprofiles/fixtures"
	"github.com/rackstrap/rackstrap/hwprofiles/inventory"
	"github.com/rackstrap/rackstrap/hwprofiles/profile"
	"github.com/rackstrap/rackstrap/hwprofiles/schema"
	"github.com/rackstrap/rackstrap/hwprofiles/validate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// SampleNodes is rack r01: three DGX H100 in the manifest (one with a GPU at
// x8, one whose BIOS drifted), a fourth expected but missing, and a QEMU VM
// nobody expected.
func sampleInputs(t testing.TB) (*Manifest, []NodeInput) {
	t.Helper()
	m := &Manifest{Rack: "r01", Units: 42, Slots: []ExpectedSlot{
		{Slot: 2, Height: 8, Name: "gpu01", Profile: "nvidia-dgx-h100"},
		{Slot: 10, Height: 8, Name: "gpu02", Profile: "nvidia-dgx-h100"},
		{Slot: 18, Height: 8, Name: "gpu03", Profile: "nvidia-dgx-h100"},
		{Slot: 26, Height: 8, Name: "gpu04", Serial: "1650323000104", Profile: "nvidia-dgx-h100"},
	}}
	dgx := func(name, serial string, breakIt func(in, oob *inventory.Inventory)) NodeInput {
		in, oob := fixtures.DGXH100(serial), fixtures.DGXH100OutOfBand(serial)
		breakIt(in, oob)
		return NodeInput{Name: name, Profile: "nvidia-dgx-h100", State: "Ready", InBand: in, OutOfBand: oob}
	}
	nodes := []NodeInput{
		dgx("gpu01", "1650323000101", func(in, oob *inventory.Inventory) {}),
		dgx("gpu02", "1650323000102", func(in, oob *inventory.Inventory) { in.GPUs[4].PCIeWidth = 8 }),
		dgx("gpu03", "1650323000103", func(in, oob *inventory.Inventory) { in.BIOS.Version, oob.BIOS.Version = "1.1.4", "1.1.4" }),
		{Name: "vm01", Slot: 40, Profile: "qemu-vm", State: "Ready", InBand: fixtures.QEMUVM("52:54:00:12:34:01")},
	}
	nodes[0].Firmware = []FirmwareStatus{{Component: "BMC", Installed: "24.09.17", Baseline: "24.09.17", Compliant: true},
		{Component: "CPLDMB_0", Installed: "0.2.1.6", Baseline: "0.2.1.8", Compliant: false}}
	nodes[1].State = "Quarantined"
	cat, err := profile.Bundled()
	if err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		if err := nodes[i].Complete(cat); err != nil {
			t.Fatal(err)
		}
	}
	return m, nodes
}

func sampleReport(t testing.TB) *Report {
	t.Helper()
	m, nodes := sampleInputs(t)
	r := Build(m, "", nodes, fixtures.Collected.Add(time.Hour))
	if err := r.Sign(testKey, "rackstrap-test"); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestBuild(t *testing.T) {
	t.Parallel()
	r := sampleReport(t)
	want := Summary{Expected: 4, Found: 4, Missing: 1, Unexpected: 1, Passed: 3, Quarantined: 1,
		Errors: 1, Warnings: 0, Infos: 0, FirmwareNonCompliant: 1}
	if diff := cmp.Diff(want, r.Summary); diff != "" {
		t.Errorf("Summary (-want +got):\n%s", diff)
	}
	if r.Accepted {
		t.Error("Accepted = true for a rack with a missing and a quarantined node")
	}
	var order []string
	for _, n := range r.Nodes {
		order = append(order, n.Name+":"+string(n.Status))
	}
	if diff := cmp.Diff([]string{"vm01:pass", "gpu04:missing", "gpu03:pass", "gpu02:quarantine", "gpu01:pass"}, order); diff != "" {
		t.Errorf("nodes, top of rack first (-want +got):\n%s", diff)
	}
	wantDrift := []Drift{{Profile: "nvidia-dgx-h100", Field: "bios.version", Majority: "1.1.3", Agree: 2, Total: 3,
		Outliers: []DriftOutlier{{Node: "gpu03", Value: "1.1.4"}}}}
	if diff := cmp.Diff(wantDrift, r.Drift); diff != "" {
		t.Errorf("Drift (-want +got):\n%s", diff)
	}
	// Without a manifest every found node is expected, and a clean rack is
	// accepted.
	_, nodes := sampleInputs(t)
	clean := Build(nil, "r01", []NodeInput{nodes[0]}, fixtures.Collected)
	if !clean.Accepted || clean.Summary.Expected != 1 || clean.Summary.Unexpected != 0 {
		t.Errorf("Build(no manifest, one good node) = accepted %v, summary %+v", clean.Accepted, clean.Summary)
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	r := sampleReport(t)
	if err := r.Verify(testKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	// The JSON form round-trips and still verifies.
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Verify(testKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("Verify(after JSON round trip) = %v", err)
	}
	back.Nodes[1].Status = StatusPass
	if err := back.Verify(testKey.Public().(ed25519.PublicKey)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify(tampered) = %v, want ErrBadSignature", err)
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	if err := r.Verify(other.Public().(ed25519.PublicKey)); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify(other key) = %v, want ErrBadSignature", err)
	}
}

func render(t testing.TB, r *Report, f Format) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Render(&buf, r, f); err != nil {
		t.Fatalf("Render(%s) = %v", f, err)
	}
	return buf.Bytes()
}

var goldenName = map[Format]string{JSON: "r01.json.golden", HTML: "r01.html.golden", JUnit: "r01.junit.xml.golden", CSV: "r01.csv.golden"}

func TestGolden(t *testing.T) {
	t.Parallel()
	r := sampleReport(t)
	for _, f := range Formats {
		got := render(t, r, f)
		path := filepath.Join("testdata", goldenName[f])
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("Render(%s) differs from %s (-want +got; go test -update rewrites it):\n%s", f, path, diff)
		}
	}
}

func TestJSONSchema(t *testing.T) {
	t.Parallel()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.Report))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("report.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(render(t, sampleReport(t), JSON)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(inst); err != nil {
		t.Errorf("report JSON does not match report.schema.json: %v", err)
	}
	bad, _ := jsonschema.UnmarshalJSON(strings.NewReader(`{"rack":"r","units":42,"generatedAt":"x","generator":"g","accepted":true,"summary":{},"nodes":[],"drift":[]}`))
	if err := s.Validate(bad); err == nil {
		t.Error("schema accepts a report without summary counts")
	}
}

func TestJUnitSchema(t *testing.T) {
	t.Parallel()
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Fatal("xmllint not found: install Debian package libxml2-utils (make test-deps does)")
	}
	path := filepath.Join(t.TempDir(), "r01.xml")
	if err := os.WriteFile(path, render(t, sampleReport(t), JUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, xmllint, "--noout", "--schema", filepath.Join("testdata", "junit.xsd"), path).CombinedOutput()
	if err != nil {
		t.Fatalf("xmllint --schema junit.xsd: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "validates") {
		t.Errorf("xmllint output %q lacks 'validates'", out)
	}
}

func TestCSVParsesBack(t *testing.T) {
	t.Parallel()
	r := sampleReport(t)
	rows, err := csv.NewReader(bytes.NewReader(render(t, r, CSV))).ReadAll()
	if err != nil {
		t.Fatalf("csv.ReadAll = %v", err)
	}
	if diff := cmp.Diff(CSVHeader, rows[0]); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	// vm01, gpu04, gpu03 and gpu01: one row each (no findings); gpu02: its
	// one finding; plus one drift row.
	if len(rows) != 1+4+1+1 {
		t.Fatalf("got %d rows, want 7:\n%q", len(rows), rows)
	}
	col := func(row []string, name string) string {
		for i, h := range CSVHeader {
			if h == name {
				return row[i]
			}
		}
		t.Fatalf("no column %s", name)
		return ""
	}
	var x8 []string
	for _, row := range rows[1:] {
		if col(row, "rule") == "gpu.pcie-width" {
			x8 = row
		}
	}
	if x8 == nil || col(x8, "node") != "gpu02" || col(x8, "slot") != "10" || col(x8, "actual") != "x8" ||
		col(x8, "hint") != "reseat GPU in slot SXM5: link is x8, expected x16" {
		t.Errorf("gpu02 x8 row = %q", x8)
	}
	last := rows[len(rows)-1]
	if col(last, "status") != "drift" || col(last, "node") != "gpu03" || col(last, "actual") != "1.1.4" {
		t.Errorf("drift row = %q", last)
	}
}

func TestCSVNoFormulas(t *testing.T) {
	t.Parallel()
	r := &Report{Rack: "r", Nodes: []Node{{Name: "n", Status: StatusPass, Serial: "=HYPERLINK(\"http://x\")",
		Findings: []validate.Finding{{Rule: "cpu.model", Severity: validate.Error, Actual: "@SUM(A1)", Message: "+1"}}}}}
	rows, err := csv.NewReader(bytes.NewReader(render(t, r, CSV))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, cell := range rows[1] {
		if cell != "" && strings.ContainsRune("=+@", rune(cell[0])) {
			t.Errorf("CSV cell %q would run as a formula", cell)
		}
	}
}

func TestHTMLSelfContained(t *testing.T) {
	t.Parallel()
	page := string(render(t, sampleReport(t), HTML))
	for _, bad := range []string{"http://", "https://", "<script", "<link", "@import", "url(", " src="} {
		if strings.Contains(page, bad) {
			t.Errorf("HTML contains %q: it must open with no network", bad)
		}
	}
}

// TestHTMLInChromium renders the page in headless Chromium, keeps a
// screenshot, and asserts on the DOM Chromium built.
func TestHTMLInChromium(t *testing.T) {
	t.Parallel()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: install Debian package chromium (make test-deps does)")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "r01.html")
	if err := os.WriteFile(page, render(t, sampleReport(t), HTML), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
			"--user-data-dir=" + filepath.Join(dir, "profile")}
		cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.Bytes()
	}
	shot := filepath.Join(artifactDir(t), "r01-report.png")
	run("--window-size=1280,2400", "--hide-scrollbars", "--screenshot="+shot, "file://"+page)
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (size %d)", shot, err, sizeOf(st))
	}
	t.Logf("screenshot kept at %s", shot)
	// The printable layout: Chromium prints it to PDF (print styles apply).
	pdf := filepath.Join(artifactDir(t), "r01-report.pdf")
	run("--no-pdf-header-footer", "--print-to-pdf="+pdf, "file://"+page)
	b, err := os.ReadFile(pdf)
	if err != nil || !bytes.HasPrefix(b, []byte("%PDF-")) {
		t.Fatalf("print to PDF: %v, %d bytes", err, len(b))
	}
	// The findings start on a new page (break-before in the print styles).
	if pages := bytes.Count(b, []byte("/Type /Page")) - bytes.Count(b, []byte("/Type /Pages")); pages < 2 {
		t.Errorf("printed report has %d page(s), want the findings on a page of their own", pages)
	}

	dom, err := html.Parse(bytes.NewReader(run("--dump-dom", "file://"+page)))
	if err != nil {
		t.Fatal(err)
	}
	if got := text(byTestID(dom, "verdict")); got != "NOT ACCEPTED" {
		t.Errorf("verdict = %q, want NOT ACCEPTED", got)
	}
	for id, want := range map[string]string{"expected": "4", "found": "4", "missing": "1", "unexpected": "1", "quarantined": "1", "passed": "3"} {
		if got := text(byTestID(dom, id)); got != want {
			t.Errorf("summary %s = %q, want %q", id, got, want)
		}
	}
	// The elevation shows each placed node once, in its status colour.
	elev := byTestID(dom, "elevation")
	for node, class := range map[string]string{"gpu01": "s-pass", "gpu02": "s-quarantine", "gpu04": "s-missing", "vm01": "s-pass"} {
		cells := findAll(elev, func(n *html.Node) bool { return attr(n, "data-node") == node })
		if len(cells) != 1 || !strings.Contains(attr(cells[0], "class"), class) {
			t.Errorf("elevation cell of %s: %d cells, class %q; want one with %s", node, len(cells), attrOf(cells, "class"), class)
		}
	}
	rows := findAll(byTestID(dom, "elevation"), func(n *html.Node) bool { return n.Type == html.ElementNode && n.Data == "tr" })
	if len(rows) != 42 {
		t.Errorf("elevation has %d rows, want 42", len(rows))
	}
	errs := findAll(byTestID(dom, "findings"), func(n *html.Node) bool { return attr(n, "data-severity") == "error" })
	if len(errs) != 1 || !strings.Contains(text(errs[0]), "reseat GPU in slot SXM5: link is x8, expected x16") {
		t.Errorf("error findings in the DOM: %d, first %q", len(errs), textOf(errs))
	}
	if got := text(byTestID(dom, "group-error")); got != "Errors (1)" {
		t.Errorf("error group heading = %q", got)
	}
	if !strings.Contains(text(byTestID(dom, "drift")), "gpu03: 1.1.4") {
		t.Errorf("drift section lacks gpu03's BIOS: %q", text(byTestID(dom, "drift")))
	}
	if !strings.Contains(text(byTestID(dom, "signature")), "key rackstrap-test") {
		t.Errorf("signature section = %q", text(byTestID(dom, "signature")))
	}
}

// artifactDir is where tests keep files for people to look at: $RACKSTRAP_ARTIFACTS
// when set (CI uploads it), else a directory under the system's temp dir.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("RACKSTRAP_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "rackstrap-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

func findAll(root *html.Node, pred func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	if root == nil {
		return nil
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if pred(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	return out
}

func byTestID(root *html.Node, id string) *html.Node {
	ns := findAll(root, func(n *html.Node) bool { return attr(n, "data-testid") == id })
	if len(ns) == 0 {
		return nil
	}
	return ns[0]
}

func attr(n *html.Node, key string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func attrOf(ns []*html.Node, key string) string {
	if len(ns) == 0 {
		return ""
	}
	return attr(ns[0], key)
}

func text(n *html.Node) string {
	var b strings.Builder
	for _, t := range findAll(n, func(n *html.Node) bool { return n.Type == html.TextNode }) {
		b.WriteString(t.Data)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

func textOf(ns []*html.Node) string {
	if len(ns) == 0 {
		return ""
	}
	return text(ns[0])
}

func TestLoadDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, nodes := sampleInputs(t)
	write := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("manifest.json", m)
	for _, n := range nodes {
		n.Validation, n.Inventory = nil, nil // LoadDir + Complete recompute them
		write(n.Name+".json", n)
	}
	gotM, gotNodes, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := profile.Bundled()
	for i := range gotNodes {
		if err := gotNodes[i].Complete(cat); err != nil {
			t.Fatal(err)
		}
	}
	got := Build(gotM, "", gotNodes, fixtures.Collected.Add(time.Hour))
	if err := got.Sign(testKey, "rackstrap-test"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(render(t, sampleReport(t), JSON)), string(render(t, got, JSON))); diff != "" {
		t.Errorf("report from LoadDir differs (-want +got):\n%s", diff)
	}
	// Unknown keys are errors that name the file.
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"name":"x","profle":"qemu-vm"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "bad.json") || !strings.Contains(err.Error(), `"profle"`) {
		t.Errorf("LoadDir(with a typo) = %v, want an error naming bad.json and the key", err)
	}
	if _, _, err := LoadDir(t.TempDir()); err == nil {
		t.Error("LoadDir(empty dir) succeeded")
	}
}

func TestParseFormat(t *testing.T) {
	t.Parallel()
	for _, f := range Formats {
		if got, err := ParseFormat(strings.ToUpper(string(f))); err != nil || got != f {
			t.Errorf("ParseFormat(%s) = %v, %v", f, got, err)
		}
	}
	if _, err := ParseFormat("pdf"); err == nil {
		t.Error("ParseFormat(pdf) succeeded")
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	priv := testKey
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{
		"pem":         pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		"seed base64": []byte(base64.StdEncoding.EncodeToString(priv.Seed()) + "\n"),
		"raw key":     priv,
	} {
		got, err := ParsePrivateKey(in)
		if err != nil || !got.Equal(priv) {
			t.Errorf("ParsePrivateKey(%s) = %v, %v", name, got, err)
		}
	}
	for name, in := range map[string][]byte{
		"pem":    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"base64": []byte(base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))),
	} {
		got, err := ParsePublicKey(in)
		if err != nil || !got.Equal(priv.Public()) {
			t.Errorf("ParsePublicKey(%s) = %v, %v", name, got, err)
		}
	}
	if _, err := ParsePrivateKey([]byte("nope")); err == nil {
		t.Error("ParsePrivateKey(garbage) succeeded")
	}
	if _, err := ParsePublicKey([]byte("nope")); err == nil {
		t.Error("ParsePublicKey(garbage) succeeded")
	}
}
