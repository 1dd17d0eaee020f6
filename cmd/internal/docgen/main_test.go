package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/cmd/internal/cmddoc"
)

// TestEveryFlagDocumented builds tunnelctl and tunnel-emulator, writes their
// pages and checks each flag every command's -h shows is in its page.
func TestEveryFlagDocumented(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	dir := t.TempDir()
	bins := map[string]string{}
	for _, name := range []string{"tunnelctl", "tunnel-emulator"} {
		bins[name] = filepath.Join(dir, name)
		if out, err := exec.Command("go", "build", "-o", bins[name], "../../"+name).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", name, err, out)
		}
	}
	if err := run([]string{"--tunnelctl", bins["tunnelctl"], "--tunnel-emulator", bins["tunnel-emulator"], "--out", dir}); err != nil {
		t.Fatal(err)
	}
	ctl, err := tunnelctlPage(bins["tunnelctl"])
	if err != nil {
		t.Fatal(err)
	}
	emu, err := emulatorPage(bins["tunnel-emulator"])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		page cmddoc.Page
		help func(cmddoc.Command) []string
	}{
		{ctl, func(c cmddoc.Command) []string { return []string{c.Name, "-h"} }},
		{emu, func(c cmddoc.Command) []string {
			if c.Name == "" {
				return []string{"-h"}
			}
			return []string{c.Name, "-h"}
		}},
	} {
		b, err := os.ReadFile(filepath.Join(dir, tc.page.Program+".1"))
		if err != nil {
			t.Fatal(err)
		}
		man := string(b)
		for _, c := range tc.page.Commands {
			text, err := help(bins[tc.page.Program], tc.help(c)...)
			if err != nil {
				t.Fatal(err)
			}
			lines := 0
			for _, l := range strings.Split(text, "\n") {
				if strings.HasPrefix(l, "  -") {
					lines++
				}
			}
			if lines != len(c.Flags) || lines == 0 {
				t.Errorf("%s %s: -h shows %d flags, the page documents %d", tc.page.Program, c.Name, lines, len(c.Flags))
			}
			for _, f := range c.Flags {
				if !strings.Contains(man, `\-`+strings.ReplaceAll(f.Name, "-", `\-`)+`\fR`) {
					t.Errorf("%s.1 lacks %s --%s", tc.page.Program, c.Name, f.Name)
				}
			}
		}
	}
}
