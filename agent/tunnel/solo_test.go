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

// feed writes a raw peer's messages in order from one goroutine (its
// writes block while the other side does not read its WebSocket), and
// keeps each connection's offset in the pattern pacedClient checks.
type feed struct {
	p       *rawPeer
	out     chan *msg
	offsets map[uint32]int
}

func newFeed(t *testing.T, p *rawPeer) *feed {
	f := &feed{p: p, out: make(chan *msg, 1024), offsets: map[uint32]int{}}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for m := range f.out {
			p.send(m)
		}
	}()
	t.Cleanup(func() { close(f.out); <-sent })
	return f
}

// data queues n more bytes of the pattern for connection conn.
func (f *feed) data(conn uint32, n int) {
	for end := f.offsets[conn] + n; f.offsets[conn] < end; {
		k := min(protocol.MaxPayload, end-f.offsets[conn])
		f.out <- &msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: conn, Payload: patterned(f.offsets[conn], k)}
		f.offsets[conn] += k
	}
}

// reach waits until pc has read everything sent to conn.
func (f *feed) reach(t *testing.T, pc *pacedClient, conn uint32) {
	t.Helper()
	waitUntil(t, "the local side's bytes", func() bool {
		select {
		case err := <-pc.bad:
			t.Fatalf("connection %d: %v after %d bytes", conn, err, pc.n.Load())
		default:
		}
		return pc.n.Load() == int64(f.offsets[conn])
	})
}

// noResets fails if the peer got a reset for any connection.
func (f *feed) noResets(t *testing.T, logText func() string) {
	t.Helper()
	for {
		select {
		case m := <-f.p.msgs:
			if m.Type == tConnReset || m.Type == tReset {
				t.Fatalf("%v for connection %d; log:\n%s", m.Type, m.ConnectionID, logText())
			}
			continue
		default:
		}
		return
	}
}

// aloneThenPaused runs the first two steps of the solo tests on
// connection 1, whose local side is pc, alone on its tunnel. 1. pc reads at
// about 30 MB/s while the tunnel delivers faster: at most bound is queued
// or being written, in chunks (the last one queued and the last one taken
// may be partly filled). 2. pc stops reading (a suspended ssh) with 3 MiB
// in flight, more than an ssh channel window: after soloPatience it is
// queued within ConnBufferSize, and nothing is reset (the caller checks)
// within the default ConnStallTimeout, which both tests use.
func (f *feed) aloneThenPaused(t *testing.T, pc *pacedClient, lim *Limits, bound int) {
	t.Helper()
	f.data(1, 12<<20)
	f.reach(t, pc, 1)
	t.Logf("peak queued %d KiB", lim.PeakQueued()>>10)
	if peak, most := lim.PeakQueued(), bound+2*chunkSize; peak > int64(most) {
		t.Errorf("peak queued %d KiB, want <= %d KiB (the solo bound and two chunks)", peak>>10, most>>10)
	}
	pc.paused.Store(true)
	f.data(1, 3<<20)
	time.Sleep(soloPatience + DefaultStallTimeout + 500*time.Millisecond)
	pc.paused.Store(false)
	f.reach(t, pc, 1)
}

// soloPatienceForTest makes soloPatience long enough that a local side
// descheduled for a while does not lift the solo bound.
func soloPatienceForTest(t *testing.T) {
	old := soloPatience
	soloPatience = 2 * time.Second
	t.Cleanup(func() { soloPatience = old })
}

// TestSourceSoloBound: a source's only connection queues at most
// SoloConnBufferSize while its client reads (slower than the tunnel
// delivers); a client that stops reading gets the whole ConnBufferSize
// after soloPatience and is not reset; a second connection lifts the
// bound, and its data gets through while the first client does not read.
// Real loopback TCP and TLS.
func TestSourceSoloBound(t *testing.T) {
	soloPatienceForTest(t)
	r := newRelay(t, true, "SSH")
	p := dialPeer(t, r, "destination", protocol.SubprotocolV3)
	lim := NewLimits(0, 0, 0)
	cfg := testConfig(r, ModeSource, map[string]string{"SSH": "127.0.0.1:0"})
	cfg.ConnBufferSize, cfg.Limits = 16<<20, lim
	s := start(t, cfg)
	s.ev.wait(t, "connected", isKind(EventConnected))
	waitUntil(t, "ready", func() bool { return s.s.waitLink(t.Context(), 0) != nil })
	f := newFeed(t, p)

	c1 := newPacedClient(t, dialLocal(t, s, "SSH"), time.Millisecond)
	p.expect(msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})

	f.aloneThenPaused(t, c1, lim, SoloConnBufferSize)

	// 3. Paused again with the solo bound full: a second connection opens,
	// and its data gets through while the first still does not read.
	c1.paused.Store(true)
	f.data(1, 2<<20)
	c2 := newPacedClient(t, dialLocal(t, s, "SSH"), 0)
	p.expect(msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2})
	f.data(2, 256<<10)
	f.reach(t, c2, 2)
	c1.paused.Store(false)
	f.reach(t, c1, 1)
	f.noResets(t, s.ev.logText)
}

// TestDestinationSoloBound: the same in destination mode. The only
// connection queues at most DestinationSoloBufferSize toward a service
// that reads slower than the tunnel delivers; a service that stops
// reading gets the whole ConnBufferSize after soloPatience and is not
// reset; and the start of a second connection, which the WebSocket reader
// reaches only past the first one's data, is not held back for longer
// than that. Real loopback TCP and TLS.
func TestDestinationSoloBound(t *testing.T) {
	soloPatienceForTest(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	service := func(pause time.Duration) *pacedClient {
		t.Helper()
		select {
		case c := <-accepted:
			return newPacedClient(t, c, pause)
		case <-time.After(waitFor):
			t.Fatal("the destination did not dial the service")
			return nil
		}
	}
	lim := NewLimits(0, 0, 0)
	d, p := hostileDestination(t, map[string]string{"SSH": ln.Addr().String()}, func(c *Config) {
		c.ConnBufferSize, c.Limits = 16<<20, lim
	}, "SSH")
	f := newFeed(t, p)

	// Steps 1 and 2 (see aloneThenPaused; before, the whole 16 MiB
	// ConnBufferSize could fill in step 1).
	f.out <- &msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1}
	s1 := service(time.Millisecond)
	f.aloneThenPaused(t, s1, lim, DestinationSoloBufferSize)

	// 3. Paused again with 2 MiB more for it: the second connection's
	// start and data, behind them on the WebSocket, get through while the
	// first service still does not read.
	s1.paused.Store(true)
	f.data(1, 2<<20)
	f.out <- &msg{Type: tConnStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 2}
	s2 := service(0)
	f.data(2, 256<<10)
	f.reach(t, s2, 2)
	s1.paused.Store(false)
	f.reach(t, s1, 1)
	f.noResets(t, d.ev.logText)
}
