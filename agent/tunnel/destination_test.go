package tunnel

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

type msg = protocol.Message

const (
	tData      = protocol.TypeData
	tStart     = protocol.TypeStreamStart
	tReset     = protocol.TypeStreamReset
	tConnStart = protocol.TypeConnectionStart
	tConnReset = protocol.TypeConnectionReset
)

// destination starts a destination session for services and a raw source
// peer speaking subprotocol sub.
func destination(t *testing.T, services map[string]string, sub string, tunnelServices ...string) (*running, *rawPeer, *relay) {
	t.Helper()
	r := newRelay(t, true, tunnelServices...)
	d := start(t, testConfig(r, ModeDestination, services))
	d.ev.wait(t, "connected", isKind(EventConnected))
	r.conn("destination") // registered before the peer's frames can be relayed
	p := dialPeer(t, r, "source", sub)
	return d, p, r
}

func TestDestinationV3(t *testing.T) {
	d, p, _ := destination(t, map[string]string{"SSH": tunneltest.Echo(t)}, protocol.SubprotocolV3, "SSH")
	// DATA right behind STREAM_START, before the dial can have finished.
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1},
		&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("hello")})
	got := p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	if string(got.Payload) != "hello" {
		t.Fatalf("echo = %q", got.Payload)
	}
	p.send(&msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2},
		&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 2, Payload: []byte("two")},
		&msg{Type: tData, StreamID: 9, ServiceID: "SSH", ConnectionID: 2, Payload: []byte("stale")})
	if got := p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 2}); string(got.Payload) != "two" {
		t.Fatalf("echo = %q", got.Payload)
	}
	p.send(&msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	d.ev.wait(t, "connection 1 closed", func(e Event) bool { return e.Kind == EventStreamClosed && e.ConnectionID == 1 })
	// Connection 2 still works.
	p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 2, Payload: []byte("still")})
	if got := p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 2}); string(got.Payload) != "still" {
		t.Fatalf("echo = %q", got.Payload)
	}
	p.send(&msg{Type: tReset, StreamID: 1, ServiceID: "SSH"})
	d.ev.wait(t, "connection 2 closed", func(e Event) bool { return e.Kind == EventStreamClosed && e.ConnectionID == 2 })
	opened := d.ev.wait(t, "opened", isKind(EventStreamOpened))
	if opened.Service != "SSH" || opened.LocalAddr == "" || opened.StreamID != 1 {
		t.Fatalf("opened event %+v", opened)
	}
	closed := d.ev.wait(t, "closed", isKind(EventStreamClosed))
	if closed.BytesIn != 5 || closed.BytesOut != 5 {
		t.Fatalf("closed event bytes in=%d out=%d, want 5/5", closed.BytesIn, closed.BytesOut)
	}
}

// TestDestinationVersions: the reply format follows the peer's STREAM_START.
func TestDestinationVersions(t *testing.T) {
	tests := []struct {
		name  string
		sub   string
		start msg
		reply msg
	}{
		{"V1 peer routed to the only service", protocol.SubprotocolV1, msg{Type: tStart, StreamID: 4}, msg{Type: tData, StreamID: 4}},
		{"V2 peer", protocol.SubprotocolV2, msg{Type: tStart, StreamID: 2, ServiceID: "SSH"}, msg{Type: tData, StreamID: 2, ServiceID: "SSH"}},
		{"V3 peer, connection id", protocol.SubprotocolV3, msg{Type: tStart, StreamID: 3, ServiceID: "SSH", ConnectionID: 1}, msg{Type: tData, StreamID: 3, ServiceID: "SSH", ConnectionID: 1}},
		// The C++ source offers 3.0 whatever -y says; -y only shapes its messages.
		{"C++ source -y V1 on 3.0", protocol.SubprotocolV3, msg{Type: tStart, StreamID: 5}, msg{Type: tData, StreamID: 5}},
		{"C++ source -y V2 on 3.0", protocol.SubprotocolV3, msg{Type: tStart, StreamID: 6, ServiceID: "SSH"}, msg{Type: tData, StreamID: 6, ServiceID: "SSH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, p, _ := destination(t, map[string]string{"SSH": tunneltest.Echo(t)}, tt.sub, "SSH")
			data := tt.start
			data.Type, data.Payload = tData, []byte("x")
			p.send(&tt.start, &data)
			p.expect(tt.reply)
		})
	}
}

func TestDestinationV1PeerWithSeveralServices(t *testing.T) {
	// Two services mapped; the tunnel names exactly one: V1 streams go there.
	_, p, _ := destination(t, map[string]string{"SSH": tunneltest.Echo(t), "VNC": closedAddr(t)}, protocol.SubprotocolV3, "SSH")
	p.send(&msg{Type: tStart, StreamID: 1}, &msg{Type: tData, StreamID: 1, Payload: []byte("v1")})
	p.expect(msg{Type: tData, StreamID: 1})
}

