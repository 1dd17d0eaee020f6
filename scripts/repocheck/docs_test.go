package repocheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// root is the repository's root, seen from this directory.
const root = "../.."

// TestPackageDocs checks that every Go package in the repository has a doc
// comment in one of its non-test files, and that it opens the way go doc
// expects: "Package <name> ..." for a library, "Command <dir> ..." for a
// main package.
func TestPackageDocs(t *testing.T) {
	pkgs := goPackages(t)
	for _, rel := range pkgs {
		pkg, doc, _ := packageDoc(t, filepath.Join(root, rel))
		want := "Package " + pkg + " "
		if pkg == "main" {
			want = "Command " + path.Base(rel) + " "
		}
		switch {
		case doc == "":
			t.Errorf("%s: package %s has no doc comment; add one (in doc.go) saying what it is for", rel, pkg)
		case !strings.HasPrefix(doc, want):
			t.Errorf("%s: the doc comment should begin %q, it begins %q", rel, want, firstLine(doc))
		}
	}
	if len(pkgs) < 15 {
		t.Errorf("found %d packages; expected the repository's 15 or more", len(pkgs))
	}
}

// packageDoc returns the package name of the non-test Go files in dir and
// their package doc comment, or ok false when dir has none.
func packageDoc(t *testing.T, dir string) (pkg, doc string, ok bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if ignored(f) {
			continue
		}
		pkg, ok = f.Name.Name, true
		if f.Doc != nil && doc == "" {
			doc = f.Doc.Text()
		}
	}
	return pkg, doc, ok
}

// ignored reports whether f is excluded from builds (//go:build ignore).
func ignored(f *ast.File) bool {
	for _, g := range f.Comments {
		if g.Pos() >= f.Package {
			break
		}
		for _, c := range g.List {
			if strings.HasPrefix(c.Text, "//go:build") && strings.Contains(c.Text, "ignore") {
				return true
			}
		}
	}
	return false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
