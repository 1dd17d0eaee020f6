package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// rawSource is the bench playing a hostile source over the emulator's data
// plane: it writes frames batched into messages and counts the resets the
// agent answers with.
type rawSource struct {
	ws      *websocket.Conn
	buf     []byte
	resets  atomic.Int64
	marked  chan struct{}
	done    chan struct{}
	readErr error
	once    sync.Once
}

// hostileSource opens a second tunnel with the STUCK service, waits for the
// agent to connect and connects to it as the source.
func (b *bench) hostileSource(ctx context.Context, st *stack) (*rawSource, error) {
	tun, err := st.api.openTunnel(ctx, benchThing, []string{svcStuck})
	if err != nil {
		return nil, fmt.Errorf("open the hostile tunnel: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := st.api.waitConnected(wctx, tun.TunnelID, false); err != nil {
		return nil, fmt.Errorf("the agent did not connect to the hostile tunnel: %w", err)
	}
	pem, err := os.ReadFile(st.info.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	ep := st.info.Data
	if !strings.Contains(ep, "://") {
		ep = "wss://" + ep
	}
	d := websocket.Dialer{Subprotocols: []string{protocol.SubprotocolV3}, TLSClientConfig: &tls.Config{RootCAs: pool}}
	h := http.Header{"access-token": {tun.SourceAccessToken}, "client-token": {"hostile-bench-" + strings.ReplaceAll(tun.TunnelID, "_", "-")}}
	ws, resp, err := d.DialContext(wctx, ep+"/tunnel?local-proxy-mode=source", h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			err = fmt.Errorf("%w (HTTP %d: %s)", err, resp.StatusCode, body)
		}
		return nil, fmt.Errorf("connect as the hostile source: %w", err)
	}
	s := &rawSource{ws: ws, marked: make(chan struct{}, 1), done: make(chan struct{})}
	go s.read()
	return s, nil
}

const markService = "END-OF-DRILL"

func (s *rawSource) read() {
	defer close(s.done)
	fr := protocol.NewFrameReader(&msgReader{ws: s.ws})
	var m protocol.Message
	for {
		if err := fr.ReadMessage(&m); err != nil {
			s.readErr = err
			return
		}
		switch {
		case m.ServiceID == markService:
			s.marked <- struct{}{}
		case m.Type == protocol.TypeConnectionReset || m.Type == protocol.TypeStreamReset:
			s.resets.Add(1)
		}
	}
}

// send queues m, writing a message when enough is queued.
func (s *rawSource) send(m *protocol.Message) {
	s.buf, _ = protocol.AppendFrame(s.buf, m)
	if len(s.buf) > protocol.MaxWSMessage-protocol.MaxFrameBody {
		s.flush()
	}
}

func (s *rawSource) flush() {
	if len(s.buf) > 0 {
		_ = s.ws.SetWriteDeadline(time.Now().Add(time.Minute))
		_ = s.ws.WriteMessage(websocket.BinaryMessage, s.buf)
		s.buf = s.buf[:0]
	}
}

// mark sends a STREAM_START for an unknown service and waits for its reset:
// the agent answers in order, so everything sent before was handled.
func (s *rawSource) mark(ctx context.Context) error {
	s.send(&protocol.Message{Type: protocol.TypeStreamStart, StreamID: 1, ServiceID: markService})
	s.flush()
	t := time.NewTimer(2 * time.Minute)
	defer t.Stop()
	select {
	case <-s.marked:
		return nil
	case <-s.done:
		return fmt.Errorf("the hostile source's connection ended: %w", s.readErr)
	case <-t.C:
		return errors.New("the agent did not answer the end-of-drill marker within 2 minutes")
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (s *rawSource) close() {
	s.once.Do(func() {
		_ = s.ws.Close()
		<-s.done
	})
}

// msgReader reads the binary messages of a WebSocket as one stream.
type msgReader struct {
	ws *websocket.Conn
	r  io.Reader
}

func (m *msgReader) Read(p []byte) (int, error) {
	for {
		if m.r == nil {
			_, r, err := m.ws.NextReader()
			if err != nil {
				return 0, err
			}
			m.r = r
		}
		n, err := m.r.Read(p)
		if errors.Is(err, io.EOF) {
			m.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}
