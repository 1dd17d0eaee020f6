package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

const (
	// outQueue is the number of frames local readers may queue for the
	// WebSocket writer (each at most ~63 KiB) before they block.
	outQueue = 8
	// maxCtrlBytes bounds the control frames queued by the WebSocket reader
	// (each sized to its content, a few dozen bytes for a reset). When it
	// is reached the reader stops reading until the writer sent half; a
	// peer that does not read for PongTimeout meanwhile is dropped.
	maxCtrlBytes = 256 << 10
	closeGrace   = time.Second
)

// Log attribute keys.
const (
	logService   = "service"
	logStream    = "stream_id"
	logConn      = "connection_id"
	logLocal     = "local_addr"
	logErr       = "err"
	logType      = "type"
	logChannel   = "channel_id"
	logSubproto  = "subprotocol"
	logBytesIn   = "bytes_in"
	logBytesOut  = "bytes_out"
	logDelay     = "delay"
	logListen    = "listen_addr"
	logReason    = "reason"
	logServiceID = "service_ids"
	logAttempt   = "attempt"
)

// errTunnelClosed: the service closed the WebSocket normally (the tunnel was
// closed or expired).
var errTunnelClosed = errors.New("the tunnel service closed the connection")

// frameBuf is a pooled buffer holding one encoded frame in data.
type frameBuf struct {
	buf  []byte
	data []byte
	// last: the frame ends its WebSocket message (see endsMessage).
	last bool
}

// endsMessage reports whether a frame of type t must be the last one of its
// WebSocket message. The C++ localproxy stops processing what it has read
// after a STREAM_START (and, waiting for a stream, after a CONNECTION_START)
// or a STREAM_RESET, and resumes only when the next message arrives: a DATA
// frame behind one of those in the same message would wait for more
// traffic, which a client waiting for its reply never sends.
func endsMessage(t protocol.Type) bool {
	switch t {
	case protocol.TypeStreamStart, protocol.TypeConnectionStart, protocol.TypeStreamReset:
		return true
	}
	return false
}

const frameBufSize = protocol.DataHeadroom + protocol.MaxPayload + 256

var framePool = newFreeList(maxFreeFrames, func() any { return &frameBuf{buf: make([]byte, frameBufSize)} })

func getFrame() *frameBuf { return framePool.Get().(*frameBuf) }

// putFrame returns a pooled frame; a frame sized to its content (see
// encodeSmall) is left to the garbage collector.
func putFrame(f *frameBuf) {
	f.data, f.last = nil, false
	if cap(f.buf) == frameBufSize {
		framePool.Put(f)
	}
}

// encodeSmall returns m as a frame of its own size, not a pooled
// frameBufSize buffer: control frames wait in a queue that a peer can fill,
// and must cost what they hold. nil (logged) if m cannot be encoded.
func encodeSmall(m *protocol.Message, log *slog.Logger) *frameBuf {
	b, err := protocol.AppendFrame(make([]byte, 0, protocol.LengthSize+m.Size()), m)
	if err != nil {
		log.Error("cannot encode a tunnel message", logType, m.Type, logErr, err)
		return nil
	}
	return &frameBuf{data: b, last: endsMessage(m.Type)}
}

