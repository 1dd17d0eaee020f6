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
	l.serveSource(service, c)
}

// sourceVersion is the message format toward the destination: the
// configured client type (auto = V3), capped by the negotiated subprotocol
// and by a destination that proved to be V2 (see peerVersion).
func (l *link) sourceVersionLocked() protocol.Version {
	v := l.s.version
	if v == 0 {
		v = protocol.V3
		if l.streams.peer == peerV2 {
			v = protocol.V2
		}
	}
	return min(v, l.version)
}

func (l *link) serveSource(service string, c net.Conn) {
	l.streams.mu.Lock()
	v := l.sourceVersionLocked()
	if service == Unnamed && v.HasServiceIDs() {
		// The unnamed mapping is the tunnel's only service.
		if len(l.streams.serviceIDs) != 1 {
			l.streams.mu.Unlock()
			l.rate.warn(warnUnnamedSrc, "refusing a local connection: the unnamed service mapping needs a tunnel with exactly one service; name the services to forward (e.g. SSH=2222)",
				logServiceID, l.streams.serviceIDs)
			_ = c.Close()
			return
		}
		service = l.streams.serviceIDs[0]
	}
	if v.HasServiceIDs() && len(l.streams.serviceIDs) > 0 && !slices.Contains(l.streams.serviceIDs, service) {
		l.streams.mu.Unlock()
		// The service would close the WebSocket for an undefined service id.
		l.rate.warn(warnNotInTunnel, "refusing a local connection: the tunnel has no such service; open the tunnel with it",
			logService, service, logServiceID, l.streams.serviceIDs)
		_ = c.Close()
		return
	}
	slot := l.streams.slots[service]
	if slot == nil {
		slot = make(chan struct{}, 1)
		l.streams.slots[service] = slot
	}
	l.streams.mu.Unlock()
	if !v.HasConnectionIDs() {
		// V1/V2 carry one connection per stream: later clients wait their turn.
		select {
		case slot <- struct{}{}:
			defer func() { <-slot }()
		case <-l.ctx.Done():
			_ = c.Close()
			return
		}
	}
	l.startMu.Lock()
	f, start := l.registerSource(service, v, c)
	if f == nil {
		l.startMu.Unlock()
		_ = c.Close()
		return
	}
	sent := l.w.send(start)
	l.startMu.Unlock()
	if sent {
		f.opened()
	} else {
		f.abort("the tunnel WebSocket closed")
	}
	f.run()
}

// registerSource creates the stream or V3 connection for a new client and
// returns it with the STREAM_START or CONNECTION_START that announces it.
func (l *link) registerSource(service string, v protocol.Version, c net.Conn) (*localConn, *protocol.Message) {
	l.streams.mu.Lock()
	defer l.streams.mu.Unlock()
	wire := service
	if v == protocol.V1 {
		wire = ""
	}
	st := l.streams.byService[wire]
	if st != nil && (!v.HasConnectionIDs() || !st.v3) {
		l.streams.closeStreamLocked(st, "replaced by a new stream")
		st = nil
	}
	typ := protocol.TypeConnectionStart
	if st == nil {
		id := l.streams.nextStream[service] + 1
		if id <= 0 {
			id = 1
		}
		l.streams.nextStream[service] = id
		st = &stream{wire: wire, sendID: wire, service: service, id: id, v3: v.HasConnectionIDs(), conns: map[uint32]*localConn{}}
		l.streams.byService[wire] = st
		typ = protocol.TypeStreamStart
	}
	st.nextConn++
	f := l.newLocalConnLocked(st, st.nextConn)
	if f == nil {
		return nil, nil
	}
	f.local = c.RemoteAddr().String()
	f.q.setConn(c)
	f.q.setStateLocked(connOpen) // an accepted client needs no dial
	return f, &protocol.Message{Type: typ, StreamID: st.id, ServiceID: wire, ConnectionID: f.wireConn()}
}
