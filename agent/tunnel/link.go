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
	// maxCtrlQueue bounds control frames queued by the WebSocket reader; a
	// peer that provokes more while the WebSocket cannot be written is dropped.
	maxCtrlQueue = 4096
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

func putFrame(f *frameBuf) {
	f.data, f.last = nil, false
	framePool.Put(f)
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

	rate rateLog

	// wmu is held by the goroutine writing data messages: the writer, or a
	// local reader writing its DATA directly while nothing is queued.
	// queued counts frames in out and ctrl not yet written; it drops only
	// after the frame was written, under wmu, so a direct write never
	// overtakes a queued frame.
	wmu    sync.Mutex
	queued atomic.Int64
	wdl    batchconn.WriteDeadline // of data messages (wmu)

	ctrlMu sync.Mutex
	ctrl   []*frameBuf   // control frames from the WebSocket reader (never blocks)
	wake   chan struct{} // to the writer goroutine: frames queued by send or sendCtrl

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
		log:     s.log.With(logChannel, channelID),
		out:     make(chan *frameBuf, outQueue),
		wake:    make(chan struct{}, 1),
		streams: map[string]*stream{}, live: map[*fwd]struct{}{}, nextStream: map[string]int32{}, slots: map[string]chan struct{}{},
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
			l.warn("malformed", "skipping a tunnel message that cannot be decoded", logErr, err)
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
	return f
}

// sendCtrl queues m for the WebSocket without blocking and wakes the
// writer goroutine; used by the WebSocket reader, which must never wait
// for a write.
func (l *link) sendCtrl(m *protocol.Message) {
	f := l.encode(m)
	if f == nil {
		return
	}
	l.ctrlMu.Lock()
	full := len(l.ctrl) >= maxCtrlQueue
	if !full {
		l.ctrl = append(l.ctrl, f)
		l.queued.Add(1)
	}
	l.ctrlMu.Unlock()
	if full {
		putFrame(f)
		l.cancel(errors.New("the peer provoked more control messages than the WebSocket can send"))
		return
	}
	l.wakeWriter()
}

// encode returns m as a pooled frame, or nil (logged) if it cannot be
// encoded.
func (l *link) encode(m *protocol.Message) *frameBuf {
	f := getFrame()
	var err error
	if f.data, err = protocol.AppendFrame(f.buf[:0], m); err != nil {
		putFrame(f)
		l.log.Error("cannot encode a tunnel message", logType, m.Type, logErr, err)
		return nil
	}
	f.last = endsMessage(m.Type)
	return f
}

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
