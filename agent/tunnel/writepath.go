package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

const (
	// outQueue is the number of frames local readers may queue for the
	// WebSocket (each at most ~63 KiB) before they write a burst themselves.
	outQueue = 8
	// maxCtrlBytes bounds the control frames queued by the WebSocket reader
	// (each sized to its content, a few dozen bytes for a reset). When it
	// is reached the reader stops reading until the writer sent half; a
	// peer that does not read for PongTimeout meanwhile is dropped.
	maxCtrlBytes = 256 << 10
	// maxBurst is about how many messages one holder of the write lock
	// writes in one system call.
	maxBurst = 4
)

// messageWriter is the part of a WebSocket the write path uses:
// *websocket.Conn, or an in-memory connection in tests.
type messageWriter interface {
	NextWriter(messageType int) (io.WriteCloser, error)
	SetWriteDeadline(t time.Time) error
}

// writePath writes one link's WebSocket data messages. It is flat
// combining, not one writer goroutine fed by a channel: a local reader that
// queues DATA writes what is queued itself when no one else is writing
// (commit 4787cae: +25% upload; see the package doc's Concurrency
// section). It owns the two queues, the write lock and the write deadline.
//
// Entry points, by caller:
//
//   - sendData (local readers): queue DATA frames, then writeOneBurst.
//   - send (local connections and the source's starts, which may hold link
//     locks): queue behind the DATA, wake the writer goroutine.
//   - sendCtrl (the WebSocket reader, which must never wait for a write):
//     queue on the control queue, wake the writer goroutine.
//   - writeAll (the writer goroutine, when woken): write until nothing is
//     queued.
//
// Invariants:
//
//   - One goroutine writes data messages at a time: the holder of wmu.
//   - Frames leave in queue order, control frames first: they are taken
//     from the queues only under wmu and written before it is released.
//   - queued counts frames in out and ctrl not yet written. A sender raises
//     it after its frame is in a queue, before it tries to write; a holder
//     of wmu lowers it after writing and looks at it again after unlocking.
//     So a frame is never left behind with nobody writing. (It may dip
//     below zero for a moment; writers only test > 0.)
//   - A local reader writes at most one burst per call (writeOneBurst) and
//     wakes the writer goroutine for the rest, so it never spends its time
//     writing other connections' frames instead of reading its own.
//   - A frame with last set (STREAM_START, CONNECTION_START, STREAM_RESET:
//     endsMessage) ends its WebSocket message; no message exceeds
//     protocol.MaxWSMessage.
//   - Nothing waits on a closing link: once ctx is done, a sender that
//     would wait for room gives up and its frame goes back to the pool. The
//     link then closes the WebSocket, so nothing queued later is written.
//
// Lock order: the link's sourceSide.startMu, then its streamTable's mu,
// then wmu (held across the socket write), then ctrlMu, a leaf held only
// to push or pop. send may wait for room in out while its caller holds
// link locks, which is safe because the writer goroutine that makes room
// takes none of them.
type writePath struct {
	ws          messageWriter
	bc          *batchconn.Conn // nil: no batched system calls
	log         *slog.Logger
	ctx         context.Context         // the link's
	cancel      context.CancelCauseFunc // ends the link
	pongTimeout time.Duration           // write deadline span; control-queue wait

	frames chan *frameBuf // DATA and resets from local connections, in order
	queued atomic.Int64
	// budget holds a place for each pooled frame the link's local readers
	// took (see takeFrame), until putFrame: at most maxLinkFrames.
	budget chan struct{}
	wake   chan struct{} // to the writer goroutine: frames queued by send or sendCtrl

	wmu sync.Mutex
	wdl batchconn.WriteDeadline // of data messages (wmu)

	ctrlMu    sync.Mutex
	ctrl      []*frameBuf   // control frames from the WebSocket reader
	ctrlBytes int           // their encoded size, at most maxCtrlBytes
	ctrlPeak  int           // highest ctrlBytes (tests)
	ctrlWait  bool          // the reader waits for ctrlRoom
	ctrlRoom  chan struct{} // to the reader: the control queue drained
}

func newWritePath(ctx context.Context, cancel context.CancelCauseFunc, ws messageWriter, bc *batchconn.Conn,
	log *slog.Logger, pongTimeout time.Duration) *writePath {
	return &writePath{
		ws: ws, bc: bc, log: log, ctx: ctx, cancel: cancel, pongTimeout: pongTimeout,
		frames:   make(chan *frameBuf, outQueue),
		budget:   make(chan struct{}, maxLinkFrames),
		wake:     make(chan struct{}, 1),
		ctrlRoom: make(chan struct{}, 1),
	}
}

