package emulator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// relay joins the source and destination connections of one tunnel. It
// forwards every frame unchanged to the other mode's current connection and
// drops frames while that side is not connected (the real behaviour is
// unknown, protocol.md §12 item 7). It tracks the streams the source
// started so that a peer replacement can reset them at the other side.
type relay struct {
	mu      sync.Mutex
	peers   [2]*peer
	streams map[string]int32 // serviceId -> active streamId, from STREAM_START/STREAM_RESET passing through
	closed  bool
	shaper  *shaper // nil: unlimited
}

func newRelay(bandwidth int64) *relay {
	r := &relay{streams: map[string]int32{}}
	if bandwidth > 0 {
		r.shaper = &shaper{rate: float64(bandwidth)}
	}
	return r
}

// shaper paces a tunnel's frames, both directions together, to a rate in
// bytes per second, like the per-tunnel bandwidth quota of AWS (§8).
type shaper struct {
	mu   sync.Mutex
	rate float64
	next time.Time
}

// wait blocks until n more bytes may pass.
func (s *shaper) wait(n int) {
	if s == nil {
		return
	}
	s.mu.Lock()
	now := time.Now()
	if s.next.Before(now) {
		s.next = now
	}
	d := s.next.Sub(now)
	s.next = s.next.Add(time.Duration(float64(n) / s.rate * float64(time.Second)))
	s.mu.Unlock()
	if d > 0 {
		time.Sleep(d) // pacing, not waiting for a condition
	}
}

// wsWriteBuffer is gorilla's write buffer size (see serveData).
const wsWriteBuffer = 4 << 10

var errReplaced = errors.New("replaced by a newer connection of the same mode")

// attach makes p the current connection of its mode. The previous one is
// closed, and the other side gets a STREAM_RESET for each stream it had.
func (r *relay) attach(p *peer) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	old := r.peers[p.mode]
	r.peers[p.mode] = p
	other := r.peers[1-p.mode]
	var resets []protocol.Message
	for svc, id := range r.streams {
		resets = append(resets, protocol.Message{Type: protocol.TypeStreamReset, StreamID: id, ServiceID: svc})
	}
	clear(r.streams)
	r.mu.Unlock()
	if old != nil {
		old.shutdown(closeNormal, "replaced by a new connection of the same mode")
	}
	if other != nil {
		for i := range resets {
			if other.sub == protocol.SubprotocolV1 {
				resets[i].ServiceID = "" // never V2 fields toward a V1 peer (protocol.md §9.8)
			}
			other.enqueueMessage(&resets[i])
		}
	}
	return true
}

// detach removes p if it is still current and reports whether it was.
func (r *relay) detach(p *peer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers[p.mode] != p {
		return false
	}
	r.peers[p.mode] = nil
	return true
}

// closeAll closes both connections and refuses new ones.
func (r *relay) closeAll(code int, reason string) {
	r.mu.Lock()
	r.closed = true
	peers := r.peers
	r.peers = [2]*peer{}
	r.mu.Unlock()
	for _, p := range peers {
		if p != nil {
			p.shutdown(code, reason)
		}
	}
}

// closeMode closes the current connection of one mode (it detaches itself
// when its reader ends).
func (r *relay) closeMode(mode int, code int, reason string) {
	r.mu.Lock()
	p := r.peers[mode]
	r.mu.Unlock()
	if p != nil {
		p.shutdown(code, reason)
	}
}

// route records stream starts and resets and returns the connection the
// frame goes to (nil: drop). It fails when from is no longer current.
func (r *relay) route(from *peer, m *protocol.Message) (*peer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers[from.mode] != from {
		return nil, errReplaced
	}
	switch {
	case m.Type == protocol.TypeStreamStart && from.mode == modeSource:
		r.streams[m.ServiceID] = m.StreamID
	case m.Type == protocol.TypeStreamReset:
		if id, ok := r.streams[m.ServiceID]; ok && id == m.StreamID {
			delete(r.streams, m.ServiceID)
		}
	}
	return r.peers[1-from.mode], nil
}

