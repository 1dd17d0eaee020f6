package tunnel

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// relay is a minimal stand-in for the tunneling service: token and
// client-token rules, subprotocol choice, SERVICE_IDS, and a relay that
// forwards the WebSocket bytes of one mode to the other, optionally
// re-chunked at random boundaries (frames then span messages).
type relay struct {
	srv      *httptest.Server        // on loopback; nil in memory
	mem      *tunneltest.MemListener // in memory (newMemRelay); nil on loopback
	net      *tunneltest.MemNet      // the network mem is on; local services can join it
	memStop  func()                  // stops the in-memory server
	services []string
	split    bool

	mu          sync.Mutex
	tokens      map[string]string // access token -> mode
	clientToks  map[string]string // access token -> bound client token
	used        map[string]bool
	subproto    map[string]string // mode -> subprotocol to choose ("" = highest offered, "none" = echo none)
	conns       map[string]*relayConn
	closed      bool
	reject      func(r *http.Request) (int, string)
	lastHeaders map[string]http.Header
	handshakes  atomic.Int32
	pongs       atomic.Int64 // pings answered
}

type relayConn struct {
	ws     *websocket.Conn
	mode   string
	out    chan []byte
	done   chan struct{}
	once   sync.Once
	frozen atomic.Bool // pings go unanswered
}

const (
	srcToken = "source-access-token-0123456789abcdef"
	dstToken = "destination-access-token-0123456789abcdef"
)

func newRelay(t testing.TB, tls bool, services ...string) *relay {
	r := emptyRelay(services)
	if tls {
		r.srv = httptest.NewTLSServer(http.HandlerFunc(r.handle))
	} else {
		r.srv = httptest.NewServer(http.HandlerFunc(r.handle))
	}
	t.Cleanup(r.shutdown)
	return r
}

// newMemRelay is a relay on an in-memory listener, plaintext: sessions
// made with testConfig and peers made with dialPeer reach it without the
// network, so a test can run in a testing/synctest bubble (create it
// there).
func newMemRelay(t testing.TB, services ...string) *relay {
	r := emptyRelay(services)
	r.net = &tunneltest.MemNet{}
	r.mem, r.memStop = serveMem(r.net.Listen("relay.test:80"), http.HandlerFunc(r.handle))
	t.Cleanup(r.shutdown)
	return r
}

func emptyRelay(services []string) *relay {
	return &relay{services: services, tokens: map[string]string{srcToken: "source", dstToken: "destination"},
		clientToks: map[string]string{}, used: map[string]bool{}, subproto: map[string]string{},
		conns: map[string]*relayConn{}, lastHeaders: map[string]http.Header{}}
}

// serveMem serves h on an in-memory listener until stop.
func serveMem(ln *tunneltest.MemListener, h http.Handler) (_ *tunneltest.MemListener, stop func()) {
	hs := &http.Server{Handler: h}
	var wg sync.WaitGroup
	wg.Go(func() { _ = hs.Serve(ln) })
	return ln, func() { _ = hs.Close(); wg.Wait() }
}

func (r *relay) endpoint() string {
	switch {
	case r.mem != nil:
		return "ws://" + r.mem.Addr().String()
	case r.srv.TLS != nil:
		return r.srv.Listener.Addr().String()
	}
	return "ws://" + r.srv.Listener.Addr().String()
}

// url is the relay's WebSocket URL for mode.
func (r *relay) url(mode string) string {
	if r.mem != nil {
		return "ws://" + r.mem.Addr().String() + "/tunnel?local-proxy-mode=" + mode
	}
	return strings.Replace(r.srv.URL, "http", "ws", 1) + "/tunnel?local-proxy-mode=" + mode
}

func (r *relay) pool() *x509.CertPool {
	p := x509.NewCertPool()
	if r.srv == nil || r.srv.TLS == nil {
		return p
	}
	p.AddCert(r.srv.Certificate())
	return p
}

func (r *relay) shutdown() {
	r.mu.Lock()
	for _, c := range r.conns {
		c.stop()
	}
	r.mu.Unlock()
	if r.mem != nil {
		r.memStop()
		return
	}
	r.srv.CloseClientConnections()
	r.srv.Close()
}

func (r *relay) setSubprotocol(mode, sub string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subproto[mode] = sub
}

func (r *relay) headers(mode string) http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastHeaders[mode]
}

// admit applies the token rules of PROTOCOL.md §4.
func (r *relay) admit(req *http.Request) (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastHeaders[req.URL.Query().Get("local-proxy-mode")] = req.Header.Clone()
	if r.reject != nil {
		if code, msg := r.reject(req); code != 0 {
			return code, msg
		}
	}
	if req.URL.Path != "/tunnel" {
		return 400, "bad path"
	}
	if r.closed {
		return 410, "Tunnel is closed"
	}
	tok := req.Header.Get("access-token")
	if mode, ok := r.tokens[tok]; !ok || mode != req.URL.Query().Get("local-proxy-mode") {
		return 401, "Invalid access token"
	}
	ct := req.Header.Get("client-token")
	switch bound := r.clientToks[tok]; {
	case r.used[tok] && bound == "":
		return 400, "Invalid access token: The access token was previously used and can not be used again."
	case bound != "" && bound != ct:
		return 400, "Invalid client token: The provided client token does not match the client token that was previously set."
	}
	r.used[tok] = true
	r.clientToks[tok] = ct
	return 0, ""
}

