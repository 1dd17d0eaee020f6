package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// memConn is an in-memory messageWriter: it keeps every WebSocket message
// written, and can be told to fail.
type memConn struct {
	mu      sync.Mutex
	msgs    [][]byte
	writers int // open message writers (must never exceed 1)
	maxOpen int
	fail    error
}

func (c *memConn) NextWriter(int) (io.WriteCloser, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return nil, c.fail
	}
	c.writers++
	c.maxOpen = max(c.maxOpen, c.writers)
	return &memMessage{c: c}, nil
}

func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

func (c *memConn) messages() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.msgs...)
}

type memMessage struct {
	c   *memConn
	buf bytes.Buffer
}

func (m *memMessage) Write(p []byte) (int, error) { return m.buf.Write(p) }

func (m *memMessage) Close() error {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	m.c.writers--
	m.c.msgs = append(m.c.msgs, m.buf.Bytes())
	return nil
}

func newTestWritePath(t *testing.T, c *memConn) *writePath {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	t.Cleanup(func() { cancel(nil) })
	return newWritePath(ctx, cancel, c, nil, slog.New(slog.DiscardHandler), time.Second)
}

// dataFrame is a pooled DATA frame whose payload names its sender and
// sequence number.
func dataFrame(t *testing.T, sender, seq, size int) *frameBuf {
	t.Helper()
	payload := make([]byte, max(size, 8))
	binary.BigEndian.PutUint32(payload, uint32(sender))
	binary.BigEndian.PutUint32(payload[4:], uint32(seq))
	f := getFrame()
	var err error
	m := protocol.Message{Type: protocol.TypeData, StreamID: 1, ServiceID: "S", ConnectionID: uint32(sender + 1), Payload: payload}
	if f.data, err = protocol.AppendFrame(f.buf[:0], &m); err != nil {
		t.Fatal(err)
	}
	return f
}

// decodeAll returns the frames of every message, checking that each
// message holds whole frames, stays within MaxWSMessage, and has a start or
// stream reset only as its last frame.
func decodeAll(t *testing.T, msgs [][]byte) []protocol.Message {
	t.Helper()
	var out []protocol.Message
	for i, msg := range msgs {
		if len(msg) > protocol.MaxWSMessage {
			t.Errorf("message %d has %d bytes, over %d", i, len(msg), protocol.MaxWSMessage)
		}
		fr := protocol.NewFrameReader(bytes.NewReader(msg))
		var n int
		for {
			var m protocol.Message
			err := fr.ReadMessage(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if n > 0 && endsMessage(out[len(out)-1].Type) {
				t.Errorf("message %d: a frame follows a %v in the same message", i, out[len(out)-1].Type)
			}
			m.Payload = append([]byte(nil), m.Payload...)
			out = append(out, m)
			n++
		}
	}
	return out
}

// TestWritePathOrder: local readers on several goroutines send DATA through
// sendData while the WebSocket reader sends control frames and another
// caller sends resets through send, and a writer goroutine runs writeAll.
// Every frame arrives exactly once, each sender's frames in its order, one
// message writer at a time, starts and resets ending their messages.
func TestWritePathOrder(t *testing.T) {
	const senders, perSender, ctrls, resets = 6, 200, 300, 50
	c := &memConn{}
	w := newTestWritePath(t, c)
	done := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		for {
			select {
			case <-w.wake:
				if err := w.writeAll(); err != nil {
					t.Error(err)
					return
				}
			case <-done:
				if err := w.writeAll(); err != nil {
					t.Error(err)
				}
				return
			}
		}
	})
	var g sync.WaitGroup
	for s := range senders {
		g.Go(func() {
			for seq := 0; seq < perSender; {
				k := 1 + seq%3 // batches of 1-3 frames, as a local reader sends
				batch := make([]*frameBuf, 0, k)
				for ; k > 0 && seq < perSender; k-- {
					batch = append(batch, dataFrame(t, s, seq, 1+(seq*977)%protocol.MaxPayload))
					seq++
				}
				if !w.sendData(batch) {
					t.Error("sendData refused on an open link")
					return
				}
			}
		})
	}
	g.Go(func() {
		for i := range ctrls {
			w.sendCtrl(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: int32(i + 1), ServiceID: "C"})
		}
	})
	g.Go(func() {
		for i := range resets {
			if !w.send(&protocol.Message{Type: protocol.TypeConnectionReset, StreamID: 1, ServiceID: "R", ConnectionID: uint32(i + 1)}) {
				t.Error("send refused on an open link")
			}
		}
	})
	g.Wait()
	close(done)
	writer.Wait()
	if q := w.queued.Load(); q != 0 {
		t.Errorf("queued = %d after everything was written", q)
	}
	if c.maxOpen != 1 {
		t.Errorf("%d message writers were open at once; the write lock allows one", c.maxOpen)
	}
	next := make([]int, senders)
	var gotCtrl, gotReset int32
	for _, m := range decodeAll(t, c.messages()) {
		switch m.Type {
		case protocol.TypeData:
			s, seq := int(binary.BigEndian.Uint32(m.Payload)), int(binary.BigEndian.Uint32(m.Payload[4:]))
			if seq != next[s] {
				t.Fatalf("sender %d: frame %d arrived when %d was due", s, seq, next[s])
			}
			next[s]++
		case protocol.TypeStreamReset:
			if gotCtrl++; m.StreamID != gotCtrl {
				t.Fatalf("control frame %d arrived when %d was due", m.StreamID, gotCtrl)
			}
		case protocol.TypeConnectionReset:
			if gotReset++; int32(m.ConnectionID) != gotReset {
				t.Fatalf("reset %d arrived when %d was due", m.ConnectionID, gotReset)
			}
		}
	}
	for s, n := range next {
		if n != perSender {
			t.Errorf("sender %d: %d of %d frames arrived", s, n, perSender)
		}
	}
	if gotCtrl != ctrls || gotReset != resets {
		t.Errorf("%d of %d control frames, %d of %d resets arrived", gotCtrl, ctrls, gotReset, resets)
	}
}

