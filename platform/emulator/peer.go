package emulator

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// WebSocket close codes the emulator sends.
const (
	closeNormal        = websocket.CloseNormalClosure // CloseTunnel, expiry, replacement
	closeGoingAway     = websocket.CloseGoingAway     // emulator shutdown
	closeProtocolError = websocket.CloseProtocolError // strict-mode violation, bad framing
	closeUnsupported   = websocket.CloseUnsupportedData
)

const (
	maxPending      = 4 * protocol.MaxWSMessage // per-connection outbound buffer before the sender blocks
	closeWriteLimit = time.Second
	// writeTimeout ends a connection whose client stopped reading, which
	// also frees the peer's reader blocked on this connection's buffer.
	writeTimeout = time.Minute
)

var errTextMessage = errors.New("received a text WebSocket message; the tunneling protocol allows binary messages only")

// peer is one client WebSocket. Data messages are written by one goroutine
// at a time: its writer goroutine, which sends what others queue (bounded:
// senders block), or the other side's reader, which writes a message itself
// when nothing is queued or being written (see send), saving a hand-off.
type peer struct {
	conn      *websocket.Conn
	bc        *batchconn.Conn // nil when the connection is not a batchconn
	mode      mode
	sub       string
	channelID string
	services  []string // the tunnel's services at handshake time (strict mode)

	mu      sync.Mutex
	cond    sync.Cond
	msgs    []*[]byte               // messages of whole frames, each at most MaxWSMessage bytes
	queued  int                     // bytes in queue
	writing bool                    // a goroutine is writing data messages
	wdl     batchconn.WriteDeadline // of data messages (while writing)
	closed  bool
	once    sync.Once

	strict strictState
	touch  func() // called on traffic when an idle timeout is set
}

// msgPool holds message buffers of MaxWSMessage capacity (+1 so that the
// reader can tell a full message from a longer one).
var msgPool = sync.Pool{New: func() any { b := make([]byte, 0, protocol.MaxWSMessage+1); return &b }}

func putMsg(bp *[]byte) { *bp = (*bp)[:0]; msgPool.Put(bp) }

func newPeer(conn *websocket.Conn, m mode, sub, channelID string, services []string) *peer {
	p := &peer{conn: conn, bc: batchconn.Of(conn), mode: m, sub: sub, channelID: channelID, services: services}
	p.cond.L = &p.mu
	return p
}

// waitRoom blocks (p.mu held) until n more bytes fit; false once closed.
func (p *peer) waitRoom(n int) bool {
	for !p.closed && p.queued > 0 && p.queued+n > maxPending {
		p.cond.Wait()
	}
	return !p.closed
}

// queue adds bp, one message of whole frames from msgPool, behind the
// queued ones for the writer goroutine, blocking while the queue is full.
// The peer owns bp afterwards. It reports false once the peer is closed.
func (p *peer) queue(bp *[]byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queueLocked(bp)
}

func (p *peer) queueLocked(bp *[]byte) bool {
	if !p.waitRoom(len(*bp)) {
		putMsg(bp)
		return false
	}
	wasEmpty := len(p.msgs) == 0
	p.msgs = append(p.msgs, bp)
	p.queued += len(*bp)
	if wasEmpty {
		p.cond.Broadcast()
	}
	return true
}

// send forwards bp, a message of whole frames from msgPool; the peer owns
// bp afterwards. When nothing is queued or being written, the caller (the
// other side's reader) writes it at once; otherwise it is queued. Messages
// are never merged: a peer may depend on where a message ends (the C++
// localproxy processes nothing after a STREAM_START until the next message).
// It reports false once the peer is closed.
func (p *peer) send(bp *[]byte) bool {
	p.mu.Lock()
	if !p.closed && !p.writing && len(p.msgs) == 0 {
		p.writing = true
		p.mu.Unlock()
		q := [1]*[]byte{bp}
		err := p.writeMsgs(q[:])
		p.mu.Lock()
		p.writing = false
		if len(p.msgs) > 0 {
			p.cond.Broadcast() // queued meanwhile: the writer goroutine takes over
		}
		p.mu.Unlock()
		if err != nil {
			p.shutdown(0, "")
			return false
		}
		return true
	}
	defer p.mu.Unlock()
	return p.queueLocked(bp)
}

