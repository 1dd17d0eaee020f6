package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// drainTimeout bounds how long pending data is written to a local socket
// after the stream was reset (protocol.md §9.5).
const drainTimeout = 10 * time.Second

// localWriteStall bounds one write to a local socket: a local service that
// takes no queued data for this long is reset, so that it does not hold its
// share of the queue budget (and its fd) for the tunnel's lifetime once the
// peer stopped sending. Data arriving meanwhile resets it sooner
// (ConnStallTimeout). A variable for tests.
var localWriteStall = 2 * time.Minute

// fwd is one local connection carried by a stream: the local reader turns
// reads into DATA frames for the WebSocket writer; the local writer drains a
// bounded queue filled by the WebSocket reader.
type fwd struct {
	l             *link
	st            *stream
	connID        uint32 // key in st.conns, >= 1
	local         string
	fromConnStart bool
	ctx           context.Context
	cancel        context.CancelFunc
	active        atomic.Bool // registered in st.conns
	counted       bool        // holds one of Limits' connections
	in, out       atomic.Int64
	start         time.Time

	q queue
}

// queue holds bytes from the tunnel for the local socket.
type queue struct {
	mu       sync.Mutex
	buf      []byte
	limit    int
	conn     net.Conn
	draining bool
	aborted  bool
	reason   string
	wake     chan struct{} // to the local writer: data or state change
	room     chan struct{} // closed by the local writer when it took the queue
	took     time.Time     // when the local writer last took the queue (see stallGate)
	// sending: the local reader holds data for the tunnel and waits for
	// the WebSocket. A local service that stops reading meanwhile (an echo,
	// any request/response protocol) waits for us, it is not stuck.
	sending atomic.Bool

	lim    *Limits         // the shared queue budget; len(buf) is reserved in it
	raw    syscall.RawConn // nil: no direct writes (see push)
	busy   bool            // the local writer is writing
	direct bool            // push is writing directly
	count  *atomic.Int64   // bytes written to the local socket
}

// setConn sets the local connection and, when it is a socket, the raw
// connection push uses for direct writes.
func (q *queue) setConn(c net.Conn) {
	q.conn = c
	if sc, ok := c.(syscall.Conn); ok && canTryWrite {
		q.raw, _ = sc.SyscallConn()
	}
}

// newFwdLocked registers a connection with its stream and the link's wait
// group, or returns nil when the link is shutting down.
func (l *link) newFwdLocked(st *stream, cid uint32) *fwd {
	if l.down {
		return nil
	}
	f := &fwd{l: l, st: st, connID: cid, start: time.Now()}
	f.ctx, f.cancel = context.WithCancel(l.ctx)
	f.q.limit = l.s.cfg.ConnBufferSize
	f.q.lim = l.s.cfg.Limits
	f.q.wake = make(chan struct{}, 1)
	f.q.count = &f.in
	// A new connection is not stuck: while it dials, its queue fills with
	// no local writer to take it (see stallGate).
	f.q.took = f.start
	f.active.Store(true)
	st.conns[cid] = f
	l.live[f] = struct{}{}
	l.s.stats.track(f)
	l.wg.Add(1)
	return f
}

// wireConn is the connection id stamped on outgoing messages.
func (f *fwd) wireConn() uint32 {
	if f.st.v3 {
		return f.connID
	}
	return 0
}

// resetMessage is what ends this connection: CONNECTION_RESET in V3,
// STREAM_RESET otherwise.
func (f *fwd) resetMessage() *protocol.Message {
	if f.st.v3 {
		return &protocol.Message{Type: protocol.TypeConnectionReset, StreamID: f.st.id, ServiceID: f.st.out, ConnectionID: f.connID}
	}
	return &protocol.Message{Type: protocol.TypeStreamReset, StreamID: f.st.id, ServiceID: f.st.out}
}

func (f *fwd) attach(c net.Conn) bool {
	f.q.mu.Lock()
	defer f.q.mu.Unlock()
	if f.q.aborted {
		return false
	}
	f.q.setConn(c)
	if f.q.draining {
		_ = c.SetWriteDeadline(time.Now().Add(drainTimeout))
	}
	return true
}

func (f *fwd) signal() { f.q.signal() }

// pushResult says what push did with the data.
type pushResult int

const (
	pushed     pushResult = iota
	pushFull              // the queue stayed full until the stall deadline
	pushBudget            // the agent-wide queue budget has no room
)

