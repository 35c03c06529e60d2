package report

import (
	"embed"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html/template"
	"io"
	"strings"

	"github.com/rackstrap/rackstrap/hwprofiles/validate"
)

// Format is an output format of the report.
type Format string

const (
	JSON  Format = "json"
	HTML  Format = "html"
	JUnit Format = "junit"
	CSV   Format = "csv"
)

// Formats lists the formats Render writes.
var Formats = []Format{JSON, HTML, JUnit, CSV}

// ParseFormat validates a format name.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == strings.ToLower(s) {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown report format %q; use json, html, junit or csv", s)
}

// Render writes the report in one format.
func Render(w io.Writer, r *Report, f Format) error {
	switch f {
	case JSON:
		return WriteJSON(w, r)
	case HTML:
		return WriteHTML(w, r)
	case JUnit:
		return WriteJUnit(w, r)
	case CSV:
		return WriteCSV(w, r)
	}
	return fmt.Errorf("unknown report format %q; use json, html, junit or csv", f)
}

// WriteJSON writes the report as indented JSON (report.schema.json).
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// CSVHeader is the first row of the CSV form.
var CSVHeader = []string{"rack", "slot", "node", "serial", "profile", "status", "severity", "rule", "component", "location", "expected", "actual", "message", "hint"}

// WriteCSV writes one row per finding (and one per node without findings,
// and one per drift outlier), for spreadsheets.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	rows := [][]string{CSVHeader}
	for _, n := range r.Nodes {
		base := []string{r.Rack, slotText(n.Slot), n.Name, n.Serial, n.Profile, nodeStatus(n)}
		if len(n.Findings) == 0 {
			msg := "no findings"
			switch n.Status {
			case StatusMissing:
				msg = "expected in the manifest but not found"
			case StatusNotValidated:
				msg = "not validated yet"
			}
			rows = append(rows, append(base, "", "", "", "", "", "", msg, ""))
			continue
		}
		for _, f := range n.Findings {
			rows = append(rows, append(append([]string(nil), base...), string(f.Severity), f.Rule, f.Component, f.Location, f.Expected, f.Actual, f.Message, f.Hint))
		}
	}
	for _, d := range r.Drift {
		for _, o := range d.Outliers {
			n := r.node(o.Node)
			rows = append(rows, []string{r.Rack, slotText(n.Slot), o.Node, n.Serial, d.Profile, "drift", string(validate.Warning),
				"drift." + d.Field, "", "", d.Majority, o.Value, driftMessage(d, o), ""})
		}
	}
	for _, row := range rows[1:] {
		for i, cell := range row {
			row[i] = csvSafe(cell)
		}
	}
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// csvSafe keeps a cell from being read as a formula by a spreadsheet:
// inventory strings come from machines and BMCs, not from us.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (r *Report) node(name string) Node {
	for _, n := range r.Nodes {
		if n.Name == name {
			return n
		}
	}
	return Node{Name: name}
}

func slotText(s int) string {
	if s == 0 {
		return ""
	}
	return itoa(s)
}

func nodeStatus(n Node) string {
	if n.Unexpected {
		return string(n.Status) + "+unexpected"
	}
	return string(n.Status)
}

func driftMessage(d Drift, o DriftOutlier) string {
	return fmt.Sprintf("%s differs from its %s siblings: %s = %s, %d of %d nodes have %s", o.Node, d.Profile, d.Field, o.Value, d.Agree, d.Total, d.Majority)
}

