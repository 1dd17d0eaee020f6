package notify

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func jsonLogger(w *tunneltest.SyncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Issue 20 item 6 with the backoff: after a connection that stayed up
// StableAfter, a new outage starts again at attempt 1 (the shortest
// delay) instead of where the last outage left off.
func TestMQTTBackoffResetsAfterStableConnection(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	addr := b.Addr
	logs := &tunneltest.SyncBuffer{}
	cfg := testConfig(t, p, b.Port(), jsonLogger(logs))
	cfg.MinReconnectInterval, cfg.MaxReconnectInterval = 20*time.Millisecond, 400*time.Millisecond
	cfg.StableAfter = 300 * time.Millisecond
	r := startSourceCfg(t, cfg)
	seen := 0
	for outage := range 3 {
		wait(t, r.ready, "ready")
		time.Sleep(2 * cfg.StableAfter) // let the connection become stable
		b.Close()
		// Fail at least four times in a row while it is down.
		lines := waitRetries(t, logs, seen+4)
		b = notifytest.StartBroker(t, p, notifytest.BrokerOptions{Addr: addr})
		if got := lines[seen].Attempt; got != 1 {
			t.Errorf("outage %d began at attempt %d, want 1 (backoff not reset)", outage, got)
		}
		if lines[seen].Cause != string(CauseLost) {
			t.Errorf("outage %d: first cause %s, want %s", outage, lines[seen].Cause, CauseLost)
		}
		if lines[seen+3].Attempt < 4 {
			t.Errorf("outage %d: attempts did not count up: %+v", outage, lines[seen:seen+4])
		}
		// Counted once connected again: until then an attempt that failed
		// before the restart can still be logged.
		wait(t, r.ready, "ready after restart")
		seen = len(parseRetries(t, logs.String()))
		r.ready <- struct{}{} // put it back for the loop
		t.Logf("outage %d: failed attempts numbered from %d, connected again", outage, lines[len(lines)-4].Attempt)
	}
}

// Two clients with one client id take the connection from each other. The
// short connections are classified (another client with the same id) and
// do not reset the backoff: the attempts keep counting.
func TestMQTTDuplicateClientID(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	logsA, logsB := &tunneltest.SyncBuffer{}, &tunneltest.SyncBuffer{}
	a := testConfig(t, p, b.Port(), jsonLogger(logsA))
	other := a
	other.Logger = jsonLogger(logsB)
	startSourceCfg(t, a)
	startSourceCfg(t, other)
	waitTakeovers(t, logsA, logsB)
}

func waitTakeovers(t *testing.T, logsA, logsB *tunneltest.SyncBuffer) {
	var n, maxAttempt int
	var badHint string
	done := tunneltest.Poll(20*time.Second, func() bool {
		all := append(parseRetries(t, logsA.String()), parseRetries(t, logsB.String())...)
		n, maxAttempt = 0, 0
		for _, l := range all {
			if l.Cause == string(CauseTakenOver) {
				n++
				maxAttempt = max(maxAttempt, l.Attempt)
				if !strings.Contains(l.Hint, "client_id") || !strings.Contains(l.Hint, "Device Client") {
					badHint = l.Hint
					return true
				}
			}
		}
		return n >= 4 && maxAttempt >= 3
	})
	if badHint != "" {
		t.Fatalf("hint %q does not say what to do", badHint)
	}
	if !done {
		t.Fatalf("take-overs %d, max attempt %d:\nA:\n%s\nB:\n%s", n, maxAttempt, logsA.String(), logsB.String())
	}
	t.Logf("%d take-overs logged, attempts up to %d", n, maxAttempt)
}

// A notification the agent cannot take is not acknowledged; the source
// reconnects and the broker delivers it again.
func TestMQTTUntakenNotificationRedelivered(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	logs := &tunneltest.SyncBuffer{}
	cfg := testConfig(t, p, b.Port(), jsonLogger(logs))
	cfg.RedeliverAfter = 100 * time.Millisecond
	src, err := NewMQTTSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	got := make(chan string, 4)
	ready := make(chan struct{}, 4)
	r := &run{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.done <- src.Run(ctx, func(b []byte) bool {
			got <- string(b)
			return calls.Add(1) > 1 // the first delivery is not taken
		}, func() { ready <- struct{}{} })
	}()
	t.Cleanup(func() { r.stop(t) })
	wait(t, ready, "ready")
	b.Publish(t, Topic(thing), []byte("n1"))
	if first, again := wait(t, got, "first delivery"), wait(t, got, "redelivery"); first != "n1" || again != "n1" {
		t.Fatalf("deliveries %q, %q", first, again)
	}
	if !strings.Contains(logs.String(), "redelivers") {
		t.Errorf("no log line about the redelivery:\n%s", logs.String())
	}
	select {
	case extra := <-got:
		t.Errorf("delivered again after being taken: %q\nlogs:\n%s", extra, logs.String())
	case <-time.After(3 * cfg.RedeliverAfter):
	}
}

// Reconfigure with other connection settings moves the source to them at
// once (a reload that changes endpoint, port or certificates); the same
// settings change nothing.
func TestMQTTReconfigure(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	a := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	logs := &tunneltest.SyncBuffer{}
	cfg := testConfig(t, p, a.Port(), jsonLogger(logs))
	src, err := NewMQTTSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	ready := make(chan struct{}, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(b []byte) bool { got <- string(b); return true }, func() { ready <- struct{}{} })
	}()
	defer func() { cancel(); <-done }()
	wait(t, ready, "ready on broker A")
	if changed, err := src.Reconfigure(cfg); err != nil || changed {
		t.Fatalf("same settings: changed=%v err=%v", changed, err)
	}
	moved := cfg
	moved.Port = b.Port()
	if changed, err := src.Reconfigure(moved); err != nil || !changed {
		t.Fatalf("new port: changed=%v err=%v", changed, err)
	}
	wait(t, ready, "ready on broker B")
	b.Publish(t, Topic(thing), []byte("from B"))
	if m := wait(t, got, "message from B"); m != "from B" {
		t.Errorf("got %q", m)
	}
	// A renewed certificate written over the old files is a change too.
	certFile, keyFile := p.IssueClient(t, "renewed", thing, x509.ExtKeyUsageClientAuth, time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))
	for from, to := range map[string]string{certFile: p.ClientCertFile, keyFile: p.ClientKeyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if changed, err := src.Reconfigure(moved); err != nil || !changed {
		t.Fatalf("renewed certificate: changed=%v err=%v", changed, err)
	}
	wait(t, ready, "ready with the renewed certificate")
	broken := moved
	broken.RootCAFile = p.ClientKeyFile
	if _, err := src.Reconfigure(broken); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("broken root CA accepted: %v", err)
	}
	if !strings.Contains(logs.String(), "mqtt settings changed; reconnecting") {
		t.Errorf("no log line for the reconnect:\n%s", logs.String())
	}
}
