package tunnel

// Helpers of the hostile-peer suite (hostile_test.go) and the unit tests of
// its two mechanisms, the stall window and the log flood limiter.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func hostileFull() bool { return os.Getenv("TUNNEL_HOSTILE_FULL") != "" }

// usage is what the process holds at one moment.
type usage struct {
	goroutines, fds int
	heap            uint64
}

func measure() usage {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	ents, _ := os.ReadDir("/proc/self/fd")
	return usage{goroutines: runtime.NumGoroutine(), fds: len(ents), heap: ms.HeapAlloc}
}

func (u usage) String() string {
	return fmt.Sprintf("goroutines=%d fds=%d heap=%.1fMiB", u.goroutines, u.fds, float64(u.heap)/(1<<20))
}

// hostileDestination starts a destination with cfg tuned by tune, and a
// raw source peer speaking 3.0.
func hostileDestination(t *testing.T, services map[string]string, tune func(*Config), tunnelServices ...string) (*running, *rawPeer) {
	t.Helper()
	return hostileDestinationOn(t, newRelay(t, true, tunnelServices...), services, tune)
}

// hostileDestinationOn is hostileDestination with a relay of the caller's
// (newMemRelay, in a synctest bubble).
func hostileDestinationOn(t *testing.T, r *relay, services map[string]string, tune func(*Config)) (*running, *rawPeer) {
	t.Helper()
	cfg := testConfig(r, ModeDestination, services)
	tune(&cfg)
	d := start(t, cfg)
	d.ev.wait(t, "connected", isKind(EventConnected))
	r.conn("destination")
	return d, dialPeer(t, r, "source", protocol.SubprotocolV3)
}

// stuckService is a unix socket service that accepts and never reads
// (small socket buffers, unlike loopback TCP, so data backs up at once).
func stuckService(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stuck.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "unix:" + path
}

// memStuckService is stuckService on the in-memory network n, at addr:
// it accepts and never reads (tunneltest.MemBufSize buffered per
// connection).
func memStuckService(t *testing.T, n *tunneltest.MemNet, addr string) string {
	t.Helper()
	done := make(chan struct{})
	tunneltest.ServeListener(t, n.Listen(addr), func(net.Conn) { <-done })
	t.Cleanup(func() { close(done) }) // runs before ServeListener's, which waits for the handlers
	return addr
}

// memEcho is tunneltest.Echo on the in-memory network n, at addr.
func memEcho(t *testing.T, n *tunneltest.MemNet, addr string) string {
	t.Helper()
	return tunneltest.ServeListener(t, n.Listen(addr), func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// countResets drains the peer's messages until want resets of typ arrived.
func countResets(t *testing.T, p *rawPeer, typ protocol.Type, want int) map[uint32]bool {
	t.Helper()
	got := map[uint32]bool{}
	for len(got) < want {
		m := p.next()
		if m.Type == typ {
			got[m.ConnectionID] = true
		}
	}
	return got
}

// logLines returns the log lines containing s, and the longest line.
func logLines(text, s string) (n, longest int) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		longest = max(longest, len(sc.Text()))
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n, longest
}

// maxLines bounds the rate-limited lines of one kind written in elapsed:
// warnBurst plus one "suppressed" line per window.
func maxLines(elapsed time.Duration) int {
	return (int(elapsed/warnEvery) + 2) * (warnBurst + 1)
}

// hostileService is a WebSocket server playing a tunneling service that
// floods the destination with what frames returns and never reads. It
// listens on loopback, or in memory with mem (for a synctest bubble;
// point Config.netDial at the listener's Dial).
func hostileService(t *testing.T, mem bool, frames func(i int) []byte) (endpoint string, ln *tunneltest.MemListener, stop func()) {
	up := websocket.Upgrader{Subprotocols: []string{protocol.SubprotocolV3}}
	// The service's write deadline bounds a test that went wrong; in a
	// bubble the agent's timeouts, longer than waitFor by default, must
	// come first.
	writeFor := waitFor
	if mem {
		writeFor = time.Hour
	}
	done := make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []*websocket.Conn // hijacked: the server does not close them
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, ws)
		mu.Unlock()
		wg.Add(1)
		defer wg.Done()
		defer func() { _ = ws.Close() }()
		if tc, ok := ws.NetConn().(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		ids, _ := protocol.AppendFrame(nil, &msg{Type: protocol.TypeServiceIDs, AvailableServiceIDs: []string{"SSH"}})
		_ = ws.WriteMessage(websocket.BinaryMessage, ids)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			_ = ws.SetWriteDeadline(time.Now().Add(writeFor))
			if ws.WriteMessage(websocket.BinaryMessage, frames(i)) != nil {
				return
			}
		}
	})
	// A handler may be stuck writing to a peer that stopped reading.
	closeConns := func() {
		close(done)
		mu.Lock()
		for _, ws := range conns {
			_ = ws.NetConn().Close()
		}
		mu.Unlock()
	}
	if mem {
		ln, stopMem := serveMem(tunneltest.NewMemListener("hostile.test:80"), h)
		return "ws://" + ln.Addr().String(), ln, func() {
			closeConns()
			stopMem()
			wg.Wait()
		}
	}
	srv := httptest.NewServer(h)
	return "ws://" + srv.Listener.Addr().String(), nil, func() {
		closeConns()
		srv.Close()
		wg.Wait()
	}
}

