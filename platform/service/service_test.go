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
		"Type=notify", "User=tunnel-agent", "Restart=on-failure", "After=network-online.target",
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
