package tunnel

import "github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"

// stream is the current stream of one service on a link.
type stream struct {
	wire    string // service id as the peer sends it ("" for a V1 peer)
	sendID  string // service id we send (wire, or "" on a 1.0 WebSocket)
	service string // configured service id
	id      int32
	v3      bool // connection ids are in use
	conns   map[uint32]*localConn
	// source side
	nextConn uint32
	heard    bool // the destination sent DATA or a CONNECTION_RESET on it (peerVersion)
}

// lookup finds the current stream for a message, applying the V1 fallback:
// a message without a service id belongs to the only stream, if there is one.
func (l *link) lookup(m *protocol.Message) *stream {
	st := l.streams[m.ServiceID]
	if st == nil && m.ServiceID == "" && len(l.streams) == 1 {
		for _, only := range l.streams {
			st = only
		}
	}
	if st == nil || st.id != m.StreamID {
		return nil
	}
	return st
}

func (l *link) dataTargetLocked(m *protocol.Message) *localConn {
	st := l.lookup(m)
	if st == nil {
		return nil
	}
	l.peerEvidenceLocked(st, m.ConnectionID, false)
	return st.conns[max(m.ConnectionID, 1)]
}

// closeStreamLocked ends every connection of st, draining pending local
// writes, and forgets the stream.
func (l *link) closeStreamLocked(st *stream, reason string) {
	for _, f := range st.conns {
		f.active.Store(false)
		f.drainClose(reason)
	}
	clear(st.conns)
	if l.streams[st.wire] == st {
		delete(l.streams, st.wire)
	}
}

func (l *link) closeStreamsLocked(reason string) {
	for _, st := range l.streams {
		l.closeStreamLocked(st, reason)
	}
}

// unregisterLocked removes f from its stream. For V1/V2 streams the
// connection is the stream, so the stream ends too.
func (l *link) unregisterLocked(f *localConn) bool {
	if !f.active.Swap(false) {
		return false
	}
	st := f.st
	delete(st.conns, f.connID)
	if !st.v3 && l.streams[st.wire] == st {
		delete(l.streams, st.wire)
	}
	return true
}

// abortAll closes every local connection at once: the link is gone.
func (l *link) abortAll(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	for f := range l.live {
		f.active.Store(false)
		f.abort(reason)
	}
	clear(l.streams)
}
