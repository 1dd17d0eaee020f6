package emulator

import (
	"bytes"
	"crypto/rand"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestServiceIDs(t *testing.T) {
	env := startEmulator(t, nil)
	tests := []struct {
		name, open, sub string
		want            []string // nil: no SERVICE_IDS expected
	}{
		{"v3 three services", `{"destinationConfig":{"services":["SSH","VNC","HTTP"]}}`, protocol.SubprotocolV3, []string{"SSH", "VNC", "HTTP"}},
		{"v2 one service", `{"destinationConfig":{"services":["SSH"]}}`, protocol.SubprotocolV2, []string{"SSH"}},
		{"v3 no destinationConfig", `{}`, protocol.SubprotocolV3, []string{}},
		{"v1 none", `{"destinationConfig":{"services":["SSH"]}}`, protocol.SubprotocolV1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tun := env.open(t, tt.open)
			dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination", subs: []string{tt.sub}})
			src := env.dial(t, dialOpts{token: tun.src, subs: []string{protocol.SubprotocolV3}})
			src.recv(t)                                             // SERVICE_IDS for the V3 source
			waitConnected(t, env, tun.id, "CONNECTED", "CONNECTED") // a V1 client gets no signal
			if tt.want != nil {
				m := dst.recv(t)
				if m.Type != protocol.TypeServiceIDs || !slices.Equal(m.AvailableServiceIDs, tt.want) {
					t.Fatalf("got %v %q, want SERVICE_IDS %q", m.Type, m.AvailableServiceIDs, tt.want)
				}
			}
			// The next message is relayed data, proving nothing else came first.
			src.send(t, protocol.Message{Type: protocol.TypeStreamStart, StreamID: 1})
			if m := dst.recv(t); m.Type != protocol.TypeStreamStart || m.StreamID != 1 {
				t.Fatalf("got %+v, want the relayed STREAM_START", m)
			}
		})
	}
}