// serveData is the data-plane handler: handshake, token rules, upgrade,
// then relaying until the connection ends.
func (e *Emulator) serveData(w http.ResponseWriter, r *http.Request) {
	channelID := newChannelID()
	w.Header().Set(channelIDHeader, channelID)
	hs, herr := parseHandshake(r)
	var t *tunnel
	var services []string
	if herr == nil {
		t, services, herr = e.store.admit(hs.token, hs.clientToken, hs.mode)
	}
	if herr != nil {
		e.log.Info("handshake refused", attrChannel, channelID, "status", herr.status, "reason", herr.msg)
		writeRefusal(w, herr)
		return
	}
	up := websocket.Upgrader{
		// A small write buffer: for a server, WriteMessage copies only what
		// fits it and writes the rest of the message straight from the
		// peer's pending buffer, saving a copy of every byte; small
		// messages still go out with one Write.
		ReadBufferSize: 64 << 10, WriteBufferSize: wsWriteBuffer,
		Subprotocols: []string{hs.subprotocol},
		CheckOrigin:  func(*http.Request) bool { return true },
	}
	conn, err := up.Upgrade(w, r, http.Header{channelIDHeader: {channelID}})
	if err != nil {
		e.log.Info("websocket upgrade failed", attrChannel, channelID, "error", err)
		return
	}
	if !e.trackConn() {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeGoingAway, "emulator shutting down"), time.Now().Add(closeWriteLimit))
		_ = conn.Close()
		return
	}
	defer e.conns.Done()
	e.runPeer(t, newPeer(conn, hs.mode, hs.subprotocol, channelID, services))
}

// runPeer attaches p to its tunnel and reads from it until it ends.
func (e *Emulator) runPeer(t *tunnel, p *peer) {
	log := e.log.With(attrTunnel, t.id, attrMode, modeNames[p.mode], attrChannel, p.channelID)
	p.conn.SetReadLimit(protocol.MaxWSMessage)
	if e.cfg.IdleTimeout > 0 {
		p.setIdleTimeout(e.cfg.IdleTimeout)
	}
	if p.sub != protocol.SubprotocolV1 {
		p.enqueueMessage(&protocol.Message{Type: protocol.TypeServiceIDs, AvailableServiceIDs: p.services})
	}
	// Attach before the writer starts, so that a client that has seen
	// SERVICE_IDS can count on frames from its peer being relayed.
	if !t.relay.attach(p) {
		p.shutdown(closeNormal, "tunnel closed")
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.writeLoop() }()
	defer wg.Wait()
	e.store.setConnected(t, p.mode, true)
	log.Info("client connected", "subprotocol", p.sub)
	err := e.readLoop(t.relay, p)
	if t.relay.detach(p) {
		e.store.setConnected(t, p.mode, false)
	}
	log.Info("client disconnected", "reason", err)
}

// readLoop reads messages from p and forwards their frames; it returns why
// it stopped. A message of whole frames (the common case) goes to the peer
// as it is, without copying; frames split across messages are reassembled
// in carry, and the frames a message completes leave as one message.
func (e *Emulator) readLoop(r *relay, p *peer) error {
	var carry []byte
	var tos []*peer
	for {
		bp, err := readMsg(p)
		if err != nil {
			if err == io.EOF && len(carry) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return p.endRead(err)
		}
		data, whole := *bp, len(carry) == 0
		if !whole {
			carry = append(carry, data...)
			data = carry
		}
		tos = tos[:0]
		n, ferr := 0, error(nil)
		for n+protocol.LengthSize <= len(data) {
			l := int(binary.BigEndian.Uint16(data[n:]))
			if l == 0 {
				ferr = protocol.ErrBadLength
				break
			}
			if n+protocol.LengthSize+l > len(data) {
				break
			}
			to, err := e.frame(r, p, data[n+protocol.LengthSize:n+protocol.LengthSize+l])
			if err != nil {
				putMsg(bp)
				return err
			}
			tos = append(tos, to)
			n += protocol.LengthSize + l
		}
		if whole && ferr == nil && n == len(data) && sameTarget(tos) {
			r.shaper.wait(n)
			tos[0].send(bp) // hands bp over
		} else {
			forwardFrames(r, data[:n], tos)
			rest := copy(data, data[n:]) // data may alias carry
			if whole {
				carry = append(carry[:0], data[:rest]...)
			} else {
				carry = carry[:rest]
			}
			putMsg(bp)
		}
		if ferr != nil {
			return p.endRead(ferr)
		}
	}
}

