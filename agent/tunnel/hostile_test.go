package tunnel

// The hostile-peer suite (issue 20): a source that holds the tunnel's token
// tries to make the agent hold unbounded connections, memory or log lines.
// Each test drives one attack through the test relay and checks counts: what
// the agent holds during the attack and after it. The figures (goroutines,
// fds, heap) are printed with -v. TUNNEL_HOSTILE_FULL=1 runs the full-size
// attacks of the issue (200,000 service ids) instead of the quick ones.

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestHostileConnectionCap(t *testing.T) {
	const perTunnel, attempts = 8, 200
	before := measure()
	d, p := hostileDestination(t, map[string]string{"SSH": tunneltest.Echo(t)}, func(c *Config) { c.MaxConnections = perTunnel }, "SSH")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	for cid := uint32(2); cid <= attempts; cid++ {
		p.send(&msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: cid})
	}
	reset := countResets(t, p, tConnReset, attempts-perTunnel)
	during := measure()
	for cid := uint32(1); cid <= perTunnel; cid++ {
		if reset[cid] {
			t.Errorf("connection %d, within max_connections, was reset", cid)
		}
	}
	lim := d.s.cfg.Limits
	if n := lim.Connections(); n != perTunnel {
		t.Errorf("%d local connections held, want max_connections = %d", n, perTunnel)
	}
	// The admitted connections still work.
	p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: perTunnel, Payload: []byte("ok")})
	if got := p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: perTunnel}); string(got.Payload) != "ok" {
		t.Fatalf("echo = %q", got.Payload)
	}
	// Room again after the peer closes some.
	p.send(&msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	waitUntil(t, "connection 2 released", func() bool { return lim.Connections() == perTunnel-1 })
	p.send(&msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: attempts + 1},
		&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: attempts + 1, Payload: []byte("again")})
	if got := p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: attempts + 1}); string(got.Payload) != "again" {
		t.Fatalf("echo = %q", got.Payload)
	}
	if n, _ := logLines(d.ev.logText(), "max_connections open"); n > maxLines(time.Minute) || n == 0 {
		t.Errorf("%d max_connections warnings for %d refused connections", n, attempts-perTunnel)
	}
	p.close()
	_ = d.stop(t)
	waitUntil(t, "connections released", func() bool { return lim.Connections() == 0 })
	after := measure()
	t.Logf("%d connection attempts, max_connections %d: before %v, during %v, after %v", attempts, perTunnel, before, during, after)
	if during.fds > before.fds+2*perTunnel+32 { // both ends live in this process
		t.Errorf("fds during the attack: %d, before %d: more than the cap allows", during.fds, before.fds)
	}
}

func TestHostileAgentWideConnectionCap(t *testing.T) {
	shared := NewLimits(5, 0, 0)
	d, p := hostileDestination(t, map[string]string{"SSH": tunneltest.Echo(t)}, func(c *Config) { c.Limits = shared }, "SSH")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	for cid := uint32(2); cid <= 30; cid++ {
		p.send(&msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: cid})
	}
	countResets(t, p, tConnReset, 25)
	if n := shared.Connections(); n != 5 {
		t.Errorf("%d connections held, want the agent-wide cap 5", n)
	}
	if !strings.Contains(d.ev.logText(), "max_total_connections") {
		t.Error("no warning names max_total_connections")
	}
}