// TestRelayIntegrity moves random data both ways through the relay and
// checks that every byte arrives in order, in WebSocket messages of at most
// 131076 bytes.
func TestRelayIntegrity(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{"destinationConfig":{"services":["SSH"]}}`)
	src := env.dial(t, dialOpts{token: tun.src, writeBuf: 4096}) // small buffer: continuation frames
	dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination"})
	src.recv(t)
	dst.recv(t)
	const total = 4 << 20
	up, down := make([]byte, total), make([]byte, total)
	_, _ = rand.Read(up)
	_, _ = rand.Read(down)

	var wg sync.WaitGroup
	var gotUp, gotDown []byte
	var maxMsg int
	wg.Add(2)
	go func() { defer wg.Done(); gotUp, maxMsg = collect(t, dst, total) }()
	go func() { defer wg.Done(); gotDown, _ = collect(t, src, total) }()
	src.send(t, start("SSH", 1))
	go func() { sendChunks(src.c, up) }()
	sendChunks(dst.c, down)
	wg.Wait()
	if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
		t.Fatalf("data corrupted: up %d/%d bytes, down %d/%d bytes", len(gotUp), total, len(gotDown), total)
	}
	if maxMsg > protocol.MaxWSMessage {
		t.Fatalf("relay sent a %d-byte WebSocket message", maxMsg)
	}
}

// sendChunks sends p as DATA frames of MaxPayload, two frames per
// WebSocket message written through NextWriter, and splits one frame
// across two messages to show frames and messages are independent.
func sendChunks(c *websocket.Conn, p []byte) {
	var buf []byte
	for i := 0; len(p) > 0; i++ {
		n := min(len(p), protocol.MaxPayload)
		buf, _ = protocol.AppendFrame(buf, &protocol.Message{Type: protocol.TypeData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: p[:n]})
		p = p[n:]
		if i%2 == 1 || len(p) == 0 {
			cut := len(buf)
			if i == 1 {
				cut = len(buf) - 100
			}
			w, err := c.NextWriter(websocket.BinaryMessage)
			if err != nil {
				return
			}
			_, _ = w.Write(buf[:cut])
			if w.Close() != nil {
				return
			}
			buf = append(buf[:0], buf[cut:]...)
		}
	}
}

// collect reads DATA payloads until n bytes arrived, tracking the largest
// WebSocket message.
func collect(t *testing.T, c *wsClient, n int) ([]byte, int) {
	var got []byte
	maxMsg := 0
	var pending []byte
	for len(got) < n {
		typ, b, err := c.c.ReadMessage()
		if err != nil || typ != websocket.BinaryMessage {
			t.Errorf("read: %v", err)
			return got, maxMsg
		}
		maxMsg = max(maxMsg, len(b))
		pending = append(pending, b...)
		fr := protocol.NewFrameReader(bytes.NewReader(pending))
		consumed := 0
		for {
			var m protocol.Message
			if err := fr.ReadMessage(&m); err != nil {
				break
			}
			if m.Type == protocol.TypeData {
				got = append(got, m.Payload...)
			}
			consumed = len(pending) - fr.Buffered()
		}
		pending = pending[consumed:]
	}
	return got, maxMsg
}

func TestReplacementResetsStreams(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{"destinationConfig":{"services":["SSH","VNC"]}}`)
	src := env.dial(t, dialOpts{token: tun.src, clientToken: ctA})
	dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination", clientToken: ctB})
	src.recv(t)
	dst.recv(t)
	src.send(t, start("SSH", 4), start("VNC", 2), start("VNC", 3), protocol.Message{Type: protocol.TypeStreamReset, StreamID: 4, ServiceID: "SSH"})
	for range 4 {
		dst.recv(t)
	}
	// The source reconnects: the old one is closed, the destination learns
	// that VNC stream 3 (the only one still open) is gone.
	src2 := env.dial(t, dialOpts{token: tun.src, clientToken: ctA})
	if code := src.closeCode(t); code != websocket.CloseNormalClosure {
		t.Fatalf("old source closed with %d", code)
	}
	m := dst.recv(t)
	if m.Type != protocol.TypeStreamReset || m.ServiceID != "VNC" || m.StreamID != 3 {
		t.Fatalf("destination got %+v, want STREAM_RESET VNC 3", m)
	}
	src2.recv(t)
	src2.send(t, start("SSH", 1))
	dst.recv(t)
	// Now the destination reconnects: the source hears about SSH 1.
	env.dial(t, dialOpts{token: tun.dst, mode: "destination", clientToken: ctB})
	if m := src2.recv(t); m.Type != protocol.TypeStreamReset || m.ServiceID != "SSH" || m.StreamID != 1 {
		t.Fatalf("source got %+v, want STREAM_RESET SSH 1", m)
	}
	waitConnected(t, env, tun.id, "CONNECTED", "CONNECTED")
}

func TestNoPeerDropsFrames(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{}`)
	src := env.dial(t, dialOpts{token: tun.src})
	src.recv(t)
	src.send(t, start("", 1), data("", 1, []byte("lost")))
	r := env.e.store.tunnels[tun.id].relay
	waitFor(t, "relay to see the STREAM_START", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.streams[""] == 1
	})
	dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination"})
	dst.recv(t) // SERVICE_IDS
	// The source learns that its stream never reached a destination.
	if m := src.recv(t); m.Type != protocol.TypeStreamReset || m.StreamID != 1 {
		t.Fatalf("source got %+v, want STREAM_RESET 1", m)
	}
	src.send(t, start("", 2), data("", 2, []byte("kept")))
	if m := dst.recv(t); m.Type != protocol.TypeStreamStart || m.StreamID != 2 {
		t.Fatalf("destination got %+v, want STREAM_START 2 (earlier frames dropped)", m)
	}
	if m := dst.recv(t); string(m.Payload) != "kept" {
		t.Fatalf("destination got %+v", m)
	}
}

func TestTextMessageClosesConnection(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{}`)
	src := env.dial(t, dialOpts{token: tun.src})
	src.recv(t)
	if err := src.c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if code := src.closeCode(t); code != websocket.CloseUnsupportedData {
		t.Fatalf("close code %d", code)
	}
}

