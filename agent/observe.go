package agent

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// observations is what the agent shows of itself: the tunnel opened and
// closed log lines and audit events, the session events (tunnel.Event) as
// log lines, audit events and status, and the view behind Snapshot (live
// tunnels, recently ended ones, traffic totals, the running max_tunnels).
// It decides nothing and never blocks. Every goroutine touches it: the Run
// goroutine (tunnels opened and closed, reloads), the sessions' event
// handlers, the source's callback (dropped notifications) and the status
// socket (Snapshot). The view is guarded by mu; the OnEvent hook is an
// atomic pointer; log and now are set by New and not changed after.
type observations struct {
	log  *slog.Logger
	now  func() time.Time
	hook atomic.Pointer[func(audit.Event)] // OnEvent

	mu     sync.Mutex
	live   map[string]*TunnelStatus
	ended  []EndedTunnel
	totals map[string]tunnel.ServiceStats // of ended tunnels
	max    int                            // max_tunnels
}

// OnEvent sets a function that receives every audit event (the status
// socket's metrics and the cloud audit queue). It is called synchronously
// and must not block. Set it before Run.
func (a *Agent) OnEvent(f func(audit.Event)) { a.obs.hook.Store(&f) }

// Snapshot returns the live tunnels with their traffic, the recently ended
// ones and the traffic totals. It is safe to call from any goroutine.
func (a *Agent) Snapshot() Snapshot { return a.obs.snapshot() }

// emit logs nothing: it hands the event to the OnEvent hook.
func (o *observations) emit(e audit.Event) {
	if e.Time.IsZero() {
		e.Time = o.now()
	}
	if f := o.hook.Load(); f != nil && *f != nil {
		(*f)(e)
	}
}

func (o *observations) snapshot() Snapshot {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	s := Snapshot{MaxTunnels: o.max, Ended: slices.Clone(o.ended)}
	slices.Reverse(s.Ended)
	sum := map[string]tunnel.ServiceStats{}
	for k, t := range o.totals {
		t.Active = 0
		sum[k] = t
	}
	for _, t := range o.live {
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

// setMax records the max_tunnels Snapshot reports (from New and reloads).
func (o *observations) setMax(maxTunnels int) {
	o.mu.Lock()
	o.max = maxTunnels
	o.mu.Unlock()
}

// addLive adds a tunnel to the view. local is max_tunnel_lifetime, 0 when
// it is not set.
func (o *observations) addLive(t *tunnelEntry, local time.Duration) {
	st := &TunnelStatus{ID: t.id, Region: t.rec.Region, Services: slices.Clone(t.rec.Services),
		State: "connecting", Opened: t.started, Resumed: t.resumed}
	if local > 0 {
		st.LocalLifetime = local.String()
		st.expires = t.rec.Expires
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.live == nil {
		o.live = map[string]*TunnelStatus{}
		o.totals = map[string]tunnel.ServiceStats{}
	}
	o.live[t.id] = st
}

// attachStats attaches a running session's counters to its tunnel.
func (o *observations) attachStats(id string, r runner) {
	s, ok := r.(interface{ Stats() []tunnel.ServiceStats })
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if t := o.live[id]; t != nil {
		t.stats = s.Stats
	}
}

// update changes a live tunnel's status.
func (o *observations) update(id string, f func(*TunnelStatus)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if t := o.live[id]; t != nil {
		f(t)
	}
}

// endLive moves a tunnel from live to ended, keeping its traffic in the
// totals; the session has returned, so its counters are final.
func (o *observations) endLive(id, reason string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.live[id]
	if t == nil {
		return
	}
	delete(o.live, id)
	if t.stats != nil {
		for _, st := range t.stats() {
			addStats(o.totals, st)
		}
	}
	e := EndedTunnel{ID: id, ChannelID: t.ChannelID, Services: t.Services, Opened: t.Opened, Ended: o.now(), Reason: reason}
	if err != nil {
		e.Err = err.Error()
	}
	o.ended = append(o.ended, e)
	if len(o.ended) > endedKept {
		o.ended = slices.Delete(o.ended, 0, len(o.ended)-endedKept)
	}
}

// channelOf is the tunnel's current (or last) data-plane channel id.
func (o *observations) channelOf(id string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if t := o.live[id]; t != nil {
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

// connected records a (re)connection of the tunnel's WebSocket.
func (o *observations) connected(id string, e tunnel.Event) {
	now := o.now()
	o.update(id, func(s *TunnelStatus) {
		if !s.ConnectedSince.IsZero() || s.ChannelID != "" || s.State == "reconnecting" {
			s.Reconnects++
		}
		s.State, s.ConnectedSince, s.ChannelID, s.Protocol = "connected", now, e.ChannelID, protocolVersion(e.Subprotocol)
	})
}
