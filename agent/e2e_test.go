package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

const thingName = "pi-1"

// world is an emulator, local services and the agent's config.
type world struct {
	t       *testing.T
	emu     *emulator.Emulator
	clock   atomic.Int64 // emulator clock offset, ns
	cfg     config.Config
	logs    *logBuf
	secrets []string // every token seen; none may appear in logs
	mu      sync.Mutex

	// MQTT settings of the broker the agent uses.
	mqttHost string
	mqttPort int
	rootCA   string
}

func newWorld(t *testing.T, mod func(*emulator.Config)) *world {
	w := &world{t: t, logs: &logBuf{}}
	ecfg := emulator.Config{StateDir: t.TempDir(), MQTTPlainAddr: "127.0.0.1:0", SweepInterval: 20 * time.Millisecond,
		Now: func() time.Time { return time.Now().Add(time.Duration(w.clock.Load())) }}
	if mod != nil {
		mod(&ecfg)
	}
	emu, err := emulator.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	w.emu = emu
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- emu.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emulator: %v", err)
		}
		w.checkNoSecrets()
	})
	dir := t.TempDir()
	cert, key, err := emu.IssueDeviceCert(thingName, dir)
	if err != nil {
		t.Fatal(err)
	}
	w.cfg = config.Default()
	w.cfg.ThingName, w.cfg.Cert, w.cfg.Key = thingName, cert, key
	w.cfg.DataEndpoint, w.cfg.CAFile = emu.DataEndpoint(), emu.CAFile()
	w.cfg.StateDir = t.TempDir()
	w.cfg.Services = map[string]string{"ECHO": tunneltest.Echo(t), "HTTP": startHTTP(t)}
	if a := emu.MQTTAddr(); a != "" {
		host, port := splitPort(t, a)
		w.mqttHost, w.mqttPort, w.rootCA = host, port, emu.CAFile()
	}
	return w
}

func splitPort(t *testing.T, addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return h, n
}

func (w *world) addSecret(s ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.secrets = append(w.secrets, s...)
}

func (w *world) checkNoSecrets() {
	w.mu.Lock()
	defer w.mu.Unlock()
	logs := w.logs.String()
	for _, s := range w.secrets {
		if s != "" && strings.Contains(logs, s) {
			w.t.Errorf("a token appears in the agent log")
		}
	}
}

// runningAgent is one agent process.
type runningAgent struct {
	a      *Agent
	cancel context.CancelFunc
	done   chan error
}

func (w *world) startAgent() *runningAgent {
	w.t.Helper()
	cfg := w.cfg
	cfg.Endpoint, cfg.Port, cfg.RootCA = w.mqttHost, w.mqttPort, w.rootCA
	if err := cfg.Validate(); err != nil {
		w.t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := notify.NewMQTTSource(notify.MQTTConfig{Endpoint: cfg.Endpoint, Port: cfg.Port, ThingName: cfg.ThingName,
		CertFile: cfg.Cert, KeyFile: cfg.Key, RootCAFile: cfg.RootCA, Logger: log, MaxReconnectInterval: time.Second})
	if err != nil {
		w.t.Fatal(err)
	}
	a, err := New(cfg, src, log)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	w.t.Cleanup(func() { r.stop(w.t) })
	select {
	case <-a.Ready():
	case <-time.After(20 * time.Second):
		w.t.Fatal("agent never subscribed")
	}
	return r
}

func (r *runningAgent) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("agent Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("agent did not stop within 30 s")
	}
}

// api calls the emulator's control plane.
func (w *world) api(op string, in any) map[string]any {
	w.t.Helper()
	var out map[string]any
	if err := emulator.CallAPI(context.Background(), http.DefaultClient, w.emu.APIURL(), emulator.DefaultRegion, op, in, &out); err != nil {
		w.t.Fatal(err)
	}
	for _, k := range []string{"sourceAccessToken", "destinationAccessToken"} {
		if s, ok := out[k].(string); ok {
			w.addSecret(s)
		}
	}
	return out
}

type openedTunnel struct{ id, srcToken, dstToken string }

func (w *world) open(services ...string) openedTunnel {
	out := w.api("OpenTunnel", map[string]any{"destinationConfig": map[string]any{"thingName": thingName, "services": services}})
	return openedTunnel{id: out["tunnelId"].(string), srcToken: out["sourceAccessToken"].(string), dstToken: out["destinationAccessToken"].(string)}
}

// source runs a source session (the operator's side) for the services.
func (w *world) source(token string, services ...string) *tunnel.Session {
	w.t.Helper()
	m := map[string]string{}
	for _, s := range services {
		m[s] = "127.0.0.1:0"
	}
	s, err := tunnel.New(tunnel.Config{Mode: tunnel.ModeSource, Endpoint: w.emu.DataEndpoint(), AccessToken: token,
		RootCAs: w.emu.CAPool(), Services: m, ReconnectMax: time.Second})
	if err != nil {
		w.t.Fatal(err)
	}
	w.addSecret(s.ClientToken())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	w.t.Cleanup(func() { cancel(); <-done })
	return s
}

// retryEcho retries until the tunnel path works (the destination may still
// be connecting) or the deadline passes.
func retryEcho(t *testing.T, addr string) {
	t.Helper()
	if err := tunneltest.EchoEventually(addr, 1000); err != nil {
		t.Fatalf("echo through the tunnel: %v", err)
	}
}

func httpGet(addr string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + addr + "/hello")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func startHTTP(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

// publishRaw publishes payload on the thing's notify topic through the
// emulator's plain MQTT listener.
func (w *world) publishRaw(payloads ...[]byte) {
	w.t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + w.emu.MQTTPlainAddr()).SetClientID("test-publisher")
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		w.t.Fatalf("publisher connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	for _, p := range payloads {
		if tok := c.Publish(notify.Topic(thingName), 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			w.t.Fatalf("publish: %v", tok.Error())
		}
	}
}
