package tunnel

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// pacedClient reads a local connection in 32 KiB reads with a pause after
// each, checking the byte pattern of patterned; paused stops it reading.
type pacedClient struct {
	c      net.Conn
	n      atomic.Int64
	paused atomic.Bool
	bad    chan error
}

func newPacedClient(t *testing.T, c net.Conn, pause time.Duration) *pacedClient {
	pc := &pacedClient{c: c, bad: make(chan error, 1)}
	done := make(chan struct{})
	t.Cleanup(func() { _ = c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			for pc.paused.Load() {
				time.Sleep(5 * time.Millisecond)
			}
			k, err := c.Read(buf)
			for i, b := range buf[:k] {
				if want := byte((pc.n.Load() + int64(i)) % 251); b != want {
					pc.bad <- io.ErrUnexpectedEOF
					return
				}
			}
			pc.n.Add(int64(k))
			if err != nil {
				return
			}
			time.Sleep(pause)
		}
	}()
	return pc
}

// patterned returns n bytes of the pattern pacedClient checks, from offset off.
func patterned(off, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((off + i) % 251)
	}
	return b
}

// TestSourceSoloBound: a source's only connection queues at most
// SoloConnBufferSize while its client reads (slower than the tunnel
// delivers); a client that stops reading gets the whole ConnBufferSize
// after soloPatience and is not reset; a second connection lifts the
// bound, and its data gets through while the first client does not read.
// Real loopback TCP and TLS.
func TestSourceSoloBound(t *testing.T) {
	old := soloPatience
	soloPatience = 2 * time.Second // a reader descheduled that long would lift the bound
	t.Cleanup(func() { soloPatience = old })

	r := newRelay(t, true, "SSH")
	p := dialPeer(t, r, "destination", protocol.SubprotocolV3)
	lim := NewLimits(0, 0, 0)
	cfg := testConfig(r, ModeSource, map[string]string{"SSH": "127.0.0.1:0"})
	cfg.ConnBufferSize, cfg.Limits = 16<<20, lim
	s := start(t, cfg)
	s.ev.wait(t, "connected", isKind(EventConnected))
	waitUntil(t, "ready", func() bool { return s.s.waitLink(t.Context(), 0) != nil })

	// The peer's writes, in order, from one goroutine (they block while
	// the source does not read its WebSocket).
	out := make(chan *msg, 1024)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for m := range out {
			p.send(m)
		}
	}()
	t.Cleanup(func() { close(out); <-sent })
	offsets := map[uint32]int{}
	send := func(conn uint32, n int) {
		for end := offsets[conn] + n; offsets[conn] < end; {
			k := min(protocol.MaxPayload, end-offsets[conn])
			out <- &msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: conn, Payload: patterned(offsets[conn], k)}
			offsets[conn] += k
		}
	}
	reach := func(pc *pacedClient, conn uint32) {
		t.Helper()
		waitUntil(t, "the client's bytes", func() bool {
			select {
			case err := <-pc.bad:
				t.Fatalf("connection %d: %v after %d bytes", conn, err, pc.n.Load())
			default:
			}
			return pc.n.Load() == int64(offsets[conn])
		})
	}

	c1 := newPacedClient(t, dialLocal(t, s, "SSH"), time.Millisecond)
	p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})

	// 1. Alone, read at about 30 MB/s while the tunnel delivers faster: at
	// most the solo bound queued or being written, in chunks: the last
	// one queued and the last one taken may be partly filled.
	send(1, 12<<20)
	reach(c1, 1)
	t.Logf("peak queued %d KiB", lim.PeakQueued()>>10)
	if peak, most := lim.PeakQueued(), SoloConnBufferSize+2*chunkSize; peak > int64(most) {
		t.Errorf("peak queued %d KiB, want <= %d KiB (the solo bound and two chunks)", peak>>10, most>>10)
	}

	// 2. The client stops reading (a suspended ssh) with 3 MiB in flight,
	// more than an ssh channel window: after soloPatience it is queued
	// within ConnBufferSize, and nothing is reset.
	c1.paused.Store(true)
	send(1, 3<<20)
	time.Sleep(soloPatience + cfg.ConnStallTimeout + 500*time.Millisecond)
	c1.paused.Store(false)
	reach(c1, 1)

	// 3. Paused again with the solo bound full: a second connection opens,
	// and its data gets through while the first still does not read.
	c1.paused.Store(true)
	send(1, 2<<20)
	c2 := newPacedClient(t, dialLocal(t, s, "SSH"), 0)
	p.expect(msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	send(2, 256<<10)
	reach(c2, 2)
	c1.paused.Store(false)
	reach(c1, 1)

	for {
		select {
		case m := <-p.msgs:
			if m.Type == tConnReset || m.Type == tReset {
				t.Fatalf("%v for connection %d; log:\n%s", m.Type, m.ConnectionID, s.ev.logText())
			}
			continue
		default:
		}
		break
	}
}