// sendCopy sends a copy of b, whole frames, as one message.
func (p *peer) sendCopy(b []byte) bool {
	bp := msgPool.Get().(*[]byte)
	*bp = append(*bp, b...)
	return p.send(bp)
}

// enqueueMessage queues a message of the emulator's own (SERVICE_IDS, a
// STREAM_RESET) as a message of its own, for the writer goroutine.
func (p *peer) enqueueMessage(m *protocol.Message) bool {
	bp := msgPool.Get().(*[]byte)
	b, err := protocol.AppendFrame(*bp, m)
	if err != nil {
		putMsg(bp)
		return false
	}
	*bp = b
	return p.queue(bp)
}

// writeLoop sends the queued messages. It returns when the peer is closed
// or a write fails.
func (p *peer) writeLoop() {
	var spare []*[]byte
	for {
		p.mu.Lock()
		for !p.closed && (len(p.msgs) == 0 || p.writing) {
			p.cond.Wait()
		}
		if p.closed {
			p.mu.Unlock()
			return
		}
		q := p.msgs
		p.msgs, p.queued = spare[:0], 0
		p.writing = true
		p.cond.Broadcast() // wake blocked senders
		p.mu.Unlock()
		err := p.writeMsgs(q)
		p.mu.Lock()
		p.writing = false
		p.mu.Unlock()
		if err != nil {
			p.shutdown(0, "")
			return
		}
		spare = q[:0]
	}
}

// writeMsgs writes msgs (p.writing held) in one system call when the
// connection allows, and returns their buffers to msgPool.
func (p *peer) writeMsgs(msgs []*[]byte) (err error) {
	if p.bc != nil {
		p.bc.StartBatch()
		defer func() {
			if ferr := p.bc.EndBatch(); err == nil {
				err = ferr
			}
		}()
	}
	for i, bp := range msgs {
		if err == nil {
			p.wdl.Refresh(p.conn, writeTimeout)
			err = p.conn.WriteMessage(websocket.BinaryMessage, *bp)
		}
		putMsg(bp)
		msgs[i] = nil
	}
	if err == nil && p.touch != nil {
		p.touch()
	}
	return err
}

// shutdown closes the peer once: it stops the writer, sends a close frame
// with code (unless 0) and closes the connection, which ends the reader.
func (p *peer) shutdown(code int, reason string) {
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.cond.Broadcast()
		p.mu.Unlock()
		if code != 0 {
			msg := websocket.FormatCloseMessage(code, truncate(reason, 120))
			_ = p.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWriteLimit))
			if p.bc != nil {
				// With the writer in a batch the close frame joined it:
				// without this it would go down with the connection, and
				// the client would see an abnormal closure (1006).
				_ = p.bc.Flush()
			}
		}
		_ = p.conn.Close()
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// setIdleTimeout drops the connection after d without traffic in either
// direction; pings and pongs count, as they do for AWS's load balancer.
func (p *peer) setIdleTimeout(d time.Duration) {
	// The deadline moves at most every d/8 (and 1 s), not per message: a
	// deadline change costs a runtime timer update.
	step := min(d/8, time.Second)
	var last atomic.Int64
	p.touch = func() {
		now := time.Now()
		if l := last.Load(); now.UnixNano()-l < int64(step) || !last.CompareAndSwap(l, now.UnixNano()) {
			return
		}
		_ = p.conn.SetReadDeadline(now.Add(d))
	}
	p.touch()
	ping, pong := p.conn.PingHandler(), p.conn.PongHandler()
	p.conn.SetPingHandler(func(s string) error { p.touch(); return ping(s) })
	p.conn.SetPongHandler(func(s string) error { p.touch(); return pong(s) })
}