// link is one WebSocket connection of a Session and the streams over it.
// Stream state is reset when the link ends.
type link struct {
	s         *Session
	ws        *websocket.Conn
	bc        *batchconn.Conn // nil if the connection is not ours
	log       *slog.Logger
	version   int // negotiated subprotocol: 1, 2 or 3
	channelID string

	ctx    context.Context
	cancel context.CancelCauseFunc
	out    chan *frameBuf // DATA and resets from local connections, in order
	wg     sync.WaitGroup // local connections

	rate    rateLog
	carried atomic.Bool // a DATA frame went either way (the link worked)
	gate    stallGate   // of the reader's waits for full local queues

	// wmu is held by the goroutine writing data messages: the writer, or a
	// local reader writing its DATA directly while nothing is queued.
	// queued counts frames in out and ctrl not yet written; it drops only
	// after the frame was written, under wmu, so a direct write never
	// overtakes a queued frame.
	wmu    sync.Mutex
	queued atomic.Int64
	wdl    batchconn.WriteDeadline // of data messages (wmu)

	ctrlMu    sync.Mutex
	ctrl      []*frameBuf   // control frames from the WebSocket reader
	ctrlBytes int           // their encoded size, at most maxCtrlBytes
	ctrlPeak  int           // highest ctrlBytes (tests)
	ctrlWait  bool          // the reader waits for ctrlRoom
	ctrlRoom  chan struct{} // to the reader: the control queue drained
	wake      chan struct{} // to the writer goroutine: frames queued by send or sendCtrl

	// startMu makes registering a source client and queueing its
	// STREAM_START/CONNECTION_START one step, so that clients accepted at the
	// same moment announce themselves in the order they were numbered (a
	// CONNECTION_START overtaking its STREAM_START is dropped by the peer).
	startMu sync.Mutex

	mu         sync.Mutex
	down       bool
	streams    map[string]*stream // by service id as on the wire
	live       map[*fwd]struct{}  // every local connection not yet finished
	serviceIDs []string
	nextStream map[string]int32         // source: last stream id per service
	slots      map[string]chan struct{} // source V1/V2: one connection per service
	peer       peerVersion              // source auto: what the destination proved to speak
}

func newLink(s *Session, ws *websocket.Conn, channelID string) *link {
	v := 3
	switch ws.Subprotocol() {
	case protocol.SubprotocolV1:
		v = 1
	case protocol.SubprotocolV2:
		v = 2
	}
	return &link{
		s: s, ws: ws, bc: batchconn.Of(ws), version: v, channelID: channelID,
		log:      s.log.With(logChannel, channelID),
		gate:     stallGate{stall: s.cfg.ConnStallTimeout},
		out:      make(chan *frameBuf, outQueue),
		wake:     make(chan struct{}, 1),
		ctrlRoom: make(chan struct{}, 1),
		streams:  map[string]*stream{}, live: map[*fwd]struct{}{}, nextStream: map[string]int32{}, slots: map[string]chan struct{}{},
	}
}

// serve runs the link until the WebSocket fails or ctx ends, then resets
// every stream. It returns why the link ended.
func (l *link) serve(ctx context.Context) error {
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	var g sync.WaitGroup
	writerDone := make(chan struct{})
	g.Go(func() { l.cancel(l.readLoop()) })
	g.Go(func() {
		defer close(writerDone)
		l.cancel(l.writeLoop(ctx))
	})
	if l.version == 1 || l.s.cfg.Mode == ModeDestination {
		l.s.setLink(l)
	}
	<-l.ctx.Done()
	l.s.clearLink(l)
	if ctx.Err() != nil {
		// Let the writer send its close frame, but not for long.
		t := time.NewTimer(closeGrace)
		select {
		case <-writerDone:
		case <-t.C:
		}
		t.Stop()
	}
	_ = l.ws.Close()
	g.Wait()
	l.abortAll("the tunnel WebSocket closed")
	l.wg.Wait()
	l.rate.flush(time.Now(), l.log, true)
	return context.Cause(l.ctx)
}

func (l *link) readLoop() error {
	fr := protocol.NewFrameReader(newWSReader(l.ws, l.s.cfg.PongTimeout))
	var m protocol.Message
	for {
		err := fr.ReadMessage(&m)
		switch {
		case err == nil:
			l.dispatch(&m)
		case errors.Is(err, protocol.ErrMalformed), errors.Is(err, protocol.ErrPayloadTooLarge):
			l.warn(warnMalformed, "skipping a tunnel message that cannot be decoded", logErr, err)
		default:
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
				return fmt.Errorf("%w (%s)", errTunnelClosed, ce.Text)
			}
			return fmt.Errorf("read from tunnel: %w", err)
		}
	}
}

