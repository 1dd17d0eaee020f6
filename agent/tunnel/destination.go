package tunnel

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// destinationSide is a link's destination role: it answers the source's
// STREAM_START and CONNECTION_START by dialling the mapped local address
// in the background, refuses what is not mapped or over a limit, and
// resets a connection whose dial failed. Its state is the link's: the
// streams and connections in the streamTable, under its mu (methods named
// ...Locked expect it held), and replies go through the write path's
// sendCtrl (from the WebSocket reader) or send (from a dialler).
type destinationSide struct {
	l *link
}

// resolveService maps a service id from the wire to a configured one. A V1
// peer sends none: it gets the only mapped service or, with several, the
// only service the tunnel announced.
func (d *destinationSide) resolveService(wire string) (string, bool) {
	svcs := d.l.s.services()
	if wire != "" {
		if _, ok := svcs[wire]; ok {
			return wire, true
		}
		return wire, d.unnamedIsLocked(wire)
	}
	if len(svcs) == 1 {
		for id := range svcs {
			return id, true
		}
	}
	if len(d.l.streams.serviceIDs) == 1 {
		_, ok := svcs[d.l.streams.serviceIDs[0]]
		return d.l.streams.serviceIDs[0], ok
	}
	return "", false
}

// unnamedIsLocked reports whether the unnamed mapping stands for the
// service id: it is configured and the tunnel announced that id alone.
func (d *destinationSide) unnamedIsLocked(id string) bool {
	_, unnamed := d.l.s.services()[Unnamed]
	return unnamed && len(d.l.streams.serviceIDs) == 1 && d.l.streams.serviceIDs[0] == id
}

// localAddr is the address mapped to a service id, or to the unnamed
// mapping when the id has none of its own.
func localAddr(services map[string]string, service string) string {
	if addr, ok := services[service]; ok {
		return addr
	}
	return services[Unnamed]
}

func (d *destinationSide) onStreamStart(m *protocol.Message) {
	if m.StreamID == 0 {
		d.l.rate.warn(warnStartID0, "ignoring STREAM_START with stream id 0", logService, peerString(m.ServiceID))
		return
	}
	d.l.streams.mu.Lock()
	defer d.l.streams.mu.Unlock()
	service, ok := d.resolveService(m.ServiceID)
	if !ok {
		d.warnUnmapped(m.ServiceID)
		d.l.w.sendCtrl(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: m.StreamID, ServiceID: d.outService(m.ServiceID)})
		return
	}
	if old := d.l.streams.byService[m.ServiceID]; old != nil {
		// A new stream replaces the active one at once (PROTOCOL.md §6.2).
		d.l.streams.closeStreamLocked(old, "replaced by a new stream")
	}
	// Our own connection's subprotocol bounds what we may send: no service
	// id on 1.0, no connection id or CONNECTION_* on 1.0/2.0.
	st := &stream{wire: m.ServiceID, sendID: d.outService(m.ServiceID), service: service, id: m.StreamID,
		v3: m.ConnectionID != 0 && d.l.version.HasConnectionIDs(), conns: map[uint32]*localConn{}}
	d.l.streams.byService[m.ServiceID] = st
	d.startDialLocked(st, max(m.ConnectionID, 1))
}

// outService is the service id to stamp on messages we send: none on a 1.0
// WebSocket, whose schema has no field 5.
func (d *destinationSide) outService(wire string) string {
	if !d.l.version.HasServiceIDs() {
		return ""
	}
	return wire
}

func (d *destinationSide) warnUnmapped(wire string) {
	if wire == "" {
		d.l.rate.warn(warnUnmappedV1, "refusing a stream without a service id: several services are mapped and the tunnel does not name exactly one; map a single service to serve V1 peers")
		return
	}
	d.l.rate.warn(warnUnmapped, "refusing a stream: the service is not in the agent's services map; add it to allow it", logService, peerString(wire))
}

func (d *destinationSide) onConnectionStart(m *protocol.Message) {
	d.l.streams.mu.Lock()
	defer d.l.streams.mu.Unlock()
	st := d.l.streams.lookup(m)
	if st == nil {
		return // not the current stream
	}
	if m.ConnectionID == 0 {
		d.l.rate.warn(warnConnID0, "ignoring CONNECTION_START with connection id 0", logService, st.service, logStream, st.id)
		return
	}
	if !st.v3 {
		d.refuseConnectionStartLocked(st, m.ConnectionID)
		return
	}
	if f := st.conns[m.ConnectionID]; f != nil {
		d.l.rate.warn(warnConnReused, "the peer started a connection id that is already active: resetting it", logService, st.service, logConn, m.ConnectionID)
		d.l.streams.unregisterLocked(f)
		d.l.w.sendCtrl(f.resetMessage())
		f.abort("connection id reused by the peer")
		return
	}
	if f := d.startDialLocked(st, m.ConnectionID); f != nil {
		f.fromConnStart = true
	}
}