func TestHostileQueueBudget(t *testing.T) {
	const conns, perConn, budget = 30, 960 << 10, 2 << 20
	lim := NewLimits(0, budget, 0)
	before := measure()
	d, p := hostileDestination(t, map[string]string{"SSH": stuckService(t)}, func(c *Config) {
		c.Limits, c.ConnBufferSize = lim, 1<<20 // only the budget can refuse data
	}, "SSH")
	start := time.Now()
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	for cid := uint32(2); cid <= conns; cid++ {
		p.send(&msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: cid})
	}
	chunk := bytes.Repeat([]byte("x"), protocol.MaxPayload)
	for cid := uint32(1); cid <= conns; cid++ {
		for sent := 0; sent < perConn; sent += len(chunk) {
			p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: cid, Payload: chunk})
		}
	}
	// The connections whose data fit in the budget stay (their local side
	// may read later); the others are reset. The reset of a stream for an
	// unknown service marks the end: the agent answers in order.
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "END"})
	resets := 0
	for m := p.next(); m.ServiceID != "END"; m = p.next() {
		if m.Type == tConnReset {
			resets++
		}
	}
	// The stuck connections share the stall window: a writer that took
	// its queue (or pushes that wrote directly) until the socket buffer
	// was full is no sign the service reads. Before, each connection
	// whose writer took its queue after the window opened got a window
	// of its own: 7-15 waits ran out, one a second, in about one run in
	// three (and the next message came too late for the peer in one in six).
	l := curLink(d.s)
	elapsed, waits := time.Since(start), l.gate.expired.Load()
	if windows := int64(elapsed/(2*l.gate.stall)) + 1; waits > windows {
		t.Errorf("%d stall waits ran out in %v (%d windows): the stuck connections did not share the stall", waits, elapsed, windows)
	}
	during := measure()
	if resets < conns/2 { // how many fit depends on the unix socket buffers (28 reset here)
		t.Errorf("only %d of %d connections reset; %d held", resets, conns, lim.Connections())
	}
	if peak := lim.PeakQueued(); peak > budget {
		t.Errorf("peak queued %d bytes, over the budget %d", peak, budget)
	}
	if !strings.Contains(d.ev.logText(), "queue budget") {
		t.Error("no warning about the queue budget")
	}
	p.close()
	_ = d.stop(t)
	waitUntil(t, "budget released", func() bool { return lim.Queued() == 0 && lim.Connections() == 0 })
	after := measure()
	t.Logf("%d connections x %d KiB into a stuck service, budget %d KiB: %d reset, peak queued %d KiB; before %v, during %v, after %v",
		conns, perConn>>10, budget>>10, resets, lim.PeakQueued()>>10, before, during, after)
	if during.heap > before.heap+budget*3+16<<20 {
		t.Errorf("heap during the flood %d MiB", during.heap>>20)
	}
}

