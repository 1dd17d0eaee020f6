package tunneltest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// LPDestination is a destination peer that behaves like the AWS C++
// localproxy (v3.3.1, src/TcpAdapterProxy.cpp) where it matters to a source:
//
//   - After a STREAM_START, a CONNECTION_START that starts a stream, or a
//     STREAM_RESET, it stops processing what it has read and goes on only
//     when the next WebSocket message arrives (its handler returns false and
//     the read loop restarts with async_read_some): a DATA frame behind
//     such a frame in the same message waits for more traffic.
//   - It dials the local service synchronously, reading nothing meanwhile,
//     and answers a failed dial with STREAM_RESET, in every version.
//   - It sends no client token, and each frame as a message of its own; so
//     when its WebSocket drops, its reconnect is refused (token already
//     used) and it ends without anyone telling the source (see Run).
//
// Version picks the peer's message format: 3 (service and connection ids),
// 2 (a V2-only destination: it ignores connection ids, sends none, and
// answers CONNECTION_START, a type it does not know, with STREAM_RESET) or 1
// (a V1-only destination such as the Device Client or the Greengrass
// component: no service or connection ids, one stream at a time, unknown
// types answered with STREAM_RESET). A V3 peer that receives a STREAM_START
// or DATA without a connection id speaks V2 from then on, as the C++ proxy
// does. Every stream dials Target.
type LPDestination struct {
	Endpoint string // the data plane's host:port (wss)
	Token    string
	RootCAs  *x509.CertPool
	Version  int
	Target   string
	// Subprotocol offered; default aws.iot.securetunneling-<Version>.0.
	Subprotocol string

	// Stalled counts messages whose remaining frames had to wait for the
	// next message (the quirk took effect).
	Stalled atomic.Int64

	v2fmt   atomic.Bool     // a V3 peer reverted to the V2 format
	ws      *websocket.Conn // wmu
	wmu     sync.Mutex
	streams map[string]int32 // service id (normalised) -> current stream id
	conns   map[lpKey]net.Conn
	wg      sync.WaitGroup
	mu      sync.Mutex
	refused string // mu
}

type lpKey struct {
	service string
	conn    uint32
}

// Run connects and serves until ctx ends. When the WebSocket drops, it
// reconnects at once with the same access token and, like the C++ proxy
// without -i, no client token: the service refuses the used token with a
// 400, and Run returns nil (the C++ process logs the text and exits 0)
// with the text in Refused. Nobody tells the source.
func (d *LPDestination) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		ws, status, body, err := d.dialTunnel(ctx)
		if err != nil {
			if attempt > 0 && status >= 400 && status < 500 {
				d.mu.Lock()
				d.refused = body
				d.mu.Unlock()
				return nil
			}
			return err
		}
		d.serve(ctx, ws)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Refused returns the text of the handshake refusal that ended Run, if any.
func (d *LPDestination) Refused() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refused
}

// Drop cuts the WebSocket without a close frame, like a network failure.
func (d *LPDestination) Drop() {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.ws != nil {
		_ = d.ws.NetConn().Close()
	}
}

func (d *LPDestination) dialTunnel(ctx context.Context) (*websocket.Conn, int, string, error) {
	sub := d.Subprotocol
	if sub == "" {
		sub = fmt.Sprintf("aws.iot.securetunneling-%d.0", d.Version)
	}
	dialer := websocket.Dialer{Subprotocols: []string{sub}, TLSClientConfig: &tls.Config{RootCAs: d.RootCAs},
		HandshakeTimeout: 10 * time.Second}
	ws, resp, err := dialer.DialContext(ctx, "wss://"+d.Endpoint+"/tunnel?local-proxy-mode=destination",
		http.Header{"access-token": {d.Token}})
	if err != nil {
		if resp == nil {
			return nil, 0, "", fmt.Errorf("lp destination: dial: %w", err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, resp.StatusCode, string(b), fmt.Errorf("lp destination: dial: %w (HTTP %d: %s)", err, resp.StatusCode, b)
	}
	return ws, 0, "", nil
}

// serve runs one WebSocket until it fails or ctx ends, then closes every
// local connection (the C++ proxy rebuilds its whole state).
func (d *LPDestination) serve(ctx context.Context, ws *websocket.Conn) {
	d.wmu.Lock()
	d.ws = ws
	d.wmu.Unlock()
	d.mu.Lock()
	d.streams, d.conns = map[string]int32{}, map[lpKey]net.Conn{}
	d.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	defer stop()
	_ = d.readLoop(ws)
	_ = ws.Close()
	d.mu.Lock()
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *LPDestination) readLoop(ws *websocket.Conn) error {
	var buf []byte
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return err
		}
		buf = append(buf, msg...)
		for len(buf) >= protocol.LengthSize {
			n := int(binary.BigEndian.Uint16(buf))
			if len(buf) < protocol.LengthSize+n {
				break
			}
			var m protocol.Message
			if err := m.Unmarshal(buf[protocol.LengthSize : protocol.LengthSize+n]); err != nil {
				return fmt.Errorf("lp destination: %w", err)
			}
			buf = buf[protocol.LengthSize+n:]
			if d.handle(&m) {
				if len(buf) > 0 {
					d.Stalled.Add(1)
				}
				break // the C++ quirk: the rest waits for the next message
			}
		}
		buf = append([]byte(nil), buf...)
	}
}

