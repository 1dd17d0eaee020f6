package emulator

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/gorilla/websocket"

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

// peer is one client WebSocket. Its writer goroutine owns every data write;
// other goroutines hand it frames through pending (bounded: senders block).
type peer struct {
	conn      *websocket.Conn
	mode      int
	sub       string
	channelID string
	services  []string // the tunnel's services at handshake time (strict mode)

	mu      sync.Mutex
	cond    sync.Cond
	pending []byte // whole frames (length prefix + body), appended by senders
	closed  bool
	once    sync.Once

	strict strictState
	touch  func() // called on traffic when an idle timeout is set
}

func newPeer(conn *websocket.Conn, mode int, sub, channelID string, services []string) *peer {
	p := &peer{conn: conn, mode: mode, sub: sub, channelID: channelID, services: services,
		pending: make([]byte, 0, maxPending)}
	p.cond.L = &p.mu
	return p
}

// enqueue appends one frame body (without length prefix) to the outbound
// buffer, blocking while the buffer is full. It reports false once the
// peer is closed.
func (p *peer) enqueue(body []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.closed && len(p.pending) > 0 && len(p.pending)+len(body)+2 > maxPending {
		p.cond.Wait()
	}
	if p.closed {
		return false
	}
	wasEmpty := len(p.pending) == 0
	p.pending = binary.BigEndian.AppendUint16(p.pending, uint16(len(body)))
	p.pending = append(p.pending, body...)
	if wasEmpty {
		p.cond.Broadcast()
	}
	return true
}

func (p *peer) enqueueMessage(m *protocol.Message) bool {
	b, err := protocol.AppendFrame(nil, m)
	if err != nil {
		return false
	}
	return p.enqueue(b[protocol.LengthSize:])
}

// writeLoop sends pending frames, batching them into WebSocket messages of
// at most MaxWSMessage bytes that hold whole frames. It returns when the
// peer is closed or a write fails.
func (p *peer) writeLoop() {
	spare := make([]byte, 0, maxPending)
	for {
		p.mu.Lock()
		for !p.closed && len(p.pending) == 0 {
			p.cond.Wait()
		}
		if p.closed {
			p.mu.Unlock()
			return
		}
		full := p.pending
		p.pending = spare[:0]
		p.cond.Broadcast() // wake blocked senders
		p.mu.Unlock()
		for buf := full; len(buf) > 0; {
			n := wholeFrames(buf)
			_ = p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := p.conn.WriteMessage(websocket.BinaryMessage, buf[:n]); err != nil {
				p.shutdown(0, "")
				return
			}
			if p.touch != nil {
				p.touch()
			}
			buf = buf[n:]
		}
		spare = full[:0]
	}
}

// wholeFrames returns the length of the longest prefix of b that holds only
// whole frames and fits one WebSocket message.
func wholeFrames(b []byte) int {
	n := 0
	for n+protocol.LengthSize <= len(b) {
		f := protocol.LengthSize + int(binary.BigEndian.Uint16(b[n:]))
		if n+f > protocol.MaxWSMessage || n+f > len(b) {
			break
		}
		n += f
	}
	if n == 0 { // cannot happen: frames are at most 65537 bytes and enqueued whole
		n = len(b)
	}
	return n
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

// wsStream presents the binary messages of a WebSocket as one byte stream,
// so tunnel frames may span or share messages (and continuation frames are
// reassembled by gorilla's NextReader).
type wsStream struct {
	conn  *websocket.Conn
	r     io.Reader
	touch func() // optional, called for each message
}

func (s *wsStream) Read(b []byte) (int, error) {
	for {
		if s.r == nil {
			typ, r, err := s.conn.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errTextMessage
			}
			if s.touch != nil {
				s.touch()
			}
			s.r = r
		}
		n, err := s.r.Read(b)
		if err == io.EOF {
			s.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// setIdleTimeout drops the connection after d without traffic in either
// direction; pings and pongs count, as they do for AWS's load balancer.
func (p *peer) setIdleTimeout(d time.Duration) {
	p.touch = func() { _ = p.conn.SetReadDeadline(time.Now().Add(d)) }
	p.touch()
	ping, pong := p.conn.PingHandler(), p.conn.PongHandler()
	p.conn.SetPingHandler(func(s string) error { p.touch(); return ping(s) })
	p.conn.SetPongHandler(func(s string) error { p.touch(); return pong(s) })
}