func TestDestinationUnmappedService(t *testing.T) {
	d, p, _ := destination(t, map[string]string{"SSH": tunneltest.Echo(t)}, protocol.SubprotocolV3, "SSH", "VNC")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "VNC", ConnectionID: 1})
	p.expect(msg{Type: tReset, StreamID: 1, ServiceID: "VNC"})
	if log := d.ev.logText(); !strings.Contains(log, "not in the agent's services map; add it to allow it") || !strings.Contains(log, "VNC") {
		t.Fatalf("no warning naming the service:\n%s", log)
	}
	if d.ev.count(EventStreamOpened) != 0 {
		t.Fatal("a stream was opened for an unmapped service")
	}
}

func TestDestinationDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	d, p, _ := destination(t, map[string]string{"SSH": ln.Addr().String(), "DOWN": closedAddr(t)}, protocol.SubprotocolV3, "SSH", "DOWN")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "DOWN", ConnectionID: 1})
	p.expect(msg{Type: tReset, StreamID: 1, ServiceID: "DOWN"})
	// A failed CONNECTION_START gets a CONNECTION_RESET; the stream lives on.
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	c := <-accepted
	defer c.Close()
	_ = ln.Close()
	p.send(&msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	p.expect(msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	// Each failed dial is reported with its error. The events come from the
	// connections' own goroutines, so they are waited for one by one: their
	// order is not the order of the frames.
	for _, want := range []struct {
		service string
		conn    uint32
	}{{"DOWN", 1}, {"SSH", 2}} {
		failed := d.ev.wait(t, "failed dial event for "+want.service, func(e Event) bool {
			return e.Kind == EventStreamClosed && e.Service == want.service && e.ConnectionID == want.conn
		})
		if failed.Err == nil || !strings.Contains(failed.Err.Error(), "connection refused") {
			t.Fatalf("failed dial event %+v, want the dial error", failed)
		}
	}
	p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("ok")})
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("connection 1 after failed connection 2: %q %v", buf, err)
	}
}

func TestDestinationLocalEOF(t *testing.T) {
	for _, tt := range []struct {
		name  string
		start msg
		reset msg
	}{
		{"V2 sends STREAM_RESET", msg{Type: tStart, StreamID: 1, ServiceID: "SVC"}, msg{Type: tReset, StreamID: 1, ServiceID: "SVC"}},
		{"V3 sends CONNECTION_RESET", msg{Type: tStart, StreamID: 1, ServiceID: "SVC", ConnectionID: 1}, msg{Type: tConnReset, StreamID: 1, ServiceID: "SVC", ConnectionID: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, p, _ := destination(t, map[string]string{"SVC": byeServer(t)}, protocol.SubprotocolV3, "SVC")
			p.send(&tt.start)
			got := p.expect(msg{Type: tData, StreamID: 1, ServiceID: tt.reset.ServiceID, ConnectionID: tt.reset.ConnectionID})
			if string(got.Payload) != "bye" {
				t.Fatalf("payload %q", got.Payload)
			}
			p.expect(tt.reset)
		})
	}
}

// byeServer writes "bye" to each client and closes.
func byeServer(t *testing.T) string {
	return tunneltest.Serve(t, func(c net.Conn) { _, _ = c.Write([]byte("bye")) })
}

func TestDestinationResetDrainsPendingWrites(t *testing.T) {
	got := make(chan []byte, 1)
	addr := tunneltest.Serve(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- b
	})
	_, p, _ := destination(t, map[string]string{"SVC": addr}, protocol.SubprotocolV3, "SVC")
	want := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640000 bytes, 10 frames
	msgs := []*msg{{Type: tStart, StreamID: 1, ServiceID: "SVC", ConnectionID: 1}}
	for b := want; len(b) > 0; {
		n := min(len(b), protocol.MaxPayload)
		msgs = append(msgs, &msg{Type: tData, StreamID: 1, ServiceID: "SVC", ConnectionID: 1, Payload: b[:n]})
		b = b[n:]
	}
	msgs = append(msgs, &msg{Type: tReset, StreamID: 1, ServiceID: "SVC"})
	for _, m := range msgs {
		p.send(m)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Fatalf("local service got %d bytes, want %d", len(b), len(want))
		}
	case <-time.After(waitFor):
		t.Fatal("the local service never saw the end of the stream")
	}
}