func TestHostileServiceIDFlood(t *testing.T) {
	n := 20000
	if hostileFull() {
		n = 200000
	}
	before := measure()
	d, p := hostileDestination(t, map[string]string{"SSH": tunneltest.Echo(t)}, func(*Config) {}, "SSH")
	start := time.Now()
	sendErr := make(chan error, 1)
	go func() { // the peer reads its resets meanwhile, as a real one would
		var b []byte
		long := strings.Repeat("z", 120)
		for i := 0; i < n && sendErr != nil; i += 200 {
			b = b[:0]
			for j := i; j < min(i+200, n); j++ {
				b, _ = protocol.AppendFrame(b, &msg{Type: tStart, StreamID: 1, ServiceID: long + strconv.Itoa(j)})
			}
			if err := p.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	for range n {
		if m := p.next(); m.Type != tReset {
			t.Fatalf("got %v, want STREAM_RESET", m.Type)
		}
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	during := measure()
	_ = d.stop(t)
	text := d.ev.logText()
	lines, longest := logLines(text, "level=WARN")
	t.Logf("%d distinct unmapped service ids in %v: %d WARN lines, longest log line %d bytes; before %v, during %v",
		n, elapsed.Round(time.Millisecond), lines, longest, before, during)
	if limit := maxLines(elapsed); lines > limit {
		t.Errorf("%d WARN lines in %v, want <= %d", lines, elapsed, limit)
	}
	if !strings.Contains(text, "more suppressed") {
		t.Error("no line counts the suppressed warnings")
	}
	if longest > 1024 {
		t.Errorf("a log line of %d bytes: peer strings must be bounded", longest)
	}
}

func TestHostileServiceIDsMessage(t *testing.T) {
	ids := make([]string, 0, 8000)
	for i := range cap(ids) {
		ids = append(ids, "s"+strconv.Itoa(i))
	}
	r := newRelay(t, true, ids...)
	d := start(t, testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:1"}))
	d.ev.wait(t, "service ids", isKind(EventServiceIDs))
	_ = d.stop(t)
	text := d.ev.logText()
	lines, longest := logLines(text, "services map")
	t.Logf("SERVICE_IDS with %d ids: %d lines about them, longest log line %d bytes", len(ids), lines, longest)
	if lines > warnBurst+1 || longest > 2048 {
		t.Errorf("%d lines, longest %d bytes, for one SERVICE_IDS", lines, longest)
	}
}

// TestHostileStallWindow: ten local connections that stop reading while
// the peer floods them share one stall window: they are all reset, and a
// probe on another service is answered, after about one ConnStallTimeout,
// not ten. In memory in a synctest bubble with the default 1 s, where the
// time is exact; then over loopback with unix sockets and 300 ms.
func TestHostileStallWindow(t *testing.T) {
	tests := []struct {
		name  string
		mem   bool
		stall time.Duration // 0: the default
	}{
		{"in memory, default stall", true, 0},
		{"loopback", false, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mem {
				synctest.Test(t, func(t *testing.T) {
					r := newMemRelay(t, "SSH", "ECHO")
					services := map[string]string{"SSH": memStuckService(t, r.net, "stuck.test:1"), "ECHO": memEcho(t, r.net, "echo.test:7")}
					hostileStallWindow(t, r, services, tt.stall, true)
				})
				return
			}
			r := newRelay(t, true, "SSH", "ECHO")
			hostileStallWindow(t, r, map[string]string{"SSH": stuckService(t), "ECHO": tunneltest.Echo(t)}, tt.stall, false)
		})
	}
}

// hostileStallWindow runs the attack; exact: in a bubble, where the
// elapsed time is exactly one window.
func hostileStallWindow(t *testing.T, r *relay, services map[string]string, stall time.Duration, exact bool) {
	const stuck = 10
	d, p := hostileDestinationOn(t, r, services, func(c *Config) {
		c.ConnBufferSize, c.ConnStallTimeout = 64<<10, stall
	})
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "ECHO", ConnectionID: 1},
		&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	for cid := uint32(2); cid <= stuck; cid++ {
		p.send(&msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: cid})
	}
	start := time.Now()
	chunk := bytes.Repeat([]byte("x"), protocol.MaxPayload)
	for range 16 { // 1 MiB each: well past the socket buffers and conn_buffer
		for cid := uint32(1); cid <= stuck; cid++ {
			p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: cid, Payload: chunk})
		}
	}
	p.send(&msg{Type: tData, StreamID: 1, ServiceID: "ECHO", ConnectionID: 1, Payload: []byte("probe")})
	resets := 0
	for probe := false; !probe || resets < stuck; {
		m := p.next()
		switch {
		case m.Type == tConnReset && m.ServiceID == "SSH":
			resets++
		case m.Type == tData && m.ServiceID == "ECHO":
			probe = true
		}
	}
	elapsed := time.Since(start)
	l := curLink(d.s)
	waits := l.gate.expired.Load()
	windows := int64(elapsed/(2*l.gate.stall)) + 1
	t.Logf("%d stuck connections: %d stall waits ran out (windows elapsed: %d); all reset and the probe answered in %v",
		stuck, waits, windows, elapsed.Round(time.Millisecond))
	if waits > windows {
		t.Errorf("%d waits ran to the deadline in %d windows: the stall is not shared", waits, windows)
	}
	if exact && elapsed != l.gate.stall {
		t.Errorf("all reset and the probe answered after %v, want one ConnStallTimeout (%v)", elapsed, l.gate.stall)
	}
}

