package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// drainTimeout bounds how long pending data is written to a local socket
// after the stream was reset (PROTOCOL.md §9.1 item 6).
const drainTimeout = 10 * time.Second

// localWriteStall bounds one write to a local socket: a local service that
// takes no queued data for this long is reset, so that it does not hold its
// share of the queue budget (and its fd) for the tunnel's lifetime once the
// peer stopped sending. Data arriving meanwhile resets it sooner
// (ConnStallTimeout). A variable for tests.
var localWriteStall = 2 * time.Minute

// localConn is one local connection carried by a stream (a connection in
// the protocol's V3 sense; in V1 and V2 the stream's only one): the local
// reader turns reads into DATA frames for the WebSocket writer; the
// WebSocket reader writes data to the socket directly when it can, else
// queues it for a local writer, a goroutine that runs only while bytes are
// queued or a drain is to finish (see connState for the lifecycle).
type localConn struct {
	l             *link
	st            *stream
	connID        uint32 // key in st.conns, >= 1
	local         string
	fromConnStart bool
	ctx           context.Context
	cancel        context.CancelFunc
	active        atomic.Bool  // registered in st.conns
	counted       bool         // holds one of Limits' connections
	bytesIn       atomic.Int64 // from the tunnel, written to the local socket
	bytesOut      atomic.Int64 // read from the local socket, sent as DATA
	start         time.Time
	release       func() // if set, run by finish last (source, V1/V2: the next client's turn)
	movedOnce     bool   // the local reader moved to a fresh goroutine once (only it touches this)

	q queue
}

// newLocalConnLocked registers a connection with its stream and the link's wait
// group, or returns nil when the link is shutting down.
func (l *link) newLocalConnLocked(st *stream, cid uint32) *localConn {
	if l.streams.down {
		return nil
	}
	f := &localConn{l: l, st: st, connID: cid, start: time.Now()}
	f.ctx, f.cancel = context.WithCancel(l.ctx)
	f.q.limit = l.s.cfg.ConnBufferSize
	f.q.lim = l.s.cfg.Limits
	f.q.wake = make(chan struct{}, 1)
	f.q.written = make(chan struct{})
	f.q.count = &f.bytesIn
	// A new connection is not stuck: while it dials, its queue fills with
	// no local writer to take it (see stallGate).
	f.q.took = f.start
	f.active.Store(true)
	st.conns[cid] = f
	l.streams.live[f] = struct{}{}
	f.q.peers, f.q.solo = &l.streams.nLive, soloBufferSize(l.s.cfg.Mode)
	switch l.streams.nLive.Add(1) {
	case 1:
		l.s.cfg.Limits.linkBusy()
	case 2:
		l.streams.unboundSoloLocked(f)
	}
	l.s.stats.track(f)
	l.wg.Add(1)
	return f
}

// wireConn is the connection id stamped on outgoing messages.
func (f *localConn) wireConn() uint32 {
	if f.st.v3 {
		return f.connID
	}
	return 0
}

// resetMessage is what ends this connection: CONNECTION_RESET in V3,
// STREAM_RESET otherwise.
func (f *localConn) resetMessage() *protocol.Message {
	if f.st.v3 {
		return &protocol.Message{Type: protocol.TypeConnectionReset, StreamID: f.st.id, ServiceID: f.st.sendID, ConnectionID: f.connID}
	}
	return &protocol.Message{Type: protocol.TypeStreamReset, StreamID: f.st.id, ServiceID: f.st.sendID}
}

func (f *localConn) attach(c net.Conn) bool {
	f.q.mu.Lock()
	defer f.q.mu.Unlock()
	if f.q.ended() {
		return false
	}
	f.q.setConn(c)
	f.q.setStateLocked(connOpen)
	if f.q.state == connDraining {
		_ = c.SetWriteDeadline(time.Now().Add(drainTimeout))
	}
	f.startWriterLocked() // for what came while dialling, or the drain
	return true
}

func (f *localConn) signal() { f.q.signal() }

// startWriterLocked starts a local writer when the queue has work for one
// and none runs (see queue.wantWriterLocked).
func (f *localConn) startWriterLocked() {
	if f.q.wantWriterLocked() {
		go f.writeLocal()
	}
}

// push hands p from the tunnel to the local socket (see queue.push) and
// starts a local writer when it queued bytes and none runs.
func (f *localConn) push(p []byte, gate *stallGate) pushResult {
	res, start := f.q.push(p, gate)
	if start {
		go f.writeLocal()
	}
	return res
}

// abort closes the local connection at once, dropping queued data. With
// no local writer running it ends the write direction itself; a running
// one ends it when its write fails on the closed socket, or at once when
// it waits for a direct write (signal).
func (f *localConn) abort(reason string) {
	f.q.mu.Lock()
	f.q.setStateLocked(connAborted)
	f.q.dropLocked()
	f.q.freeRoomLocked()
	if f.q.reason == "" {
		f.q.reason = reason
	}
	c := f.q.conn
	end := c != nil && !f.q.writing && !f.q.wdone
	if end {
		f.q.wdone = true
	}
	f.q.mu.Unlock()
	f.cancel()
	if c != nil {
		_ = c.Close()
	}
	if end {
		close(f.q.written)
	}
	f.signal()
}