// writeLoop sends the pings and, when woken, the frames queued by send and
// sendCtrl, which do not write themselves; local readers write their DATA
// (and what else is queued) themselves in sendData. On parent cancellation
// it sends a close frame.
func (l *link) writeLoop(parent context.Context) error {
	ping := time.NewTicker(l.s.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-l.ctx.Done():
			if parent.Err() != nil {
				msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
				_ = l.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
			}
			return context.Cause(l.ctx)
		case <-ping.C:
			l.rate.flush(time.Now(), l.log, false)
			payload := strconv.AppendInt(nil, time.Now().UnixMilli(), 10)
			if err := l.ws.WriteControl(websocket.PingMessage, payload, time.Now().Add(l.s.cfg.PongTimeout)); err != nil {
				return fmt.Errorf("send ping: %w", err)
			}
		case <-l.wake:
			if err := l.flush(true); err != nil {
				return err
			}
		}
	}
}

// flush writes the queued frames unless another goroutine is writing, in
// which case that one takes care of them: every holder of wmu looks at
// queued again after unlocking, and every sender counts its frame in
// queued before calling flush. Frames leave in queue order, since they are
// only taken from the queue under wmu and written before it is released.
//
// The writer goroutine flushes with all set and writes until nothing is
// queued. A local reader writes one burst at most, its own frame and what
// else is queued, so that it does not end up writing other connections'
// frames instead of reading its own; what remains goes to the writer
// goroutine. A single busy connection thus writes its DATA itself, without
// waking another goroutine, and frames of several connections leave
// together in large messages.
func (l *link) flush(all bool) error {
	for l.queued.Load() > 0 && l.wmu.TryLock() {
		err := l.writeBurst()
		l.wmu.Unlock()
		if err != nil {
			err = fmt.Errorf("write to tunnel: %w", err)
			l.cancel(err)
			return err
		}
		if !all {
			if l.queued.Load() > 0 {
				l.wakeWriter()
			}
			return nil
		}
	}
	return nil
}

// writeBurst (wmu held) writes the queued frames as up to about maxBurst
// messages that reach the socket together (one system call, not one per
// TLS record).
func (l *link) writeBurst() (err error) {
	const maxBurst = 4
	next := l.dequeue()
	if next == nil {
		return nil
	}
	if l.bc != nil {
		l.bc.StartBatch()
		defer func() {
			if ferr := l.bc.EndBatch(); err == nil {
				err = ferr
			}
		}()
	}
	// A frame taken from the queue is written before wmu is released, so
	// the burst may end one message past maxBurst.
	for i := 0; next != nil; i++ {
		if next, err = l.writeBatch(next); err != nil {
			return err
		}
		if next == nil && i+1 < maxBurst {
			next = l.dequeue()
		}
	}
	return nil
}

// dequeue returns a queued frame without waiting, control frames first.
func (l *link) dequeue() *frameBuf {
	if f := l.popCtrl(); f != nil {
		return f
	}
	select {
	case f := <-l.out:
		return f
	default:
		return nil
	}
}

// writeBatch writes first and as many queued frames as fit in one message,
// and returns a frame that did not fit. A frame that starts a stream or
// connection, or resets a stream, ends the message (endsMessage).
func (l *link) writeBatch(first *frameBuf) (*frameBuf, error) {
	l.wdl.Refresh(l.ws, l.s.cfg.PongTimeout)
	w, err := l.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		putFrame(first)
		l.queued.Add(-1)
		return nil, err
	}
	f, total := first, 0
	for f != nil {
		_, err := w.Write(f.data)
		total += len(f.data)
		last := f.last
		putFrame(f)
		l.queued.Add(-1)
		if err != nil {
			return nil, err
		}
		if last {
			break
		}
		f = l.dequeue()
		if f != nil && total+len(f.data) > protocol.MaxWSMessage {
			return f, w.Close()
		}
	}
	return nil, w.Close()
}

func (l *link) popCtrl() *frameBuf {
	l.ctrlMu.Lock()
	defer l.ctrlMu.Unlock()
	if len(l.ctrl) == 0 {
		return nil
	}
	f := l.ctrl[0]
	l.ctrl[0] = nil
	l.ctrl = l.ctrl[1:]
	l.ctrlBytes -= len(f.data)
	if len(l.ctrl) == 0 {
		l.ctrl = nil // let a burst's backing array go
	}
	if l.ctrlWait && l.ctrlBytes <= maxCtrlBytes/2 {
		l.ctrlWait = false
		select {
		case l.ctrlRoom <- struct{}{}:
		default:
		}
	}
	return f
}

