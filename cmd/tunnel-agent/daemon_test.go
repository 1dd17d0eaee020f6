package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// notifyListener is a NOTIFY_SOCKET, as systemd provides it.
type notifyListener struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	n := &notifyListener{path: filepath.Join(t.TempDir(), "notify.sock"), msgs: make(chan string, 1024)}
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, _, err := ln.ReadFromUnix(buf)
			if err != nil {
				return
			}
			select {
			case n.msgs <- string(buf[:k]):
			default:
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return n
}

// waitFor returns the first message containing want, with the messages
// skipped on the way.
func (n *notifyListener) waitFor(t *testing.T, want string, timeout time.Duration) (string, []string) {
	t.Helper()
	var seen []string
	deadline := time.After(timeout)
	for {
		select {
		case m := <-n.msgs:
			if strings.Contains(m, want) {
				return m, seen
			}
			seen = append(seen, m)
		case <-deadline:
			t.Fatalf("no %q from the agent within %s; got %q", want, timeout, seen)
		}
	}
}

// agentProc is the test binary running as tunnel-agent.
type agentProc struct {
	cmd    *exec.Cmd
	stderr *tunneltest.SyncBuffer
	done   chan error
}

func startAgentProc(t *testing.T, env []string, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{cmd: exec.Command(os.Args[0], args...), stderr: &tunneltest.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(append(os.Environ(), "TUNNEL_AGENT_TEST_MAIN=1"), env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// stop sends SIGTERM and expects a clean exit within the 5 s grace.
func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err // for Cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit 10 s after SIGTERM:\n%s", p.stderr.String())
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
}

func (p *agentProc) waitLog(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	if !tunneltest.Poll(timeout, func() bool { return strings.Contains(p.stderr.String(), want) }) {
		t.Fatalf("log lacks %q after %s:\n%s", want, timeout, p.stderr.String())
	}
}

func mqttArgs(pki *notifytest.PKI, port int, t *testing.T) []string {
	return []string{"run", "--thing-name", "pi-1", "--endpoint", "localhost", "--port", fmt.Sprint(port),
		"--cert", pki.ClientCertFile, "--key", pki.ClientKeyFile, "--root-ca", pki.CAFile,
		"--service", "SSH=127.0.0.1:22", "--state-dir", t.TempDir(), "--config", writeConfig(t, "")}
}

// With no reachable broker, READY=1 still arrives at once (boot, `enable
// --now` and package upgrades do not wait for the network), STATUS= says
// what the connection is doing, and WATCHDOG=1 keeps coming from the event
// loop.
func TestReadyWithoutBrokerAndWatchdog(t *testing.T) {
	pki := notifytest.NewPKI(t, "pi-1")
	n := listenNotify(t)
	start := time.Now()
	p := startAgentProc(t, []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=200000"}, mqttArgs(pki, refusedPort(t), t)...)
	ready, _ := n.waitFor(t, "READY=1", 15*time.Second)
	took := time.Since(start)
	// The broker never answers, so READY=1 arriving at all shows it does not
	// wait for the connection; the time is printed, not asserted (shared machines).
	t.Logf("READY=1 %s after start with the broker unreachable: %q", took.Round(time.Millisecond), ready)
	status, _ := n.waitFor(t, "tcp_refused", 15*time.Second)
	t.Logf("status: %q", status)
	for range 3 {
		n.waitFor(t, "WATCHDOG=1", 10*time.Second)
	}
	if strings.Contains(p.stderr.String(), "subscribed") {
		t.Error("subscribed without a broker?")
	}
	p.stop(t)
}

// With a broker, STATUS= reaches "subscribed", and SIGTERM ends the
// process cleanly within the grace period.
func TestRunReadinessAndSIGTERM(t *testing.T) {
	pki := notifytest.NewPKI(t, "pi-1")
	b := notifytest.StartBroker(t, pki, notifytest.BrokerOptions{})
	n := listenNotify(t)
	control := filepath.Join(t.TempDir(), "control.sock")
	p := startAgentProc(t, []string{"NOTIFY_SOCKET=" + n.path}, append(mqttArgs(pki, b.Port(), t), "--control-socket", control)...)
	n.waitFor(t, "READY=1", 15*time.Second)
	st, _ := n.waitFor(t, "STATUS=mqtt: subscribed", 15*time.Second)
	t.Logf("%q", st)
	checkStatusCommand(t, control)
	p.stop(t)
	n.waitFor(t, "STOPPING=1", 5*time.Second)
	if !strings.Contains(p.stderr.String(), "subscribed") {
		t.Errorf("log lacks the subscription:\n%s", p.stderr.String())
	}
}

// Under journald (JOURNAL_STREAM names our stderr) each line carries its
// syslog priority and no timestamp of its own.
func TestJournaldPriorities(t *testing.T) {
	pki := notifytest.NewPKI(t, "pi-1")
	f, err := os.Create(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	sys := st.Sys().(*syscall.Stat_t)
	cmd := exec.Command(os.Args[0], mqttArgs(pki, refusedPort(t), t)...)
	cmd.Env = append(os.Environ(), "TUNNEL_AGENT_TEST_MAIN=1", fmt.Sprintf("JOURNAL_STREAM=%d:%d", sys.Dev, sys.Ino))
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out string
	tunneltest.Poll(15*time.Second, func() bool { // the check below says what is missing
		b, _ := os.ReadFile(f.Name())
		out = string(b)
		return strings.Contains(out, "<4>")
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if !strings.Contains(out, "<6>level=INFO msg=\"tunnel-agent starting\"") || !strings.Contains(out, "<4>level=WARN msg=\"mqtt connection failed; retrying\"") {
		t.Errorf("no priority prefixes:\n%s", out)
	}
	if strings.Contains(out, "time=") {
		t.Errorf("own timestamps under journald:\n%s", out)
	}
	t.Logf("first lines:\n%s", strings.Join(strings.SplitN(out, "\n", 3)[:2], "\n"))
}

// refusedPort returns a loopback port nothing listens on, held for the test.
func refusedPort(t *testing.T) int {
	_, port, _ := net.SplitHostPort(tunneltest.RefusedAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}
