package service

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestUnitMatchesConfigsFile(t *testing.T) {
	b, err := os.ReadFile("../../configs/tunnel-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != Unit {
		t.Fatal("platform/service Unit differs from configs/tunnel-agent.service: keep them identical")
	}
	if strings.Contains(Unit, "{{") {
		t.Error("unit contains template actions; kardianos would not write it verbatim")
	}
	if got := Config().Option["SystemdScript"]; got != Unit {
		t.Error("kardianos config does not carry the unit")
	}
}

func TestUnitSettings(t *testing.T) {
	for _, want := range []string{
		"Type=notify", "User=tunnel-agent", "Restart=always\n", "ExecReload=/bin/kill -HUP $MAINPID\n",
		"WatchdogSec=30s\n", "TimeoutStartSec=30s\n", "StartLimitIntervalSec=0\n", "After=network-online.target",
		"Wants=network-online.target", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=tunnel-agent",
		"PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=\n", "PrivateDevices=yes",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service",
		"MemoryDenyWriteExecute=yes", "LockPersonality=yes", "RestrictNamespaces=yes", "UMask=0077",
		"TimeoutStopSec=", "ExecStart=" + ExecPath + " run --config " + ConfigPath + "\n",
	} {
		if !strings.Contains(Unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

var exposureRe = regexp.MustCompile(`Overall exposure level for [^:]+: ([0-9.]+)`)

func TestUnitSecurityExposure(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; cannot score the unit")
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "tunnel-agent.service")
	if err := os.WriteFile(unit, []byte(Unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	m := exposureRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in output (err %v):\n%s", err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security exposure: %.1f", score)
	if score > 2.0 {
		t.Errorf("exposure %.1f > 2.0:\n%s", score, out)
	}
}

func TestSdNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		name := filepath.Join(t.TempDir(), "notify.sock")
		env := name
		if abstract {
			name = "\x00tunnel-agent-test-" + strconv.Itoa(os.Getpid())
			env = "@" + name[1:]
		}
		ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", env)
		sent, err := Ready("subscribed")
		if err != nil || !sent {
			t.Fatalf("Ready: sent=%v err=%v", sent, err)
		}
		buf := make([]byte, 256)
		_ = ln.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := ln.ReadFromUnix(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != "READY=1\nSTATUS=subscribed" {
			t.Errorf("got %q", got)
		}
		ln.Close()
	}
}

// systemd's own parser accepts the unit (no unknown or misspelt
// directives, e.g. in the Restart/Watchdog/Reload lines).
func TestUnitVerifies(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	unit := filepath.Join(t.TempDir(), "tunnel-agent.service")
	if err := os.WriteFile(unit, []byte(Unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(tool, "verify", "--man=no", unit).CombinedOutput()
	for l := range strings.Lines(string(out)) {
		// The binary is not installed on a test machine; everything else counts.
		if strings.Contains(l, "Unknown") || strings.Contains(l, "Invalid") || strings.Contains(l, "Failed to parse") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
}

func TestWatchdogInterval(t *testing.T) {
	tests := []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"30000000", "", 15 * time.Second},
		{"30000000", strconv.Itoa(os.Getpid()), 15 * time.Second},
		{"30000000", "1", 0}, // meant for another process
		{"garbage", "", 0},
	}
	for _, tt := range tests {
		t.Setenv("WATCHDOG_USEC", tt.usec)
		t.Setenv("WATCHDOG_PID", tt.pid)
		if got := WatchdogInterval(); got != tt.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %s, want %s", tt.usec, tt.pid, got, tt.want)
		}
	}
}

func TestStatusLine(t *testing.T) {
	var sent []string
	s := &StatusLine{parts: map[string]string{}, send: func(l string) (bool, error) { sent = append(sent, l); return true, nil }}
	s.Set("mqtt", "connecting to a:8883")
	s.Set("tunnels", "0 open")
	s.Set("mqtt", "connecting to a:8883") // unchanged: not sent again
	s.Set("mqtt", "subscribed\nreally")
	s.Set("tunnels", "")
	want := []string{"mqtt: connecting to a:8883", "mqtt: connecting to a:8883; tunnels: 0 open",
		"mqtt: subscribed really; tunnels: 0 open", "mqtt: subscribed really"}
	if strings.Join(sent, "|") != strings.Join(want, "|") {
		t.Errorf("sent %q\nwant %q", sent, want)
	}
}

func TestSdNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Ready("x"); sent || err != nil {
		t.Errorf("sent=%v err=%v", sent, err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing"))
	if _, err := Stopping(); err == nil {
		t.Error("no error for a missing socket")
	}
}

func TestControlUnknownAction(t *testing.T) {
	if _, err := Control("restart-everything", Options{}); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("got %v", err)
	}
}
