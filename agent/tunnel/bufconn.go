package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"

	"github.com/gorilla/websocket"
)

// bufConn is the TCP connection under the WebSocket (and its TLS). Reads go
// through a 64 KiB buffer. While the WebSocket writer batches, writes are
// collected and sent with one system call instead of one per 16 KiB TLS
// record; outside a batch every write goes straight out.
type bufConn struct {
	net.Conn
	r *bufio.Reader

	mu       sync.Mutex
	batching bool
	buf      []byte
}

const bufConnSize = 256 << 10

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching {
		return c.Conn.Write(p)
	}
	if len(c.buf)+len(p) > bufConnSize {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// startBatch buffers writes until endBatch.
func (c *bufConn) startBatch() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

// endBatch sends what was buffered and ends the batch.
func (c *bufConn) endBatch() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	return c.flushLocked()
}

func (c *bufConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// netDial returns a NetDialContext that wraps connections in bufConn.
func netDial() func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &bufConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10), buf: make([]byte, 0, bufConnSize)}, nil
	}
}

// bufConnOf finds the bufConn under a WebSocket, or nil.
func bufConnOf(ws *websocket.Conn) *bufConn {
	nc := ws.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	bc, _ := nc.(*bufConn)
	return bc
}