// readMsg reads one whole binary message into a buffer from msgPool.
func readMsg(p *peer) (*[]byte, error) {
	typ, rd, err := p.conn.NextReader()
	if err != nil {
		return nil, err
	}
	if typ != websocket.BinaryMessage {
		return nil, errTextMessage
	}
	if p.touch != nil {
		p.touch()
	}
	bp := msgPool.Get().(*[]byte)
	b := *bp
	for {
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*bp = b
			return bp, nil
		}
		if err != nil || len(b) == cap(b) {
			putMsg(bp)
			if err == nil {
				err = websocket.ErrReadLimit
			}
			return nil, err
		}
	}
}

func sameTarget(tos []*peer) bool {
	if len(tos) == 0 || tos[0] == nil {
		return false
	}
	for _, t := range tos[1:] {
		if t != tos[0] {
			return false
		}
	}
	return true
}

// forwardFrames sends the whole frames of data, all from one received
// message, to their targets (nil: drop). Consecutive frames for the same
// target leave together as one message (split at frame boundaries to stay
// within MaxWSMessage), never merged with another message.
func forwardFrames(r *relay, data []byte, tos []*peer) {
	var to *peer
	start, off := 0, 0
	flush := func() {
		if to != nil && off > start {
			r.shaper.wait(off - start)
			to.sendCopy(data[start:off])
		}
	}
	for _, t := range tos {
		n := protocol.LengthSize + int(binary.BigEndian.Uint16(data[off:]))
		if t != to || off+n-start > protocol.MaxWSMessage {
			flush()
			to, start = t, off
		}
		off += n
	}
	flush()
}

// frame checks and routes one frame body from p and returns its target.
func (e *Emulator) frame(r *relay, p *peer, body []byte) (*peer, error) {
	var m protocol.Message
	if err := m.Unmarshal(body); err != nil {
		if e.cfg.Strict {
			return nil, p.violate(fmt.Sprintf("malformed tunnel message: %v", err))
		}
		m = protocol.Message{} // forward it anyway; nothing to track
	} else if e.cfg.Strict {
		if v := p.strict.check(p, &m); v != "" {
			return nil, p.violate(v)
		}
	}
	to, err := r.route(p, &m)
	if err != nil {
		p.shutdown(0, "")
		return nil, err
	}
	if m.Type != protocol.TypeData && e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug("control message", attrChannel, p.channelID, "type", m.Type.String(), "service", m.ServiceID,
			"stream", m.StreamID, "connection", m.ConnectionID, "relayed", to != nil)
	}
	return to, nil
}

// endRead closes p after a read error and returns the reason.
func (p *peer) endRead(err error) error {
	switch {
	case errors.Is(err, errTextMessage):
		p.shutdown(closeUnsupported, "text messages are not allowed")
	case errors.Is(err, protocol.ErrBadLength):
		p.shutdown(closeProtocolError, "tunnel frame of length 0")
	case errors.Is(err, io.ErrUnexpectedEOF):
		p.shutdown(closeProtocolError, "stream ended inside a tunnel frame")
	default:
		p.shutdown(0, "")
	}
	return err
}

func (p *peer) violate(reason string) error {
	p.shutdown(closeProtocolError, reason)
	return fmt.Errorf("protocol violation: %s", reason)
}

// relays returns the relays of all tunnels.
func (s *store) relays() []*relay {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*relay, 0, len(s.tunnels))
	for _, t := range s.tunnels {
		out = append(out, t.relay)
	}
	return out
}