// handle processes one message and reports whether reading pauses.
func (d *LPDestination) handle(m *protocol.Message) bool {
	if d.Version == 3 && m.ConnectionID == 0 && (m.Type == protocol.TypeStreamStart || m.Type == protocol.TypeData) {
		d.v2fmt.Store(true) // "reverting to v2 message format", for the rest of the process
	}
	svc, cid := m.ServiceID, max(m.ConnectionID, 1)
	if d.ver() < 3 {
		cid = 1
	}
	if d.ver() < 2 {
		svc = ""
	}
	d.mu.Lock()
	cur := d.streams[svc]
	d.mu.Unlock()
	switch m.Type {
	case protocol.TypeStreamStart:
		d.closeStream(svc)
		d.mu.Lock()
		d.streams[svc] = m.StreamID
		d.mu.Unlock()
		d.dial(svc, m.StreamID, cid)
		return true
	case protocol.TypeConnectionStart:
		if d.ver() < 3 {
			d.send(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: m.StreamID, ServiceID: d.out(svc)})
			d.closeStream(svc)
			return false
		}
		if cur == 0 {
			d.mu.Lock()
			d.streams[svc] = m.StreamID
			d.mu.Unlock()
			d.dial(svc, m.StreamID, cid)
			return true
		}
		if cur == m.StreamID {
			d.dial(svc, m.StreamID, cid)
		}
	case protocol.TypeData:
		if cur == 0 || cur != m.StreamID {
			return false // stale
		}
		d.mu.Lock()
		c := d.conns[lpKey{svc, cid}]
		d.mu.Unlock()
		if c != nil {
			_, _ = c.Write(m.Payload)
		}
	case protocol.TypeStreamReset:
		if cur != 0 && cur == m.StreamID {
			d.closeStream(svc)
			return true
		}
	case protocol.TypeConnectionReset:
		if d.ver() < 3 {
			d.send(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: m.StreamID, ServiceID: d.out(svc)})
			d.closeStream(svc)
			return false
		}
		d.mu.Lock()
		c := d.conns[lpKey{svc, cid}]
		delete(d.conns, lpKey{svc, cid})
		d.mu.Unlock()
		if c != nil {
			_ = c.Close()
		}
	case protocol.TypeSessionReset:
		d.mu.Lock()
		svcs := make([]string, 0, len(d.streams))
		for s := range d.streams {
			svcs = append(svcs, s)
		}
		d.mu.Unlock()
		for _, s := range svcs {
			d.closeStream(s)
		}
	}
	return false
}

// ver is the message format the peer speaks now.
func (d *LPDestination) ver() int {
	if d.v2fmt.Load() {
		return 2
	}
	return d.Version
}

// out is the service id the peer stamps on what it sends.
func (d *LPDestination) out(svc string) string {
	if d.ver() < 2 {
		return ""
	}
	return svc
}

func (d *LPDestination) closeStream(svc string) {
	d.mu.Lock()
	delete(d.streams, svc)
	var cs []net.Conn
	for k, c := range d.conns {
		if k.service == svc {
			cs = append(cs, c)
			delete(d.conns, k)
		}
	}
	d.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// dial connects the local service synchronously, as the C++ proxy does.
func (d *LPDestination) dial(svc string, sid int32, cid uint32) {
	c, err := net.DialTimeout("tcp", d.Target, 5*time.Second)
	if err != nil {
		d.send(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: sid, ServiceID: d.out(svc)})
		d.closeStream(svc)
		return
	}
	k := lpKey{svc, cid}
	d.mu.Lock()
	if old := d.conns[k]; old != nil {
		_ = old.Close()
	}
	d.conns[k] = c
	d.mu.Unlock()
	d.wg.Go(func() { d.readLocal(k, sid, c) })
}

// readLocal turns what the local service sends into DATA, and its EOF into
// CONNECTION_RESET (V3) or STREAM_RESET.
func (d *LPDestination) readLocal(k lpKey, sid int32, c net.Conn) {
	wireConn := k.conn
	if d.ver() < 3 {
		wireConn = 0
	}
	buf := make([]byte, protocol.MaxPayload)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			d.send(&protocol.Message{Type: protocol.TypeData, StreamID: sid, ServiceID: d.out(k.service), ConnectionID: wireConn, Payload: buf[:n]})
		}
		if err != nil {
			break
		}
	}
	d.mu.Lock()
	mine := d.conns[k] == c
	if mine {
		delete(d.conns, k)
	}
	d.mu.Unlock()
	_ = c.Close()
	if !mine {
		return // closed by a reset from the source
	}
	if d.ver() >= 3 {
		d.send(&protocol.Message{Type: protocol.TypeConnectionReset, StreamID: sid, ServiceID: k.service, ConnectionID: k.conn})
		return
	}
	d.send(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: sid, ServiceID: d.out(k.service)})
	d.mu.Lock()
	if d.streams[k.service] == sid {
		delete(d.streams, k.service)
	}
	d.mu.Unlock()
}

// send writes m as a WebSocket message of its own.
func (d *LPDestination) send(m *protocol.Message) {
	b, err := protocol.AppendFrame(nil, m)
	if err != nil {
		return
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_ = d.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := d.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		_ = d.ws.Close()
	}
}