func TestDestinationStreamReplacement(t *testing.T) {
	d, p, _ := destination(t, map[string]string{"SSH": tunneltest.Echo(t)}, protocol.SubprotocolV2, "SSH")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH"}, &msg{Type: tData, StreamID: 1, ServiceID: "SSH", Payload: []byte("a")})
	p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH"})
	// A new STREAM_START while stream 1 is active starts stream 2 at once.
	p.send(&msg{Type: tStart, StreamID: 2, ServiceID: "SSH"}, &msg{Type: tData, StreamID: 2, ServiceID: "SSH", Payload: []byte("b")},
		&msg{Type: tData, StreamID: 1, ServiceID: "SSH", Payload: []byte("stale")})
	if got := p.expect(msg{Type: tData, StreamID: 2, ServiceID: "SSH"}); string(got.Payload) != "b" {
		t.Fatalf("payload %q", got.Payload)
	}
	d.ev.wait(t, "stream 1 closed", func(e Event) bool { return e.Kind == EventStreamClosed && e.StreamID == 1 })
}

func TestDestinationSessionResetAndUnknownTypes(t *testing.T) {
	d, p, r := destination(t, map[string]string{"SSH": tunneltest.Echo(t)}, protocol.SubprotocolV3, "SSH")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	d.ev.wait(t, "opened", isKind(EventStreamOpened))
	r.inject("destination", &msg{Type: protocol.TypeSessionReset})
	d.ev.wait(t, "closed by session reset", isKind(EventStreamClosed))
	// Unknown types, ignorable or not, and a malformed message are skipped.
	p.send(&msg{Type: protocol.Type(42), Ignorable: true, StreamID: 1}, &msg{Type: protocol.Type(43), StreamID: 1})
	if err := p.ws.WriteMessage(2, []byte{0, 2, 0x08, 0x80}); err != nil {
		t.Fatal(err)
	}
	p.send(&msg{Type: tStart, StreamID: 2, ServiceID: "SSH", ConnectionID: 1}, &msg{Type: tData, StreamID: 2, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("z")})
	p.expect(msg{Type: tData, StreamID: 2, ServiceID: "SSH", ConnectionID: 1})
	if n := d.ev.count(EventDisconnected); n != 0 {
		t.Fatalf("the WebSocket was dropped %d times", n)
	}
	if !strings.Contains(d.ev.logText(), "unknown type") {
		t.Fatal("unknown type not logged")
	}
}

// TestDestinationSlowLocalSocket: a local service that does not read gets
// its connection reset when its buffer is full; other streams go on.
func TestDestinationSlowLocalSocket(t *testing.T) {
	release := make(chan struct{})
	slow := tunneltest.Serve(t, func(c net.Conn) { <-release })
	defer close(release)
	r := newRelay(t, true, "SLOW", "SSH")
	cfg := testConfig(r, ModeDestination, map[string]string{"SLOW": slow, "SSH": tunneltest.Echo(t)})
	cfg.ConnBufferSize, cfg.ConnStallTimeout = 64<<10, 50*time.Millisecond
	d := start(t, cfg)
	d.ev.wait(t, "connected", isKind(EventConnected))
	r.conn("destination")
	p := dialPeer(t, r, "source")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SLOW", ConnectionID: 1}, &msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	chunk := make([]byte, protocol.MaxPayload)
	var resetSeen bool
	for i := 0; i < 400 && !resetSeen; i++ { // up to ~25 MiB, far beyond socket buffers
		p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SLOW", ConnectionID: 1, Payload: chunk})
		select {
		case m := <-p.msgs:
			resetSeen = m.Type == tConnReset && m.ServiceID == "SLOW"
		default:
		}
	}
	if !resetSeen {
		p.expect(msg{Type: tConnReset, StreamID: 1, ServiceID: "SLOW", ConnectionID: 1})
	}
	p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("alive")})
	p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	if !strings.Contains(d.ev.logText(), "buffer stayed full") {
		t.Fatal("overflow not logged")
	}
}

func TestDestinationUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "echo.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Skipf("unix sockets: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(c, c)
			_ = c.Close()
		}
	})
	defer func() { _ = ln.Close(); wg.Wait() }()
	_, p, _ := destination(t, map[string]string{"SOCK": "unix:" + path}, protocol.SubprotocolV3, "SOCK")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SOCK", ConnectionID: 1}, &msg{Type: tData, StreamID: 1, ServiceID: "SOCK", ConnectionID: 1, Payload: []byte("unix")})
	if got := p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SOCK", ConnectionID: 1}); string(got.Payload) != "unix" {
		t.Fatalf("payload %q", got.Payload)
	}
	p.send(&msg{Type: tReset, StreamID: 1, ServiceID: "SOCK"})
}

