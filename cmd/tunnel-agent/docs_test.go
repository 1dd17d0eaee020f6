package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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

// allFlagSets builds every command's flag set the way the commands do.
func allFlagSets() map[string]*flag.FlagSet {
	var kind string
	return map[string]*flag.FlagSet{
		"run":          newSettings("run", false).fs,
		"greengrass":   newSettings("greengrass", true).fs,
		"check-config": newSettings("check-config", false).fs,
		"print-unit":   printUnitFlags(&kind),
	}
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
	for cmd, fs := range allFlagSets() {
		fs.VisitAll(func(f *flag.Flag) {
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
		})
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
