package agent

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

// endedKept is how many ended tunnels Status remembers.
const endedKept = 16

// TunnelStatus is one live tunnel as `tunnel-agent status` shows it. It
// holds no token.
type TunnelStatus struct {
	ID        string   `json:"id"`
	ChannelID string   `json:"channel_id,omitempty"`
	Region    string   `json:"region"`
	Services  []string `json:"services"`
	// State is connecting, connected or reconnecting.
	State          string    `json:"state"`
	Protocol       string    `json:"protocol,omitempty"`
	Opened         time.Time `json:"opened"`
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	Reconnects     int       `json:"reconnects"`
	Resumed        bool      `json:"resumed,omitempty"`
	LastError      string    `json:"last_error,omitempty"`
	// LocalLifetime and LifetimeLeft are set when max_tunnel_lifetime is:
	// the agent ends the tunnel then. The service's own expiry is not known
	// on the device.
	LocalLifetime string                `json:"local_lifetime,omitempty"`
	LifetimeLeft  string                `json:"lifetime_left,omitempty"`
	Traffic       []tunnel.ServiceStats `json:"traffic"`

	expires time.Time
	stats   func() []tunnel.ServiceStats
}

// EndedTunnel is a tunnel that ended, with why.
type EndedTunnel struct {
	ID        string    `json:"id"`
	ChannelID string    `json:"channel_id,omitempty"`
	Services  []string  `json:"services"`
	Opened    time.Time `json:"opened"`
	Ended     time.Time `json:"ended"`
	Reason    string    `json:"reason"`
	Err       string    `json:"err,omitempty"`
}

// Snapshot is the agent's tunnels at one moment: the live ones, the last
// ended ones (newest first) and the traffic of all tunnels since the agent
// started, per service (live and ended).
type Snapshot struct {
	MaxTunnels int // the running max_tunnels (a reload may change it)
	Tunnels    []TunnelStatus
	Ended      []EndedTunnel
	Traffic    []tunnel.ServiceStats
}

// view is the read side of the registry for other goroutines (the status
// socket, the metrics). The Run goroutine still owns the registry; it and
// the session event handlers write here under mu.
type view struct {
	mu     sync.Mutex
	live   map[string]*TunnelStatus
	ended  []EndedTunnel
	totals map[string]tunnel.ServiceStats // of ended tunnels
	max    int                            // max_tunnels
}

// OnEvent sets a function that receives every audit event (the status
// socket's metrics and the cloud audit queue). It is called synchronously
// and must not block. Set it before Run.
func (a *Agent) OnEvent(f func(audit.Event)) { a.eventHook.Store(&f) }

// emit logs nothing: it hands the event to the OnEvent hook.
func (a *Agent) emit(e audit.Event) {
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	if f := a.eventHook.Load(); f != nil && *f != nil {
		(*f)(e)
	}
}

// Snapshot returns the live tunnels with their traffic, the recently ended
// ones and the traffic totals. It is safe to call from any goroutine.
func (a *Agent) Snapshot() Snapshot {
	v := &a.view
	v.mu.Lock()
	defer v.mu.Unlock()
	now := a.now()
	s := Snapshot{MaxTunnels: v.max, Ended: slices.Clone(v.ended)}
	slices.Reverse(s.Ended)
	sum := map[string]tunnel.ServiceStats{}
	for k, t := range v.totals {
		t.Active = 0
		sum[k] = t
	}
	for _, t := range v.live {
		c := *t
		c.Services = slices.Clone(t.Services)
		if t.stats != nil {
			c.Traffic = t.stats()
		}
		if c.Traffic == nil {
			c.Traffic = []tunnel.ServiceStats{}
		}
		if !t.expires.IsZero() {
			c.LifetimeLeft = max(t.expires.Sub(now), 0).Round(time.Second).String()
		}
		for _, st := range c.Traffic {
			addStats(sum, st)
		}
		s.Tunnels = append(s.Tunnels, c)
	}
	slices.SortFunc(s.Tunnels, func(x, y TunnelStatus) int { return x.Opened.Compare(y.Opened) })
	for _, k := range slices.Sorted(mapKeys(sum)) {
		s.Traffic = append(s.Traffic, sum[k])
	}
	return s
}

