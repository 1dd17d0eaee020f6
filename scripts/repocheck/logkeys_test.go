package repocheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// logMethods are the *slog.Logger methods (and slog functions) whose
// arguments after the message are key-value pairs or Attrs.
var logMethods = map[string]int{ // name -> index of the first key
	"Debug": 1, "Info": 1, "Warn": 1, "Error": 1,
	"DebugContext": 2, "InfoContext": 2, "WarnContext": 2, "ErrorContext": 2,
	"With": 0,
}

// attrFuncs are the slog functions whose first argument is a key.
var attrFuncs = map[string]bool{
	"String": true, "Int": true, "Int64": true, "Uint64": true, "Float64": true,
	"Bool": true, "Time": true, "Duration": true, "Any": true, "Group": true,
}

// TestLogKeysAreConstants checks that no log call in the repository's
// non-test code spells an attribute key as a string literal: keys are named
// constants (STYLE.md: "Attribute keys are constants"), so one key is
// spelled one way everywhere ("err", never "error" in one place and "err"
// in another) and a log query can rely on it. A call counts as a log call
// when its receiver's name contains "log" (l.log, s.log, logger, log) or it
// is a slog package function.
func TestLogKeysAreConstants(t *testing.T) {
	fset := token.NewFileSet()
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(node ast.Node) bool {
			for _, key := range literalKeys(node) {
				n++
				t.Errorf("%s: log attribute key %s is a literal; use a named constant", fset.Position(key.Pos()), key.Value)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		t.Logf("%d literal keys", n)
	}
}

// literalKeys returns the string literals used as attribute keys in node:
// a log call, or an attribute list built for one (attrs := []any{...},
// attrs = append(attrs, ...), with a variable whose name contains "attr").
func literalKeys(node ast.Node) []*ast.BasicLit {
	switch node := node.(type) {
	case *ast.CallExpr:
		return callKeys(node)
	case *ast.AssignStmt:
		if len(node.Lhs) != 1 || len(node.Rhs) != 1 || !strings.Contains(strings.ToLower(receiverName(node.Lhs[0])), "attr") {
			return nil
		}
		switch rhs := node.Rhs[0].(type) {
		case *ast.CompositeLit:
			return pairKeys(rhs.Elts, 0)
		case *ast.CallExpr:
			if id, ok := rhs.Fun.(*ast.Ident); ok && id.Name == "append" {
				return pairKeys(rhs.Args, 1)
			}
		}
	}
	return nil
}

// callKeys returns the literal keys of a log call.
func callKeys(call *ast.CallExpr) []*ast.BasicLit {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return nil
	}
	recv := receiverName(sel.X)
	if recv == "slog" && attrFuncs[sel.Sel.Name] {
		if lit := stringLit(call.Args[0]); lit != nil {
			return []*ast.BasicLit{lit}
		}
		return nil
	}
	first, ok := logMethods[sel.Sel.Name]
	if !ok || !strings.Contains(strings.ToLower(recv), "log") {
		return nil
	}
	return pairKeys(call.Args, first)
}

// pairKeys returns the literal keys of the key-value list args[first:].
func pairKeys(args []ast.Expr, first int) []*ast.BasicLit {
	var keys []*ast.BasicLit
	for i := first; i < len(args); i++ {
		if isAttr(args[i]) {
			continue // an slog.Attr takes one place
		}
		if lit := stringLit(args[i]); lit != nil {
			keys = append(keys, lit)
		}
		i++ // skip the value
	}
	return keys
}

// receiverName is the last name in x: "log" for l.log, "slog" for slog.
func receiverName(x ast.Expr) string {
	switch x := x.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.CallExpr: // logger().Info
		return receiverName(x.Fun)
	}
	return ""
}

func isAttr(x ast.Expr) bool {
	call, ok := x.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && receiverName(sel.X) == "slog" && attrFuncs[sel.Sel.Name]
}

func stringLit(x ast.Expr) *ast.BasicLit {
	lit, ok := x.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return nil
	}
	if _, err := strconv.Unquote(lit.Value); err != nil {
		return nil
	}
	return lit
}