// TestHostileControlQueue: a service that sends STREAM_STARTs for unknown
// services without end and never reads fills the control queue (the
// resets) up to its cap, no further, and is dropped PongTimeout after the
// writer got stuck. In memory in a synctest bubble with the default
// intervals, where the drop comes exactly PongTimeout after the link came
// up (the flood fills everything at once); then over loopback TCP with
// short ones.
func TestHostileControlQueue(t *testing.T) {
	tests := []struct {
		name       string
		mem        bool
		ping, pong time.Duration
	}{
		{"in memory, default intervals", true, 0, 0},
		{"loopback", false, 250 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mem {
				synctest.Test(t, func(t *testing.T) { hostileControlQueue(t, tt.mem, tt.ping, tt.pong) })
				return
			}
			hostileControlQueue(t, tt.mem, tt.ping, tt.pong)
		})
	}
}

func hostileControlQueue(t *testing.T, mem bool, ping, pong time.Duration) {
	long := strings.Repeat("u", 120) // a reset of ~130 bytes each
	ep, ln, stop := hostileService(t, mem, func(i int) []byte {
		var b []byte
		for j := range 500 {
			b, _ = protocol.AppendFrame(b, &msg{Type: tStart, StreamID: int32(j + 1), ServiceID: long + strconv.Itoa(i%1000)})
		}
		return b
	})
	defer stop()
	cfg := Config{Mode: ModeDestination, Endpoint: ep, AccessToken: dstToken, AllowPlaintext: true,
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil }, Services: map[string]string{"SSH": "127.0.0.1:1"},
		ReconnectMin: time.Second, ReconnectMax: time.Second, PingInterval: ping, PongTimeout: pong}
	if ln != nil {
		cfg.netDial = ln.Dial
	}
	before := measure()
	d := start(t, cfg)
	_, up := d.ev.waitAt(t, "connected", isKind(EventConnected))
	waitUntil(t, "link ready", func() bool { return curLink(d.s) != nil })
	l := curLink(d.s)
	if mem {
		time.Sleep(d.s.cfg.PongTimeout) // (waitAt gives up after waitFor)
	}
	ev, down := d.ev.waitAt(t, "disconnected", isKind(EventDisconnected))
	during := measure()
	_ = d.stop(t) // before the service stops: it waits for its handlers
	l.w.ctrlMu.Lock()
	peak := l.w.ctrlPeak
	l.w.ctrlMu.Unlock()
	t.Logf("control flood from a service that never reads: control queue peak %d bytes (cap %d), link dropped after %v (%s); before %v, at drop %v",
		peak, maxCtrlBytes, down.Sub(up), ev.Reason, before, during)
	if peak > maxCtrlBytes {
		t.Errorf("control queue peak %d bytes, cap %d", peak, maxCtrlBytes)
	}
	if during.heap > before.heap+32<<20 {
		t.Errorf("heap grew from %d to %d MiB", before.heap>>20, during.heap>>20)
	}
	if !mem {
		return
	}
	if peak < maxCtrlBytes-256 {
		t.Errorf("control queue peak %d bytes: the flood did not fill it to the cap %d", peak, maxCtrlBytes)
	}
	if got := down.Sub(up); got != d.s.cfg.PongTimeout {
		t.Errorf("link dropped %v after it came up, want PongTimeout = %v", got, d.s.cfg.PongTimeout)
	}
}

func TestHostileDialFailureKeepsOtherConnections(t *testing.T) {
	d, p := hostileDestination(t, map[string]string{"SSH": tunneltest.Echo(t)}, func(*Config) {}, "SSH")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1},
		&msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2},
		&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 2, Payload: []byte("up")})
	p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	// The dial of the stream's first connection fails after the second
	// connected (a slow dial that times out): only it is reset.
	l := curLink(d.s)
	l.streams.mu.Lock()
	st := l.streams.byService["SSH"]
	f := l.newLocalConnLocked(st, 3) // a stream's first connection: not fromConnStart
	l.streams.mu.Unlock()
	l.dest.dialFailed(f, errors.New("dial timed out"))
	p.expect(msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 3})
	p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 2, Payload: []byte("still")})
	if got := p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 2}); string(got.Payload) != "still" {
		t.Fatalf("echo = %q", got.Payload)
	}
}

