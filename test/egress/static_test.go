package egress

import (
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
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && id.Name == "net" &&
					(strings.HasPrefix(x.Sel.Name, "Lookup") || x.Sel.Name == "DefaultResolver" || x.Sel.Name == "Resolver") {
					t.Errorf("%s:%d: net.%s resolves names; a disconnected site has no DNS: take addresses from configuration", rel, fset.Position(x.Pos()).Line, x.Sel.Name)
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
					t.Errorf("%s:%d: URL %q names the public host %s; every byte must come from the local artifact store", rel, fset.Position(x.Pos()).Line, s, h)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("checked only %d Go files under %s; the walk is broken", files, root)
	}
}
