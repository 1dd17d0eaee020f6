package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	r := runCLI(t, nil, "completion", shell).mustOK(t)
	path := filepath.Join(t.TempDir(), "tunnelctl."+shell)
	if err := os.WriteFile(path, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCompletionBash runs the bash script in a real bash with COMP_WORDS set as
// bash sets them, and checks the candidates.
func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := completionScript(t, "bash")
	tests := []struct {
		line    string   // words; the last one is being completed
		want    []string // all must be offered
		notWant []string
	}{
		{"tunnelctl co", []string{"connect", "completion"}, []string{"close"}},
		{"tunnelctl --region eu-west-1 ssh-c", []string{"ssh-config"}, nil},
		{"tunnelctl connect --idle", []string{"--idle-close"}, nil},
		{"tunnelctl open --t", []string{"--thing", "--tag", "--token-file-dir"}, []string{"--user"}},
		{"tunnelctl rotate ID --mode ", []string{"source", "destination", "all"}, nil},
		{"tunnelctl completion ", []string{"bash", "zsh", "fish", "powershell"}, nil},
		{"tunnelctl --", []string{"--endpoint", "--data-endpoint", "--profile"}, nil},
		{"tunnelctl localproxy --reg", []string{"--region"}, nil},
	}
	for _, tc := range tests {
		words := strings.Split(tc.line, " ")
		var arr []string
		for _, w := range words {
			arr = append(arr, "'"+w+"'")
		}
		prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(arr, " ") + ")\nCOMP_CWORD=" +
			string(rune('0'+len(words)-1)) + "\n_tunnelctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		out, err := exec.Command("bash", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.line, err, out)
		}
		got := strings.Fields(string(out))
		for _, w := range tc.want {
			if !contains(got, w) {
				t.Errorf("%q: %v lacks %s", tc.line, got, w)
			}
		}
		for _, w := range tc.notWant {
			if contains(got, w) {
				t.Errorf("%q: %v offers %s", tc.line, got, w)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCompletionFish asks a real fish for the candidates (complete -C).
func TestCompletionFish(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("fish not installed (Debian package fish)")
	}
	script := completionScript(t, "fish")
	for line, want := range map[string]string{
		"tunnelctl co":                  "connect",
		"tunnelctl connect --idle":      "--idle-close",
		"tunnelctl rotate x --mode ":    "destination",
		"tunnelctl completion ":         "powershell",
		"tunnelctl ssh-config --ho":     "--host",
		"tunnelctl --data-e":            "--data-endpoint",
		"tunnelctl localproxy --source": "--source-listen-port",
	} {
		out, err := exec.Command("fish", "--no-config", "-c", "source "+script+"; complete -C '"+line+"'").CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		var got []string
		for _, l := range strings.Split(string(out), "\n") {
			w, _, _ := strings.Cut(l, "\t")
			got = append(got, w)
		}
		if !contains(got, want) {
			t.Errorf("%q: %q lacks %s", line, out, want)
		}
	}
}

// TestCompletionZsh loads the script in a real zsh after compinit and checks that
// tunnelctl's completion is registered.
func TestCompletionZsh(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("zsh not installed (Debian package zsh)")
	}
	script := completionScript(t, "zsh")
	out, err := exec.Command("zsh", "-f", "-c", "autoload -U compinit && compinit -u -D; source "+script+"; print -r -- ${_comps[tunnelctl]}").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "_tunnelctl") && !strings.Contains(string(out), "_bash_complete") {
		t.Errorf("zsh: %v\n%s", err, out)
	}
}

// TestCompletionPowerShell checks the script's shape; no PowerShell runs on the
// CI machine (README: manual check on Windows).
func TestCompletionPowerShell(t *testing.T) {
	s := runCLI(t, nil, "completion", "powershell").mustOK(t).stdout
	for _, want := range []string{"Register-ArgumentCompleter -Native -CommandName 'tunnelctl', 'tunnelctl.exe'", "'connect' = @(", "'--idle-close'", "'--mode' = @('source', 'destination', 'all')"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if strings.Count(s, "{") != strings.Count(s, "}") || strings.Count(s, "(") != strings.Count(s, ")") {
		t.Error("unbalanced braces or parentheses")
	}
	if r := runCLI(t, nil, "completion", "tcsh"); r.code != ExitUsage {
		t.Errorf("unknown shell: exit %d", r.code)
	}
}