// refuseConnectionStartLocked answers a CONNECTION_START on a stream that
// carries no connection ids. On a 3.0 WebSocket (the source started the
// stream V2-style) that connection alone is refused. On 1.0/2.0 we act as a
// V2 destination does (PROTOCOL.md §6.7): STREAM_RESET, which tells an
// automatic source to fall back to one connection per stream.
func (d *destinationSide) refuseConnectionStartLocked(st *stream, cid uint32) {
	if d.l.version.HasConnectionIDs() {
		d.l.rate.warn(warnConnStartV2, "refusing CONNECTION_START on a stream started without a connection id",
			logService, st.service, logStream, st.id, logConn, cid)
		d.l.w.sendCtrl(&protocol.Message{Type: protocol.TypeConnectionReset, StreamID: st.id, ServiceID: st.sendID, ConnectionID: cid})
		return
	}
	d.l.rate.warn(warnConnStartV2, "resetting the stream on CONNECTION_START: this WebSocket speaks a subprotocol without connection ids",
		logService, st.service, logStream, st.id, logSubproto, d.l.ws.Subprotocol())
	d.l.w.sendCtrl(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: st.id, ServiceID: st.sendID})
	d.l.streams.closeStreamLocked(st, "stream reset: multiple connections need subprotocol 3.0")
}

// startDialLocked registers a connection and dials its local address in
// the background; DATA that arrives meanwhile waits in its queue. Over
// MaxConnections or the agent-wide cap the connection is refused with its
// reset (the stream's, for the first connection of a stream) and nil.
func (d *destinationSide) startDialLocked(st *stream, cid uint32) *localConn {
	if !d.takeConnLocked(st) {
		if st.v3 && len(st.conns) > 0 {
			d.l.w.sendCtrl(&protocol.Message{Type: protocol.TypeConnectionReset, StreamID: st.id, ServiceID: st.sendID, ConnectionID: cid})
			return nil
		}
		d.l.w.sendCtrl(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: st.id, ServiceID: st.sendID})
		if d.l.streams.byService[st.wire] == st && len(st.conns) == 0 {
			delete(d.l.streams.byService, st.wire)
		}
		return nil
	}
	f := d.l.newLocalConnLocked(st, cid)
	if f == nil {
		d.l.s.cfg.Limits.releaseConn()
		return nil
	}
	f.counted = true
	f.local = localAddr(d.l.s.services(), st.service)
	go func() {
		conn, err := d.dialLimited(f.ctx, f.local)
		if err != nil {
			d.dialFailed(f, err)
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
func (d *destinationSide) takeConnLocked(st *stream) bool {
	if len(d.l.streams.live) >= d.l.s.cfg.MaxConnections {
		d.l.rate.warn(warnMaxConns, "refusing a connection: the tunnel has max_connections open; close some or raise max_connections",
			logService, st.service, logStream, st.id, "max_connections", d.l.s.cfg.MaxConnections)
		return false
	}
	if !d.l.s.cfg.Limits.takeConn() {
		d.l.rate.warn(warnMaxConns, "refusing a connection: the agent has max_total_connections open across its tunnels; close some or raise max_total_connections",
			logService, st.service, logStream, st.id, "max_total_connections", d.l.s.cfg.Limits.maxConns)
		return false
	}
	return true
}

// dialLimited dials once one of the shared dial slots is free; waiting for
// the slot counts against DialTimeout.
func (d *destinationSide) dialLimited(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.l.s.cfg.DialTimeout)
	defer cancel()
	if !d.l.s.cfg.Limits.acquireDial(ctx) {
		return nil, fmt.Errorf("waiting for one of the agent's local dial slots: %w", context.Cause(ctx))
	}
	defer d.l.s.cfg.Limits.releaseDial()
	return d.dialLocal(ctx, addr)
}

func (d *destinationSide) dialLocal(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.l.s.cfg.DialTimeout)
	defer cancel()
	dial := d.l.s.cfg.netDial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return dial(ctx, "unix", path)
	}
	return dial(ctx, "tcp", addr)
}

// dialFailed answers a failed local dial: CONNECTION_RESET for that
// connection when its stream carries others (V3), otherwise STREAM_RESET,
// which ends the stream.
func (d *destinationSide) dialFailed(f *localConn, err error) {
	d.l.streams.mu.Lock()
	was := d.l.streams.unregisterLocked(f)
	reset := f.resetMessage()
	if was && !f.fromConnStart && len(f.st.conns) == 0 {
		reset = &protocol.Message{Type: protocol.TypeStreamReset, StreamID: f.st.id, ServiceID: f.st.sendID}
		d.l.streams.closeStreamLocked(f.st, "the first connection of the stream could not be dialled")
	}
	d.l.streams.mu.Unlock()
	if was {
		d.l.rate.warn(warnDial, "cannot reach the local service: resetting the connection", logService, f.st.service,
			logLocal, f.local, logStream, f.st.id, logConn, f.connID, logErr, err)
		d.l.w.send(reset)
	}
	f.finish(err)
}
