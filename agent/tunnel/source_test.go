package tunnel

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// source starts a source session with a raw destination peer connected
// first, and waits until the session is ready for local clients.
func source(t *testing.T, clientType, peerSub string, services ...string) (*running, *rawPeer, *relay) {
	t.Helper()
	r := newRelay(t, true, services...)
	p := dialPeer(t, r, "destination", peerSub)
	m := map[string]string{}
	for _, s := range services {
		m[s] = "127.0.0.1:0"
	}
	cfg := testConfig(r, ModeSource, m)
	cfg.DestinationClientType = clientType
	s := start(t, cfg)
	s.ev.wait(t, "connected", isKind(EventConnected))
	waitUntil(t, "ready", func() bool { return s.s.waitLink(t.Context(), 0) != nil })
	return s, p, r
}

func dialLocal(t *testing.T, s *running, service string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.s.Addr(service).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	b := make([]byte, n)
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read local: %v", err)
	}
	return string(b)
}

func TestSourceV3(t *testing.T) {
	s, p, _ := source(t, "", protocol.SubprotocolV3, "SSH")
	c1 := dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	c2 := dialLocal(t, s, "SSH")
	p.expect(msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	if _, err := c1.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if got := p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1}); string(got.Payload) != "one" {
		t.Fatalf("payload %q", got.Payload)
	}
	p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 2, Payload: []byte("to-two")},
		&msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("to-one")})
	if got := readN(t, c2, 6); got != "to-two" {
		t.Fatalf("c2 got %q", got)
	}
	if got := readN(t, c1, 6); got != "to-one" {
		t.Fatalf("c1 got %q", got)
	}
	_ = c1.Close()
	p.expect(msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	// The stream lives on: a third client is connection 3 of stream 1.
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 3})
	// CONNECTION_RESET from the destination closes that client only.
	p.send(&msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	_ = c2.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("c2 still open after CONNECTION_RESET")
	}
}

func TestSourceV2SerializesConnections(t *testing.T) {
	s, p, _ := source(t, "V2", protocol.SubprotocolV3, "SSH")
	c1 := dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH"})
	c2 := dialLocal(t, s, "SSH") // waits for c1's stream to end
	if _, err := c2.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	_ = c1.Close()
	p.expect(msg{Type: tReset, StreamID: 1, ServiceID: "SSH"})
	p.expect(msg{Type: tStart, StreamID: 2, ServiceID: "SSH"})
	if got := p.expect(msg{Type: tData, StreamID: 2, ServiceID: "SSH"}); string(got.Payload) != "queued" {
		t.Fatalf("payload %q", got.Payload)
	}
	p.send(&msg{Type: tReset, StreamID: 2, ServiceID: "SSH"})
	_ = c2.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("c2 open after STREAM_RESET")
	}
}

func TestSourceV1(t *testing.T) {
	s, p, _ := source(t, "V1", protocol.SubprotocolV3, "SSH")
	c := dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 1})
	_, _ = c.Write([]byte("v1"))
	p.expect(msg{Type: tData, StreamID: 1})
	p.send(&msg{Type: tData, StreamID: 1, Payload: []byte("back")})
	if got := readN(t, c, 4); got != "back" {
		t.Fatalf("got %q", got)
	}
}

// TestSourceNegotiatedV1: a 1.0 subprotocol means V1 messages whatever the
// configuration, since the service closes V1 connections that send fields 5-7.
func TestSourceNegotiatedV1(t *testing.T) {
	r := newRelay(t, true, "SSH")
	r.setSubprotocol("source", protocol.SubprotocolV1)
	p := dialPeer(t, r, "destination")
	s := start(t, testConfig(r, ModeSource, map[string]string{"SSH": "127.0.0.1:0"}))
	s.ev.wait(t, "connected", isKind(EventConnected))
	waitUntil(t, "ready", func() bool { return s.s.waitLink(t.Context(), 0) != nil })
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 1})
}

// TestSourceResetIsNoV2Evidence: a STREAM_RESET after a CONNECTION_START is
// what a V2 destination answers, but also what the service sends when the
// destination arrives after the source's first clients, and what a V3 C++
// destination sends when it cannot dial: the source closes the stream's
// clients and keeps speaking V3.
func TestSourceResetIsNoV2Evidence(t *testing.T) {
	s, p, _ := source(t, "", protocol.SubprotocolV3, "SSH")
	early := make([]net.Conn, 4)
	for i := range early {
		early[i] = dialLocal(t, s, "SSH")
		if i == 0 {
			p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
		} else {
			p.expect(msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: uint32(i + 1)})
		}
	}
	p.send(&msg{Type: tReset, StreamID: 1, ServiceID: "SSH"})
	for i, c := range early {
		_ = c.SetReadDeadline(time.Now().Add(waitFor))
		if n, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("early client %d after STREAM_RESET: read %d, %v; want it closed", i, n, err)
		}
	}
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 2, ServiceID: "SSH", ConnectionID: 1})
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tConnStart, StreamID: 2, ServiceID: "SSH", ConnectionID: 2})
	if strings.Contains(s.ev.logText(), "destination speaks V2") {
		t.Fatal("a STREAM_RESET was taken for a V2 destination")
	}
}