// push queues p for the local socket. When nothing is queued and the local
// writer is idle, it first tries one non-blocking write to the socket, which
// saves waking the local writer; what the socket does not take is queued.
// When the queue is full it waits for the local writer to take it until the
// link's stall deadline (see stallGate).
func (q *queue) push(p []byte, gate *stallGate) pushResult {
	q.mu.Lock()
	if q.raw != nil && len(q.buf) == 0 && !q.busy && !q.aborted && !q.draining {
		q.direct = true
		q.mu.Unlock()
		n := tryWrite(q.raw, p)
		q.count.Add(int64(n))
		p = p[n:]
		q.mu.Lock()
		q.direct = false
		if len(p) == 0 {
			wake := q.draining || q.aborted
			q.mu.Unlock()
			if wake {
				q.signal()
			}
			return pushed
		}
	}
	var timer *time.Timer
	for len(q.buf)+len(p) > q.limit && !q.aborted && !q.draining {
		if timer == nil {
			now, took := time.Now(), q.took
			if q.sending.Load() {
				took = now
			}
			wait := gate.wait(now, took)
			if wait <= 0 {
				q.mu.Unlock()
				return pushFull
			}
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-timer.C:
			gate.expired.Add(1)
			return pushFull
		}
		q.mu.Lock()
	}
	if q.aborted || q.draining {
		q.mu.Unlock()
		q.signal()
		return pushed
	}
	if !q.appendLocked(p) {
		q.mu.Unlock()
		return pushBudget
	}
	q.mu.Unlock()
	q.signal()
	return pushed
}

// appendLocked adds p to buf, growing it to at most limit bytes of capacity
// (append's doubling would reach twice that). The capacity of the queue's
// buffers is what the shared budget counts: false when it has no room for
// the growth.
func (q *queue) appendLocked(p []byte) bool {
	need := len(q.buf) + len(p)
	if need > cap(q.buf) {
		n := min(max(need, 2*cap(q.buf), 32<<10), max(q.limit, need))
		if !q.lim.reserve(n - cap(q.buf)) {
			return false
		}
		nb := make([]byte, len(q.buf), n)
		copy(nb, q.buf)
		q.buf = nb
	}
	q.buf = append(q.buf, p...)
	return true
}

// dropLocked forgets what is queued and gives its buffer back to the budget.
func (q *queue) dropLocked() {
	q.lim.release(cap(q.buf))
	q.buf = nil
}

// keepSpare is the largest buffer a local writer keeps for its next write;
// a larger one (after a burst) goes back to the budget.
const keepSpare = 64 << 10

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// freeRoomLocked wakes a push waiting for room.
func (q *queue) freeRoomLocked() {
	if q.room != nil {
		close(q.room)
		q.room = nil
	}
}

// abort closes the local connection at once, dropping queued data.
func (f *fwd) abort(reason string) {
	f.q.mu.Lock()
	f.q.aborted = true
	f.q.dropLocked()
	f.q.freeRoomLocked()
	if f.q.reason == "" {
		f.q.reason = reason
	}
	c := f.q.conn
	f.q.mu.Unlock()
	f.cancel()
	if c != nil {
		_ = c.Close()
	}
	f.signal()
}

// drainClose writes what is queued, then closes (bounded by drainTimeout).
func (f *fwd) drainClose(reason string) {
	f.q.mu.Lock()
	c := f.q.conn
	if c == nil && len(f.q.buf) == 0 {
		f.q.mu.Unlock()
		f.abort(reason) // still dialling, and nothing to deliver
		return
	}
	f.q.draining = true
	f.q.freeRoomLocked()
	if f.q.reason == "" {
		f.q.reason = reason
	}
	if c != nil { // else attach sets the deadline when the dial completes
		_ = c.SetWriteDeadline(time.Now().Add(drainTimeout))
	}
	f.q.mu.Unlock()
	f.signal()
}

// localEnded handles EOF or an error of the local socket: the peer gets a
// reset after the DATA already queued, and pending writes drain.
func (f *fwd) localEnded(err error) {
	l := f.l
	l.mu.Lock()
	was := l.unregisterLocked(f)
	l.mu.Unlock()
	if !was {
		return
	}
	reason := "local connection closed"
	if !errors.Is(err, io.EOF) {
		reason = "local connection failed: " + err.Error()
	}
	l.send(f.resetMessage())
	f.drainClose(reason)
}

// run relays until both directions are done, then reports the end.
func (f *fwd) run() {
	var rg sync.WaitGroup
	rg.Go(f.readLocal)
	err := f.writeLocal()
	f.q.mu.Lock()
	c := f.q.conn
	f.q.mu.Unlock()
	_ = c.Close()
	rg.Wait()
	f.finish(err)
}

// maxReadBatch bounds the frames a local reader takes from its socket
// before handing them to the WebSocket together.
const maxReadBatch = 4

