package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// open and describe print the id the device's agent logs for the tunnel.
func TestDeviceLogID(t *testing.T) {
	isolateAWS(t)
	e := startEmulator(t, emulator.Config{})
	dir := t.TempDir()
	var out struct {
		TunnelID    string `json:"tunnelId"`
		DestFile    string `json:"destinationAccessTokenFile"`
		DeviceLogID string `json:"deviceLogId"`
	}
	runCLI(t, nil, "--endpoint", e.APIURL(), "open", "--thing", "pi-1", "--service", "SSH",
		"--token-file-dir", dir, "--json").mustOK(t).decode(t, &out)
	tok, err := os.ReadFile(out.DestFile)
	if err != nil {
		t.Fatal(err)
	}
	want := audit.TunnelID(strings.TrimSpace(string(tok)))
	if out.DeviceLogID != want {
		t.Fatalf("open --json: deviceLogId %q, want %q", out.DeviceLogID, want)
	}
	r := runCLI(t, nil, "--endpoint", e.APIURL(), "describe", "--token-file-dir", dir, out.TunnelID).mustOK(t)
	if !strings.Contains(r.stdout, "Device log id:  "+want) {
		t.Errorf("describe:\n%s", r.stdout)
	}
	var d struct{ DeviceLogID string }
	runCLI(t, nil, "--endpoint", e.APIURL(), "describe", "--json", "--token-file-dir", dir, out.TunnelID).mustOK(t).decode(t, &d)
	if d.DeviceLogID != want {
		t.Errorf("describe --json: %q", d.DeviceLogID)
	}
	// Without the token file, describe cannot know it and says nothing.
	r = runCLI(t, nil, "--endpoint", e.APIURL(), "describe", out.TunnelID).mustOK(t)
	if strings.Contains(r.stdout, "Device log id") {
		t.Errorf("describe without tokens:\n%s", r.stdout)
	}
	r = runCLI(t, nil, "--endpoint", e.APIURL(), "open", "--thing", "pi-1", "--service", "SSH").mustOK(t)
	if !strings.Contains(r.stdout, "Device log id:") {
		t.Errorf("open:\n%s", r.stdout)
	}
}
