package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

// reloadWorld is the emulator, two local services and the agent's config file.
type reloadWorld struct {
	emu         *emulator.Emulator
	cfgPath     string
	base        string // the config without services and log level
	echo, echo2 string
}

func newReloadWorld(t *testing.T) *reloadWorld {
	emu, err := emulator.New(emulator.Config{StateDir: t.TempDir(), SweepInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- emu.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	dir := t.TempDir()
	cert, key, err := emu.IssueDeviceCert("pi-1", dir)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(emu.MQTTAddr())
	w := &reloadWorld{emu: emu, cfgPath: filepath.Join(dir, "config.yaml"), echo: tunneltest.Echo(t), echo2: tunneltest.Echo(t)}
	w.base = fmt.Sprintf("thing_name: pi-1\nendpoint: %s\nport: %s\ncert: %s\nkey: %s\nroot_ca: %s\ndata_endpoint: %s\nca_file: %s\nstate_dir: %s\nlog_format: json\n",
		host, port, cert, key, emu.CAFile(), emu.DataEndpoint(), emu.CAFile(), t.TempDir())
	return w
}

func (w *reloadWorld) write(t *testing.T, extra string) {
	t.Helper()
	if err := os.WriteFile(w.cfgPath, []byte(w.base+extra), 0o600); err != nil {
		t.Fatal(err)
	}
}

// open makes a tunnel for the services and returns a running source session.
func (w *reloadWorld) open(t *testing.T, services ...string) *tunnel.Session {
	t.Helper()
	in := map[string]any{"destinationConfig": map[string]any{"thingName": "pi-1", "services": services}}
	var out struct{ SourceAccessToken string }
	if err := emulator.CallAPI(context.Background(), http.DefaultClient, w.emu.APIURL(), emulator.DefaultRegion, "OpenTunnel", in, &out); err != nil || out.SourceAccessToken == "" {
		t.Fatalf("OpenTunnel: %v", err)
	}
	m := map[string]string{}
	for _, s := range services {
		m[s] = "127.0.0.1:0"
	}
	s, err := tunnel.New(tunnel.Config{Mode: tunnel.ModeSource, Endpoint: w.emu.DataEndpoint(), AccessToken: out.SourceAccessToken,
		RootCAs: w.emu.CAPool(), Services: m, ReconnectMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// liveConn is a connection through the tunnel that keeps carrying traffic.
type liveConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialLive(t *testing.T, addr string) *liveConn {
	t.Helper()
	if err := tunneltest.EchoEventually(addr, 100); err != nil {
		t.Fatalf("tunnel path: %v", err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &liveConn{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends a line and reads it back.
func (l *liveConn) roundTrip(msg string) error {
	_ = l.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(l.c, msg); err != nil {
		return err
	}
	got, err := l.r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

func (p *agentProc) hup(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// countLog counts log lines containing s.
func (p *agentProc) countLog(s string) int { return strings.Count(p.stderr.String(), s) }

func (p *agentProc) waitCount(t *testing.T, s string, n int) {
	t.Helper()
	if !tunneltest.Poll(20*time.Second, func() bool { return p.countLog(s) >= n }) {
		t.Fatalf("fewer than %d log lines with %q:\n%s", n, s, p.stderr.String())
	}
}

// SIGHUP reloads the configuration live: a tunnel with traffic survives a
// reload that adds a service (usable at once on that tunnel) and raises
// the log level; a broken file is refused and logged, the running
// configuration stays; removing a service ends its connections with an
// audit event, and the others carry on.
func TestSIGHUPReload(t *testing.T) {
	w := newReloadWorld(t)
	w.write(t, fmt.Sprintf("services: {ECHO: %q}\nlog_level: info\n", w.echo))
	n := listenNotify(t)
	p := startAgentProc(t, []string{"NOTIFY_SOCKET=" + n.path}, "run", "--config", w.cfgPath)
	n.waitFor(t, "STATUS=mqtt: subscribed", 20*time.Second)

	src := w.open(t, "ECHO", "ECHO2")
	live := dialLive(t, src.Addr("ECHO").String())
	if err := live.roundTrip("before"); err != nil {
		t.Fatal(err)
	}
	if err := tunneltest.EchoCheck(src.Addr("ECHO2").String(), 10); err == nil {
		t.Fatal("ECHO2 served before it was allowed")
	}

	// 1. Add ECHO2 and turn on debug logging.
	w.write(t, fmt.Sprintf("services: {ECHO: %q, ECHO2: %q}\nlog_level: debug\n", w.echo, w.echo2))
	p.hup(t)
	p.waitLog(t, `"msg":"configuration reloaded"`, 10*time.Second)
	n.waitFor(t, "RELOADING=1", 5*time.Second)
	if err := live.roundTrip("after adding a service"); err != nil {
		t.Fatalf("live connection broken by the reload: %v", err)
	}
	if err := tunneltest.EchoEventually(src.Addr("ECHO2").String(), 1000); err != nil {
		t.Fatalf("added service not served on the live tunnel: %v", err)
	}
	if !strings.Contains(p.stderr.String(), `"changed":["services","log_level"]`) {
		t.Errorf("reload does not say what changed:\n%s", p.stderr.String())
	}
	if p.countLog(`"level":"DEBUG"`) == 0 {
		t.Error("log_level: debug not applied")
	}

	// 2. A broken file is refused; everything keeps working.
	w.write(t, "max_tunnels: lots\n")
	p.hup(t)
	p.waitLog(t, "configuration reload refused; the running configuration stays", 10*time.Second)
	if !strings.Contains(p.stderr.String(), "max_tunnels: `lots` is not a whole number") {
		t.Errorf("refusal does not say why:\n%s", p.stderr.String())
	}
	if err := live.roundTrip("after a refused reload"); err != nil {
		t.Fatalf("live connection broken by a refused reload: %v", err)
	}

	// 3. Remove ECHO: its live connection ends with an audit event; ECHO2 stays.
	w.write(t, fmt.Sprintf("services: {ECHO2: %q}\nlog_level: info\n", w.echo2))
	p.hup(t)
	p.waitCount(t, `"msg":"configuration reloaded"`, 2)
	p.waitLog(t, `"reason":"service removed from the services map"`, 10*time.Second)
	_ = live.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(live.r); err != nil && !isReset(err) {
		t.Errorf("removed service's connection: %v", err)
	}
	if err := tunneltest.EchoCheck(src.Addr("ECHO2").String(), 1000); err != nil {
		t.Errorf("remaining service broken: %v", err)
	}
	for l := range strings.Lines(p.stderr.String()) {
		if strings.Contains(l, "service removed from the services map") {
			t.Logf("audit: %s", strings.TrimSpace(l))
		}
	}
	p.stop(t)
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// check-config --connect against the emulator's broker.
func TestCheckConfigConnectEmulator(t *testing.T) {
	w := newReloadWorld(t)
	w.write(t, fmt.Sprintf("services: {ECHO: %q}\n", w.echo))
	out, errOut, rc := run("check-config", "--config", w.cfgPath, "--connect", "--as-user", currentUser(t))
	if rc != 0 || !strings.Contains(out, "ok: mqtt: connected and subscribed to $aws/things/pi-1/tunnels/notify") {
		t.Fatalf("rc %d:\n%s%s", rc, out, errOut)
	}
}