// maxLinkFrames bounds the pooled DATA frames of one link's local readers,
// from the read to the end of the write: what one busy connection takes
// (a full queue and a read batch), so a single transfer never waits for
// it. Busy connections share it: before, each of eight held its own frame
// or batch while it waited for the full queue, about 20 frames (1.3 MB)
// were out in an 8-stream download instead of 12, and the frames beyond
// the pool were garbage (5.6 MB per GiB).
const maxLinkFrames = outQueue + maxReadBatch

// tryFrame returns a pooled frame counted in the link's budget, or nil
// when maxLinkFrames are out.
func (w *writePath) tryFrame() *frameBuf {
	select {
	case w.budget <- struct{}{}:
		return w.counted()
	default:
		return nil
	}
}

// waitFrame returns a pooled frame counted in the link's budget, waiting
// for a place while maxLinkFrames are out; nil if the link ends first.
func (w *writePath) waitFrame() *frameBuf {
	select {
	case w.budget <- struct{}{}:
		return w.counted()
	case <-w.ctx.Done():
		return nil
	}
}

func (w *writePath) counted() *frameBuf {
	f := getFrame()
	f.budget = w.budget
	return f
}

// writeAll is the writer goroutine's entry point: it writes until nothing
// is queued, unless another goroutine is writing, which then does.
func (w *writePath) writeAll() error {
	for w.queued.Load() > 0 && w.wmu.TryLock() {
		if err := w.lockedBurst(); err != nil {
			return err
		}
	}
	return nil
}

// writeOneBurst is a local reader's entry point: one burst at most (its
// own frame and what else is queued), unless another goroutine is writing;
// what remains goes to the writer goroutine. A single busy connection thus
// writes its DATA without waking another goroutine, and frames of several
// connections leave together in large messages.
func (w *writePath) writeOneBurst() error {
	if w.queued.Load() > 0 && w.wmu.TryLock() {
		if err := w.lockedBurst(); err != nil {
			return err
		}
		if w.queued.Load() > 0 {
			w.wakeWriter()
		}
	}
	return nil
}

// lockedBurst writes a burst with wmu held, releases it, and ends the link
// on a write error.
func (w *writePath) lockedBurst() error {
	err := w.writeBurst()
	w.wmu.Unlock()
	if err != nil {
		err = fmt.Errorf("write to tunnel: %w", err)
		w.cancel(err)
	}
	return err
}

// writeBurst (wmu held) writes the queued frames as up to about maxBurst
// messages that reach the socket together (one system call, not one per
// TLS record).
func (w *writePath) writeBurst() (err error) {
	next := w.dequeue()
	if next == nil {
		return nil
	}
	if w.bc != nil {
		w.bc.StartBatch()
		defer func() {
			if ferr := w.bc.EndBatch(); err == nil {
				err = ferr
			}
		}()
	}
	// A frame taken from the queue is written before wmu is released, so
	// the burst may end one message past maxBurst.
	for i := 0; next != nil; i++ {
		if next, err = w.writeMessage(next); err != nil {
			return err
		}
		if next == nil && i+1 < maxBurst {
			next = w.dequeue()
		}
	}
	return nil
}

// dequeue returns a queued frame without waiting, control frames first.
func (w *writePath) dequeue() *frameBuf {
	if f := w.popCtrl(); f != nil {
		return f
	}
	select {
	case f := <-w.frames:
		return f
	default:
		return nil
	}
}

// writeMessage writes first and as many queued frames as fit in one
// message, and returns a frame that did not fit. A frame that starts a
// stream or connection, or resets a stream, ends the message (endsMessage).
func (w *writePath) writeMessage(first *frameBuf) (*frameBuf, error) {
	w.wdl.Refresh(w.ws, w.pongTimeout)
	mw, err := w.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		putFrame(first)
		w.queued.Add(-1)
		return nil, err
	}
	f, total := first, 0
	for f != nil {
		_, err := mw.Write(f.data)
		total += len(f.data)
		last := f.last
		putFrame(f)
		w.queued.Add(-1)
		if err != nil {
			return nil, err
		}
		if last {
			break
		}
		f = w.dequeue()
		if f != nil && total+len(f.data) > protocol.MaxWSMessage {
			return f, mw.Close()
		}
	}
	return nil, mw.Close()
}