func TestReplacementResetToV1Peer(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{"destinationConfig":{"services":["SSH"]}}`)
	dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination", subs: []string{protocol.SubprotocolV1}})
	src := env.dial(t, dialOpts{token: tun.src, clientToken: ctA})
	src.recv(t)
	waitConnected(t, env, tun.id, "CONNECTED", "CONNECTED")
	src.send(t, start("SSH", 7))
	dst.recv(t)
	env.dial(t, dialOpts{token: tun.src, clientToken: ctA})
	if m := dst.recv(t); m.Type != protocol.TypeStreamReset || m.StreamID != 7 || m.ServiceID != "" {
		t.Fatalf("V1 destination got %+v, want STREAM_RESET 7 without serviceId", m)
	}
}

// TestRelayKeepsMessageBoundaries: the relay never merges messages. Each
// message reaches the other side with the frames it completed, also when
// frames span messages and the writer is busy, and the emulator's own
// STREAM_RESETs go one per message. A peer may depend on where a message
// ends: the C++ localproxy processes nothing after a STREAM_START until the
// next message arrives.
func TestRelayKeepsMessageBoundaries(t *testing.T) {
	env := startEmulator(t, nil)
	tun := env.open(t, `{"destinationConfig":{"services":["SSH","VNC"]}}`)
	src := env.dial(t, dialOpts{token: tun.src})
	src.recv(t) // SERVICE_IDS
	// Two streams started while no destination is there: its arrival
	// resets both at the source, in two messages.
	src.send(t, start("SSH", 1))
	src.send(t, start("VNC", 1))
	waitStreams(t, env, tun.id, 2)
	dst := env.dial(t, dialOpts{token: tun.dst, mode: "destination"})
	_ = dst.c.SetReadDeadline(deadline())
	if _, b, err := dst.c.ReadMessage(); err != nil || frameTypes(t, b)[0] != protocol.TypeServiceIDs {
		t.Fatalf("destination's first message: %v", err)
	}
	for range 2 {
		_ = src.c.SetReadDeadline(deadline())
		_, b, err := src.c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if got := frameTypes(t, b); len(got) != 1 || got[0] != protocol.TypeStreamReset {
			t.Fatalf("source got %v in one message, want one STREAM_RESET", got)
		}
	}
	// Each round: [STREAM_START + the head of a DATA frame], [its tail,
	// another DATA]: the destination must see [START] then [DATA, DATA].
	const rounds = 50
	for i := range int32(rounds) {
		var b []byte
		m1, m2, m3 := start("SSH", i+2), data("SSH", i+2, make([]byte, 3000)), data("SSH", i+2, []byte("x"))
		for _, m := range []*protocol.Message{&m1, &m2, &m3} {
			b, _ = protocol.AppendFrame(b, m)
		}
		cut := len(b) - 2000
		for _, part := range [][]byte{b[:cut], b[cut:]} {
			if err := src.c.WriteMessage(websocket.BinaryMessage, part); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 2 * rounds {
		_ = dst.c.SetReadDeadline(deadline())
		_, b, err := dst.c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		want := []protocol.Type{protocol.TypeStreamStart}
		if i%2 == 1 {
			want = []protocol.Type{protocol.TypeData, protocol.TypeData}
		}
		if got := frameTypes(t, b); !slices.Equal(got, want) {
			t.Fatalf("message %d holds %v, want %v", i, got, want)
		}
	}
}

// frameTypes decodes a message of whole frames.
func frameTypes(t *testing.T, b []byte) []protocol.Type {
	t.Helper()
	fr := protocol.NewFrameReader(bytes.NewReader(b))
	var out []protocol.Type
	for {
		var m protocol.Message
		err := fr.ReadMessage(&m)
		if err == io.EOF && len(out) > 0 {
			return out
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(out), err)
		}
		out = append(out, m.Type)
	}
}

// waitStreams waits until the relay of a tunnel tracks n started streams.
func waitStreams(t *testing.T, env *testEnv, id string, n int) {
	t.Helper()
	tun, ok := env.e.store.get(id)
	if !ok {
		t.Fatalf("no tunnel %s", id)
	}
	var got int
	if !tunneltest.Poll(10*time.Second, func() bool {
		tun.relay.mu.Lock()
		defer tun.relay.mu.Unlock()
		got = len(tun.relay.streams)
		return got == n
	}) {
		t.Fatalf("relay tracks %d streams, want %d", got, n)
	}
}
