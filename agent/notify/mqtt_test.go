package notify

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// TestMain checks that no goroutine outlives the tests, except a paho
// Subscribe stuck on a lost connection (subscribeAside): it ends at the
// connect timeout by design, which a test that cut the wait short need not
// sit out.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/tunnel-agent/tunnel-agent/agent/notify.subscribeAside"))
}

const thing = "pi-1"

type run struct {
	payloads chan []byte
	ready    chan struct{}
	done     chan error
	cancel   context.CancelFunc
}

func startSource(t *testing.T, p *notifytest.PKI, port int) *run {
	return startSourceLog(t, p, port, nil)
}

func startSourceLog(t *testing.T, p *notifytest.PKI, port int, log *slog.Logger) *run {
	t.Helper()
	return startSourceCfg(t, testConfig(t, p, port, log))
}

// testConfig is a source config for the test's PKI with short backoff.
func testConfig(t *testing.T, p *notifytest.PKI, port int, log *slog.Logger) MQTTConfig {
	return MQTTConfig{Logger: log,
		Endpoint: "localhost", Port: port, ThingName: thing, ClientID: thing + "-" + t.Name(),
		CertFile: p.ClientCertFile, KeyFile: p.ClientKeyFile, RootCAFile: p.CAFile,
		MinReconnectInterval: 20 * time.Millisecond,
		MaxReconnectInterval: 200 * time.Millisecond,
		// A reconnect that reaches a broker while it shuts down can be
		// accepted and never answered: give up on it well before the tests'
		// waits (10 s and more), yet not on a TLS handshake that is slow
		// because the machine is loaded.
		ConnectTimeout: 5 * time.Second,
	}
}

func startSourceCfg(t *testing.T, cfg MQTTConfig) *run {
	t.Helper()
	src, err := NewMQTTSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{payloads: make(chan []byte, 16), ready: make(chan struct{}, 16), done: make(chan error, 1), cancel: cancel}
	go func() {
		r.done <- src.Run(ctx,
			func(b []byte) bool { r.payloads <- b; return true },
			func() { r.ready <- struct{}{} })
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *run) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return after cancel")
	}
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func TestMQTTDeliversAfterSubscribe(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	r := startSource(t, p, b.Port())
	wait(t, r.ready, "ready")
	b.Publish(t, Topic(thing), []byte("one"))
	b.Publish(t, "$aws/things/other/tunnels/notify", []byte("not ours"))
	b.Publish(t, Topic(thing), []byte("two"))
	if got := string(wait(t, r.payloads, "payload")); got != "one" {
		t.Errorf("got %q", got)
	}
	if got := string(wait(t, r.payloads, "payload")); got != "two" {
		t.Errorf("got %q", got)
	}
}

func TestMQTTALPNOn443(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	src, err := NewMQTTSource(MQTTConfig{Endpoint: "x", Port: 443, ThingName: thing,
		CertFile: p.ClientCertFile, KeyFile: p.ClientKeyFile, RootCAFile: p.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	if got := src.current().tls.NextProtos; len(got) != 1 || got[0] != ALPNProtocol {
		t.Errorf("NextProtos = %v", got)
	}
}

// The broker is down when the agent starts: it keeps trying and subscribes
// once the broker comes up; after a broker restart it subscribes again, and
// a message published while it was away (persistent session) arrives.
func TestMQTTBrokerDownAtBootAndRestart(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	port := ln.Addr().(*net.TCPAddr).Port

	logs := &tunneltest.SyncBuffer{}
	r := startSourceLog(t, p, port, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if !tunneltest.Poll(15*time.Second, func() bool { return strings.Contains(logs.String(), "cause=tcp_refused") }) {
		t.Fatalf("no warning while the broker is down:\n%s", logs.String())
	}
	select {
	case <-r.ready:
		t.Fatal("ready while the broker is down")
	default:
	}
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{Addr: addr})
	wait(t, r.ready, "ready after broker start")
	b.Publish(t, Topic(thing), []byte("first"))
	wait(t, r.payloads, "first")

	b.Close()
	b2 := notifytest.StartBroker(t, p, notifytest.BrokerOptions{Addr: addr})
	select {
	case <-r.ready:
	case <-time.After(15 * time.Second):
		t.Fatalf("not ready after broker restart; log:\n%s", logs.String())
	}
	b2.Publish(t, Topic(thing), []byte("second"))
	if got := string(wait(t, r.payloads, "second")); got != "second" {
		t.Errorf("got %q", got)
	}
}

func TestMQTTOfflineMessageDelivered(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	r := startSource(t, p, b.Port())
	wait(t, r.ready, "ready")
	r.stop(t)
	b.Publish(t, Topic(thing), []byte("while away"))
	r2 := startSource(t, p, b.Port())
	if got := string(wait(t, r2.payloads, "offline message")); got != "while away" {
		t.Errorf("got %q", got)
	}
}

func TestNewMQTTSourceErrors(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	tests := []struct {
		name string
		cfg  MQTTConfig
		want string
	}{
		{"no endpoint", MQTTConfig{ThingName: thing}, "endpoint"},
		{"missing cert", MQTTConfig{Endpoint: "h", ThingName: thing, CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}, "/nonexistent.pem"},
		{"bad CA", MQTTConfig{Endpoint: "h", ThingName: thing, CertFile: p.ClientCertFile, KeyFile: p.ClientKeyFile, RootCAFile: p.ClientKeyFile}, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMQTTSource(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Error("key material in error")
			}
		})
	}
}