func (w *writePath) popCtrl() *frameBuf {
	w.ctrlMu.Lock()
	defer w.ctrlMu.Unlock()
	if len(w.ctrl) == 0 {
		return nil
	}
	f := w.ctrl[0]
	w.ctrl[0] = nil
	w.ctrl = w.ctrl[1:]
	w.ctrlBytes -= len(f.data)
	if len(w.ctrl) == 0 {
		w.ctrl = nil // let a burst's backing array go
	}
	if w.ctrlWait && w.ctrlBytes <= maxCtrlBytes/2 {
		w.ctrlWait = false
		select {
		case w.ctrlRoom <- struct{}{}:
		default:
		}
	}
	return f
}

// sendCtrl queues m for the WebSocket and wakes the writer goroutine; used
// by the WebSocket reader, which never waits for a write, only (when the
// control queue is full) for the writer to drain it (see waitCtrlRoom).
func (w *writePath) sendCtrl(m *protocol.Message) {
	f := encodeSmall(m, w.log)
	if f == nil {
		return
	}
	if !w.waitCtrlRoom(len(f.data)) {
		putFrame(f)
		return
	}
	w.ctrl = append(w.ctrl, f)
	w.ctrlBytes += len(f.data)
	w.ctrlPeak = max(w.ctrlPeak, w.ctrlBytes)
	w.queued.Add(1)
	w.ctrlMu.Unlock()
	w.wakeWriter()
}

// waitCtrlRoom returns with ctrlMu held and room for n bytes in the control
// queue. When the queue is full, the reader waits (reading nothing, which
// holds the peer back) until the writer has sent half of it; if that takes
// PongTimeout, the WebSocket is not being read and the link is dropped.
// false: the link is closing (ctrlMu not held).
func (w *writePath) waitCtrlRoom(n int) bool {
	var timer *time.Timer
	w.ctrlMu.Lock()
	for w.ctrlBytes+n > maxCtrlBytes {
		if timer == nil {
			timer = time.NewTimer(w.pongTimeout)
			defer timer.Stop()
		}
		w.ctrlWait = true
		w.ctrlMu.Unlock()
		w.wakeWriter()
		select {
		case <-w.ctrlRoom:
		case <-timer.C:
			w.cancel(errors.New("the peer provoked more control messages than the WebSocket can send"))
			return false
		case <-w.ctx.Done():
			return false
		}
		w.ctrlMu.Lock()
	}
	return true
}

func (w *writePath) wakeWriter() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// send queues m behind the DATA already queued by local connections,
// waiting for room, and leaves the writing to the writer goroutine (the
// caller may hold locks that must not wait for the WebSocket). It reports
// false when the link is closing.
func (w *writePath) send(m *protocol.Message) bool {
	f := encodeSmall(m, w.log)
	if f == nil {
		return true
	}
	if !w.enqueue(f) {
		return false
	}
	w.wakeWriter()
	return true
}

// enqueue adds f to the queue of local connections' frames, waiting while
// it is full; false when the link is closing. The frame is counted in
// queued after it is in the queue, so a writer that sees the count finds
// the frame.
func (w *writePath) enqueue(f *frameBuf) bool {
	select {
	case w.frames <- f:
		w.queued.Add(1)
		return true
	case <-w.ctx.Done():
		putFrame(f)
		return false
	}
}

// sendData queues DATA frames of a local reader and writes what is queued
// unless another goroutine is already writing (writeOneBurst). When the
// queue is full the reader writes a burst of it itself, waiting for wmu,
// rather than waiting for room: readers then wait once per burst instead
// of once per frame. Never called by the WebSocket reader.
func (w *writePath) sendData(frames []*frameBuf) bool {
	for i, f := range frames {
		if !w.enqueueData(f) {
			for _, g := range frames[i+1:] {
				putFrame(g)
			}
			return false
		}
	}
	return w.writeOneBurst() == nil
}

func (w *writePath) enqueueData(f *frameBuf) bool {
	for {
		select {
		case w.frames <- f:
			w.queued.Add(1)
			return true
		default:
		}
		if w.ctx.Err() != nil {
			putFrame(f)
			return false
		}
		w.wmu.Lock()
		err := w.writeBurst()
		w.wmu.Unlock()
		if err != nil {
			putFrame(f)
			w.cancel(fmt.Errorf("write to tunnel: %w", err))
			return false
		}
	}
}