// JUnit XML (the Ant/Jenkins form most CI dashboards read; junit.xsd in
// testdata describes exactly what is written).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes one testsuite per node (a "validation" case, then one
// case per error or warning finding; errors fail), one per missing or
// unexpected node, and a drift suite.
func WriteJUnit(w io.Writer, r *Report) error {
	ts := r.GeneratedAt.UTC().Format("2006-01-02T15:04:05")
	out := junitSuites{Name: "rack " + r.Rack + " acceptance", Time: "0"}
	for _, n := range r.Nodes {
		class := r.Rack + "." + n.Name
		s := junitSuite{Name: class, Time: "0", Timestamp: ts, Hostname: n.Name, Properties: []junitProperty{
			{"rack", r.Rack}, {"slot", slotText(n.Slot)}, {"serial", n.Serial}, {"profile", n.Profile}, {"status", nodeStatus(n)},
		}}
		main := junitCase{Name: "validation", Classname: class, Time: "0"}
		switch {
		case n.Status == StatusMissing:
			main = junitCase{Name: "present", Classname: class, Time: "0", Failure: &junitFailure{
				Message: "expected in slot " + slotText(n.Slot) + " but not found", Type: "missing",
				Text: "check that the node is racked, cabled and its BMC reachable"}}
		case n.Status == StatusQuarantine:
			main.Failure = &junitFailure{Message: fmt.Sprintf("quarantined: %s, %s", plural(n.Errors, "error"), plural(n.Warnings, "warning")), Type: "quarantine"}
		case n.Status == StatusNotValidated:
			main.Failure = &junitFailure{Message: "not validated", Type: "not-validated", Text: "run inspection and validation on this node"}
		}
		s.Cases = append(s.Cases, main)
		if n.Unexpected {
			s.Cases = append(s.Cases, junitCase{Name: "expected", Classname: class, Time: "0", Failure: &junitFailure{
				Message: "not in the rack manifest", Type: "unexpected", Text: "add the node to the rack manifest or remove it from the rack"}})
		}
		for _, f := range n.Findings {
			if f.Severity == validate.Info {
				continue
			}
			c := junitCase{Name: f.Rule + locSuffix(f.Location), Classname: class, Time: "0"}
			text := fmt.Sprintf("%s\nexpected: %s\nactual: %s\nhint: %s", f.Message, f.Expected, f.Actual, f.Hint)
			if f.Severity == validate.Error {
				c.Failure = &junitFailure{Message: f.Message, Type: string(f.Severity), Text: text}
			} else {
				c.SystemOut = "warning: " + text
			}
			s.Cases = append(s.Cases, c)
		}
		out.Suites = append(out.Suites, s)
	}
	if len(r.Drift) > 0 {
		s := junitSuite{Name: r.Rack + ".drift", Time: "0", Timestamp: ts, Hostname: r.Rack}
		for _, d := range r.Drift {
			for _, o := range d.Outliers {
				s.Cases = append(s.Cases, junitCase{Name: d.Field + " " + o.Node, Classname: r.Rack + ".drift." + d.Profile, Time: "0",
					Failure: &junitFailure{Message: driftMessage(d, o), Type: "drift"}})
			}
		}
		out.Suites = append(out.Suites, s)
	}
	for i := range out.Suites {
		s := &out.Suites[i]
		s.Tests = len(s.Cases)
		for _, c := range s.Cases {
			if c.Failure != nil {
				s.Failures++
			}
		}
		out.Tests += s.Tests
		out.Failures += s.Failures
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func locSuffix(loc string) string {
	if loc == "" {
		return ""
	}
	return " " + loc
}

//go:embed report.html.tmpl
var tmplFS embed.FS

var htmlTmpl = template.Must(template.New("report.html.tmpl").Funcs(template.FuncMap{
	"slot":   slotText,
	"status": nodeStatus,
}).ParseFS(tmplFS, "report.html.tmpl"))

type elevRow struct {
	U    int
	Node *Node
	Span int
	Top  bool // first (highest) unit of the node
	Used bool // covered by a node
}

type severityGroup struct {
	Severity validate.Severity
	Title    string
	Items    []nodeFinding
}

type nodeFinding struct {
	Node string
	Slot int
	validate.Finding
}

type htmlData struct {
	*Report
	Elevation []elevRow
	Unplaced  []Node
	Groups    []severityGroup
	Firmware  []Node
}

// WriteHTML writes one self-contained page: no scripts, fonts, images or
// styles from anywhere else.
func WriteHTML(w io.Writer, r *Report) error {
	d := htmlData{Report: r}
	byTop := map[int]*Node{}
	used := map[int]bool{}
	for i := range r.Nodes {
		n := &r.Nodes[i]
		if n.Slot <= 0 || n.Slot > r.Units {
			d.Unplaced = append(d.Unplaced, *n)
			continue
		}
		top := min(n.Slot+n.Height-1, r.Units)
		if _, taken := byTop[top]; taken || used[top] {
			d.Unplaced = append(d.Unplaced, *n)
			continue
		}
		byTop[top] = n
		for u := n.Slot; u <= top; u++ {
			used[u] = true
		}
	}
	for u := r.Units; u >= 1; u-- {
		row := elevRow{U: u, Used: used[u]}
		if n, ok := byTop[u]; ok {
			row.Node, row.Top, row.Span = n, true, u-n.Slot+1
		}
		d.Elevation = append(d.Elevation, row)
	}
	for _, sev := range []struct {
		s     validate.Severity
		title string
	}{{validate.Error, "Errors"}, {validate.Warning, "Warnings"}, {validate.Info, "Information"}} {
		g := severityGroup{Severity: sev.s, Title: sev.title}
		for _, n := range r.Nodes {
			for _, f := range n.Findings {
				if f.Severity == sev.s {
					g.Items = append(g.Items, nodeFinding{Node: n.Name, Slot: n.Slot, Finding: f})
				}
			}
		}
		d.Groups = append(d.Groups, g)
	}
	for _, n := range r.Nodes {
		if len(n.Firmware) > 0 {
			d.Firmware = append(d.Firmware, n)
		}
	}
	if err := htmlTmpl.Execute(w, d); err != nil {
		return fmt.Errorf("write html: %w", err)
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return itoa(n) + " " + word + "s"
}
