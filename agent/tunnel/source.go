package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// listen binds one listener per service (source mode).
func (s *Session) listen() error {
	s.listeners = map[string]net.Listener{}
	for id, addr := range s.cfg.Services {
		network := "tcp"
		if path, ok := strings.CutPrefix(addr, "unix:"); ok {
			network, addr = "unix", path
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen for service %s on %s: %w", id, addr, err)
		}
		s.listeners[id] = ln
		s.log.Info("listening for tunnel service", logService, id, logListen, ln.Addr().String())
	}
	return nil
}

// acceptLoops serves the listeners until ctx ends.
func (s *Session) acceptLoops(ctx context.Context, wg *sync.WaitGroup) {
	for id, ln := range s.listeners {
		wg.Go(func() { s.acceptLoop(ctx, wg, id, ln) })
	}
}

func (s *Session) acceptLoop(ctx context.Context, wg *sync.WaitGroup, service string, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", logService, service, logErr, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		wg.Go(func() { s.handleAccepted(ctx, service, c) })
	}
}

// handleAccepted carries one local client over the tunnel. While the
// tunnel is down, the client waits up to DialTimeout for it, then is refused.
func (s *Session) handleAccepted(ctx context.Context, service string, c net.Conn) {
	l := s.waitLink(ctx, s.cfg.DialTimeout)
	if l == nil {
		s.log.Warn("refusing a local connection: the tunnel is not connected", logService, service, logLocal, c.RemoteAddr().String())
		_ = c.Close()
		return
	}
	l.src.serveClient(service, c)
}

// sourceSide is a link's source role: it turns each accepted local client
// into a STREAM_START or, on a V3 stream, a CONNECTION_START, numbering
// streams and connections, and makes V1/V2 clients of one service wait
// their turn. Its streams, numbering and slots are in the link's
// streamTable, under its mu.
//
// startMu makes registering a client and queueing its STREAM_START or
// CONNECTION_START one step, so that clients accepted at the same moment
// announce themselves in the order they were numbered (a CONNECTION_START
// overtaking its STREAM_START is dropped by the peer). Lock order: startMu,
// then the streamTable's mu, then the write path's locks; send may wait for
// room under startMu (see writePath).
type sourceSide struct {
	l       *link
	startMu sync.Mutex
}

// versionLocked is the message format toward the destination: the
// configured client type (auto = V3), capped by the negotiated subprotocol
// and by a destination that proved to be V2 (see peerVersion).
func (src *sourceSide) versionLocked() protocol.Version {
	v := src.l.s.version
	if v == 0 {
		v = protocol.V3
		if src.l.streams.peer == peerV2 {
			v = protocol.V2
		}
	}
	return min(v, src.l.version)
}

// serveClient carries one accepted local client of service over the
// tunnel until it ends.
func (src *sourceSide) serveClient(service string, c net.Conn) {
	src.l.streams.mu.Lock()
	v := src.versionLocked()
	if service == Unnamed && v.HasServiceIDs() {
		// The unnamed mapping is the tunnel's only service.
		if len(src.l.streams.serviceIDs) != 1 {
			src.l.streams.mu.Unlock()
			src.l.rate.warn(warnUnnamedSrc, "refusing a local connection: the unnamed service mapping needs a tunnel with exactly one service; name the services to forward (e.g. SSH=2222)",
				logServiceID, src.l.streams.serviceIDs)
			_ = c.Close()
			return
		}
		service = src.l.streams.serviceIDs[0]
	}
	if v.HasServiceIDs() && len(src.l.streams.serviceIDs) > 0 && !slices.Contains(src.l.streams.serviceIDs, service) {
		src.l.streams.mu.Unlock()
		// The service would close the WebSocket for an undefined service id.
		src.l.rate.warn(warnNotInTunnel, "refusing a local connection: the tunnel has no such service; open the tunnel with it",
			logService, service, logServiceID, src.l.streams.serviceIDs)
		_ = c.Close()
		return
	}
	slot := src.l.streams.slots[service]
	if slot == nil {
		slot = make(chan struct{}, 1)
		src.l.streams.slots[service] = slot
	}
	src.l.streams.mu.Unlock()
	var release func() // gives the turn to the next client
	if !v.HasConnectionIDs() {
		// V1/V2 carry one connection per stream: later clients wait their turn.
		select {
		case slot <- struct{}{}:
			release = func() { <-slot }
		case <-src.l.ctx.Done():
			_ = c.Close()
			return
		}
	}
	src.startMu.Lock()
	f, start := src.register(service, v, c)
	if f == nil {
		src.startMu.Unlock()
		_ = c.Close()
		if release != nil {
			release()
		}
		return
	}
	f.release = release // the connection may outlive this goroutine (see readLocal)
	sent := src.l.w.send(start)
	src.startMu.Unlock()
	if sent {
		f.opened()
	} else {
		f.abort("the tunnel WebSocket closed")
	}
	f.run()
}

// register creates the stream or V3 connection for a new client and
// returns it with the STREAM_START or CONNECTION_START that announces it.
func (src *sourceSide) register(service string, v protocol.Version, c net.Conn) (*localConn, *protocol.Message) {
	src.l.streams.mu.Lock()
	defer src.l.streams.mu.Unlock()
	wire := service
	if v == protocol.V1 {
		wire = ""
	}
	st := src.l.streams.byService[wire]
	if st != nil && (!v.HasConnectionIDs() || !st.v3) {
		src.l.streams.closeStreamLocked(st, "replaced by a new stream")
		st = nil
	}
	typ := protocol.TypeConnectionStart
	if st == nil {
		id := src.l.streams.nextStream[service] + 1
		if id <= 0 {
			id = 1
		}
		src.l.streams.nextStream[service] = id
		st = &stream{wire: wire, sendID: wire, service: service, id: id, v3: v.HasConnectionIDs(), conns: map[uint32]*localConn{}}
		src.l.streams.byService[wire] = st
		typ = protocol.TypeStreamStart
	}
	st.nextConn++
	f := src.l.newLocalConnLocked(st, st.nextConn)
	if f == nil {
		return nil, nil
	}
	f.local = c.RemoteAddr().String()
	f.q.setConn(c)
	f.q.setStateLocked(connOpen) // an accepted client needs no dial
	return f, &protocol.Message{Type: typ, StreamID: st.id, ServiceID: wire, ConnectionID: f.wireConn()}
}