func addStats(m map[string]tunnel.ServiceStats, st tunnel.ServiceStats) {
	t := m[st.Service]
	t.Service = st.Service
	t.Active += st.Active
	t.Opened += st.Opened
	t.BytesIn += st.BytesIn
	t.BytesOut += st.BytesOut
	m[st.Service] = t
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// viewConfig records the settings Snapshot reports (from New and reloads).
func (a *Agent) viewConfig(maxTunnels int) {
	a.view.mu.Lock()
	a.view.max = maxTunnels
	a.view.mu.Unlock()
}

// viewStart adds a tunnel to the view.
func (a *Agent) viewStart(t *tunnelEntry, resumed bool) {
	st := &TunnelStatus{ID: t.id, Region: t.rec.Region, Services: slices.Clone(t.rec.Services),
		State: "connecting", Opened: t.started, Resumed: resumed}
	if a.cfg.MaxTunnelLifetime > 0 {
		st.LocalLifetime = a.cfg.Lifetime().String()
		st.expires = t.rec.Expires
	}
	a.view.mu.Lock()
	defer a.view.mu.Unlock()
	if a.view.live == nil {
		a.view.live = map[string]*TunnelStatus{}
		a.view.totals = map[string]tunnel.ServiceStats{}
	}
	a.view.live[t.id] = st
}

// viewSession attaches a running session's counters to its tunnel.
func (a *Agent) viewSession(id string, r runner) {
	s, ok := r.(interface{ Stats() []tunnel.ServiceStats })
	if !ok {
		return
	}
	a.view.mu.Lock()
	defer a.view.mu.Unlock()
	if t := a.view.live[id]; t != nil {
		t.stats = s.Stats
	}
}

// viewUpdate changes a live tunnel's status.
func (a *Agent) viewUpdate(id string, f func(*TunnelStatus)) {
	a.view.mu.Lock()
	defer a.view.mu.Unlock()
	if t := a.view.live[id]; t != nil {
		f(t)
	}
}

// viewEnd moves a tunnel from live to ended, keeping its traffic in the
// totals; the session has returned, so its counters are final.
func (a *Agent) viewEnd(id, reason string, err error) {
	v := &a.view
	v.mu.Lock()
	defer v.mu.Unlock()
	t := v.live[id]
	if t == nil {
		return
	}
	delete(v.live, id)
	if t.stats != nil {
		for _, st := range t.stats() {
			addStats(v.totals, st)
		}
	}
	e := EndedTunnel{ID: id, ChannelID: t.ChannelID, Services: t.Services, Opened: t.Opened, Ended: a.now(), Reason: reason}
	if err != nil {
		e.Err = err.Error()
	}
	v.ended = append(v.ended, e)
	if len(v.ended) > endedKept {
		v.ended = slices.Delete(v.ended, 0, len(v.ended)-endedKept)
	}
}

// channelOf is the tunnel's current (or last) data-plane channel id.
func (a *Agent) channelOf(id string) string {
	a.view.mu.Lock()
	defer a.view.mu.Unlock()
	if t := a.view.live[id]; t != nil {
		return t.ChannelID
	}
	return ""
}

// protocolVersion is "3.0" for aws.iot.securetunneling-3.0.
func protocolVersion(subprotocol string) string {
	if i := strings.LastIndexByte(subprotocol, '-'); i >= 0 {
		return subprotocol[i+1:]
	}
	return subprotocol
}

// viewConnected records a (re)connection of the tunnel's WebSocket.
func (a *Agent) viewConnected(id string, e tunnel.Event) {
	now := a.now()
	a.viewUpdate(id, func(s *TunnelStatus) {
		if !s.ConnectedSince.IsZero() || s.ChannelID != "" || s.State == "reconnecting" {
			s.Reconnects++
		}
		s.State, s.ConnectedSince, s.ChannelID, s.Protocol = "connected", now, e.ChannelID, protocolVersion(e.Subprotocol)
	})
}