// sendCtrl queues m for the WebSocket and wakes the writer goroutine; used
// by the WebSocket reader, which never waits for a write, only (when the
// control queue is full) for the writer to drain it (see waitCtrlRoom).
func (l *link) sendCtrl(m *protocol.Message) {
	f := l.encode(m)
	if f == nil {
		return
	}
	if !l.waitCtrlRoom(len(f.data)) {
		putFrame(f)
		return
	}
	l.ctrl = append(l.ctrl, f)
	l.ctrlBytes += len(f.data)
	l.ctrlPeak = max(l.ctrlPeak, l.ctrlBytes)
	l.queued.Add(1)
	l.ctrlMu.Unlock()
	l.wakeWriter()
}

// waitCtrlRoom returns with ctrlMu held and room for n bytes in the control
// queue. When the queue is full, the reader waits (reading nothing, which
// holds the peer back) until the writer has sent half of it; if that takes
// PongTimeout, the WebSocket is not being read and the link is dropped.
// false: the link is closing (ctrlMu not held).
func (l *link) waitCtrlRoom(n int) bool {
	var timer *time.Timer
	l.ctrlMu.Lock()
	for l.ctrlBytes+n > maxCtrlBytes {
		if timer == nil {
			timer = time.NewTimer(l.s.cfg.PongTimeout)
			defer timer.Stop()
		}
		l.ctrlWait = true
		l.ctrlMu.Unlock()
		l.wakeWriter()
		select {
		case <-l.ctrlRoom:
		case <-timer.C:
			l.cancel(errors.New("the peer provoked more control messages than the WebSocket can send"))
			return false
		case <-l.ctx.Done():
			return false
		}
		l.ctrlMu.Lock()
	}
	return true
}

// encode returns m as a frame sized to its content, or nil (logged) if it
// cannot be encoded.
func (l *link) encode(m *protocol.Message) *frameBuf { return encodeSmall(m, l.log) }

func (l *link) wakeWriter() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// send queues m behind the DATA already queued by local connections,
// waiting for room, and leaves the writing to the writer goroutine (the
// caller may hold locks that must not wait for the WebSocket). It reports
// false when the link is closing.
func (l *link) send(m *protocol.Message) bool {
	f := l.encode(m)
	if f == nil {
		return true
	}
	if !l.enqueue(f) {
		return false
	}
	l.wakeWriter()
	return true
}

// enqueue adds f to the queue of local connections' frames, waiting while
// it is full; false when the link is closing. The frame is counted in
// queued after it is in the queue, so a flush that sees the count finds
// the frame (the count may dip below zero meanwhile: flush ignores that).
func (l *link) enqueue(f *frameBuf) bool {
	select {
	case l.out <- f:
		l.queued.Add(1)
		return true
	case <-l.ctx.Done():
		putFrame(f)
		return false
	}
}

// sendData queues DATA frames of a local reader and writes what is queued
// unless another goroutine is already writing (see flush). When the queue
// is full the reader writes a burst of it itself, waiting for wmu, rather
// than waiting for room: readers then wait once per burst instead of once
// per frame. Never called by the WebSocket reader.
func (l *link) sendData(frames []*frameBuf) bool {
	for i, f := range frames {
		if !l.enqueueData(f) {
			for _, g := range frames[i+1:] {
				putFrame(g)
			}
			return false
		}
	}
	return l.flush(false) == nil
}

func (l *link) enqueueData(f *frameBuf) bool {
	for {
		select {
		case l.out <- f:
			l.queued.Add(1)
			return true
		default:
		}
		if l.ctx.Err() != nil {
			putFrame(f)
			return false
		}
		l.wmu.Lock()
		err := l.writeBurst()
		l.wmu.Unlock()
		if err != nil {
			putFrame(f)
			l.cancel(fmt.Errorf("write to tunnel: %w", err))
			return false
		}
	}
}
