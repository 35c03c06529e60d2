package egress

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// placeholderHost reports whether a URL host in code is a placeholder
// (documentation, test names) rather than a real public name.
func placeholderHost(h string) bool {
	if h == "" || h == "localhost" || net.ParseIP(h) != nil || !strings.Contains(h, ".") {
		return true
	}
	for _, s := range []string{".example", ".invalid", ".test", ".localhost", "example.com", "example.org", "example.net"} {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return false
}

// TestNoPublicNamesInCode is the static half of zero egress: no code path
// resolves DNS names itself (net.Lookup*, a net.Resolver) and no URL
// literal names a public host. Test files are not product code and are
// not checked.
func TestNoPublicNamesInCode(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "vendor", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil // another engineer's file mid-edit; the build catches it
		}
		files++
		rel, _ := filepath.Rel(root, p)
		for _, problem := range scan(fset, f, rel) {
			t.Error(problem)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("checked only %d Go files under %s; the walk is broken", files, root)
	}
}

// scan lists the name lookups and public URL literals in one file.
func scan(fset *token.FileSet, f *ast.File, rel string) []string {
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.SelectorExpr:
			if id, ok := x.X.(*ast.Ident); ok && id.Name == "net" &&
				(strings.HasPrefix(x.Sel.Name, "Lookup") || x.Sel.Name == "DefaultResolver" || x.Sel.Name == "Resolver") {
				out = append(out, fmt.Sprintf("%s:%d: net.%s resolves names; a disconnected site has no DNS: take addresses from configuration", rel, fset.Position(x.Pos()).Line, x.Sel.Name))
			}
		case *ast.BasicLit:
			if x.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(x.Value)
			if err != nil || !(strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")) {
				return true
			}
			u, err := url.Parse(strings.Fields(s)[0])
			if err != nil {
				return true
			}
			if h := u.Hostname(); !placeholderHost(h) && !strings.ContainsAny(h, "{%") {
				out = append(out, fmt.Sprintf("%s:%d: URL %q names the public host %s; every byte must come from the local artifact store", rel, fset.Position(x.Pos()).Line, s, h))
			}
		}
		return true
	})
	return out
}

// TestScanFindsLookupsAndPublicURLs: the static check can fail.
func TestScanFindsLookupsAndPublicURLs(t *testing.T) {
	t.Parallel()
	src := `package x
import ("net"; "net/http")
func f() {
	net.LookupHost("ntp.vendor.com")
	var r net.Resolver
	_ = r
	http.Get("https://updates.vendor.com/fw.bin")
	http.Get("http://127.0.0.1:8080/ok")
	http.Get("http://bmc.example/redfish")
	_ = "http://{host}/x"
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(scan(fset, f, "x.go"), "\n")
	for _, want := range []string{"x.go:4: net.LookupHost", "x.go:5: net.Resolver", `x.go:7: URL "https://updates.vendor.com/fw.bin"`} {
		if !strings.Contains(got, want) {
			t.Errorf("scan() = %s\nwant it to report %s", got, want)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 3 {
		t.Errorf("scan() reported %d problems, want 3:\n%s", n, got)
	}
}
