package emulator

import (
	"sync"
	"time"
)

// mode is the side of a tunnel a client connects as; it indexes
// tunnel.modes and relay.peers.
type mode int

// The two modes.
const (
	modeSource mode = 0
	modeDest   mode = 1
)

// other is the mode a client's frames go to.
func (m mode) other() mode {
	if m == modeSource {
		return modeDest
	}
	return modeSource
}

// String is the mode's name in the local-proxy-mode query parameter.
func (m mode) String() string {
	if m == modeSource {
		return "source"
	}
	return "destination"
}

const (
	statusOpen   = "OPEN"
	statusClosed = "CLOSED"
	connUp       = "CONNECTED"
	connDown     = "DISCONNECTED"
)

// modeState is the token and connection state of one mode of a tunnel.
type modeState struct {
	token       string // current client access token (CAT)
	clientToken string // client token bound on first use, if any
	used        bool   // a handshake succeeded with token
	connected   bool
	updatedAt   time.Time
}

// tunnel is one tunnel's control-plane state, guarded by store.mu, plus its
// relay, which has its own lock.
type tunnel struct {
	seq         uint64
	id, arn     string
	description string
	thing       string
	services    []string
	hasDest     bool
	lifetime    int64
	tags        []Tag
	status      string
	createdAt   time.Time
	updatedAt   time.Time
	expiresAt   time.Time
	closedAt    time.Time
	modes       [2]modeState
	relay       *relay
}

type tokenRef struct {
	t    *tunnel
	mode mode
}

// store holds every tunnel in memory.
type store struct {
	mu           sync.Mutex
	now          func() time.Time
	region       string
	account      string
	maxOpen      int
	retention    time.Duration
	bandwidth    int64
	seq          uint64
	tunnels      map[string]*tunnel
	tokens       map[string]tokenRef
	clientTokens map[string]tokenRef // client token -> tunnel and mode of the access token it is bound to
	sv           *saver              // writes the state file after changes; nil: memory only
}

// snapshot encodes the store for the state file.
func (s *store) snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked()
}

func newStore(cfg *Config) *store {
	return &store{
		now: cfg.Now, region: cfg.Region, account: cfg.AccountID,
		maxOpen: cfg.MaxOpenTunnels, retention: cfg.Retention, bandwidth: cfg.Bandwidth,
		tunnels: map[string]*tunnel{}, tokens: map[string]tokenRef{}, clientTokens: map[string]tokenRef{},
	}
}

// refresh closes t when its lifetime has run out and reports whether it did.
func (s *store) refresh(t *tunnel, now time.Time) bool {
	if t.status != statusOpen || now.Before(t.expiresAt) {
		return false
	}
	s.closeLocked(t, t.expiresAt)
	return true
}

func (s *store) closeLocked(t *tunnel, at time.Time) {
	t.status = statusClosed
	t.updatedAt, t.closedAt = at, at
	for m := range t.modes {
		if t.modes[m].connected {
			t.modes[m].connected = false
			t.modes[m].updatedAt = at
		}
	}
}

func (s *store) deleteLocked(t *tunnel) {
	delete(s.tunnels, t.id)
	for m := range t.modes {
		delete(s.tokens, t.modes[m].token)
	}
	for ct, ref := range s.clientTokens {
		if ref.t == t {
			delete(s.clientTokens, ct)
		}
	}
}

// sweep expires tunnels whose lifetime ran out and forgets closed tunnels
// older than the retention. It returns the tunnels it closed, whose
// connections the caller must drop.
func (s *store) sweep() (closed []*tunnel) {
	changed := false
	defer func() {
		if changed {
			s.sv.save()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, t := range s.tunnels {
		if s.refresh(t, now) {
			closed = append(closed, t)
			changed = true
		}
		if t.status == statusClosed && s.retention > 0 && now.Sub(t.closedAt) >= s.retention {
			s.deleteLocked(t)
			changed = true
		}
	}
	return closed
}

// get returns the tunnel with id, expiring it first if due.
func (s *store) get(id string) (*tunnel, bool) {
	t, ok := s.tunnels[id]
	if ok {
		s.refresh(t, s.now())
	}
	return t, ok
}

func (s *store) byArn(arn string) (*tunnel, bool) {
	for _, t := range s.tunnels {
		if t.arn == arn {
			return t, true
		}
	}
	return nil, false
}

func (s *store) openCount(now time.Time) int {
	n := 0
	for _, t := range s.tunnels {
		s.refresh(t, now)
		if t.status == statusOpen {
			n++
		}
	}
	return n
}

// setConnected records a connection state change of one mode.
func (s *store) setConnected(t *tunnel, m mode, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.status != statusOpen && up {
		return
	}
	t.modes[m].connected = up
	t.modes[m].updatedAt = s.now()
}
