package tunnel

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// msgPeer is a destination peer that keeps the WebSocket message each frame
// came in, to check how the session groups frames into messages.
type msgPeer struct {
	ws   *websocket.Conn
	mu   sync.Mutex
	msgs [][]protocol.Message
	done chan struct{}
}

func dialMsgPeer(t *testing.T, r *relay) *msgPeer {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol.SubprotocolV3}, TLSClientConfig: &tls.Config{RootCAs: r.pool()}}
	u := strings.Replace(r.srv.URL, "http", "ws", 1) + "/tunnel?local-proxy-mode=destination"
	ws, _, err := d.Dial(u, http.Header{"access-token": {dstToken}, "client-token": {"peer-client-token-0123456789abcdef0123"}})
	if err != nil {
		t.Fatalf("peer dial: %v", err)
	}
	if r.conn("destination") == nil {
		t.Fatal("relay never registered the destination peer")
	}
	p := &msgPeer{ws: ws, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			fr := protocol.NewFrameReader(bytes.NewReader(b))
			var frames []protocol.Message
			for {
				var m protocol.Message
				if fr.ReadMessage(&m) != nil {
					break
				}
				m.Payload = bytes.Clone(m.Payload)
				frames = append(frames, m)
			}
			p.mu.Lock()
			p.msgs = append(p.msgs, frames)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = ws.Close(); <-p.done })
	return p
}

// check reports a frame that should have ended its message but did not,
// and counts the frames of type typ.
func (p *msgPeer) check(typ protocol.Type) (bad string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, frames := range p.msgs {
		for j, m := range frames {
			if m.Type == typ {
				n++
			}
			if endsMessage(m.Type) && j != len(frames)-1 {
				bad = fmt.Sprintf("message %d: %v is frame %d of %d (followed by %v)", i, m.Type, j+1, len(frames), frames[j+1].Type)
			}
		}
	}
	return bad, n
}

// TestStartEndsMessage: a STREAM_START or CONNECTION_START (and a
// STREAM_RESET) is the last frame of its WebSocket message, even when the
// client's first bytes are read at once, in V3 and V2 formats. The C++
// destination processes nothing after such a frame until the next message.
func TestStartEndsMessage(t *testing.T) {
	for _, clientType := range []string{"", "V2"} {
		t.Run("type="+clientType, func(t *testing.T) {
			r := newRelay(t, true, "SSH")
			p := dialMsgPeer(t, r)
			cfg := testConfig(r, ModeSource, map[string]string{"SSH": "127.0.0.1:0"})
			cfg.DestinationClientType = clientType
			s := start(t, cfg)
			waitUntil(t, "ready", func() bool { return s.s.waitLink(t.Context(), 0) != nil })
			const clients = 40
			var wg sync.WaitGroup
			for i := range clients {
				wg.Go(func() {
					c, err := net.Dial("tcp", s.s.Addr("SSH").String())
					if err != nil {
						t.Error(err)
						return
					}
					defer func() { _ = c.Close() }()
					_, _ = fmt.Fprintf(c, "request %d", i)
				})
				if clientType == "V2" {
					wg.Wait()
				}
			}
			wg.Wait()
			waitUntil(t, "every client's data", func() bool { _, n := p.check(protocol.TypeData); return n >= clients })
			if bad, _ := p.check(protocol.TypeData); bad != "" {
				t.Fatal(bad)
			}
		})
	}
}
