package demo

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// privateTmp points TMPDIR at a directory of the test's own, so that demo runs of
// other test processes do not disturb the leftover check.
func privateTmp(t *testing.T) {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir())
}

func demoDirs(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "tunnelctl-demo-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCheckPasses(t *testing.T) {
	privateTmp(t)
	before := len(demoDirs(t))
	var out tunneltest.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := runBounded(t, ctx, Config{Check: true, Out: &out}); err != nil {
		t.Fatalf("check failed: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"ok   SSH: 4 concurrent connections, 32 MiB", "ok   HTTP: GET /", "PASS"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if after := len(demoDirs(t)); after > before {
		t.Errorf("temporary directory left behind (%d -> %d)", before, after)
	}
}

func TestInteractiveStopsOnCancel(t *testing.T) {
	privateTmp(t)
	before := len(demoDirs(t))
	var out tunneltest.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{SSHPort: 0, HTTPPort: 0, SSHTarget: "127.0.0.1:1", Out: &out,
			OnReady: func(a map[string]string) { ready <- a }})
	}()
	var addrs map[string]string
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("demo ended early: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatal("demo not ready in 30s")
	}
	if err := checkHTTP(context.Background(), &out, addrs["HTTP"]); err != nil {
		t.Errorf("HTTP through the running demo: %v", err)
	}
	if err := echoOnce(context.Background(), addrs["SSH"], 9, 1<<20); err != nil {
		t.Errorf("echo through the running demo: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop within 15s of cancel")
	}
	if after := len(demoDirs(t)); after > before {
		t.Errorf("temporary directory left behind (%d -> %d)", before, after)
	}
	if s := out.String(); !strings.Contains(s, "built-in echo service (no sshd on 127.0.0.1:1)") || !strings.Contains(s, "curl http://localhost:") {
		t.Errorf("instructions:\n%s", s)
	}
}

func TestSplitSSHDOrEcho(t *testing.T) {
	svcs, err := startServices()
	if err != nil {
		t.Fatal(err)
	}
	defer svcs.Close()
	d := &demo{cfg: Config{SSHTarget: svcs.HTTPAddr()}, svcs: svcs} // something listening stands in for sshd
	d.chooseServices()
	if d.services["SSH"] != svcs.HTTPAddr() || d.echoService != "" {
		t.Errorf("listening sshd not used: %v", d.services)
	}
	d = &demo{cfg: Config{SSHTarget: svcs.HTTPAddr(), Check: true}, svcs: svcs}
	d.chooseServices()
	if d.services["SSH"] != svcs.EchoAddr() || d.echoService != "SSH" {
		t.Errorf("--check must use the echo: %v", d.services)
	}
}

func TestPickAddrFallsBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if got := pickAddr(port); got != "127.0.0.1:0" {
		t.Errorf("busy port %d: got %s", port, got)
	}
	if got := pickAddr(0); got != "127.0.0.1:0" {
		t.Errorf("port 0: got %s", got)
	}
}

// runBounded runs the demo and, should it not return in time, fails with every
// goroutine's stack instead of waiting for the test binary's timeout.
func runBounded(t *testing.T, ctx context.Context, cfg Config) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	select {
	case err := <-done:
		return err
	case <-time.After(90 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("demo.Run did not return within 90s; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
	}
	return nil
}