// A service that accepts the WebSocket and drops it at once must not reset
// the backoff: the attempt number keeps growing.
func TestHostileBackoffAfterInstantDrop(t *testing.T) {
	up := websocket.Upgrader{Subprotocols: []string{protocol.SubprotocolV3}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err == nil {
			_ = ws.NetConn().Close() // 1006, no close frame
		}
	}))
	defer srv.Close()
	cfg := Config{Mode: ModeDestination, Endpoint: "ws://" + srv.Listener.Addr().String(), AccessToken: dstToken, AllowPlaintext: true,
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil }, Services: map[string]string{"SSH": "127.0.0.1:1"},
		ReconnectMin: time.Millisecond, ReconnectMax: 4 * time.Millisecond}
	d := start(t, cfg)
	waitUntil(t, "6 reconnects", func() bool { return d.ev.count(EventReconnecting) >= 6 })
	_ = d.stop(t)
	var attempts []int
	sc := bufio.NewScanner(strings.NewReader(d.ev.logText()))
	for sc.Scan() {
		if _, a, ok := strings.Cut(sc.Text(), " attempt="); ok && strings.Contains(sc.Text(), "reconnecting") {
			n, _ := strconv.Atoi(strings.Fields(a)[0])
			attempts = append(attempts, n)
		}
	}
	for i, a := range attempts {
		if a != i+1 {
			t.Fatalf("reconnect attempts %v: the backoff restarted after a link that never worked", attempts)
		}
	}
	if len(attempts) < 6 {
		t.Fatalf("attempts %v", attempts)
	}
}

// A local service that stops reading while data is queued for it is reset
// after localWriteStall even when the peer sends nothing more: it does not
// hold its queue budget and fd for the tunnel's lifetime. In memory in a
// synctest bubble with the default 2 minutes, where the reset comes
// exactly then; then over a unix socket with 300 ms.
func TestHostileStuckLocalWriterReset(t *testing.T) {
	t.Run("in memory, default stall", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newMemRelay(t, "SSH")
			hostileStuckLocalWriter(t, r, memStuckService(t, r.net, "stuck.test:1"), true)
		})
	})
	t.Run("unix socket", func(t *testing.T) {
		old := localWriteStall
		localWriteStall = 300 * time.Millisecond
		defer func() { localWriteStall = old }()
		hostileStuckLocalWriter(t, newRelay(t, true, "SSH"), stuckService(t), false)
	})
}

func hostileStuckLocalWriter(t *testing.T, r *relay, service string, exact bool) {
	lim := NewLimits(0, 0, 0)
	d, p := hostileDestinationOn(t, r, map[string]string{"SSH": service}, func(c *Config) { c.Limits = lim })
	chunk := bytes.Repeat([]byte("x"), protocol.MaxPayload)
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	for range 8 { // 512 KiB: past the socket buffers, within conn_buffer
		p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: chunk})
	}
	if exact {
		synctest.Wait() // the local write is stuck now
		time.Sleep(localWriteStall - time.Nanosecond)
		synctest.Wait()
		for len(p.msgs) > 0 {
			if m := <-p.msgs; m.Type != protocol.TypeServiceIDs {
				t.Fatalf("%v to the peer a moment before localWriteStall", m.Type)
			}
		}
		if n := lim.Connections(); n != 1 {
			t.Fatalf("%d connections a moment before localWriteStall, want 1", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if len(p.msgs) == 0 {
			t.Fatalf("no reset when localWriteStall (%v) ran out", localWriteStall)
		}
	}
	p.expect(msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	waitUntil(t, "budget and connection released", func() bool { return lim.Queued() == 0 && lim.Connections() == 0 })
	// The stream's end is logged after the release: wait for it.
	if !tunneltest.Poll(5*time.Second, func() bool { return strings.Contains(d.ev.logText(), "timeout") }) {
		t.Errorf("the stream's end does not say why:\n%s", d.ev.logText())
	}
}