// TestWritePathEntryPoints: a local reader's writeOneBurst writes at most
// about maxBurst messages and wakes the writer goroutine for the rest;
// writeAll writes everything; control frames go first.
func TestWritePathEntryPoints(t *testing.T) {
	c := &memConn{}
	w := newTestWritePath(t, c)
	const n = outQueue // fill the queue without writing
	for i := range n {
		if !w.enqueue(dataFrame(t, 0, i, protocol.MaxPayload)) {
			t.Fatal("enqueue refused")
		}
	}
	const ctrls = 2 * maxBurst // each ends its message: more than one burst
	for i := range ctrls {
		w.sendCtrl(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: int32(i + 1), ServiceID: "C"})
	}
	<-w.wake // sendCtrl woke the writer goroutine (there is none here)
	if err := w.writeOneBurst(); err != nil {
		t.Fatal(err)
	}
	first := c.messages()
	if len(first) == 0 || len(first) > maxBurst+1 {
		t.Fatalf("writeOneBurst wrote %d messages, want 1 to %d", len(first), maxBurst+1)
	}
	if got := decodeAll(t, first[:1]); got[0].Type != protocol.TypeStreamReset {
		t.Errorf("first frame written is %v, want the control frame", got[0].Type)
	}
	select {
	case <-w.wake:
	default:
		t.Error("writeOneBurst left frames queued without waking the writer goroutine")
	}
	if err := w.writeAll(); err != nil {
		t.Fatal(err)
	}
	if q := w.queued.Load(); q != 0 {
		t.Errorf("queued = %d after writeAll", q)
	}
	if frames := decodeAll(t, c.messages()); len(frames) != n+ctrls {
		t.Errorf("%d frames written, want %d", len(frames), n+ctrls)
	}
}

// TestWritePathAfterClose: a failing connection ends the link with the
// write error, and once the link is closing a sender never waits for room.
func TestWritePathAfterClose(t *testing.T) {
	c := &memConn{fail: errors.New("broken pipe")}
	w := newTestWritePath(t, c)
	if w.sendData([]*frameBuf{dataFrame(t, 0, 0, 10)}) {
		t.Error("sendData reported success on a failing connection")
	}
	if cause := context.Cause(w.ctx); cause == nil || !errors.Is(cause, c.fail) {
		t.Errorf("link cause %v, want the write error", cause)
	}
	for range 3 * outQueue { // more than the queue holds: must not block
		w.send(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: 1})
		w.sendData([]*frameBuf{dataFrame(t, 0, 0, 10)})
	}
	if n := len(c.messages()); n != 0 {
		t.Errorf("%d messages written through a failing connection", n)
	}
}
