package emulator

import (
	"errors"
	"sync"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// relay joins the source and destination connections of one tunnel. It
// forwards every frame unchanged to the other mode's current connection and
// drops frames while that side is not connected (the real behaviour is
// unknown, PROTOCOL.md §10 item 3). It tracks the streams the source
// started so that a peer replacement can reset them at the other side.
type relay struct {
	mu      sync.Mutex
	peers   [2]*peer
	streams map[string]int32 // serviceId -> active streamId, from STREAM_START/STREAM_RESET passing through
	closed  bool
	shaper  *shaper // nil: unlimited
}

func newRelay(bandwidth int64) *relay {
	r := &relay{streams: map[string]int32{}}
	if bandwidth > 0 {
		r.shaper = &shaper{rate: float64(bandwidth)}
	}
	return r
}

// shaper paces a tunnel's frames, both directions together, to a rate in
// bytes per second, like the per-tunnel bandwidth quota of AWS (§8).
type shaper struct {
	mu   sync.Mutex
	rate float64
	next time.Time
}

// wait blocks until n more bytes may pass.
func (s *shaper) wait(n int) {
	if s == nil {
		return
	}
	s.mu.Lock()
	now := time.Now()
	if s.next.Before(now) {
		s.next = now
	}
	d := s.next.Sub(now)
	s.next = s.next.Add(time.Duration(float64(n) / s.rate * float64(time.Second)))
	s.mu.Unlock()
	if d > 0 {
		time.Sleep(d) // pacing, not waiting for a condition
	}
}

// wsWriteBuffer is gorilla's write buffer size (see serveData).
const wsWriteBuffer = 4 << 10

var errReplaced = errors.New("replaced by a newer connection of the same mode")

// attach makes p the current connection of its mode. The previous one is
// closed, and the other side gets a STREAM_RESET for each stream it had.
func (r *relay) attach(p *peer) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	old := r.peers[p.mode]
	r.peers[p.mode] = p
	other := r.peers[p.mode.other()]
	var resets []protocol.Message
	for svc, id := range r.streams {
		resets = append(resets, protocol.Message{Type: protocol.TypeStreamReset, StreamID: id, ServiceID: svc})
	}
	clear(r.streams)
	r.mu.Unlock()
	if old != nil {
		old.shutdown(closeNormal, "replaced by a new connection of the same mode")
	}
	if other != nil {
		for i := range resets {
			if other.sub == protocol.SubprotocolV1 {
				resets[i].ServiceID = "" // never V2 fields toward a V1 peer (PROTOCOL.md §5.4)
			}
			other.enqueueMessage(&resets[i])
		}
	}
	return true
}

// detach removes p if it is still current and reports whether it was.
func (r *relay) detach(p *peer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers[p.mode] != p {
		return false
	}
	r.peers[p.mode] = nil
	return true
}

// closeAll closes both connections and refuses new ones.
func (r *relay) closeAll(code int, reason string) {
	r.mu.Lock()
	r.closed = true
	peers := r.peers
	r.peers = [2]*peer{}
	r.mu.Unlock()
	for _, p := range peers {
		if p != nil {
			p.shutdown(code, reason)
		}
	}
}

// closeMode closes the current connection of one mode (it detaches itself
// when its reader ends).
func (r *relay) closeMode(m mode, code int, reason string) {
	r.mu.Lock()
	p := r.peers[m]
	r.mu.Unlock()
	if p != nil {
		p.shutdown(code, reason)
	}
}

// route records stream starts and resets and returns the connection the
// frame goes to (nil: drop). It fails when from is no longer current.
func (r *relay) route(from *peer, m *protocol.Message) (*peer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers[from.mode] != from {
		return nil, errReplaced
	}
	switch {
	case m.Type == protocol.TypeStreamStart && from.mode == modeSource:
		r.streams[m.ServiceID] = m.StreamID
	case m.Type == protocol.TypeStreamReset:
		if id, ok := r.streams[m.ServiceID]; ok && id == m.StreamID {
			delete(r.streams, m.ServiceID)
		}
	}
	return r.peers[from.mode.other()], nil
}

// relays returns the relays of all tunnels.
func (s *store) relays() []*relay {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*relay, 0, len(s.tunnels))
	for _, t := range s.tunnels {
		out = append(out, t.relay)
	}
	return out
}
