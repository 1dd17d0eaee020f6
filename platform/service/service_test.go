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
		t.Fatal("platform/service Unit differs from configs/tunnel-agent.service")
	}
	if strings.Contains(Unit, "{{") {
		t.Error("unit contains template actions; it is written verbatim")
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

func TestControlWithoutSystemdNamesTheEmbeddedFiles(t *testing.T) {
	_, err := Control(ActionStatus, Options{SystemdRunDir: filepath.Join(t.TempDir(), "missing")})
	if !errors.Is(err, ErrNoSystemd) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"tunnel-agent print-unit >", "print-unit --init sysv", "print-unit --init procd", "tunnel-agent example-config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
}

// TestInstallFailureShowsSystemctlAndCleansUp runs the real systemctl. Here it
// cannot succeed: without systemd as PID 1 daemon-reload fails ("System has not
// been booted with systemd"), and with it `enable` fails because the unit sits in
// a directory systemd does not search. Either way install must show systemctl's
// own message and leave the unit directory as it found it.
func TestInstallFailureShowsSystemctlAndCleansUp(t *testing.T) {
	systemctl, err := exec.LookPath("systemctl")
	if err != nil {
		t.Skip("systemctl not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, previous := range []string{"", "# an older unit\n"} {
		dir := t.TempDir()
		path := filepath.Join(dir, "tunnel-agent.service")
		if previous != "" {
			if err := os.WriteFile(path, []byte(previous), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		o := Options{ExecPath: exe, UnitDir: dir, Systemctl: systemctl, SystemdRunDir: dir}
		_, err = Control(ActionInstall, o)
		if !errors.Is(err, ErrSystemctl) {
			t.Fatalf("install: got %v, want ErrSystemctl", err)
		}
		msg := err.Error()
		// "systemctl ARGS: exit status N: <systemctl's own output>"
		if i := strings.Index(msg, "exit status "); i < 0 || !strings.Contains(msg[i:], ": ") || len(msg[i:]) < 20 {
			t.Errorf("error does not carry systemctl's output: %v", err)
		}
		if !strings.Contains(msg, "print-unit") {
			t.Errorf("error does not say how to install by hand: %v", err)
		}
		b, readErr := os.ReadFile(path)
		switch {
		case previous == "" && readErr == nil:
			t.Errorf("install left %s behind", path)
		case previous != "" && string(b) != previous:
			t.Errorf("install did not restore the previous unit: %q", b)
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 1 || (previous == "" && len(entries) > 0) {
			t.Errorf("install left files: %v", entries)
		}
	}
}

func TestInstallNeedsTheBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := Control(ActionInstall, Options{ExecPath: filepath.Join(dir, "nope"), UnitDir: dir, SystemdRunDir: dir})
	if !errors.Is(err, ErrExecPath) {
		t.Fatalf("got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("wrote %v", entries)
	}
}