// drainClose writes what is queued, then closes (bounded by drainTimeout).
func (f *localConn) drainClose(reason string) {
	f.q.mu.Lock()
	c := f.q.conn
	if c == nil && len(f.q.chunks) == 0 {
		f.q.mu.Unlock()
		f.abort(reason) // still dialling, and nothing to deliver
		return
	}
	f.q.setStateLocked(connDraining)
	f.q.freeRoomLocked()
	if f.q.reason == "" {
		f.q.reason = reason
	}
	if c != nil { // else attach sets the deadline when the dial completes
		_ = c.SetWriteDeadline(time.Now().Add(drainTimeout))
	}
	f.startWriterLocked() // it writes what is queued, then closes
	f.q.mu.Unlock()
	f.signal()
}

// localEnded handles EOF or an error of the local socket: the peer gets a
// reset after the DATA already queued, and pending writes drain.
func (f *localConn) localEnded(err error) {
	l := f.l
	l.streams.mu.Lock()
	was := l.streams.unregisterLocked(f)
	l.streams.mu.Unlock()
	if !was {
		return
	}
	reason := "local connection closed"
	if !errors.Is(err, io.EOF) {
		reason = "local connection failed: " + err.Error()
	}
	l.w.send(f.resetMessage())
	f.drainClose(reason)
}

// run reads the local socket until its end, waits for the write
// direction to end (the socket is then closed), then reports the end.
// Local writers come and go meanwhile (see connState).
func (f *localConn) run() {
	if f.readLocal() {
		return // it goes on in a fresh goroutine
	}
	<-f.q.written
	f.finish(f.q.werr)
}

// maxReadBatch bounds the frames a local reader takes from its socket
// before handing them to the WebSocket together.
const maxReadBatch = 4

// readLocal reads the socket and hands what it reads to the WebSocket
// until the socket's end. It reports true when it handed the rest of run
// to a fresh goroutine instead: sending may have written TLS records to
// the WebSocket on this goroutine (see writePath) and grown its stack,
// which only a collection would shrink, and an idle process rarely
// collects. So when it is about to wait for the socket after it sent
// data, the first time and then at most once per ping interval (a new
// goroutine per message would cost every round trip a thread wake-up:
// +100 µs at p50 through the three processes here), it goes on in a fresh
// goroutine. A connection idle after its first exchange (an ssh session
// left open, the bench's idle connections) thus holds a small stack; one
// whose last sends came within a ping interval of its previous move keeps
// the stack they grew.
func (f *localConn) readLocal() bool {
	began := f.l.pings.Load()
	c := f.q.conn
	var rc syscall.RawConn
	if sc, ok := c.(syscall.Conn); ok && canTryWrite {
		rc, _ = sc.SyscallConn()
	}
	// Idle, the reader waits for data without a frame: 64 KiB less held
	// per idle connection where the socket allows it. After a full frame
	// the socket likely holds more, and the reader reads at once, without
	// waiting: if nothing is there it gives the frame back and waits as
	// when idle. Where the socket allows this, its frames count in the
	// link's budget (takeFrame).
	waitReadable := func() {}
	var try *rawTry
	if rc != nil {
		waitReadable = readableWaiter(rc)
		try = newTryReader(rc)
	}
	var batch [maxReadBatch]*frameBuf
	more, sent := false, false
	for {
		if !more {
			if sent && (!f.movedOnce || f.l.pings.Load() != began) {
				f.movedOnce = true
				go f.run()
				return true
			}
			waitReadable()
		}
		fb := f.takeFrame(rc != nil)
		if fb == nil {
			return false // the link ended
		}
		var n int
		var err error
		if more && rc != nil {
			// Without waiting: a frame counted in the link's budget must
			// not wait for a socket that went quiet right after a full one.
			if n = try.try(fb.payload()); n == 0 {
				putFrame(fb)
				more = false
				continue
			}
		} else {
			n, err = c.Read(fb.payload())
		}
		if n == 0 || !f.active.Load() {
			putFrame(fb)
			if err != nil {
				f.localEnded(err)
				return false
			}
			continue
		}
		fb.data, _ = protocol.EncodeData(fb.buf, n, f.st.id, f.st.sendID, f.wireConn())
		f.bytesOut.Add(int64(n))
		k := 1
		batch[0] = fb
		// A full frame says the socket may hold more: take what is there
		// now, without waiting, so that the frames go out together. Not
		// when the WebSocket's queue already holds half of what it takes:
		// then a burst is waiting anyway, and with many busy connections
		// each reader's batch would be frames in flight beyond the pool.
		for err == nil && rc != nil && n == protocol.MaxPayload && k < maxReadBatch && f.l.w.queued.Load() < outQueue/2 {
			nb := f.l.w.tryFrame()
			if nb == nil {
				break // the link's budget is out: the frames go as they are
			}
			n = try.try(nb.payload())
			if n == 0 {
				putFrame(nb)
				break
			}
			nb.data, _ = protocol.EncodeData(nb.buf, n, f.st.id, f.st.sendID, f.wireConn())
			f.bytesOut.Add(int64(n))
			batch[k] = nb
			k++
		}
		more = n == protocol.MaxPayload // the last read filled its frame
		if !f.l.carried.Load() {
			f.l.carried.Store(true)
		}
		f.q.sending.Store(true)
		ok := f.l.w.sendData(batch[:k])
		f.q.sending.Store(false)
		clear(batch[:k])
		if !ok {
			return false
		}
		if err != nil {
			f.localEnded(err)
			return false
		}
		sent = true
	}
}

