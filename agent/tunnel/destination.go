package tunnel

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// resolveService maps a service id from the wire to a configured one. A V1
// peer sends none: it gets the only mapped service or, with several, the
// only service the tunnel announced.
func (l *link) resolveService(wire string) (string, bool) {
	svcs := l.s.services()
	if wire != "" {
		if _, ok := svcs[wire]; ok {
			return wire, true
		}
		return wire, l.unnamedIsLocked(wire)
	}
	if len(svcs) == 1 {
		for id := range svcs {
			return id, true
		}
	}
	if len(l.serviceIDs) == 1 {
		_, ok := svcs[l.serviceIDs[0]]
		return l.serviceIDs[0], ok
	}
	return "", false
}

// unnamedIsLocked reports whether the unnamed mapping stands for the
// service id: it is configured and the tunnel announced that id alone.
func (l *link) unnamedIsLocked(id string) bool {
	_, unnamed := l.s.services()[Unnamed]
	return unnamed && len(l.serviceIDs) == 1 && l.serviceIDs[0] == id
}

// localAddr is the address mapped to a service id, or to the unnamed
// mapping when the id has none of its own.
func localAddr(services map[string]string, service string) string {
	if addr, ok := services[service]; ok {
		return addr
	}
	return services[Unnamed]
}

func (l *link) onStreamStart(m *protocol.Message) {
	if m.StreamID == 0 {
		l.warn(warnStartID0, "ignoring STREAM_START with stream id 0", logService, peerString(m.ServiceID))
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	service, ok := l.resolveService(m.ServiceID)
	if !ok {
		l.warnUnmapped(m.ServiceID)
		l.w.sendCtrl(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: m.StreamID, ServiceID: l.outService(m.ServiceID)})
		return
	}
	if old := l.streams[m.ServiceID]; old != nil {
		// A new stream replaces the active one at once (PROTOCOL.md §6.2).
		l.closeStreamLocked(old, "replaced by a new stream")
	}
	// Our own connection's subprotocol bounds what we may send: no service
	// id on 1.0, no connection id or CONNECTION_* on 1.0/2.0.
	st := &stream{wire: m.ServiceID, sendID: l.outService(m.ServiceID), service: service, id: m.StreamID,
		v3: m.ConnectionID != 0 && l.version.HasConnectionIDs(), conns: map[uint32]*localConn{}}
	l.streams[m.ServiceID] = st
	l.startDialLocked(st, max(m.ConnectionID, 1))
}

// outService is the service id to stamp on messages we send: none on a 1.0
// WebSocket, whose schema has no field 5.
func (l *link) outService(wire string) string {
	if !l.version.HasServiceIDs() {
		return ""
	}
	return wire
}

func (l *link) warnUnmapped(wire string) {
	if wire == "" {
		l.warn(warnUnmappedV1, "refusing a stream without a service id: several services are mapped and the tunnel does not name exactly one; map a single service to serve V1 peers")
		return
	}
	l.warn(warnUnmapped, "refusing a stream: the service is not in the agent's services map; add it to allow it", logService, peerString(wire))
}

func (l *link) onConnectionStart(m *protocol.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.lookup(m)
	if st == nil {
		return // not the current stream
	}
	if m.ConnectionID == 0 {
		l.warn(warnConnID0, "ignoring CONNECTION_START with connection id 0", logService, st.service, logStream, st.id)
		return
	}
	if !st.v3 {
		l.refuseConnectionStartLocked(st, m.ConnectionID)
		return
	}
	if f := st.conns[m.ConnectionID]; f != nil {
		l.warn(warnConnReused, "the peer started a connection id that is already active: resetting it", logService, st.service, logConn, m.ConnectionID)
		l.unregisterLocked(f)
		l.w.sendCtrl(f.resetMessage())
		f.abort("connection id reused by the peer")
		return
	}
	if f := l.startDialLocked(st, m.ConnectionID); f != nil {
		f.fromConnStart = true
	}
}

