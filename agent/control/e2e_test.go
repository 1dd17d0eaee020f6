package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
	"github.com/tunnel-agent/tunnel-agent/platform/greengrass"
	"github.com/tunnel-agent/tunnel-agent/platform/greengrass/fakenucleus"
)

// httpClient bounds every HTTP call of the tests.
var httpClient = &http.Client{Timeout: 20 * time.Second}

const (
	thing      = "pi-1"
	auditTopic = "tunnel-agent/pi-1/events"
	waitFor    = 30 * time.Second
)

// rig is the emulator, a real agent over MQTT with its control server and
// audit queue, and the test's view of both.
type rig struct {
	t     *testing.T
	emu   *emulator.Emulator
	a     *agent.Agent
	src   notify.Source // the MQTT source, or Greengrass IPC
	srv   *Server
	queue *audit.Queue
	sock  string
	logs  *tunneltest.SyncBuffer

	mu     sync.Mutex
	queued []audit.Event // what the agent handed to the queue, in order

	stop func() // stops the agent and its observers; idempotent

	counts atomic.Value // last OnCounts call, [2]int
}

type rigOpts struct {
	mqttHost             string // "" = the emulator's broker
	mqttPort             int
	rootCA, cert, key    string
	retryMin, maxBackoff time.Duration
	greengrass           bool // notifications and audit through the test nucleus
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	r := &rig{t: t, logs: &tunneltest.SyncBuffer{}}
	// The thing's policy allows the audit topic (the README's iot:Publish statement).
	ecfg := emulator.Config{StateDir: t.TempDir(), MQTTPlainAddr: "127.0.0.1:0", PublishTopicFormats: []string{"tunnel-agent/%s/events"}}
	emu, err := emulator.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	r.emu = emu
	ectx, ecancel := context.WithCancel(context.Background())
	edone := make(chan struct{})
	go func() { defer close(edone); _ = emu.Run(ectx) }()
	t.Cleanup(func() { ecancel(); <-edone })

	cfg := config.Default()
	cfg.ThingName, cfg.StateDir = thing, t.TempDir()
	cfg.DataEndpoint, cfg.CAFile = emu.DataEndpoint(), emu.CAFile()
	cfg.Services = map[string]string{"ECHO": tunneltest.Echo(t), "DATA": tunneltest.Echo(t)}
	if o.mqttHost == "" {
		host, port, _ := net.SplitHostPort(emu.MQTTAddr())
		o.mqttHost, o.rootCA = host, emu.CAFile()
		o.mqttPort, _ = strconv.Atoi(port)
		if o.cert, o.key, err = emu.IssueDeviceCert(thing, t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.greengrass {
		r.src = startNucleus(t, emu, log)
	} else {
		r.src, err = notify.NewMQTTSource(notify.MQTTConfig{Endpoint: o.mqttHost, Port: o.mqttPort, ThingName: thing,
			CertFile: o.cert, KeyFile: o.key, RootCAFile: o.rootCA, Logger: log,
			MinReconnectInterval: 20 * time.Millisecond, MaxReconnectInterval: time.Second,
			// A reconnect that reaches the broker while it shuts down can be
			// accepted and never answered: give up on it quickly.
			ConnectTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
	}
	if r.a, err = agent.New(cfg, r.src, log); err != nil {
		t.Fatal(err)
	}
	r.queue, err = audit.NewQueue(audit.QueueConfig{Topic: auditTopic, Logger: log, RetryMin: o.retryMin, RetryMax: o.maxBackoff})
	if err != nil {
		t.Fatal(err)
	}
	r.sock = t.TempDir() + "/control.sock"
	var state func() notify.SourceState
	if sr, ok := r.src.(notify.StateReporter); ok {
		state = sr.State
	}
	r.srv, err = New(Options{Agent: r.a, Source: state, Queue: r.queue, Socket: r.sock,
		MetricsListen: "127.0.0.1:0", Thing: thing, Version: "test", MaxTunnels: cfg.MaxTunnels, Logger: log,
		OnCounts: func(tunnels, conns int) { r.counts.Store([2]int{tunnels, conns}) }})
	if err != nil {
		t.Fatal(err)
	}
	r.a.OnEvent(func(e audit.Event) {
		// One critical section: the recorded order is the queue's order.
		r.mu.Lock()
		defer r.mu.Unlock()
		if e.Published() {
			r.queued = append(r.queued, e)
		}
		r.srv.Observe(e)
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.srv.Run(ctx) })
	wg.Go(func() { _ = r.queue.Run(ctx, r.src.(audit.Publisher)) })
	wg.Go(func() {
		if err := r.a.Run(ctx); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(r.stop)
	select {
	case <-r.a.Ready():
	case <-time.After(waitFor):
		t.Fatal("agent never subscribed")
	}
	r.srv.MetricsAddr(context.Background()) // the listeners are up
	return r
}

type opened struct{ id, src, dst string }

// open calls OpenTunnel on the emulator.
func (r *rig) open(services ...string) opened {
	r.t.Helper()
	out := r.call("OpenTunnel", map[string]any{"destinationConfig": map[string]any{"thingName": thing, "services": services}})
	return opened{id: out["tunnelId"].(string), src: out["sourceAccessToken"].(string), dst: out["destinationAccessToken"].(string)}
}

func (r *rig) close(id string) {
	r.t.Helper()
	r.call("CloseTunnel", map[string]any{"tunnelId": id})
}

func (r *rig) call(op string, in any) map[string]any {
	r.t.Helper()
	var out map[string]any
	if err := emulator.CallAPI(context.Background(), httpClient, r.emu.APIURL(), emulator.DefaultRegion, op, in, &out); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// source runs the operator's side of a tunnel.
func (r *rig) source(token string, services ...string) *tunnel.Session {
	r.t.Helper()
	m := map[string]string{}
	for _, s := range services {
		m[s] = "127.0.0.1:0"
	}
	s, err := tunnel.New(tunnel.Config{Mode: tunnel.ModeSource, Endpoint: r.emu.DataEndpoint(), AccessToken: token,
		RootCAs: r.emu.CAPool(), Services: m, ReconnectMax: time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	r.t.Cleanup(func() { cancel(); <-done })
	return s
}

// status asks the control socket, as `tunnel-agent status --json` does.
func (r *rig) status() Status {
	r.t.Helper()
	st, err := Query(context.Background(), r.sock)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *rig) waitStatus(what string, ok func(Status) bool) Status {
	r.t.Helper()
	var st Status
	if !tunneltest.Poll(waitFor, func() bool { st = r.status(); return ok(st) }) {
		b, _ := json.MarshalIndent(st, "", "  ")
		r.t.Fatalf("timed out waiting for %s; status:\n%s", what, b)
	}
	return st
}

// waitMetrics polls the metrics endpoint until ok. The counters follow
// the audit events, which are raised just after the snapshot changes, so
// a status that shows a change can be a moment ahead of them.
func (r *rig) waitMetrics(what string, ok func(map[string]float64) bool) map[string]float64 {
	r.t.Helper()
	var m map[string]float64
	if !tunneltest.Poll(waitFor, func() bool { m = r.scrape(); return ok(m) }) {
		r.t.Errorf("timed out waiting for the metrics: %s", what)
	}
	return m
}

// waitCounts waits until OnCounts last reported want (tunnels,
// connections).
func (r *rig) waitCounts(want [2]int) {
	r.t.Helper()
	var c [2]int
	if !tunneltest.Poll(waitFor, func() bool { c, _ = r.counts.Load().([2]int); return c == want }) {
		r.t.Errorf("OnCounts: %v, want %d tunnels, %d connections", c, want[0], want[1])
	}
}

func (r *rig) queuedEvents() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.queued)
}

// echoConn is a connection through a tunnel to an echo service that
// stays open; push sends n bytes and reads them back.
type echoConn struct {
	t    *testing.T
	c    net.Conn
	sent int64
}

func dialEcho(t *testing.T, addr net.Addr) *echoConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &echoConn{t: t, c: c}
}

func (e *echoConn) push(n int) {
	e.t.Helper()
	_ = e.c.SetDeadline(time.Now().Add(waitFor))
	msg := bytes.Repeat([]byte{byte(n)}, n)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = e.c.Write(msg) }()
	defer func() { <-done }()
	if _, err := io.ReadFull(e.c, make([]byte, n)); err != nil {
		e.t.Fatalf("echo of %d bytes: %v", n, err)
	}
	e.sent += int64(n)
}

// scrape reads the metrics endpoint into name{labels} -> value.
func (r *rig) scrape() map[string]float64 {
	r.t.Helper()
	addr := r.srv.MetricsAddr(context.Background())
	resp, err := httpClient.Get("http://" + addr + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		r.t.Fatalf("metrics: HTTP %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	m := map[string]float64{}
	types := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			fam, _, _ := strings.Cut(f, " ")
			if types[fam] {
				r.t.Errorf("metrics: a second TYPE line for %s", fam)
			}
			types[fam] = true
		}
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			r.t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// subscriber collects the audit events published to a broker.
type subscriber struct {
	mu  sync.Mutex
	got []audit.Event
}

func (s *subscriber) add(payload []byte) {
	var e audit.Event
	if err := json.Unmarshal(payload, &e); err != nil {
		return
	}
	s.mu.Lock()
	s.got = append(s.got, e)
	s.mu.Unlock()
}

func (s *subscriber) events() []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// subscribe connects a plain MQTT client to the broker at addr.
func subscribe(t *testing.T, addr string) *subscriber {
	t.Helper()
	s := &subscriber{}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("audit-subscriber").SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe("tunnel-agent/+/events", 1, func(_ mqtt.Client, m mqtt.Message) { s.add(m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return s
}

// checkAudit waits until the subscriber has every event the agent queued,
// in order, each once (after dedup of QoS 1 repeats by seq).
func checkAudit(t *testing.T, r *rig, got func() []audit.Event) []audit.Event {
	t.Helper()
	var uniq []audit.Event
	var want []audit.Event
	var disorder string
	complete := tunneltest.Poll(waitFor, func() bool {
		want = r.queuedEvents()
		uniq = uniq[:0]
		var last uint64
		for _, e := range got() {
			if e.Seq == last {
				continue // a QoS 1 repeat
			}
			if e.Seq < last {
				disorder = fmt.Sprintf("audit events out of order: seq %d after %d", e.Seq, last)
				return true
			}
			uniq = append(uniq, e)
			last = e.Seq
		}
		return len(uniq) == len(want) && len(want) > 0
	})
	if disorder != "" {
		t.Fatal(disorder)
	}
	if !complete {
		t.Fatalf("subscriber has %d distinct audit events, the agent queued %d; queue %+v", len(uniq), len(want), r.queue.Stats())
	}
	for i, e := range uniq {
		w := want[i]
		if e.Seq != uint64(i+1) || e.Event != w.Event || e.Tunnel != w.Tunnel || e.Service != w.Service ||
			e.BytesIn != w.BytesIn || e.Thing != thing {
			t.Fatalf("audit event %d: got %+v, want %+v", i+1, e, w)
		}
	}
	return uniq
}

func tunnelByID(st Status, id string) *agent.TunnelStatus {
	for i := range st.Tunnels {
		if st.Tunnels[i].ID == id {
			return &st.Tunnels[i]
		}
	}
	return nil
}

func traffic(t *agent.TunnelStatus, svc string) tunnel.ServiceStats {
	for _, s := range t.Traffic {
		if s.Service == svc {
			return s
		}
	}
	return tunnel.ServiceStats{Service: svc}
}

// publishNote publishes a tunnel notification for the thing, as AWS IoT does.
func publishNote(t *testing.T, addr, token string, services ...string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("test-publisher"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	b, _ := json.Marshal(map[string]any{"clientAccessToken": token, "clientMode": "destination", "region": "us-east-1", "services": services})
	if tok := c.Publish(notify.Topic(thing), 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// startNucleus runs the test Greengrass nucleus, on its own MQTT connection
// to the emulator's broker and with the shipped recipe's accessControl, and
// returns the agent's IPC source.
func startNucleus(t *testing.T, emu *emulator.Emulator, log *slog.Logger) *greengrass.Source {
	t.Helper()
	comp, err := fakenucleus.ComponentFromRecipe("../../configs/greengrass/recipe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := emu.IssueDeviceCert(thing, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mq, err := fakenucleus.DialMQTT(fakenucleus.MQTTDial{Addr: emu.MQTTAddr(), CertFile: cert, KeyFile: key,
		CAFile: emu.CAFile(), ClientID: thing})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "gg") // Unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	const svcuid = "svcuid-of-the-test"
	n, err := fakenucleus.New(fakenucleus.Config{SocketPath: filepath.Join(dir, "ipc.socket"), ThingName: thing,
		MQTT: mq, Components: map[string]fakenucleus.Component{svcuid: comp}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		mq.Close()
		_ = os.RemoveAll(dir)
	})
	return greengrass.NewSource(greengrass.Config{SocketPath: n.SocketPath(), AuthToken: svcuid, ThingName: thing, Logger: log})
}