// takeFrame returns a frame for the next read from the local socket. A
// reader that waits for its socket without a frame (counted: see
// readLocal) takes one from the link's budget (writePath.waitFrame), and
// while none is free it waits for the WebSocket to take frames (sending,
// as in sendData); nil when the link ends meanwhile. Without a raw socket
// a reader waits in Read holding its frame, so it takes one outside the
// budget: idle connections must not use up the link's frames.
func (f *localConn) takeFrame(counted bool) *frameBuf {
	if !counted {
		return getFrame()
	}
	if fb := f.l.w.tryFrame(); fb != nil {
		return fb
	}
	f.q.sending.Store(true)
	defer f.q.sending.Store(false)
	return f.l.w.waitFrame()
}

// writeLocal is a local writer: it writes what is queued to the socket
// until the queue is empty, then ends, unless the write direction ends
// first: at an abort, once a drain emptied the queue, or when a write
// fails. It waits only for a direct write of push to end before it
// closes the socket or writes after it.
func (f *localConn) writeLocal() {
	var taken [][]byte // the chunks of one take; writeChunks frees them
	q := &f.q
	for {
		q.mu.Lock()
		q.busy = false
		for !q.ended() && (len(q.chunks) > 0 || q.closing()) && q.direct {
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		if !q.ended() && len(q.chunks) == 0 && !q.closing() {
			q.writing = false // idle: push starts the next writer
			q.mu.Unlock()
			return
		}
		if q.ended() || len(q.chunks) == 0 {
			q.mu.Unlock()
			f.endWrite(nil)
			return
		}
		q.busy = true
		taken, q.chunks = q.chunks, taken[:0]
		q.inflight += q.queued
		q.queued = 0
		q.began = time.Now()
		c := q.conn
		if q.state != connDraining { // else drainClose set the deadline
			_ = c.SetWriteDeadline(time.Now().Add(localWriteStall))
		}
		q.mu.Unlock()
		n, err := q.writeChunks(c, taken)
		clear(taken)
		if err == nil {
			q.mu.Lock()
			if q.state != connDraining { // a lapsed deadline would fail push's direct writes
				_ = c.SetWriteDeadline(time.Time{})
			}
			q.mu.Unlock()
		}
		f.bytesIn.Add(int64(n))
		if err != nil {
			f.localEnded(err)
			f.endWrite(err)
			return
		}
	}
}

// endWrite ends the write direction from the local writer: it closes the
// socket and then written (see connState).
func (f *localConn) endWrite(err error) {
	q := &f.q
	q.mu.Lock()
	q.writing = false
	q.wdone = true
	q.werr = err
	c := q.conn
	q.mu.Unlock()
	_ = c.Close()
	close(q.written)
}

func (f *localConn) opened() {
	f.l.s.stats.opened(f.st.service)
	f.l.log.Debug("stream opened", logService, f.st.service, logLocal, f.local, logStream, f.st.id, logConn, f.connID)
	f.l.s.emit(Event{Kind: EventStreamOpened, ChannelID: f.l.channelID, Service: f.st.service, LocalAddr: f.local,
		StreamID: f.st.id, ConnectionID: f.connID})
}

// finish forgets the connection and reports it closed.
func (f *localConn) finish(err error) {
	f.cancel()
	l := f.l
	l.streams.mu.Lock()
	delete(l.streams.live, f)
	if l.streams.nLive.Add(-1) == 0 {
		l.s.cfg.Limits.linkIdle()
	}
	l.streams.mu.Unlock()
	l.s.stats.untrack(f)
	f.q.mu.Lock()
	f.q.setStateLocked(connFinished)
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
		logBytesIn, f.bytesIn.Load(), logBytesOut, f.bytesOut.Load(), logReason, reason)
	l.s.emit(Event{Kind: EventStreamClosed, ChannelID: l.channelID, Service: f.st.service, LocalAddr: f.local,
		StreamID: f.st.id, ConnectionID: f.connID, BytesIn: f.bytesIn.Load(), BytesOut: f.bytesOut.Load(),
		Duration: d, Err: err, Reason: reason})
	if f.release != nil {
		f.release()
	}
	l.wg.Done()
}