func TestStallGate(t *testing.T) {
	g := stallGate{stall: time.Second}
	t0 := time.Unix(1000, 0)
	const never = -1 // the queue's writer never took it
	steps := []struct {
		at, took time.Duration // took: when the queue's writer last took it
		want     time.Duration
	}{
		{0, never, time.Second},                                 // first stall opens a window
		{300 * time.Millisecond, never, 700 * time.Millisecond}, // a second stuck queue shares it
		{time.Second, never, 0},                                 // window over: reset at once
		{1500 * time.Millisecond, -time.Second, 0},              // still within the cool-down
		// A queue whose writer took it after the window opened drains:
		// it waits a stall of its own rather than being reset at once.
		{1600 * time.Millisecond, 1200 * time.Millisecond, time.Second},
		{1900 * time.Millisecond, never, 700 * time.Millisecond},        // a stuck one shares that window
		{2700 * time.Millisecond, time.Second, 0},                       // not taken since 1.6 s: stuck
		{4 * time.Second, never, time.Second},                           // a new window
		{4500 * time.Millisecond, 4200 * time.Millisecond, time.Second}, // moving, within a window
	}
	for _, s := range steps {
		var took time.Time
		if s.took != never {
			took = t0.Add(s.took)
		}
		if got := g.wait(t0.Add(s.at), took); got != s.want {
			t.Errorf("at %v (taken at %v): wait %v, want %v", s.at, s.took, got, s.want)
		}
	}
}

func TestRateLogBounded(t *testing.T) {
	var buf bytes.Buffer
	log := slogText(&buf)
	r := rateLog{log: log}
	t0 := time.Unix(1000, 0)
	for i := range 1000 {
		if r.allow(t0.Add(time.Duration(i)*time.Millisecond), 0, warnUnmapped, "x") {
			log.Info("x")
		}
	}
	for i := range 1000 { // many kinds: the map stays bounded
		r.allow(t0, 0, "kind"+strconv.Itoa(i), "y")
	}
	if len(r.kinds) > maxWarnKinds+1 {
		t.Errorf("%d kinds remembered", len(r.kinds))
	}
	r.flush(t0.Add(time.Minute), false)
	if n := strings.Count(buf.String(), "msg=x"); n != warnBurst {
		t.Errorf("%d lines of one kind, want %d", n, warnBurst)
	}
	if !strings.Contains(buf.String(), "997 more suppressed: x") {
		t.Errorf("no suppressed count:\n%s", buf.String())
	}
	if got := peerString(strings.Repeat("a", 1000)); len(got) > maxPeerString+32 {
		t.Errorf("peerString kept %d bytes", len(got))
	}
}

func slogText(w *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// curLink is the session's current link.
func curLink(s *Session) *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}
