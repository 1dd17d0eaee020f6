package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 15 * time.Second

// eventLog collects events and log output of a session.
type eventLog struct {
	mu     sync.Mutex
	events []Event
	at     []time.Time // when each event came
	logs   bytes.Buffer
	wake   chan struct{}
}

func newEventLog() *eventLog { return &eventLog{wake: make(chan struct{}, 1)} }

func (e *eventLog) add(ev Event) {
	e.mu.Lock()
	e.events = append(e.events, ev)
	e.at = append(e.at, time.Now())
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *eventLog) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logs.Write(p)
}

func (e *eventLog) logText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logs.String()
}

// wait returns the first event (from the start) matching pred.
func (e *eventLog) wait(t testing.TB, what string, pred func(Event) bool) Event {
	t.Helper()
	ev, _ := e.waitAt(t, what, pred)
	return ev
}

// waitAt is wait that also returns when the event came (on the fake clock
// in a synctest bubble).
func (e *eventLog) waitAt(t testing.TB, what string, pred func(Event) bool) (Event, time.Time) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		e.mu.Lock()
		for i, ev := range e.events {
			if pred(ev) {
				at := e.at[i]
				e.mu.Unlock()
				return ev, at
			}
		}
		e.mu.Unlock()
		select {
		case <-e.wake:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; log:\n%s", what, e.logText())
		}
	}
}

func (e *eventLog) count(kind EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.events {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func isKind(k EventKind) func(Event) bool { return func(e Event) bool { return e.Kind == k } }

// running is a session under test with its Run result.
type running struct {
	s      *Session
	ev     *eventLog
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitFor):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

// result waits for Run to return on its own.
func (r *running) result(t testing.TB) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitFor):
		t.Fatalf("Run did not return; log:\n%s", r.ev.logText())
		return nil
	}
}

func testConfig(r *relay, mode Mode, services map[string]string) Config {
	tok := dstToken
	if mode == ModeSource {
		tok = srcToken
	}
	cfg := Config{Mode: mode, Endpoint: r.endpoint(), AccessToken: tok, RootCAs: r.pool(), AllowPlaintext: true,
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil }, Services: services,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond, DialTimeout: 2 * time.Second}
	if r.net != nil {
		cfg.netDial = r.net.Dial
	}
	return cfg
}

func start(t testing.TB, cfg Config) *running {
	t.Helper()
	ev := newEventLog()
	cfg.OnEvent = ev.add
	cfg.Logger = slog.New(slog.NewTextHandler(ev, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, ev: ev, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = s.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// rawPeer is a test WebSocket client that plays the other end by hand.
type rawPeer struct {
	t    testing.TB
	ws   *websocket.Conn
	msgs chan protocol.Message
	done chan struct{}
	sub  string
}

func dialPeer(t testing.TB, r *relay, mode string, subprotocols ...string) *rawPeer {
	t.Helper()
	tok := dstToken
	if mode == "source" {
		tok = srcToken
	}
	if len(subprotocols) == 0 {
		subprotocols = []string{protocol.SubprotocolV3}
	}
	d := websocket.Dialer{Subprotocols: subprotocols, TLSClientConfig: &tls.Config{RootCAs: r.pool()}}
	if r.net != nil {
		d.NetDialContext = r.net.Dial
	}
	ws, _, err := d.Dial(r.url(mode), http.Header{"access-token": {tok}, "client-token": {"peer-client-token-0123456789abcdef0123"}})
	if err != nil {
		t.Fatalf("peer dial: %v", err)
	}
	// The handshake can complete on our side before the relay registered the
	// connection; frames for an unregistered peer would be dropped.
	if r.conn(mode) == nil {
		t.Fatalf("relay never registered the %s peer", mode)
	}
	p := &rawPeer{t: t, ws: ws, msgs: make(chan protocol.Message, 1024), done: make(chan struct{}), sub: ws.Subprotocol()}
	go func() {
		defer close(p.done)
		fr := protocol.NewFrameReader(newWSReader(ws, nil))
		for {
			var m protocol.Message
			if err := fr.ReadMessage(&m); err != nil {
				return
			}
			m.Payload = bytes.Clone(m.Payload)
			p.msgs <- m
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *rawPeer) close() {
	_ = p.ws.Close()
	<-p.done
}

func (p *rawPeer) send(msgs ...*protocol.Message) {
	p.t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = protocol.AppendFrame(b, m); err != nil {
			p.t.Fatal(err)
		}
	}
	if err := p.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		p.t.Fatalf("peer send: %v", err)
	}
}

// expect returns the next message that is not SERVICE_IDS and checks it.
func (p *rawPeer) expect(want protocol.Message) protocol.Message {
	p.t.Helper()
	m := p.next()
	if m.Type != want.Type || m.StreamID != want.StreamID || m.ServiceID != want.ServiceID || m.ConnectionID != want.ConnectionID {
		p.t.Fatalf("got %v sid=%d svc=%q conn=%d, want %v sid=%d svc=%q conn=%d", m.Type, m.StreamID, m.ServiceID,
			m.ConnectionID, want.Type, want.StreamID, want.ServiceID, want.ConnectionID)
	}
	return m
}

func (p *rawPeer) next() protocol.Message {
	p.t.Helper()
	for {
		select {
		case m := <-p.msgs:
			if m.Type == protocol.TypeServiceIDs {
				continue
			}
			return m
		case <-time.After(waitFor):
			p.t.Fatal("peer: timed out waiting for a message")
			return protocol.Message{}
		}
	}
}

// closedAddr returns an address nothing listens on, held for the test.
func closedAddr(t testing.TB) string { return tunneltest.RefusedAddr(t) }

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tunneltest.WaitFor(t, waitFor, what, cond)
}