// refuseConnectionStartLocked answers a CONNECTION_START on a stream that
// carries no connection ids. On a 3.0 WebSocket (the source started the
// stream V2-style) that connection alone is refused. On 1.0/2.0 we act as a
// V2 destination does (PROTOCOL.md §6.7): STREAM_RESET, which tells an
// automatic source to fall back to one connection per stream.
func (l *link) refuseConnectionStartLocked(st *stream, cid uint32) {
	if l.version.HasConnectionIDs() {
		l.warn(warnConnStartV2, "refusing CONNECTION_START on a stream started without a connection id",
			logService, st.service, logStream, st.id, logConn, cid)
		l.w.sendCtrl(&protocol.Message{Type: protocol.TypeConnectionReset, StreamID: st.id, ServiceID: st.sendID, ConnectionID: cid})
		return
	}
	l.warn(warnConnStartV2, "resetting the stream on CONNECTION_START: this WebSocket speaks a subprotocol without connection ids",
		logService, st.service, logStream, st.id, logSubproto, l.ws.Subprotocol())
	l.w.sendCtrl(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: st.id, ServiceID: st.sendID})
	l.closeStreamLocked(st, "stream reset: multiple connections need subprotocol 3.0")
}

// startDialLocked registers a connection and dials its local address in
// the background; DATA that arrives meanwhile waits in its queue. Over
// MaxConnections or the agent-wide cap the connection is refused with its
// reset (the stream's, for the first connection of a stream) and nil.
func (l *link) startDialLocked(st *stream, cid uint32) *localConn {
	if !l.takeConnLocked(st) {
		if st.v3 && len(st.conns) > 0 {
			l.w.sendCtrl(&protocol.Message{Type: protocol.TypeConnectionReset, StreamID: st.id, ServiceID: st.sendID, ConnectionID: cid})
			return nil
		}
		l.w.sendCtrl(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: st.id, ServiceID: st.sendID})
		if l.streams[st.wire] == st && len(st.conns) == 0 {
			delete(l.streams, st.wire)
		}
		return nil
	}
	f := l.newLocalConnLocked(st, cid)
	if f == nil {
		l.s.cfg.Limits.releaseConn()
		return nil
	}
	f.counted = true
	f.local = localAddr(l.s.services(), st.service)
	go func() {
		conn, err := l.dialLimited(f.ctx, f.local)
		if err != nil {
			l.dialFailed(f, err)
			return
		}
		if !f.attach(conn) {
			_ = conn.Close()
			f.finish(nil)
			return
		}
		f.opened()
		// A new goroutine for the relay: the dial grew this one's stack,
		// which an idle connection would otherwise hold.
		go f.run()
	}()
	return f
}

// takeConnLocked counts a new local connection against MaxConnections
// (this tunnel) and the shared Limits, or logs why it cannot.
func (l *link) takeConnLocked(st *stream) bool {
	if len(l.live) >= l.s.cfg.MaxConnections {
		l.warn(warnMaxConns, "refusing a connection: the tunnel has max_connections open; close some or raise max_connections",
			logService, st.service, logStream, st.id, "max_connections", l.s.cfg.MaxConnections)
		return false
	}
	if !l.s.cfg.Limits.takeConn() {
		l.warn(warnMaxConns, "refusing a connection: the agent has max_total_connections open across its tunnels; close some or raise max_total_connections",
			logService, st.service, logStream, st.id, "max_total_connections", l.s.cfg.Limits.maxConns)
		return false
	}
	return true
}

// dialLimited dials once one of the shared dial slots is free; waiting for
// the slot counts against DialTimeout.
func (l *link) dialLimited(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, l.s.cfg.DialTimeout)
	defer cancel()
	if !l.s.cfg.Limits.acquireDial(ctx) {
		return nil, fmt.Errorf("waiting for one of the agent's local dial slots: %w", context.Cause(ctx))
	}
	defer l.s.cfg.Limits.releaseDial()
	return l.dialLocal(ctx, addr)
}

func (l *link) dialLocal(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, l.s.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return d.DialContext(ctx, "unix", path)
	}
	return d.DialContext(ctx, "tcp", addr)
}

// dialFailed answers a failed local dial: CONNECTION_RESET for that
// connection when its stream carries others (V3), otherwise STREAM_RESET,
// which ends the stream.
func (l *link) dialFailed(f *localConn, err error) {
	l.mu.Lock()
	was := l.unregisterLocked(f)
	reset := f.resetMessage()
	if was && !f.fromConnStart && len(f.st.conns) == 0 {
		reset = &protocol.Message{Type: protocol.TypeStreamReset, StreamID: f.st.id, ServiceID: f.st.sendID}
		l.closeStreamLocked(f.st, "the first connection of the stream could not be dialled")
	}
	l.mu.Unlock()
	if was {
		l.warn(warnDial, "cannot reach the local service: resetting the connection", logService, f.st.service,
			logLocal, f.local, logStream, f.st.id, logConn, f.connID, logErr, err)
		l.w.send(reset)
	}
	f.finish(err)
}
