package agent

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

type eventRec struct {
	mu sync.Mutex
	ev []audit.Event
}

func (r *eventRec) add(e audit.Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

func (r *eventRec) names() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n []string
	for _, e := range r.ev {
		n = append(n, e.Event+":"+e.Reason)
	}
	return strings.Join(n, " ")
}

func waitSnap(t *testing.T, a *Agent, what string, ok func(Snapshot) bool) Snapshot {
	t.Helper()
	var s Snapshot
	if !tunneltest.Poll(10*time.Second, func() bool { s = a.Snapshot(); return ok(s) }) {
		t.Fatalf("timed out waiting for %s: %+v", what, s)
	}
	return s
}

// The snapshot and the events of one tunnel's life with a local lifetime,
// and of the notifications that open nothing.
func TestSnapshotAndEvents(t *testing.T) {
	rec := &eventRec{}
	h := newHarness(t, func(c *config.Config) { c.MaxTunnelLifetime = 5 * time.Minute; c.MaxTunnels = 1 })
	h.setup = func(a *Agent) { a.OnEvent(rec.add) }
	h.start()
	h.publish(note("tok-1", "SSH"))
	s := h.session()
	id := tokenID("tok-1")
	snap := waitSnap(t, h.agent, "connected", func(s Snapshot) bool { return len(s.Tunnels) == 1 && s.Tunnels[0].State == "connected" })
	tu := snap.Tunnels[0]
	left, err := time.ParseDuration(tu.LifetimeLeft)
	if tu.ID != id || tu.ChannelID != "ch" || tu.LocalLifetime != "5m0s" || err != nil || left <= 0 || left > 5*time.Minute {
		t.Fatalf("tunnel: %+v", tu)
	}
	// The snapshot shows the state before the event is sent (from the
	// session's goroutine, not the loop that handles the next ones).
	tunneltest.WaitFor(t, 10*time.Second, "the tunnel.connected event", func() bool { return strings.Contains(rec.names(), "tunnel.connected") })
	h.publish("not json")
	h.publish(note("tok-1", "SSH"))
	h.publish(note("tok-2", "SSH"))      // over max_tunnels
	h.publish(note("tok-3", "UNMAPPED")) // no allowed service
	// Handled in order: once the last one is, the others were.
	if !tunneltest.Poll(10*time.Second, func() bool { return strings.Contains(rec.names(), audit.ReasonNoService) }) {
		t.Fatalf("events: %s", rec.names())
	}
	s.result <- nil
	snap = waitSnap(t, h.agent, "ended", func(s Snapshot) bool { return len(s.Tunnels) == 0 && len(s.Ended) == 1 })
	if e := snap.Ended[0]; e.ID != id || e.Reason != "closed by service" || e.ChannelID != "ch" {
		t.Fatalf("ended: %+v", e)
	}
	// Here too the view changes before the event is sent (observations.tunnelClosed).
	tunneltest.WaitFor(t, 10*time.Second, "the tunnel.closed event", func() bool { return strings.Contains(rec.names(), audit.TunnelClosed) })
	want := "tunnel.opened: tunnel.connected: notification.dropped:"
	if got := rec.names(); !strings.HasPrefix(got, want) || !strings.Contains(got, "notification.duplicate:tunnel already open") ||
		!strings.Contains(got, "tunnel.refused:"+audit.ReasonMaxTunnels) || !strings.Contains(got, "service.refused:") ||
		!strings.Contains(got, "tunnel.refused:"+audit.ReasonNoService) || !strings.HasSuffix(got, "tunnel.closed:closed by service") {
		t.Fatalf("events: %s", got)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"local_lifetime":"5m0s"`) || strings.Contains(logs, `"expires"`) {
		t.Errorf("tunnel.opened should log local_lifetime and no expiry:\n%s", logs)
	}
}

// Without max_tunnel_lifetime nothing about an expiry is claimed.
func TestNoLifetimeClaimed(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.publish(note("tok-1", "SSH"))
	h.session()
	snap := waitSnap(t, h.agent, "open", func(s Snapshot) bool { return len(s.Tunnels) == 1 })
	if tu := snap.Tunnels[0]; tu.LocalLifetime != "" || tu.LifetimeLeft != "" {
		t.Fatalf("tunnel: %+v", tu)
	}
	if strings.Contains(h.logs.String(), "lifetime") || strings.Contains(h.logs.String(), "expires") {
		t.Errorf("log claims a lifetime:\n%s", h.logs.String())
	}
	// The status follows a reload of max_tunnels.
	if n := snap.MaxTunnels; n != config.DefaultMaxTunnels {
		t.Errorf("MaxTunnels %d", n)
	}
	cfg := h.cfg
	cfg.MaxTunnels = 3
	if _, err := h.agent.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if n := h.agent.Snapshot().MaxTunnels; n != 3 {
		t.Errorf("MaxTunnels after a reload: %d", n)
	}
}
