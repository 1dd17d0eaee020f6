package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/cmd/internal/cmddoc"
)

// The binary prints the files of configs/ byte for byte.
func TestPrintUnitAndExampleConfigMatchConfigs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		file string
	}{
		{[]string{"print-unit"}, "tunnel-agent.service"},
		{[]string{"print-unit", "--init", "systemd"}, "tunnel-agent.service"},
		{[]string{"print-unit", "--init", "sysv"}, "init.d/tunnel-agent"},
		{[]string{"print-unit", "--init", "procd"}, "openwrt/tunnel-agent.init"},
		{[]string{"example-config"}, "tunnel-agent.yaml"},
	} {
		want, err := os.ReadFile(filepath.Join("../../configs", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		out, errOut, rc := run(tc.args...)
		if rc != 0 || out != string(want) {
			t.Errorf("%v: rc %d, stderr %q, output differs from configs/%s (%d vs %d bytes)", tc.args, rc, errOut, tc.file, len(out), len(want))
		}
	}
	if _, errOut, rc := run("print-unit", "--init", "upstart"); rc != 1 || !strings.Contains(errOut, "use systemd, sysv or procd") {
		t.Errorf("unknown --init: rc %d, %q", rc, errOut)
	}
}

// helpFlags runs `tunnel-agent CMD -h` for every command and parses the flags
// it prints: what the commands really accept, however they build their flag
// sets. Commands print help to os.Stdout or os.Stderr, so both point to a file
// meanwhile (this test is not parallel).
func helpFlags(t *testing.T) map[string][]cmddoc.Flag {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "help")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = f, f
	defer func() { os.Stdout, os.Stderr = stdout, stderr }()
	out := map[string][]cmddoc.Flag{}
	for _, c := range commandDocs() {
		if c.Name == "completion" {
			continue // takes the shell name, no flags
		}
		if err := f.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		realMain([]string{c.Name, "-h"}, f, f)
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		out[c.Name] = cmddoc.ParseDefaults(string(b))
	}
	return out
}

func TestManPageAndCompletionsDocumentEveryFlag(t *testing.T) {
	man, errOut, rc := run("man")
	if rc != 0 {
		t.Fatalf("man: rc %d %s", rc, errOut)
	}
	comp := map[string]string{}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, errOut, rc := run("completion", sh)
		if rc != 0 {
			t.Fatalf("completion %s: rc %d %s", sh, rc, errOut)
		}
		comp[sh] = out
	}
	n := 0
	docs := map[string]int{}
	for _, c := range commandDocs() {
		docs[c.Name] = len(c.Flags)
	}
	for cmd, flags := range helpFlags(t) {
		if len(flags) != docs[cmd] {
			t.Errorf("tunnel-agent %s -h shows %d flags, the docs have %d", cmd, len(flags), docs[cmd])
		}
		for _, f := range flags {
			n++
			if !strings.Contains(man, `\fB\-\-`+strings.ReplaceAll(f.Name, "-", `\-`)+`\fR`) {
				t.Errorf("man page lacks %s --%s", cmd, f.Name)
			}
			if !regexp.MustCompile(`(?m)^\t` + cmd + `\) .*--` + f.Name + `\b`).MatchString(comp["bash"]) {
				t.Errorf("bash completion lacks %s --%s", cmd, f.Name)
			}
			if !strings.Contains(comp["zsh"], "'--"+f.Name+"[") {
				t.Errorf("zsh completion lacks --%s", f.Name)
			}
			if !strings.Contains(comp["fish"], "__fish_seen_subcommand_from "+cmd+"' -l "+f.Name+" ") {
				t.Errorf("fish completion lacks %s --%s", cmd, f.Name)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d flags seen", n)
	}
	// Every command the usage names is documented.
	for _, line := range strings.Split(usage, "\n") {
		if !strings.HasPrefix(line, "  ") || strings.HasPrefix(line, "   ") {
			continue
		}
		names, _, _ := strings.Cut(strings.TrimSpace(line), "  ")
		for _, name := range strings.Split(names, " | ") {
			if !isCommand(name) || !strings.Contains(man, ".SS "+strings.ReplaceAll(name, "-", `\-`)) {
				t.Errorf("usage names %q, which the man page does not document", name)
			}
		}
	}
	// Each script parses in its shell, where that shell is installed.
	for sh, script := range comp {
		if _, err := exec.LookPath(sh); err != nil {
			continue
		}
		f := filepath.Join(t.TempDir(), "completion."+sh)
		if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sh, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v %s", sh, err, out)
		}
	}
	if _, errOut, rc := run("completion", "tcsh"); rc != 1 || !strings.Contains(errOut, "bash, zsh or fish") {
		t.Errorf("completion tcsh: rc %d %q", rc, errOut)
	}
}

func isCommand(name string) bool {
	for _, c := range commandDocs() {
		if c.Name == name {
			return true
		}
	}
	return false
}
