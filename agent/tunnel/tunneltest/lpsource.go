package tunneltest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// LPSource is a source peer that behaves like the AWS C++ localproxy 3.3.1
// in source mode (-s), for one service:
//
//   - It offers subprotocol aws.iot.securetunneling-3.0 whatever Version
//     (-y) says; Version only shapes its messages: 3 (connection ids:
//     STREAM_START, then CONNECTION_START for more clients), 2 (no
//     connection ids: a STREAM_START and a STREAM_RESET per client, one
//     client at a time) or 1 (as 2, without service ids either).
//   - It listens only after SERVICE_IDS, with a backlog of 0.
//   - After a STREAM_RESET it processes nothing more of what it read until
//     the next WebSocket message arrives.
//   - Each frame goes in a message of its own.
type LPSource struct {
	Endpoint string // the data plane's host:port (wss)
	Token    string
	RootCAs  *x509.CertPool
	Version  int
	Service  string

	ready chan string // the listening address, once

	ws     *websocket.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	sid    int32 // current stream id (0: none)
	nextID int32
	nextC  uint32
	conns  map[uint32]net.Conn
	wg     sync.WaitGroup
}

// Addr waits until the source listens and returns its address.
func (s *LPSource) Addr(ctx context.Context) (string, error) {
	select {
	case a := <-s.ready:
		s.ready <- a
		return a, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Start connects and serves in the background until ctx ends; wait
// returns when everything has stopped.
func (s *LPSource) Start(ctx context.Context) (wait func(), err error) {
	s.ready = make(chan string, 1)
	s.conns = map[uint32]net.Conn{}
	d := websocket.Dialer{Subprotocols: []string{protocol.SubprotocolV3}, TLSClientConfig: &tls.Config{RootCAs: s.RootCAs},
		HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.DialContext(ctx, "wss://"+s.Endpoint+"/tunnel?local-proxy-mode=source", http.Header{"access-token": {s.Token}})
	if err != nil {
		return nil, fmt.Errorf("lp source: dial: %w", err)
	}
	s.ws = ws
	var g sync.WaitGroup
	g.Go(func() {
		<-ctx.Done()
		_ = ws.Close()
	})
	g.Go(func() { s.readLoop(ctx) })
	return func() { g.Wait(); s.wg.Wait() }, nil
}

func (s *LPSource) readLoop(ctx context.Context) {
	var buf []byte
	var ln net.Listener
	defer func() {
		if ln != nil {
			_ = ln.Close()
		}
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
	}()
	for {
		_, msg, err := s.ws.ReadMessage()
		if err != nil {
			return
		}
		buf = append(buf, msg...)
		for len(buf) >= protocol.LengthSize {
			n := int(binary.BigEndian.Uint16(buf))
			if len(buf) < protocol.LengthSize+n {
				break
			}
			var m protocol.Message
			if m.Unmarshal(buf[protocol.LengthSize:protocol.LengthSize+n]) != nil {
				return
			}
			buf = buf[protocol.LengthSize+n:]
			if m.Type == protocol.TypeServiceIDs && ln == nil {
				if ln, err = ListenBacklog0(); err != nil {
					return
				}
				s.ready <- ln.Addr().String()
				s.wg.Go(func() { s.acceptLoop(ctx, ln) })
			}
			if s.handle(&m) {
				break // the C++ quirk: the rest waits for the next message
			}
		}
		buf = append([]byte(nil), buf...)
	}
}

// handle processes one message from the destination and reports whether
// reading pauses.
func (s *LPSource) handle(m *protocol.Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sid == 0 || m.StreamID != s.sid {
		return false
	}
	cid := max(m.ConnectionID, 1)
	switch m.Type {
	case protocol.TypeData:
		if c := s.conns[cid]; c != nil {
			_, _ = c.Write(m.Payload)
		}
	case protocol.TypeConnectionReset:
		if c := s.conns[cid]; c != nil {
			_ = c.Close()
			delete(s.conns, cid)
		}
	case protocol.TypeStreamReset:
		for id, c := range s.conns {
			_ = c.Close()
			delete(s.conns, id)
		}
		s.sid = 0
		return true
	}
	return false
}

func (s *LPSource) acceptLoop(ctx context.Context, ln net.Listener) {
	for ctx.Err() == nil {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		cid, start := s.register(c)
		s.send(start)
		if s.Version >= 3 {
			s.wg.Go(func() { s.readLocal(c, start.StreamID, cid) })
			continue
		}
		s.readLocal(c, start.StreamID, cid) // V1/V2: one client at a time
	}
}

// register makes c the next connection and returns the message that
// announces it.
func (s *LPSource) register(c net.Conn) (uint32, *protocol.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := s.Service
	if s.Version < 2 {
		svc = ""
	}
	if s.Version >= 3 && s.sid != 0 {
		s.nextC++
		s.conns[s.nextC] = c
		return s.nextC, &protocol.Message{Type: protocol.TypeConnectionStart, StreamID: s.sid, ServiceID: svc, ConnectionID: s.nextC}
	}
	s.nextID++
	s.sid, s.nextC = s.nextID, 1
	s.conns[1] = c
	m := &protocol.Message{Type: protocol.TypeStreamStart, StreamID: s.sid, ServiceID: svc}
	if s.Version >= 3 {
		m.ConnectionID = 1
	}
	return 1, m
}

// readLocal turns a client's bytes into DATA and its end into
// CONNECTION_RESET (V3) or STREAM_RESET.
func (s *LPSource) readLocal(c net.Conn, sid int32, cid uint32) {
	svc, wireConn := s.Service, cid
	if s.Version < 3 {
		wireConn = 0
	}
	if s.Version < 2 {
		svc = ""
	}
	buf := make([]byte, protocol.MaxPayload)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			s.send(&protocol.Message{Type: protocol.TypeData, StreamID: sid, ServiceID: svc, ConnectionID: wireConn, Payload: buf[:n]})
		}
		if err != nil {
			break
		}
	}
	_ = c.Close()
	s.mu.Lock()
	mine := s.sid == sid && s.conns[cid] == c
	if mine {
		delete(s.conns, cid)
		if s.Version < 3 {
			s.sid = 0
		}
	}
	s.mu.Unlock()
	if !mine {
		return
	}
	if s.Version >= 3 {
		s.send(&protocol.Message{Type: protocol.TypeConnectionReset, StreamID: sid, ServiceID: svc, ConnectionID: cid})
		return
	}
	s.send(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: sid, ServiceID: svc})
}

func (s *LPSource) send(m *protocol.Message) {
	b, err := protocol.AppendFrame(nil, m)
	if err != nil {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if s.ws.WriteMessage(websocket.BinaryMessage, b) != nil {
		_ = s.ws.Close()
	}
}

// ListenBacklog0 listens on 127.0.0.1, port chosen by the system, with a
// backlog of 0 as the C++ localproxy does: the kernel queues one finished
// handshake and drops further SYNs until it is accepted.
func ListenBacklog0() (net.Listener, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "backlog0")
	defer f.Close()
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return nil, err
	}
	if err := syscall.Listen(fd, 0); err != nil {
		return nil, err
	}
	return net.FileListener(f)
}