func TestDestinationV1PeerAmbiguous(t *testing.T) {
	// Two services mapped, the tunnel names both: a V1 stream cannot be routed.
	d, p, _ := destination(t, map[string]string{"SSH": tunneltest.Echo(t), "VNC": tunneltest.Echo(t)}, protocol.SubprotocolV3, "SSH", "VNC")
	p.send(&msg{Type: tStart, StreamID: 1})
	p.expect(msg{Type: tReset, StreamID: 1})
	if !strings.Contains(d.ev.logText(), "without a service id") {
		t.Fatal("no warning")
	}
}

// TestDestinationOn10Subprotocol: on a 1.0 WebSocket the destination sends
// V1-shaped messages (no fields 5 or 7) even to a V3 peer.
func TestDestinationOn10Subprotocol(t *testing.T) {
	r := newRelay(t, true, "SSH")
	r.setSubprotocol("destination", protocol.SubprotocolV1)
	d := start(t, testConfig(r, ModeDestination, map[string]string{"SSH": byeServer(t)}))
	d.ev.wait(t, "connected", isKind(EventConnected))
	r.conn("destination") // no SERVICE_IDS on 1.0: wait for the relay to register it
	p := dialPeer(t, r, "source")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	p.expect(msg{Type: tData, StreamID: 1})
	p.expect(msg{Type: tReset, StreamID: 1})
}

func TestDestinationConnectionStartOnV2Stream(t *testing.T) {
	t.Run("3.0: connection refused", func(t *testing.T) {
		_, p, _ := destination(t, map[string]string{"SSH": tunneltest.Echo(t)}, protocol.SubprotocolV3, "SSH")
		p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH"}, &msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
		p.expect(msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	})
	t.Run("2.0: stream reset like a V2 destination", func(t *testing.T) {
		r := newRelay(t, true, "SSH")
		r.setSubprotocol("destination", protocol.SubprotocolV2)
		d := start(t, testConfig(r, ModeDestination, map[string]string{"SSH": tunneltest.Echo(t)}))
		d.ev.wait(t, "connected", isKind(EventConnected))
		r.conn("destination")
		p := dialPeer(t, r, "source")
		p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1}, &msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
		p.expect(msg{Type: tReset, StreamID: 1, ServiceID: "SSH"})
	})
}

// TestSlowLocalReaderNotReset: a local service that reads, only slower
// than the tunnel delivers, is held back, not reset, and gets every byte:
// with a conn_buffer as large as the queue budget (tunnelctl's 16 MiB),
// where the writer's buffer in flight and the refilled queue together
// passed the budget, and with a stall window shorter than one write of
// the whole buffer, where the writer's progress did not count.
func TestSlowLocalReaderNotReset(t *testing.T) {
	for _, tc := range []struct {
		name        string
		buffer      int
		stall       time.Duration
		read, pause int // bytes per read, microseconds between reads
	}{
		{name: "conn_buffer as large as the budget", buffer: DefaultQueueBudget, read: 4 << 20, pause: 40000},
		{name: "one write longer than the stall window", buffer: 8 << 20, stall: 150 * time.Millisecond, read: 256 << 10, pause: 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan int64, 1)
			slow := tunneltest.Serve(t, func(c net.Conn) {
				buf := make([]byte, tc.read)
				var n int64
				for {
					k, err := io.ReadFull(c, buf)
					n += int64(k)
					if err != nil {
						got <- n
						return
					}
					time.Sleep(time.Duration(tc.pause) * time.Microsecond)
				}
			})
			lim := NewLimits(0, 0, 0)
			d, p := hostileDestination(t, map[string]string{"SSH": slow}, func(c *Config) {
				c.ConnBufferSize, c.ConnStallTimeout, c.Limits = tc.buffer, tc.stall, lim
			}, "SSH")
			p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
			chunk := bytes.Repeat([]byte("x"), protocol.MaxPayload)
			sent := 0
			for ; sent < 48<<20; sent += len(chunk) {
				p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: chunk})
				select {
				case m := <-p.msgs:
					if m.Type == tConnReset || m.Type == tReset {
						t.Fatalf("after %d MiB: %v; log:\n%s", sent>>20, m.Type, d.ev.logText())
					}
				default:
				}
			}
			// Once the service caught up, the idle connection holds none
			// of the burst's chunks.
			waitUntil(t, "burst chunks released", func() bool { return lim.Queued() == 0 })
			p.send(&msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 1}) // drain, then close
			if n := <-got; n != int64(sent) {
				t.Fatalf("the local service got %d of %d bytes; log:\n%s", n, sent, d.ev.logText())
			}
			if log := d.ev.logText(); strings.Contains(log, "resetting") {
				t.Fatalf("reset logged:\n%s", log)
			}
			p.close()
		})
	}
}
