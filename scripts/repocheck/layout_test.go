package repocheck

import (
	"bufio"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// drawingEntry is one line of the README's architecture drawing that names
// something: a directory ("tunnel/") or files ("dispatch.go, source.go"),
// with the directory it sits in and the text that describes it (its own line
// and the continuation lines under it).
type drawingEntry struct {
	line  int
	dir   string   // the directory the entry names or sits in, slash-separated
	files []string // files named by the entry, relative to the root
	text  string   // the entry's description, every line of it
}

// TestArchitectureDrawing keeps the README's drawing of the tree true: every
// directory and file it names exists, and every Go package in the repository
// is named in it, either as an entry of its own or, for a package under an
// entry (cmd/tunnelctl/internal/cli under tunnelctl/), by its name in that
// entry's description.
func TestArchitectureDrawing(t *testing.T) {
	entries := readDrawing(t, filepath.Join(root, "README.md"))
	if len(entries) < 20 {
		t.Fatalf("README's architecture drawing has %d entries; is the code block after \"## Architecture\" still there?", len(entries))
	}
	for _, e := range entries {
		if st, err := os.Stat(filepath.Join(root, e.dir)); err != nil || !st.IsDir() {
			t.Errorf("README.md:%d: the drawing names %s/, which is not a directory; update the drawing", e.line, e.dir)
		}
		for _, f := range e.files {
			if _, err := os.Stat(filepath.Join(root, f)); err != nil {
				t.Errorf("README.md:%d: the drawing names %s, which does not exist; update the drawing", e.line, f)
			}
		}
	}
	for _, pkg := range goPackages(t) {
		if e, ok := nearestEntry(entries, pkg); !ok {
			t.Errorf("package %s is not under any directory of README's architecture drawing; add it", pkg)
		} else if rest := strings.TrimPrefix(strings.TrimPrefix(pkg, e.dir), "/"); rest != "" && !mentions(e.text, path.Base(rest)) {
			t.Errorf("package %s is not named in README's architecture drawing (nearest entry: %s/ at README.md:%d); name it there", pkg, e.dir, e.line)
		}
	}
}

// nearestEntry returns the directory entry that holds pkg most closely.
func nearestEntry(entries []drawingEntry, pkg string) (drawingEntry, bool) {
	var best drawingEntry
	found := false
	for _, e := range entries {
		if len(e.files) > 0 {
			continue
		}
		if (pkg == e.dir || strings.HasPrefix(pkg, e.dir+"/")) && (!found || len(e.dir) > len(best.dir)) {
			best, found = e, true
		}
	}
	return best, found
}

// mentions reports whether word appears in text as a whole word.
func mentions(text, word string) bool {
	return regexp.MustCompile(`(^|[^\w-])` + regexp.QuoteMeta(word) + `($|[^\w-])`).MatchString(text)
}

// readDrawing parses the first code block after "## Architecture" in the
// README. An entry starts at an indentation of at most 8 spaces, two per
// level; its names end at the first run of two spaces; deeper lines continue
// the entry above.
func readDrawing(t *testing.T, readme string) []drawingEntry {
	t.Helper()
	f, err := os.Open(readme)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		entries       []drawingEntry
		stack         []string // directory per level
		inSection, in bool
		n             int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inSection = line == "## Architecture"
			continue
		case !inSection:
			continue
		case strings.HasPrefix(line, "```"):
			if in {
				return entries
			}
			in = true
			continue
		case !in || strings.TrimSpace(line) == "":
			continue
		}
		body := strings.TrimLeft(line, " ")
		indent := len(line) - len(body)
		if indent > 8 || indent%2 != 0 {
			if len(entries) > 0 {
				entries[len(entries)-1].text += "\n" + body
			}
			continue
		}
		level := indent / 2
		if level > len(stack) {
			t.Fatalf("README.md:%d: the drawing's line is indented deeper than the directory above it", n)
		}
		stack = stack[:level]
		names, _, _ := strings.Cut(body, "  ")
		parent := strings.Join(stack, "/")
		e := drawingEntry{line: n, dir: parent, text: body}
		for name := range strings.SplitSeq(names, ",") {
			name = strings.TrimSpace(name)
			if d, ok := strings.CutSuffix(name, "/"); ok {
				e.dir = path.Join(parent, d)
				stack = append(stack, d)
			} else if name != "" {
				e.files = append(e.files, path.Join(parent, name))
			}
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("%s: no code block after \"## Architecture\"", readme)
	return nil
}

// goPackages lists the directories holding non-test Go files, relative to
// the root and slash-separated.
func goPackages(t *testing.T) []string {
	t.Helper()
	var pkgs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		if _, _, ok := packageDoc(t, p); ok {
			rel, _ := filepath.Rel(root, p)
			pkgs = append(pkgs, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(pkgs)
	return pkgs
}
