package tunnel

import (
	"slices"
	"strings"
	"sync"
)

// ServiceStats is what a session has carried for one service since it
// started: local connections open now and opened in all, and bytes each
// way (BytesIn from the tunnel to the local socket, BytesOut from the local
// socket into the tunnel, as in Event), counting open connections up to now.
type ServiceStats struct {
	Service  string `json:"service"`
	Active   int    `json:"active"`
	Opened   int64  `json:"opened"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
}

// statsBook keeps the per-service totals of a session. Its lock is a leaf:
// nothing else is taken while it is held. The data path never takes it; it
// only adds to the per-connection atomic counters, which Stats reads.
type statsBook struct {
	mu   sync.Mutex
	live map[*fwd]struct{}
	done map[string]*ServiceStats // ended connections' bytes, opened counts
}

// track registers a connection (on creation, before any byte moves).
func (b *statsBook) track(f *fwd) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.live == nil {
		b.live = map[*fwd]struct{}{}
		b.done = map[string]*ServiceStats{}
	}
	b.live[f] = struct{}{}
}

// opened counts a connection whose local socket is attached.
func (b *statsBook) opened(service string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.entryLocked(service).Opened++
}

// untrack moves an ended connection's final byte counts into the totals.
func (b *statsBook) untrack(f *fwd) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.live[f]; !ok {
		return
	}
	delete(b.live, f)
	e := b.entryLocked(f.st.service)
	e.BytesIn += f.in.Load()
	e.BytesOut += f.out.Load()
}

func (b *statsBook) entryLocked(service string) *ServiceStats {
	if b.done == nil {
		b.done = map[string]*ServiceStats{}
	}
	e := b.done[service]
	if e == nil {
		e = &ServiceStats{Service: service}
		b.done[service] = e
	}
	return e
}

// Stats returns the per-service counts, sorted by service id. It is safe
// to call from any goroutine while the session runs, and after.
func (s *Session) Stats() []ServiceStats {
	b := &s.stats
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[string]*ServiceStats, len(b.done))
	for k, v := range b.done {
		c := *v
		m[k] = &c
	}
	for f := range b.live {
		e := m[f.st.service]
		if e == nil {
			e = &ServiceStats{Service: f.st.service}
			m[f.st.service] = e
		}
		e.Active++
		e.BytesIn += f.in.Load()
		e.BytesOut += f.out.Load()
	}
	out := make([]ServiceStats, 0, len(m))
	for _, v := range m {
		out = append(out, *v)
	}
	slices.SortFunc(out, func(a, b ServiceStats) int { return strings.Compare(a.Service, b.Service) })
	return out
}
