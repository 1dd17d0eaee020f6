package emulator

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// wsClient is a raw tunnel client for tests: gorilla WebSocket plus the
// frame codec, no session logic.
type wsClient struct {
	c    *websocket.Conn
	resp *http.Response
	fr   *protocol.FrameReader
}

type dialOpts struct {
	mode        string
	token       string
	clientToken string
	subs        []string
	header      http.Header
	path        string
	writeBuf    int
}

func (env *testEnv) dialRaw(o dialOpts) (*websocket.Conn, *http.Response, error) {
	if o.mode == "" {
		o.mode = "source"
	}
	if o.subs == nil {
		o.subs = []string{protocol.SubprotocolV3}
	}
	if o.path == "" {
		o.path = "/tunnel"
	}
	h := http.Header{}
	for k, v := range o.header {
		h[k] = v
	}
	if o.token != "" {
		h.Set("access-token", o.token)
	}
	if o.clientToken != "" {
		h.Set("client-token", o.clientToken)
	}
	d := websocket.Dialer{
		TLSClientConfig:  &tls.Config{RootCAs: env.e.CAPool(), MinVersion: tls.VersionTLS12},
		Subprotocols:     o.subs,
		HandshakeTimeout: 10 * time.Second,
		WriteBufferSize:  o.writeBuf,
	}
	return d.Dial("wss://"+env.e.DataEndpoint()+o.path+"?local-proxy-mode="+o.mode, h)
}

// dial connects and fails the test on error.
func (env *testEnv) dial(t testing.TB, o dialOpts) *wsClient {
	t.Helper()
	c, resp, err := env.dialRaw(o)
	if err != nil {
		t.Fatalf("dial %s: %v (%s)", o.mode, err, respText(resp))
	}
	t.Cleanup(func() { _ = c.Close() })
	c.SetReadLimit(protocol.MaxWSMessage)
	return &wsClient{c: c, resp: resp, fr: protocol.NewFrameReader(&wsStream{conn: c})}
}

func respText(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	return resp.Status + ": " + readAllString(resp.Body)
}

// send writes msgs as one WebSocket message.
func (c *wsClient) send(t testing.TB, msgs ...protocol.Message) {
	t.Helper()
	var b []byte
	var err error
	for i := range msgs {
		if b, err = protocol.AppendFrame(b, &msgs[i]); err != nil {
			t.Fatalf("encode: %v", err)
		}
	}
	if err := c.c.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// recv reads the next tunnel message; Payload is copied.
func (c *wsClient) recv(t testing.TB) protocol.Message {
	t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m protocol.Message
	if err := c.fr.ReadMessage(&m); err != nil {
		t.Fatalf("recv: %v", err)
	}
	m.Payload = append([]byte(nil), m.Payload...)
	return m
}

// closeCode reads until the connection ends and returns the close code.
func (c *wsClient) closeCode(t testing.TB) int {
	t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := c.c.NextReader(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			t.Fatalf("connection ended without a close frame: %v", err)
		}
	}
}

const ctA = "0123456789abcdef0123456789abcdef"
const ctB = "fedcba9876543210fedcba9876543210"

func start(svc string, id int32) protocol.Message {
	return protocol.Message{Type: protocol.TypeStreamStart, StreamID: id, ServiceID: svc, ConnectionID: 1}
}

func data(svc string, id int32, p []byte) protocol.Message {
	return protocol.Message{Type: protocol.TypeData, StreamID: id, ServiceID: svc, ConnectionID: 1, Payload: p}
}

func deadline() time.Time { return time.Now().Add(10 * time.Second) }

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
