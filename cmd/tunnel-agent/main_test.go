package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
)

// TestMain lets the test binary act as tunnel-agent for the process tests.
func TestMain(m *testing.M) {
	if os.Getenv("TUNNEL_AGENT_TEST_MAIN") == "1" {
		os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func run(args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	rc := realMain(args, &out, &errOut)
	return out.String(), errOut.String(), rc
}

func writeConfig(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConfigFlagsOverride(t *testing.T) {
	pki := notifytest.NewPKI(t, "pi-1")
	cfg := writeConfig(t, fmt.Sprintf("thing_name: pi-1\nendpoint: example.com\ncert: %s\nkey: %s\nroot_ca: %s\nservices: {SSH: 127.0.0.1:22}\nconn_buffer: 4MiB\n",
		pki.ClientCertFile, pki.ClientKeyFile, pki.CAFile))
	out, errOut, rc := run("check-config", "--config", cfg, "--max-tunnels", "3", "--service", "HTTP=127.0.0.1:80",
		"--https-proxy", "http://u:s3cret@proxy:3128", "--log-format", "json", "--max-tunnel-lifetime", "90m",
		"--conn-buffer", "256KiB", "--conn-stall-timeout", "5s")
	if rc != 0 {
		t.Fatalf("rc %d: %s", rc, errOut)
	}
	for _, want := range []string{"max_tunnels: 3", "HTTP: 127.0.0.1:80", "log_format: json", "max_tunnel_lifetime: 1h30m0s", "configuration OK", "client_id: pi-1",
		"conn_buffer: 256KiB", "conn_stall_timeout: 5s"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SSH:") {
		t.Error("--service did not replace the file's services")
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("secret printed:\n%s", out)
	}
}

func TestCheckConfigErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		args       []string
		want       string
	}{
		{"unknown key", "thing_name: x\nendpoit: y\n", nil, `unknown key "endpoit"`},
		{"invalid", "thing_name: x\n", nil, "endpoint"},
		{"bad flag value", "", []string{"--port", "abc"}, "not a number"},
		{"conn_buffer too small", "conn_buffer: 16KiB\n", nil, "conn_buffer: 16KiB: must be between 32KiB and 64MiB"},
		{"conn_buffer not a size", "conn_buffer: lots\n", nil, "256KiB"},
		{"conn_buffer flag too big", "", []string{"--conn-buffer", "128MiB"}, "conn_buffer: 128MiB"},
		{"conn_stall_timeout too long", "conn_stall_timeout: 2m\n", nil, "conn_stall_timeout: 2m0s: must be between 0 and 1m0s"},
		{"conn_stall_timeout flag", "", []string{"--conn-stall-timeout", "soon"}, "not a duration"},
		{"plaintext without opt-in", "thing_name: x\nendpoint: e\ncert: c\nkey: k\nroot_ca: r\nservices: {A: 127.0.0.1:1}\ndata_endpoint: ws://127.0.0.1:1\n",
			nil, "allow_plaintext_data_plane"},
		{"plaintext opt-in reaches the file checks", "thing_name: x\nendpoint: e\ncert: /nonexistent/c\nkey: k\nroot_ca: r\nservices: {A: 127.0.0.1:1}\ndata_endpoint: ws://127.0.0.1:1\n",
			[]string{"--allow-plaintext-data-plane"}, "/nonexistent/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check-config", "--config", writeConfig(t, tt.yaml)}, tt.args...)
			out, errOut, rc := run(args...)
			if rc == 0 || !strings.Contains(out+errOut, tt.want) {
				t.Errorf("rc %d, stderr %q, want %q", rc, errOut, tt.want)
			}
		})
	}
}

func TestUsageAndVersion(t *testing.T) {
	if out, _, rc := run("version"); rc != 0 || !strings.HasPrefix(out, "tunnel-agent ") {
		t.Errorf("version: %q %d", out, rc)
	}
	if _, errOut, rc := run("frobnicate"); rc != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: %q %d", errOut, rc)
	}
	if _, _, rc := run(); rc != 2 {
		t.Errorf("no command: rc %d", rc)
	}
}

// The device binary links neither the emulator nor the test broker.
func TestDeviceBinaryDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"platform/emulator", "mochi-mqtt", "notifytest", "goleak", "fakenucleus"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("tunnel-agent links %s", bad)
		}
	}
}

// Every config key can be overridden by a flag of the same name.
func TestEveryKeyHasAFlag(t *testing.T) {
	s := newSettings("run", false)
	typ := reflect.TypeOf(config.Config{})
	for i := range typ.NumField() {
		key, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		name := strings.ReplaceAll(key, "_", "-")
		if key == "services" {
			name = "service"
		}
		if s.fs.Lookup(name) == nil {
			t.Errorf("config key %s has no --%s flag", key, name)
		}
	}
}

// checkStatusCommand runs `tunnel-agent status` against a running agent.
func checkStatusCommand(t *testing.T, socket string) {
	t.Helper()
	out, errOut, rc := run("status", "--json", "--socket", socket)
	if rc != 0 {
		t.Fatalf("status --json: rc %d: %s", rc, errOut)
	}
	var st struct {
		Thing   string
		Source  struct{ State, Topic string }
		Tunnels []any
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Thing != "pi-1" || st.Source.State != "subscribed" ||
		st.Source.Topic != "$aws/things/pi-1/tunnels/notify" || st.Tunnels == nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	out, _, rc = run("status", "--socket", socket)
	if rc != 0 || !strings.Contains(out, "source: mqtt localhost:") || !strings.Contains(out, "tunnels: 0 live (max 10)") {
		t.Fatalf("status: rc %d\n%s", rc, out)
	}
	t.Logf("tunnel-agent status:\n%s", out)
}

// Without a daemon, status says so in one line and exits 1.
func TestStatusWithoutDaemon(t *testing.T) {
	out, errOut, rc := run("status", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if rc != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "tunnel-agent is not running") {
		t.Fatalf("rc %d, stdout %q, stderr %q", rc, out, errOut)
	}
	if _, errOut, rc := run("status", "extra"); rc == 0 || !strings.Contains(errOut, "no arguments") {
		t.Fatalf("status extra: rc %d %q", rc, errOut)
	}
}
