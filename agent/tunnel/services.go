package tunnel

import (
	"fmt"
	"maps"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// ReasonServiceRemoved is the Event.Reason of connections ended because
// their service left the services map (SetServices).
const ReasonServiceRemoved = "service removed from the services map"

// services is the destination's current services map.
func (s *Session) services() map[string]string {
	if m := s.live.Load(); m != nil {
		return *m
	}
	return s.cfg.Services
}

// SetServices replaces a destination session's services map (the
// allow-list) while it runs, for a configuration reload. New streams use
// the new map at once; a stream whose service is no longer mapped is reset
// and its connections end with EventStreamClosed (Reason
// ReasonServiceRemoved). Connections to a service that stays keep their
// address until they end.
func (s *Session) SetServices(m map[string]string) error {
	if s.cfg.Mode != ModeDestination {
		return fmt.Errorf("%w: services can change only on a destination session", ErrInvalidConfig)
	}
	c := s.cfg
	c.Services = m
	if err := validateServices(&c); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	next := maps.Clone(m)
	s.live.Store(&next)
	s.mu.Lock()
	l := s.cur
	s.mu.Unlock()
	if l == nil {
		return nil
	}
	l.streams.mu.Lock()
	defer l.streams.mu.Unlock()
	for _, st := range l.streams.byService {
		if localAddr(next, st.service) == "" {
			l.w.sendCtrl(&protocol.Message{Type: protocol.TypeStreamReset, StreamID: st.id, ServiceID: st.sendID})
			l.streams.closeStreamLocked(st, ReasonServiceRemoved)
		}
	}
	return nil
}