func (r *relay) handle(w http.ResponseWriter, req *http.Request) {
	r.handshakes.Add(1)
	if code, msg := r.admit(req); code != 0 {
		http.Error(w, msg, code)
		return
	}
	mode := req.URL.Query().Get("local-proxy-mode")
	r.mu.Lock()
	want := r.subproto[mode]
	r.mu.Unlock()
	var offer []string
	switch want {
	case "none":
	case "":
		offer = []string{protocol.SubprotocolV3, protocol.SubprotocolV2, protocol.SubprotocolV1}
	default:
		offer = []string{want}
	}
	up := websocket.Upgrader{Subprotocols: offer, ReadBufferSize: 64 << 10, WriteBufferSize: protocol.MaxWSMessage}
	ws, err := up.Upgrade(w, req, http.Header{"Channel-Id": {fmt.Sprintf("chan-%s-%d", mode, r.handshakes.Load())}})
	if err != nil {
		return
	}
	ws.SetReadLimit(4 * protocol.MaxWSMessage)
	c := &relayConn{ws: ws, mode: mode, out: make(chan []byte, 64), done: make(chan struct{})}
	ws.SetPingHandler(func(data string) error {
		if c.frozen.Load() {
			return nil
		}
		r.pongs.Add(1)
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "tunnel closed")
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	if old := r.conns[mode]; old != nil {
		old.stop()
	}
	r.conns[mode] = c
	r.mu.Unlock()
	if ws.Subprotocol() != protocol.SubprotocolV1 {
		f, _ := protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeServiceIDs, AvailableServiceIDs: r.services})
		c.send(f)
	}
	go c.writeLoop()
	r.readLoop(c)
}

func (r *relay) readLoop(c *relayConn) {
	defer c.stop()
	for {
		typ, rd, err := c.ws.NextReader()
		if err != nil {
			return
		}
		bp := relayBufs.Get().(*[]byte)
		data, err := readAllInto((*bp)[:0], rd)
		if err != nil || typ != websocket.BinaryMessage {
			return
		}
		peer := r.peer(c.mode)
		if peer == nil || !r.split {
			if peer == nil || !peer.send(data) {
				relayBufs.Put(bp)
			}
			continue // no peer: dropped, as the emulator does (PROTOCOL.md §10 item 3)
		}
		for len(data) > 0 {
			n := min(len(data), 1+rand.IntN(3000))
			if !peer.send(bytes.Clone(data[:n])) {
				break
			}
			data = data[n:]
		}
		relayBufs.Put(bp)
	}
}

func (r *relay) peer(mode string) *relayConn {
	other := "source"
	if mode == "source" {
		other = "destination"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[other]
}

func (c *relayConn) send(b []byte) bool {
	select {
	case c.out <- b:
		return true
	case <-c.done:
		return false
	}
}

var relayBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*protocol.MaxWSMessage); return &b }}

func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func (c *relayConn) writeLoop() {
	for {
		select {
		case b := <-c.out:
			err := c.ws.WriteMessage(websocket.BinaryMessage, b)
			if cap(b) == 2*protocol.MaxWSMessage {
				b = b[:0]
				relayBufs.Put(&b)
			}
			if err != nil {
				c.stop()
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *relayConn) stop() {
	c.once.Do(func() {
		close(c.done)
		_ = c.ws.Close()
	})
}

// conn waits for the current connection of a mode: the client may see the
// handshake complete before the handler registered the connection.
func (r *relay) conn(mode string) *relayConn {
	var c *relayConn
	tunneltest.Poll(waitFor, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		c = r.conns[mode]
		return c != nil
	})
	return c
}

// drop cuts the connection of a mode without a close frame.
func (r *relay) drop(mode string) {
	c := r.conn(mode)
	r.mu.Lock()
	if r.conns[mode] == c {
		delete(r.conns, mode)
	}
	r.mu.Unlock()
	if c != nil {
		c.stop()
	}
}

// freeze stops reading a mode's connection, so its pings go unanswered.
func (r *relay) freeze(mode string) {
	if c := r.conn(mode); c != nil {
		c.frozen.Store(true)
	}
}

// closeTunnel closes both connections with a normal close frame and
// refuses later handshakes, like CloseTunnel.
func (r *relay) closeTunnel() {
	r.mu.Lock()
	r.closed = true
	conns := r.conns
	r.conns = map[string]*relayConn{}
	r.mu.Unlock()
	for _, c := range conns {
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "tunnel closed")
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		c.stop()
	}
}

func (r *relay) connected(mode string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[mode] != nil
}

// inject sends raw frame bytes to a mode's connection as if from its peer.
func (r *relay) inject(mode string, msgs ...*protocol.Message) bool {
	c := r.conn(mode)
	if c == nil {
		return false
	}
	var b []byte
	for _, m := range msgs {
		b, _ = protocol.AppendFrame(b, m)
	}
	return c.send(b)
}