// TestSourceAutoDetectsV2FromData: DATA without a connection id reveals a
// V2 destination; later clients get one stream each. A reset of a stream the
// destination never answered (a destination that reconnected, maybe another
// one) makes the source decide again, speaking V3 meanwhile.
func TestSourceAutoDetectsV2FromData(t *testing.T) {
	s, p, _ := source(t, "", protocol.SubprotocolV3, "SSH")
	c := dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	p.send(&msg{Type: tData, StreamID: 1, ServiceID: "SSH", Payload: []byte("v2")})
	if got := readN(t, c, 2); got != "v2" {
		t.Fatalf("got %q", got)
	}
	_ = c.Close()
	p.expect(msg{Type: tConnReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 2, ServiceID: "SSH"})
	if !strings.Contains(s.ev.logText(), "destination speaks V2") {
		t.Fatal("V2 not logged")
	}
	// The destination reconnects: the service resets stream 2, which never
	// heard from it.
	p.send(&msg{Type: tReset, StreamID: 2, ServiceID: "SSH"})
	waitUntil(t, "stream 2 closed", func() bool { return s.ev.count(EventStreamClosed) == 2 })
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 3, ServiceID: "SSH", ConnectionID: 1})
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tConnStart, StreamID: 3, ServiceID: "SSH", ConnectionID: 2})
}

func TestSourceIgnoresStartFromDestination(t *testing.T) {
	s, p, _ := source(t, "", protocol.SubprotocolV3, "SSH")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1}, &msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	waitUntil(t, "warning", func() bool { return strings.Count(s.ev.logText(), "only a source may send it") == 2 })
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
}

// TestSourceRefusesWhileDown: with the tunnel down, a local client waits up
// to DialTimeout and is then closed.
func TestSourceRefusesWhileDown(t *testing.T) {
	r := newRelay(t, true, "SSH")
	r.reject = func(*http.Request) (int, string) { return 503, "down" }
	cfg := testConfig(r, ModeSource, map[string]string{"SSH": "127.0.0.1:0"})
	cfg.DialTimeout = 100 * time.Millisecond
	s := start(t, cfg)
	c := dialLocal(t, s, "SSH")
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("read = %v, want the connection closed", err)
	}
	waitUntil(t, "refusal logged", func() bool { return strings.Contains(s.ev.logText(), "tunnel is not connected") })
}

func TestSourceCloseWithoutRun(t *testing.T) {
	s, err := New(Config{Mode: ModeSource, Region: "us-east-1", AccessToken: "x", Services: map[string]string{"A": "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr("A").String()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		_ = c.Close()
		t.Fatal("listener still open after Close")
	}
	if s.Addr("B") != nil {
		t.Fatal("Addr of an unknown service")
	}
}

// TestSourceReconnect: a dropped WebSocket closes the local clients; after
// the reconnect, new clients start again at stream id 1.
func TestSourceReconnect(t *testing.T) {
	s, p, r := source(t, "", protocol.SubprotocolV3, "SSH")
	c := dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	r.drop("source")
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("local client after the WebSocket dropped: %v", err)
	}
	waitUntil(t, "reconnected", func() bool { return s.ev.count(EventConnected) == 2 })
	waitUntil(t, "ready", func() bool { return s.s.waitLink(t.Context(), 0) != nil })
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
}

func TestSourceRefusesServiceNotInTunnel(t *testing.T) {
	r := newRelay(t, true, "SSH")
	p := dialPeer(t, r, "destination")
	s := start(t, testConfig(r, ModeSource, map[string]string{"SSH": "127.0.0.1:0", "VNC": "127.0.0.1:0"}))
	waitUntil(t, "ready", func() bool { return s.s.waitLink(t.Context(), 0) != nil })
	c := dialLocal(t, s, "VNC")
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("VNC client: %v, want closed", err)
	}
	dialLocal(t, s, "SSH")
	p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	if !strings.Contains(s.ev.logText(), "the tunnel has no such service") {
		t.Fatal("no warning")
	}
}

// TestSourceSimultaneousClientsStartInOrder: clients accepted at the same
// moment must announce themselves in the order they were numbered, the
// STREAM_START before every CONNECTION_START of its stream; a destination
// drops a CONNECTION_START for a stream it has not seen start.
func TestSourceSimultaneousClientsStartInOrder(t *testing.T) {
	for round := 0; round < 5; round++ {
		s, p, _ := source(t, "", protocol.SubprotocolV3, "SSH")
		const clients = 8
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				c, err := net.Dial("tcp", s.s.Addr("SSH").String())
				if err != nil {
					t.Error(err)
					return
				}
				t.Cleanup(func() { _ = c.Close() })
			})
		}
		wg.Wait()
		first := p.next()
		if first.Type != protocol.TypeStreamStart || first.ConnectionID != 1 {
			t.Fatalf("round %d: first message is %v conn=%d, want STREAM_START conn=1", round, first.Type, first.ConnectionID)
		}
		for want := uint32(2); want <= clients; want++ {
			m := p.next()
			if m.Type != protocol.TypeConnectionStart || m.StreamID != first.StreamID || m.ConnectionID != want {
				t.Fatalf("round %d: got %v sid=%d conn=%d, want CONNECTION_START sid=%d conn=%d",
					round, m.Type, m.StreamID, m.ConnectionID, first.StreamID, want)
			}
		}
	}
}
