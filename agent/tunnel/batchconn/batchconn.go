// Package batchconn wraps the TCP connection under a TLS WebSocket so that
// it costs fewer system calls: reads go through a 64 KiB buffer while data
// keeps coming (and straight to the caller otherwise), and the
// writes made between StartBatch and EndBatch (the TLS records of one or
// more WebSocket messages, 16 KiB each) leave in one write instead of one
// per record. Both ends of the tunnel use it: the agent and tunnelctl on
// the connections they dial, the emulator on the connections it accepts.
// WriteDeadline keeps the WebSocket's write deadline from being moved on
// every message, for the same reason of cost.
package batchconn

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	readSize = 64 << 10
	// batchSize bounds what a batch holds before it is written out early.
	batchSize = 256 << 10
	// BusyBuffers is what a Conn holds at most while data moves: a batch
	// buffer and a read-ahead buffer (none while it is idle).
	BusyBuffers = batchSize + readSize
)

// Conn is a net.Conn with a read buffer and batched writes. Outside a batch
// every write goes straight to the connection, so TLS handshake messages,
// alerts and WebSocket control frames are never held back.
type Conn struct {
	net.Conn

	// Read side (one goroutine reads): rbuf, from freeReads, holds bytes
	// read ahead, rbuf[rpos:rend], then rerr; nil while nothing is read
	// ahead. ahead: the last read filled what it was given, so more is
	// likely waiting and the next read goes through rbuf.
	rbuf       []byte
	rpos, rend int
	rerr       error
	ahead      bool

	mu       sync.Mutex
	batching bool
	buf      []byte // the batch's buffer, from freeBufs; nil between batches
}

// freeBufs keeps batch buffers between batches. A batch takes one at its
// first write and gives it back when it ends, so an idle connection holds
// none: before, each connection kept its own 256 KiB from its first batch
// on, 2.5 MiB of live heap for ten idle tunnels. Two cover the writers of
// two busy links; more busy links at once allocate more, and those
// buffers are collected after their batch.
var freeBufs = make(chan []byte, 2)

// freeReads keeps read-ahead buffers. A connection takes one when a read
// fills what it was given (data keeps coming) and gives it back once a
// read that did not fill it has been consumed, so a connection that waits
// for data holds none: before, each kept a 64 KiB bufio.Reader for as long
// as it was open.
var freeReads = make(chan []byte, 2)

// ReleaseIdle drops the free batch and read buffers, for a process with
// nothing to move for a while (the agent's settling and quiet mode).
func ReleaseIdle() {
	for {
		select {
		case <-freeBufs:
		case <-freeReads:
		default:
			return
		}
	}
}

// take returns a buffer from free, or a new one from alloc.
func take(free chan []byte, alloc func() []byte) []byte {
	select {
	case b := <-free:
		return b
	default:
		return alloc()
	}
}

// give keeps b in free if there is room, else drops it.
func give(free chan []byte, b []byte) {
	select {
	case free <- b:
	default:
	}
}

// New wraps c.
func New(c net.Conn) *Conn {
	return &Conn{Conn: c}
}

// Read returns what was read ahead, or reads: through a read-ahead buffer
// when the last read filled what it was given, straight into p otherwise
// (the wait for data of an idle connection then holds no buffer). Only
// one goroutine reads a WebSocket.
func (c *Conn) Read(p []byte) (int, error) {
	if c.rpos == c.rend {
		if !c.ahead || len(p) >= readSize {
			n, err := c.Conn.Read(p)
			c.ahead = n == len(p) && len(p) < readSize
			return n, err
		}
		if c.rbuf == nil {
			c.rbuf = take(freeReads, func() []byte { return make([]byte, readSize) })
		}
		n, err := c.Conn.Read(c.rbuf)
		c.rpos, c.rend, c.rerr, c.ahead = 0, n, err, n == len(c.rbuf)
		if n == 0 {
			c.dropReadBuf()
			c.rerr = nil
			return 0, err
		}
	}
	n := copy(p, c.rbuf[c.rpos:c.rend])
	c.rpos += n
	if c.rpos < c.rend {
		return n, nil
	}
	err := c.rerr
	c.rerr = nil
	if !c.ahead || err != nil {
		c.ahead = false
		c.dropReadBuf()
	}
	return n, err
}

// dropReadBuf gives the read-ahead buffer back; nothing is read ahead.
func (c *Conn) dropReadBuf() {
	if c.rbuf != nil {
		give(freeReads, c.rbuf)
	}
	c.rbuf, c.rpos, c.rend = nil, 0, 0
}

// Write writes p, or appends it to the batch in progress.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching {
		return c.Conn.Write(p)
	}
	if len(c.buf)+len(p) > batchSize {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > batchSize {
			return c.Conn.Write(p)
		}
	}
	if c.buf == nil {
		c.buf = take(freeBufs, func() []byte { return make([]byte, 0, batchSize) })
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// StartBatch collects writes until EndBatch. The caller is the goroutine
// that writes the WebSocket's data messages; writes by others meanwhile
// (a pong, a close frame) join the batch and leave with it.
func (c *Conn) StartBatch() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

// EndBatch writes what the batch collected and ends it.
func (c *Conn) EndBatch() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	err := c.flushLocked()
	if c.buf != nil {
		give(freeBufs, c.buf[:0])
		c.buf = nil
	}
	return err
}

// Flush writes out what the batch in progress holds, without ending it: a
// close frame that joined another goroutine's batch must leave before the
// connection is closed under it.
func (c *Conn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *Conn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// Dial returns a dial function for websocket.Dialer.NetDialContext whose
// connections are Conns.
func Dial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return New(c), nil
	}
}

// Listener wraps the connections a listener accepts in Conns.
type Listener struct{ net.Listener }

// Accept waits for the next connection and wraps it.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return New(c), nil
}

// Of finds the Conn under a WebSocket (below its TLS, if any), or nil.
func Of(ws *websocket.Conn) *Conn {
	nc := ws.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*Conn)
	return c
}

// WriteDeadline is the write deadline of a WebSocket's data messages, kept
// between half and all of a span ahead. It moves only when less than half
// remains: every change of a socket deadline updates a runtime timer, which
// can wake another thread, and doing it per message made a small round trip
// cost about a third more CPU. The zero value is ready; only the goroutine
// writing data messages uses it.
type WriteDeadline struct{ at time.Time }

// Refresh gives the write about to start at least span/2. ws is a
// *websocket.Conn, or anything else with a write deadline.
func (d *WriteDeadline) Refresh(ws interface{ SetWriteDeadline(time.Time) error }, span time.Duration) {
	now := time.Now()
	if d.at.Sub(now) < span/2 {
		d.at = now.Add(span)
		_ = ws.SetWriteDeadline(d.at)
	}
}
