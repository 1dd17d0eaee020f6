package memtrim

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// rssFile reads RssFile (KiB) from /proc/self/status.
func rssFile(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestDropExecPages(t *testing.T) {
	before := rssFile(t)
	n, err := DropExecPages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("advised %d KiB of mappings; RssFile %d -> %d KiB", n>>10, before, after)
	if n == 0 {
		t.Fatal("no read-only mapping of the executable found")
	}
	// The test binary is several MiB, mostly resident; what runs from here
	// on maps a few pages back.
	if before-after < 256 {
		t.Errorf("RssFile %d -> %d KiB, want at least 256 KiB less", before, after)
	}
}

func TestReadOnlyMapping(t *testing.T) {
	const exe = "/usr/bin/agent"
	tests := []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"00400000-007be000 r-xp 00000000 00:1f 123 /usr/bin/agent", 0x400000, 0x7be000, true},
		{"007bf000-00b9f000 r--p 003bf000 00:1f 123 /usr/bin/agent", 0x7bf000, 0xb9f000, true},
		{"00b9f000-00bfd000 rw-p 0079f000 00:1f 123 /usr/bin/agent", 0, 0, false},
		{"00400000-007be000 r-xp 00000000 00:1f 123 /usr/bin/other", 0, 0, false},
		{"00400000-007be000 r-xp 00000000 00:1f 123 /usr/bin/agent (deleted)", 0, 0, false},
		{"c000000000-c004000000 rw-p 00000000 00:00 0", 0, 0, false},
		{"007be000-00400000 r-xp 00000000 00:1f 123 /usr/bin/agent", 0, 0, false},
	}
	for _, tc := range tests {
		s, e, ok := readOnlyMapping([]byte(tc.line), exe)
		if s != tc.start || e != tc.end || ok != tc.ok {
			t.Errorf("%q: got %#x-%#x %v, want %#x-%#x %v", tc.line, s, e, ok, tc.start, tc.end, tc.ok)
		}
	}
}

func TestCleanReadOnly(t *testing.T) {
	const smaps = `00400000-007be000 r-xp 00000000 00:1f 123 /usr/bin/agent
Size:               3832 kB
Rss:                3500 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
007bf000-00b9f000 r--p 003bf000 00:1f 123 /usr/bin/agent
Size:               3968 kB
Anonymous:             0 kB
00b9f000-00ba0000 r--p 0079f000 00:1f 123 /usr/bin/agent
Size:                  4 kB
Anonymous:             4 kB
00ba0000-00bfd000 rw-p 007a0000 00:1f 123 /usr/bin/agent
Anonymous:           120 kB
c000000000-c004000000 rw-p 00000000 00:00 0
Anonymous:          2048 kB
7f0000000000-7f0000001000 r-xp 00000000 00:1f 9 /usr/lib/other.so
Anonymous:             0 kB
`
	got := cleanReadOnly([]byte(smaps), "/usr/bin/agent")
	want := [][2]uintptr{{0x400000, 0x7be000}, {0x7bf000, 0xb9f000}}
	if !slices.Equal(got, want) {
		t.Errorf("cleanReadOnly = %#x, want %#x (the relocated r--p page and the writable data kept)", got, want)
	}
}

// TestDropExecPagesPIE runs DropExecPages in a position-independent build,
// whose read-only data the dynamic loader relocated after start: dropping
// those pages would read back unrelocated ones and crash the process.
func TestDropExecPagesPIE(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	dir := t.TempDir()
	src := `package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/platform/memtrim"
)

func main() {
	n, err := memtrim.DropExecPages()
	if err != nil || n == 0 {
		fmt.Println("DropExecPages:", n, err)
		os.Exit(1)
	}
	var r any = strings.NewReplacer("a", "b")
	fmt.Printf("%T %v %s\n", r, map[string]int{"x": 1}, strings.Repeat("ok", 2))
}
`
	pkg := filepath.Join(dir, "piecheck")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// Build from inside the module so that the import resolves.
	bin := filepath.Join(dir, "piecheck.bin")
	build := exec.Command("go", "build", "-buildmode=pie", "-o", bin, filepath.Join(pkg, "main.go"))
	build.Dir = "."
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("cannot build a PIE program here: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "okok") {
		t.Fatalf("PIE program after DropExecPages: %v\n%.2000s", err, out)
	}
}

// BenchmarkDropExecPages: one drop, and what the loop then faults back.
func BenchmarkDropExecPages(b *testing.B) {
	for b.Loop() {
		if _, err := DropExecPages(); err != nil {
			b.Fatal(err)
		}
	}
}
