package fakenucleus

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"

	rpc "github.com/tunnel-agent/tunnel-agent/platform/greengrass/internal/eventrpc"
)

const writeTimeout = 10 * time.Second

// conn is one component connection. serve's goroutine reads; sends come from
// it and from MQTT deliveries, under mu.
type conn struct {
	n   *Nucleus
	c   net.Conn
	dec *eventstream.Decoder

	mu      sync.Mutex
	enc     *eventstream.Encoder
	buf     bytes.Buffer
	streams map[int32]*stream // open operation streams
	last    int32             // highest stream id seen

	comp Component // set by the accepted Connect
}

// stream is an open operation stream; sub is set for a subscription.
type stream struct {
	id        int32
	operation string
	sub       *subscription
}

func newConn(n *Nucleus, c net.Conn) *conn {
	return &conn{n: n, c: c, dec: rpc.NewDecoder(), enc: rpc.NewEncoder(), streams: map[int32]*stream{}}
}

func (c *conn) serve() {
	defer c.close()
	if !c.handshake() {
		return
	}
	for {
		m, err := rpc.ReadMessage(c.c, c.dec)
		if err != nil {
			if errors.Is(err, rpc.ErrProtocol) || errors.Is(err, rpc.ErrMessageTooLarge) {
				c.n.log.Warn("fakenucleus: closing a component connection", "component", c.comp.Name, "error", err)
			}
			return
		}
		if !c.handle(m) {
			return
		}
	}
}

// handshake reads the Connect and answers ConnectAck.
func (c *conn) handshake() bool {
	_ = c.c.SetReadDeadline(time.Now().Add(writeTimeout))
	m, err := rpc.ReadMessage(c.c, c.dec)
	_ = c.c.SetReadDeadline(time.Time{})
	if err != nil || m.Type != rpc.TypeConnect {
		return false
	}
	var body struct {
		AuthToken string `json:"authToken"`
	}
	comp, known := Component{}, false
	if m.Version == rpc.ProtocolVersion && json.Unmarshal(m.Payload, &body) == nil {
		comp, known = c.n.cfg.Components[body.AuthToken]
	}
	ack := rpc.Message{Type: rpc.TypeConnectAck}
	if known {
		ack.Flags = rpc.FlagConnectionAccepted
		c.comp = comp
		c.n.log.Info("fakenucleus: connection accepted", "component", comp.Name)
	} else {
		c.n.log.Info("fakenucleus: connection rejected", "version", m.Version)
	}
	return c.send(ack) == nil && known
}

// handle processes one message after the handshake; false ends the connection.
func (c *conn) handle(m rpc.Message) bool {
	switch m.Type {
	case rpc.TypePing:
		return c.send(rpc.Message{Type: rpc.TypePingResponse, Payload: m.Payload}) == nil
	case rpc.TypePingResponse:
		return true
	case rpc.TypeApplicationMessage, rpc.TypeApplicationError:
		return c.onStreamMessage(m)
	default:
		body := `{"error":"Unrecognized Message Type","message":"message type value: ` + m.Type.String() + ` is not recognized"}`
		_ = c.send(rpc.Message{Type: rpc.TypeInternalError, ContentType: rpc.ContentTypeJSON, Payload: []byte(body)})
		return false
	}
}

func (c *conn) onStreamMessage(m rpc.Message) bool {
	if m.StreamID <= 0 {
		c.protocolError("application message on stream 0")
		return false
	}
	c.mu.Lock()
	st, open := c.streams[m.StreamID]
	fresh := !open && m.StreamID > c.last
	if fresh {
		c.last = m.StreamID
	}
	c.mu.Unlock()
	switch {
	case open && m.Terminates():
		c.closeStream(st)
		return true
	case open:
		return true // no client-to-server stream events in these operations
	case !fresh:
		return true // a stream already closed: ignore, as the server does
	case m.Operation == "":
		c.protocolError("new stream without an operation header")
		return false
	case m.Terminates():
		return true // request already cancelled: not invoked
	}
	st = &stream{id: m.StreamID, operation: m.Operation}
	c.mu.Lock()
	c.streams[st.id] = st
	c.mu.Unlock()
	switch m.Operation {
	case rpc.OpSubscribeToIoTCore:
		c.subscribe(st, m.Payload)
	case rpc.OpPublishToIoTCore:
		c.publish(st, m.Payload)
	default:
		body, _ := json.Marshal(map[string]string{"error": "Unsupported Operation",
			"message": m.Operation + " is an unsupported operation."})
		c.reply(st, rpc.Message{Type: rpc.TypeApplicationError, Flags: rpc.FlagTerminateStream,
			ContentType: rpc.ContentTypeJSON, Payload: body})
	}
	return true
}

func (c *conn) protocolError(why string) {
	c.n.log.Warn("fakenucleus: protocol error", "component", c.comp.Name, "why", why)
	_ = c.send(rpc.Message{Type: rpc.TypeProtocolError, ContentType: rpc.ContentTypeText, Payload: []byte(why)})
}

// reply sends m on st; a TerminateStream reply closes st.
func (c *conn) reply(st *stream, m rpc.Message) {
	m.StreamID = st.id
	c.mu.Lock()
	if _, open := c.streams[st.id]; !open {
		c.mu.Unlock()
		return
	}
	if m.Terminates() {
		delete(c.streams, st.id)
	}
	err := c.sendLocked(m)
	c.mu.Unlock()
	if m.Terminates() && st.sub != nil {
		c.n.router.remove(st.sub)
	}
	if err != nil {
		_ = c.c.Close()
	}
}

// replyJSON sends a modelled message (a response, an event or an error).
func (c *conn) replyJSON(st *stream, typ rpc.Type, flags int32, model string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(`{}`)
	}
	c.reply(st, rpc.Message{Type: typ, Flags: flags, ModelType: model,
		ContentType: rpc.ContentTypeJSON, Payload: body})
}

// fail answers st with a modelled error and ends it.
func (c *conn) fail(st *stream, model, text string) {
	c.replyJSON(st, rpc.TypeApplicationError, rpc.FlagTerminateStream, model, map[string]string{"message": text})
}

func (c *conn) closeStream(st *stream) {
	c.mu.Lock()
	delete(c.streams, st.id)
	c.mu.Unlock()
	if st.sub != nil {
		c.n.router.remove(st.sub)
	}
}

func (c *conn) send(m rpc.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sendLocked(m)
}

func (c *conn) sendLocked(m rpc.Message) error {
	c.buf.Reset()
	if err := c.enc.Encode(&c.buf, m.Encode()); err != nil {
		return err
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.c.Write(c.buf.Bytes())
	return err
}

func (c *conn) close() {
	c.mu.Lock()
	var subs []*subscription
	for id, st := range c.streams {
		if st.sub != nil {
			subs = append(subs, st.sub)
		}
		delete(c.streams, id)
	}
	c.mu.Unlock()
	for _, s := range subs {
		c.n.router.remove(s)
	}
	_ = c.c.Close()
}

// headerSafe keeps log values short.
func headerSafe(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
