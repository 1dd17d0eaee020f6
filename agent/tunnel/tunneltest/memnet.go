package tunneltest

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// MemBufSize is how many bytes each direction of a MemPipe holds before a
// write waits for the reader, like a socket buffer.
const MemBufSize = 64 << 10

// MemPipe returns the two ends of an in-memory, buffered, full-duplex
// connection. Unlike net.Pipe, a write returns once its bytes are buffered
// (up to MemBufSize per direction), so two ends that each write before
// reading do not deadlock, as with TCP. Deadlines work (an expired one
// gives os.ErrDeadlineExceeded) and every wait is on a sync.Cond, so a
// goroutine blocked in Read or Write is durably blocked in a
// testing/synctest bubble, and the bubble's fake clock runs the deadlines.
// Create it inside the bubble that uses it.
func MemPipe(a, b net.Addr) (net.Conn, net.Conn) {
	ab, ba := newMemBuf(), newMemBuf()
	return &memConn{r: ba, w: ab, local: a, remote: b}, &memConn{r: ab, w: ba, local: b, remote: a}
}

// memBuf is one direction of a MemPipe: one conn writes it, the other reads.
type memBuf struct {
	mu      sync.Mutex
	cond    sync.Cond
	data    []byte
	wclosed bool // the writer closed: EOF once drained
	rclosed bool // the reader closed: writes fail
	rdl     memDeadline
	wdl     memDeadline
}

func newMemBuf() *memBuf {
	b := &memBuf{}
	b.cond.L = &b.mu
	return b
}

// memDeadline is a deadline whose expiry wakes the buffer's waiters.
type memDeadline struct {
	at    time.Time
	timer *time.Timer
}

// set (b.mu held) moves the deadline to t (zero: none).
func (d *memDeadline) set(b *memBuf, t time.Time) {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.at = t
	if !t.IsZero() {
		if wait := time.Until(t); wait > 0 {
			d.timer = time.AfterFunc(wait, func() {
				b.mu.Lock()
				b.cond.Broadcast()
				b.mu.Unlock()
			})
		}
	}
	b.cond.Broadcast()
}

func (d *memDeadline) passed() bool { return !d.at.IsZero() && !time.Now().Before(d.at) }

type memConn struct {
	r, w          *memBuf
	local, remote net.Addr
	closeOnce     sync.Once
}

func (c *memConn) Read(p []byte) (int, error) {
	b := c.r
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		switch {
		case b.rclosed:
			return 0, net.ErrClosed
		case len(b.data) > 0:
			n := copy(p, b.data)
			b.data = b.data[n:]
			if len(b.data) == 0 {
				b.data = nil
			}
			b.cond.Broadcast() // room for the writer
			return n, nil
		case b.wclosed:
			return 0, io.EOF
		case b.rdl.passed():
			return 0, os.ErrDeadlineExceeded
		}
		b.cond.Wait()
	}
}

func (c *memConn) Write(p []byte) (int, error) {
	b := c.w
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for {
		switch {
		case b.wclosed:
			return n, net.ErrClosed
		case b.rclosed:
			return n, io.ErrClosedPipe
		case b.wdl.passed():
			return n, os.ErrDeadlineExceeded
		}
		if room := MemBufSize - len(b.data); room > 0 {
			k := min(room, len(p)-n)
			b.data = append(b.data, p[n:n+k]...)
			n += k
			b.cond.Broadcast() // data for the reader
			if n == len(p) {
				return n, nil
			}
		}
		b.cond.Wait()
	}
}

// Close closes both directions of this end: the peer reads EOF once it
// has drained what was written, and its writes fail.
func (c *memConn) Close() error {
	c.closeOnce.Do(func() {
		for _, b := range []*memBuf{c.r, c.w} {
			b.mu.Lock()
			if b == c.r {
				b.rclosed = true
				b.data = nil
			} else {
				b.wclosed = true
			}
			b.rdl.set(b, time.Time{})
			b.wdl.set(b, time.Time{})
			b.mu.Unlock()
		}
	})
	return nil
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }

func (c *memConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	c.r.rdl.set(c.r, t)
	return nil
}

func (c *memConn) SetWriteDeadline(t time.Time) error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	c.w.wdl.set(c.w, t)
	return nil
}

// memAddr is the address of an in-memory endpoint.
type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// MemListener is an in-memory net.Listener whose connections are
// MemPipes, for a server (an http.Server, say) that a test reaches with
// Dial instead of the network: inside a testing/synctest bubble, where
// real sockets would keep the fake clock from moving. Create it inside the
// bubble that uses it.
type MemListener struct {
	addr  memAddr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewMemListener returns a listener named addr ("host:port", as a URL
// would give it).
func NewMemListener(addr string) *MemListener {
	return &MemListener{addr: memAddr(addr), conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for the next Dial.
func (l *MemListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and refuses later dials; accepted connections stay.
func (l *MemListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the listener's name.
func (l *MemListener) Addr() net.Addr { return l.addr }

// Dial connects to the listener, whatever network and address say; it
// fits websocket.Dialer.NetDialContext and http.Transport.DialContext.
func (l *MemListener) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := MemPipe(memAddr("client"), l.addr)
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: l.addr, Err: net.ErrClosed}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// MemNet is an in-memory network: MemListeners by address, and a Dial
// that reaches them. The zero value is ready to use.
type MemNet struct {
	mu sync.Mutex
	ls map[string]*MemListener
}

// Listen returns a new listener at addr ("host:port", or a unix socket
// path), replacing any listener there.
func (n *MemNet) Listen(addr string) *MemListener {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ls == nil {
		n.ls = map[string]*MemListener{}
	}
	ln := NewMemListener(addr)
	n.ls[addr] = ln
	return ln
}

// Dial connects to the listener at addr, whatever the network; the
// connection is refused when nothing listens there. It fits
// websocket.Dialer.NetDialContext and http.Transport.DialContext.
func (n *MemNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	ln := n.ls[addr]
	n.mu.Unlock()
	if ln == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: memAddr(addr), Err: syscall.ECONNREFUSED}
	}
	return ln.Dial(ctx, network, addr)
}
