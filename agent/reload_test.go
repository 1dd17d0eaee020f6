package agent

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestReload(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.publish(note("tok-A", "SSH"))
	s := h.session()

	next := h.cfg
	next.Services = map[string]string{"SSH": "127.0.0.1:2222", "NEW": "127.0.0.1:8081"}
	next.MaxTunnels, next.LogLevel = 3, "debug"
	changed, err := h.agent.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"services", "max_tunnels", "log_level"}; !slices.Equal(changed, want) {
		t.Errorf("changed %v, want %v", changed, want)
	}
	select {
	case got := <-s.services:
		if !maps.Equal(got, next.Services) {
			t.Errorf("live tunnel got services %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the live tunnel did not get the new services")
	}
	// The next tunnel is built with the new map.
	h.publish(note("tok-B", "NEW"))
	if s2 := h.session(); s2.cfg.Services["NEW"] != "127.0.0.1:8081" {
		t.Errorf("new tunnel services %v", s2.cfg.Services)
	}
	if changed, err := h.agent.Reload(next); err != nil || len(changed) != 0 {
		t.Errorf("same config again: %v %v", changed, err)
	}

	tests := []struct {
		name string
		mod  func(*config.Config)
		want error
	}{
		{"state_dir", func(c *config.Config) { c.StateDir = t.TempDir() }, ErrNeedsRestart},
		{"queue_budget", func(c *config.Config) { c.QueueBudget = 32 << 20 }, ErrNeedsRestart},
		{"max_total_connections", func(c *config.Config) { c.MaxTotalConnections = 1000 }, ErrNeedsRestart},
		{"invalid", func(c *config.Config) { c.Services = nil }, config.ErrInvalid},
		{"bad level", func(c *config.Config) { c.LogLevel = "loud" }, config.ErrInvalid},
	}
	for _, tt := range tests {
		bad := next
		bad.Services = maps.Clone(next.Services)
		tt.mod(&bad)
		if _, err := h.agent.Reload(bad); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	// Refused reloads changed nothing.
	if changed, err := h.agent.Reload(next); err != nil || len(changed) != 0 {
		t.Errorf("after refusals: %v %v", changed, err)
	}
	h.stop()
	if _, err := h.agent.Reload(next); !errors.Is(err, ErrStopped) {
		t.Errorf("after stop: %v", err)
	}
}

// The heartbeat comes from the event loop; OnStarted is called.
func TestHeartbeatAndStarted(t *testing.T) {
	var beats atomic.Int32
	var started atomic.Bool
	h := newHarness(t, nil)
	h.setup = func(a *Agent) {
		a.SetHeartbeat(5*time.Millisecond, func() { beats.Add(1) })
		a.OnStarted(func() { started.Store(true) })
	}
	h.start()
	if !tunneltest.Poll(10*time.Second, func() bool { return beats.Load() >= 3 && started.Load() }) {
		t.Fatalf("%d heartbeats, started %v", beats.Load(), started.Load())
	}
}

// A token refused as "previously used" at the first connection, right
// after the notification, means another client on the device took it.
func TestTokenTakenWarning(t *testing.T) {
	h := newHarness(t, nil)
	h.connect = false
	h.start()
	h.publish(note("tok-A", "SSH"))
	h.session().result <- &tunnel.HandshakeError{StatusCode: 400,
		Message: "Invalid access token: The access token was previously used and can not be used again."}
	h.logs.waitLog(t, `"event":"tunnel.token_taken"`)
	l := h.logs.String()
	for _, w := range []string{"Device Client", "aws.greengrass.SecureTunneling", "tunneling.enabled: false"} {
		if !strings.Contains(l, w) {
			t.Errorf("warning lacks %q:\n%s", w, l)
		}
	}
	// A tunnel that had connected before is not a race: no warning.
	h2 := newHarness(t, nil)
	h2.start()
	h2.publish(note("tok-B", "SSH"))
	h2.session().result <- &tunnel.HandshakeError{StatusCode: 400, Message: "The access token was previously used"}
	h2.logs.waitLog(t, `"event":"tunnel.closed"`)
	if strings.Contains(h2.logs.String(), "token_taken") {
		t.Error("warned for a tunnel that had connected")
	}
}
