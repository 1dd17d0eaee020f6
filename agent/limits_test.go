package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

// A tunnel whose data endpoint never answers gives up its max_tunnels slot
// to a new notification once it has not connected for neverConnectedGrace.
func TestNwasConnectedTunnelGivesUpItsSlot(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxTunnels = 2 })
	h.connect = false
	t0 := time.Now()
	h.clock.Store(t0.UnixNano())
	h.start()
	h.publish(note("tok-1", "SSH"))
	h.session()
	h.clock.Store(t0.Add(time.Second).UnixNano())
	h.publish(note("tok-2", "HTTP"))
	h.session()
	// Within the grace period a different tunnel is refused.
	h.clock.Store(t0.Add(neverConnectedGrace / 2).UnixNano())
	h.publish(note("tok-3", "SSH", "HTTP"))
	h.logs.waitLog(t, "max_tunnels reached")
	// After it, the oldest tunnel that never connected makes room.
	h.clock.Store(t0.Add(neverConnectedGrace + time.Minute).UnixNano())
	h.publish(note("tok-4", "SSH", "HTTP"))
	if s := h.session(); s.cfg.AccessToken != "tok-4" {
		t.Fatalf("session for %s", tokenID(s.cfg.AccessToken))
	}
	h.logs.waitLog(t, "has not connected since it started", tokenID("tok-1"))
	h.logs.waitLog(t, `"reason":"replaced"`, tokenID("tok-1"))
	files := strings.Join(stateFiles(t, h.cfg.StateDir), " ")
	if strings.Contains(files, tokenID("tok-1")) || !strings.Contains(files, tokenID("tok-4")) {
		t.Errorf("state files %s", files)
	}
}

// A tunnel that connected once keeps its slot: only tunnels that never
// worked are replaced.
func TestConnectedOnceKeepsItsSlot(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxTunnels = 1 })
	t0 := time.Now()
	h.clock.Store(t0.UnixNano())
	h.start()
	h.publish(note("tok-1", "SSH"))
	s := h.session()
	h.logs.waitLog(t, `"event":"tunnel.connected"`)
	s.cfg.OnEvent(tunnel.Event{Kind: tunnel.EventDisconnected})
	h.logs.waitLog(t, `"event":"tunnel.disconnected"`)
	h.clock.Store(t0.Add(time.Hour).UnixNano())
	h.publish(note("tok-2", "HTTP"))
	h.logs.waitLog(t, "max_tunnels reached")
}

func TestStateDirMadePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *config.Config) { c.StateDir = dir })
	h.start()
	for _, d := range []string{dir, filepath.Join(dir, "tunnels")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
}

// A payload too large to be a notification is dropped before the inbox (the
// inbox holds parsed notifications), so that it is not kept referenced
// until the next notification.
func TestOversizedPayloadNotQueued(t *testing.T) {
	var logs bytes.Buffer
	cfg := config.Default()
	cfg.Services = map[string]string{"SSH": "127.0.0.1:22"}
	a, err := New(cfg, &chanSource{}, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.deliver(make([]byte, 10<<20))
	a.deliver(make([]byte, notify.MaxPayload+1))
	if n := len(a.inbox); n != 0 {
		t.Errorf("%d oversized payloads queued", n)
	}
	if n := strings.Count(logs.String(), "notification dropped"); n != 2 {
		t.Errorf("%d drop lines, want 2:\n%s", n, logs.String())
	}
	a.deliver([]byte(note("tok-1", "SSH")))
	if len(a.inbox) != 1 {
		t.Error("a valid notification was not queued")
	}
}
