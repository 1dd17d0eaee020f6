package tunnel

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

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

// streamTable is one link's streams and local connections: the current
// stream of each service, every local connection not yet finished, the
// services the tunnel announced and, in source mode, the stream numbering,
// the V1/V2 client slots and what the destination proved to speak. It ends
// with the link (abortAll).
//
// mu guards every field below it; methods named ...Locked expect it held.
// Lock order: the source's startMu, then mu, then a connection's queue
// lock or the write path's locks (see writePath). A holder of mu may wait
// for the writer goroutine to make room in the write path's queues (send,
// sendCtrl), which is safe because the writer takes no lock of the table.
type streamTable struct {
	log       *slog.Logger
	learnPeer bool // source with DestinationClientType auto (see peerVersion)

	mu         sync.Mutex
	down       bool                     // the link ended: no new connections
	byService  map[string]*stream       // by service id as on the wire
	live       map[*localConn]struct{}  // every local connection not yet finished
	nLive      atomic.Int32             // len(live), read without mu by the queues (see queue.peers)
	serviceIDs []string                 // announced by the tunnel (SERVICE_IDS)
	nextStream map[string]int32         // source: last stream id per service
	slots      map[string]chan struct{} // source V1/V2: one connection per service
	peer       peerVersion              // source auto: what the destination proved to speak
}

func newStreamTable(log *slog.Logger, learnPeer bool) *streamTable {
	return &streamTable{log: log, learnPeer: learnPeer,
		byService: map[string]*stream{}, live: map[*localConn]struct{}{}, nextStream: map[string]int32{}, slots: map[string]chan struct{}{}}
}

// lookup finds the current stream for a message, applying the V1 fallback:
// a message without a service id belongs to the only stream, if there is one.
func (t *streamTable) lookup(m *protocol.Message) *stream {
	st := t.byService[m.ServiceID]
	if st == nil && m.ServiceID == "" && len(t.byService) == 1 {
		for _, only := range t.byService {
			st = only
		}
	}
	if st == nil || st.id != m.StreamID {
		return nil
	}
	return st
}

func (t *streamTable) dataTargetLocked(m *protocol.Message) *localConn {
	st := t.lookup(m)
	if st == nil {
		return nil
	}
	t.peerEvidenceLocked(st, m.ConnectionID, false)
	return st.conns[max(m.ConnectionID, 1)]
}

// closeStreamLocked ends every connection of st, draining pending local
// writes, and forgets the stream.
func (t *streamTable) closeStreamLocked(st *stream, reason string) {
	for _, f := range st.conns {
		f.active.Store(false)
		f.drainClose(reason)
	}
	clear(st.conns)
	if t.byService[st.wire] == st {
		delete(t.byService, st.wire)
	}
}

func (t *streamTable) closeStreamsLocked(reason string) {
	for _, st := range t.byService {
		t.closeStreamLocked(st, reason)
	}
}

// unregisterLocked removes f from its stream. For V1/V2 streams the
// connection is the stream, so the stream ends too.
func (t *streamTable) unregisterLocked(f *localConn) bool {
	if !f.active.Swap(false) {
		return false
	}
	st := f.st
	delete(st.conns, f.connID)
	if !st.v3 && t.byService[st.wire] == st {
		delete(t.byService, st.wire)
	}
	return true
}

// abortAll closes every local connection at once: the link is gone.
func (t *streamTable) abortAll(reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.down = true
	for f := range t.live {
		f.active.Store(false)
		f.abort(reason)
	}
	clear(t.byService)
}

// unboundSoloLocked wakes the pushes of the link's other live
// connections (there is one: the count just became 2) that wait for room
// under the solo bound: their bound is ConnBufferSize again. In source
// mode the WebSocket reader may wait in one of them and must go on to the
// new connection's data; in destination mode the reader is the caller,
// so none waits.
func (t *streamTable) unboundSoloLocked(added *localConn) {
	for f := range t.live {
		if f != added {
			f.q.mu.Lock()
			f.q.freeRoomLocked()
			f.q.mu.Unlock()
		}
	}
}
