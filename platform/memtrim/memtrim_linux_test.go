package memtrim

import (
	"bufio"
	"os"
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