func (f *fwd) readLocal() {
	c := f.q.conn
	var rc syscall.RawConn
	if sc, ok := c.(syscall.Conn); ok && canTryWrite {
		rc, _ = sc.SyscallConn()
	}
	var batch [maxReadBatch]*frameBuf
	for {
		fb := getFrame()
		n, err := c.Read(fb.buf[protocol.DataHeadroom : protocol.DataHeadroom+protocol.MaxPayload])
		if n == 0 || !f.active.Load() {
			putFrame(fb)
			if err != nil {
				f.localEnded(err)
				return
			}
			continue
		}
		fb.data, _ = protocol.EncodeData(fb.buf, n, f.st.id, f.st.out, f.wireConn())
		f.out.Add(int64(n))
		k := 1
		batch[0] = fb
		// A full frame says the socket may hold more: take what is there
		// now, without waiting, so that the frames go out together.
		for err == nil && rc != nil && n == protocol.MaxPayload && k < maxReadBatch {
			nb := getFrame()
			n = tryRead(rc, nb.buf[protocol.DataHeadroom:protocol.DataHeadroom+protocol.MaxPayload])
			if n == 0 {
				putFrame(nb)
				break
			}
			nb.data, _ = protocol.EncodeData(nb.buf, n, f.st.id, f.st.out, f.wireConn())
			f.out.Add(int64(n))
			batch[k] = nb
			k++
		}
		if !f.l.carried.Load() {
			f.l.carried.Store(true)
		}
		f.q.sending.Store(true)
		ok := f.l.sendData(batch[:k])
		f.q.sending.Store(false)
		clear(batch[:k])
		if !ok {
			return
		}
		if err != nil {
			f.localEnded(err)
			return
		}
	}
}

func (f *fwd) writeLocal() error {
	var spare []byte // swapped with q.buf; its capacity is counted in the budget
	q := &f.q
	defer func() { q.lim.release(cap(spare)) }()
	for {
		q.mu.Lock()
		q.busy = false
		// Wait for data or an end, and while push writes directly.
		for (len(q.buf) == 0 && !q.draining && !q.aborted) || (q.direct && !q.aborted) {
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		if q.aborted || len(q.buf) == 0 {
			q.mu.Unlock()
			return nil
		}
		q.busy = true
		spare, q.buf = q.buf, spare[:0]
		q.took = time.Now()
		q.freeRoomLocked()
		c := q.conn
		if !q.draining { // else drainClose set the deadline
			_ = c.SetWriteDeadline(time.Now().Add(localWriteStall))
		}
		q.mu.Unlock()
		n, err := c.Write(spare)
		if err == nil {
			q.mu.Lock()
			if !q.draining { // a lapsed deadline would fail push's direct writes
				_ = c.SetWriteDeadline(time.Time{})
			}
			q.mu.Unlock()
		}
		if cap(spare) > keepSpare {
			q.lim.release(cap(spare))
			spare = nil
		}
		f.in.Add(int64(n))
		if err != nil {
			f.localEnded(err)
			return err
		}
	}
}

func (f *fwd) opened() {
	f.l.s.stats.opened(f.st.service)
	f.l.log.Debug("stream opened", logService, f.st.service, logLocal, f.local, logStream, f.st.id, logConn, f.connID)
	f.l.s.emit(Event{Kind: EventStreamOpened, ChannelID: f.l.channelID, Service: f.st.service, LocalAddr: f.local,
		StreamID: f.st.id, ConnectionID: f.connID})
}

// finish forgets the connection and reports it closed.
func (f *fwd) finish(err error) {
	f.cancel()
	l := f.l
	l.mu.Lock()
	delete(l.live, f)
	l.mu.Unlock()
	l.s.stats.untrack(f)
	f.q.mu.Lock()
	reason := f.q.reason
	f.q.dropLocked()
	f.q.mu.Unlock()
	if f.counted {
		l.s.cfg.Limits.releaseConn()
	}
	if reason == "" && err != nil {
		reason = err.Error()
	}
	d := time.Since(f.start)
	l.log.Debug("stream closed", logService, f.st.service, logLocal, f.local, logStream, f.st.id, logConn, f.connID,
		logBytesIn, f.in.Load(), logBytesOut, f.out.Load(), logReason, reason)
	l.s.emit(Event{Kind: EventStreamClosed, ChannelID: l.channelID, Service: f.st.service, LocalAddr: f.local,
		StreamID: f.st.id, ConnectionID: f.connID, BytesIn: f.in.Load(), BytesOut: f.out.Load(),
		Duration: d, Err: err, Reason: reason})
	l.wg.Done()
}
