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

// tunnelStore is what the data plane needs of the tunnel store, the API's
// state: the access-token rules of a handshake (a refusal is a
// *handshakeError) and the connection state DescribeTunnel reports. The
// admitted tunnel's relay joins its two clients.
type tunnelStore interface {
	admit(token, clientToken string, m mode) (*tunnel, []string, error)
	setConnected(t *tunnel, m mode, up bool)
}

// dataPlane is the emulator's WebSocket side: the handshake (handshake.go),
// then relaying the frames of each client to the other side of its tunnel
// (relay.go, peer.go). It reaches the API's state only through tunnelStore.
type dataPlane struct {
	store       tunnelStore
	log         *slog.Logger
	idleTimeout time.Duration // Config.IdleTimeout
	strict      bool          // Config.Strict

	mu      sync.Mutex
	closing bool
	conns   sync.WaitGroup // connection handlers (hijacked, so http.Server does not track them)
}

// trackConn registers a connection handler; it reports false once shutdown
// has begun.
func (d *dataPlane) trackConn() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return false
	}
	d.conns.Add(1)
	return true
}

// stopAccepting makes trackConn refuse new connection handlers.
func (d *dataPlane) stopAccepting() {
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
}

// serveData is the data-plane handler: handshake, token rules, upgrade,
// then relaying until the connection ends.
func (d *dataPlane) serveData(w http.ResponseWriter, r *http.Request) {
	channelID := newChannelID()
	w.Header().Set(channelIDHeader, channelID)
	hs, err := parseHandshake(r)
	var t *tunnel
	var services []string
	if err == nil {
		t, services, err = d.store.admit(hs.token, hs.clientToken, hs.mode)
	}
	if err != nil {
		herr := refusalOf(err)
		d.log.Info("handshake refused", attrChannel, channelID, attrStatus, herr.status, attrReason, herr.msg)
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
		d.log.Info("websocket upgrade failed", attrChannel, channelID, attrErr, err)
		return
	}
	if !d.trackConn() {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeGoingAway, "emulator shutting down"), time.Now().Add(closeWriteLimit))
		_ = conn.Close()
		return
	}
	defer d.conns.Done()
	d.runPeer(t, newPeer(conn, hs.mode, hs.subprotocol, channelID, services))
}

// runPeer attaches p to its tunnel and reads from it until it ends.
func (d *dataPlane) runPeer(t *tunnel, p *peer) {
	log := d.log.With(attrTunnel, t.id, attrMode, p.mode.String(), attrChannel, p.channelID)
	p.conn.SetReadLimit(protocol.MaxWSMessage)
	if d.idleTimeout > 0 {
		p.setIdleTimeout(d.idleTimeout)
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
	d.store.setConnected(t, p.mode, true)
	log.Info("client connected", attrSubprotocol, p.sub)
	err := d.readLoop(t.relay, p)
	if t.relay.detach(p) {
		d.store.setConnected(t, p.mode, false)
	}
	log.Info("client disconnected", attrReason, err)
}

// readLoop reads messages from p and forwards their frames; it returns why
// it stopped. A message of whole frames (the common case) goes to the peer
// as it is, without copying; frames split across messages are reassembled
// in carry, and the frames a message completes leave as one message.
func (d *dataPlane) readLoop(r *relay, p *peer) error {
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
			to, err := d.frame(r, p, data[n+protocol.LengthSize:n+protocol.LengthSize+l])
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
func (d *dataPlane) frame(r *relay, p *peer, body []byte) (*peer, error) {
	var m protocol.Message
	if err := m.Unmarshal(body); err != nil {
		if d.strict {
			return nil, p.violate(fmt.Sprintf("malformed tunnel message: %v", err))
		}
		m = protocol.Message{} // forward it anyway; nothing to track
	} else if d.strict {
		if v := p.strict.check(p, &m); v != "" {
			return nil, p.violate(v)
		}
	}
	to, err := r.route(p, &m)
	if err != nil {
		// p was detached: whoever did it (CloseTunnel, a replacing
		// connection) is shutting it down with its close code. Closing it
		// here without one raced with that, and the client then saw an
		// abnormal closure (1006) instead of "tunnel closed".
		return nil, err
	}
	if m.Type != protocol.TypeData && d.log.Enabled(context.Background(), slog.LevelDebug) {
		d.log.Debug("control message", attrChannel, p.channelID, attrType, m.Type.String(), attrService, m.ServiceID,
			attrStream, m.StreamID, attrConnection, m.ConnectionID, attrRelayed, to != nil)
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
