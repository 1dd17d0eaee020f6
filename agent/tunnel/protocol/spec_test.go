package protocol

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository's root, seen from this package's directory.
const repoRoot = "../../.."

var (
	citation = regexp.MustCompile(`PROTOCOL\.md\s+(?://\s*)?§(\d+(?:\.\d+)?)(?:\s+item\s+(\d+))?`)
	heading  = regexp.MustCompile(`(?m)^#{2,3} (\d+(?:\.\d+)?)\.? `)
	// listItem is a numbered list item at the start of a line ("1. ", "12. ").
	listItem = regexp.MustCompile(`(?m)^\s*(\d+)\. `)
)

// specSections maps each section number of PROTOCOL.md to its text.
func specSections(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	idx := heading.FindAllStringSubmatchIndex(text, -1)
	out := make(map[string]string, len(idx))
	for i, m := range idx {
		end := len(text)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		out[text[m[2]:m[3]]] = text[m[1]:end]
	}
	return out
}

// TestSpecCitations checks that every "PROTOCOL.md §N" (and "§N item K") in the
// repository's Go files and Markdown names a section (and item) that exists, so
// the comments that point at the specification stay true when it changes.
func TestSpecCitations(t *testing.T) {
	sections := specSections(t)
	if len(sections) < 20 {
		t.Fatalf("PROTOCOL.md has %d numbered sections; the heading pattern no longer matches", len(sections))
	}
	n := 0
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "node_modules" || name == "testdata" || (strings.HasPrefix(name, ".") && path != repoRoot) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range citation.FindAllStringSubmatch(string(b), -1) {
			n++
			body, ok := sections[m[1]]
			if !ok {
				t.Errorf("%s cites PROTOCOL.md §%s, which does not exist", path, m[1])
				continue
			}
			if m[2] == "" {
				continue
			}
			want, _ := strconv.Atoi(m[2])
			found := false
			for _, it := range listItem.FindAllStringSubmatch(body, -1) {
				if k, _ := strconv.Atoi(it[1]); k == want {
					found = true
				}
			}
			if !found {
				t.Errorf("%s cites PROTOCOL.md §%s item %d, which has no such item", path, m[1], want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 30 {
		t.Errorf("found %d citations of PROTOCOL.md; expected the code's 30 or more", n)
	}
}
