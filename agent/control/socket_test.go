package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixedAgent is a snapshot that never changes: a unit-test stand-in for
// the agent (the end-to-end test uses the real one).
type fixedAgent struct{ snap agent.Snapshot }

func (f fixedAgent) Snapshot() agent.Snapshot { return f.snap }

func startServer(t *testing.T, o Options) (*Server, string) {
	t.Helper()
	if o.Agent == nil {
		traffic := []tunnel.ServiceStats{{Service: "SSH", Active: 1, Opened: 2, BytesIn: 10, BytesOut: 20}}
		o.Agent = fixedAgent{agent.Snapshot{Tunnels: []agent.TunnelStatus{{ID: "abc", Services: []string{"SSH"},
			Traffic: traffic}}, Traffic: traffic}}
	}
	if o.Socket == "" {
		o.Socket = filepath.Join(t.TempDir(), "control.sock")
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.timeout = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	s.MetricsAddr(ctx) // listeners are up
	return s, o.Socket
}

func ask(t *testing.T, path, req string) map[string]any {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		_, _ = io.WriteString(c, req)
		if !strings.HasSuffix(req, "...") { // else: a client that stalls
			_ = c.(*net.UnixConn).CloseWrite()
		}
	}()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to %.40q: %v", req, err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return m
}

func TestSocketBadInputChangesNothing(t *testing.T) {
	s, path := startServer(t, Options{})
	before, err := Query(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ req, want string }{
		"garbage":      {"\x00\xff\xfegarbage\n", "unknown request"},
		"json":         {`{"method":"close","tunnel":"abc"}` + "\n", "unknown request"},
		"other verb":   {"close abc\n", "unknown request"},
		"huge line":    {strings.Repeat("A", 1<<20), "longer than 1024 bytes"},
		"empty":        {"\n", "unknown request"},
		"no newline":   {"stat", "unknown request"},
		"stalls":       {"stat...", "i/o timeout"},
		"status twice": {"status status\n", "unknown request"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			m := ask(t, path, tc.req)
			if e, _ := m["error"].(string); !strings.Contains(e, tc.want) {
				t.Fatalf("answer %v, want an error with %q", m, tc.want)
			}
		})
	}
	after, err := Query(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if after.BadRequests != uint64(len(cases)) {
		t.Errorf("bad_requests = %d, want %d", after.BadRequests, len(cases))
	}
	after.BadRequests = before.BadRequests
	a, _ := json.Marshal(after)
	b, _ := json.Marshal(before)
	if string(a) != string(b) {
		t.Errorf("status changed after bad requests:\nbefore %s\nafter  %s", b, a)
	}
	_ = s
}

// Many clients that connect and say nothing hold at most MaxClients
// handlers; the others are told the agent is busy, and a well-formed
// request gets through once they are gone.
func TestSocketManyIdleClients(t *testing.T) {
	_, path := startServer(t, Options{})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range MaxClients {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// One more: busy. (The slots fill in accept order, so this waits until
	// the server has taken all the idle ones.)
	var busy map[string]any
	tunneltest.Poll(10*time.Second, func() bool {
		busy = ask(t, path, "status\n")
		e, _ := busy["error"].(string)
		return strings.Contains(e, "busy")
	})
	if e, _ := busy["error"].(string); !strings.Contains(e, "busy") {
		t.Fatalf("answer with %d idle clients: %v, want busy", MaxClients, busy)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	var err error
	if !tunneltest.Poll(10*time.Second, func() bool { _, err = Query(t.Context(), path); return err == nil }) {
		t.Fatalf("status after the idle clients left: %v", err)
	}
}

func TestSocketConcurrentStatus(t *testing.T) {
	_, path := startServer(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			st, err := Query(context.Background(), path)
			if err != nil && !errors.Is(err, ErrBusy) {
				errs <- err
				return
			}
			if err == nil && (len(st.Tunnels) != 1 || st.Tunnels[0].Traffic[0].BytesOut != 20) {
				errs <- errors.New("wrong status")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestQueryWithoutDaemon(t *testing.T) {
	_, err := Query(t.Context(), filepath.Join(t.TempDir(), "none.sock"))
	if !errors.Is(err, ErrNotRunning) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want one line wrapping ErrNotRunning", err)
	}
}

func TestStaleSocketReplacedLiveOneKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(path); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Fatalf("listen over a live socket: %v", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // now stale
	ln2, err := listenControl(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
}

func TestObserveQueuesPublishedEventsWithThing(t *testing.T) {
	q, _ := audit.NewQueue(audit.QueueConfig{Topic: "t"})
	s, err := New(Options{Agent: fixedAgent{}, Queue: q, Thing: "pi-1"})
	if err != nil {
		t.Fatal(err)
	}
	s.Observe(audit.Event{Event: audit.TunnelOpened})
	s.Observe(audit.Event{Event: audit.TunnelReconnecting})
	s.Observe(audit.Event{Event: audit.NotificationDropped, Reason: "not JSON"})
	if st := q.Stats(); st.Queued != 2 {
		t.Fatalf("queued %d, want 2 (reconnecting is not published)", st.Queued)
	}
	n := s.Status().Notifications
	if n["accepted"] != 1 || n["malformed"] != 1 {
		t.Fatalf("notifications %v", n)
	}
}

// The metrics endpoint answers bad requests with 4xx over real TCP.
func TestMetricsBadRequests(t *testing.T) {
	s, _ := startServer(t, Options{MetricsListen: "127.0.0.1:0"})
	addr := s.MetricsAddr(t.Context())
	for req, want := range map[string]string{
		"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n":                       "HTTP/1.1 200 OK",
		"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n":                      "HTTP/1.1 405",
		"GET /debug/pprof HTTP/1.1\r\nHost: x\r\n\r\n":                   "HTTP/1.1 404",
		"\x16\x03\x01\x00garbage\r\n\r\n":                                "HTTP/1.1 400",
		"GET /metrics HTTP/1.1\r\n" + strings.Repeat("X-A: b\r\n", 2000): "HTTP/1.1 400",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() { _, _ = io.WriteString(c, req) }()
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(b), want) {
			t.Errorf("%.30q: got %.60q, want %s", req, b, want)
		}
		if want == "HTTP/1.1 200 OK" && !strings.Contains(string(b), `tunnel_agent_bytes_total{service="SSH",direction="out"} 20`) {
			t.Errorf("metrics body:\n%s", b)
		}
	}
}

// TestQueryClosedUnanswered: an agent too flooded to answer closes the
// connection; whether the client then sees a reset or a plain end of
// stream, Query reports ErrBusy (retried, then "busy"), not a broken
// status document.
func TestQueryClosedUnanswered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the request first, so that the close is a clean end
			// of stream rather than a reset.
			_, _ = c.Read(make([]byte, 64))
			_ = c.Close()
		}
	}()
	if _, err := Query(t.Context(), path); !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
}
