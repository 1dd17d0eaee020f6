package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

func TestDuplicateOpensOneTunnel(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.publish(note("tok-A", "SSH"))
	s := h.session()
	h.publish(note("tok-A", "SSH"))
	h.logs.waitLog(t, "duplicate notification ignored")
	h.noSession()
	if s.cfg.Mode != tunnel.ModeDestination || s.cfg.Region != "us-east-1" || len(s.cfg.Services) != 2 {
		t.Errorf("session config %+v", s.cfg)
	}
}

func TestMalformedChangesNothing(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	bad := notifytest.BadPayloads()
	for _, p := range bad {
		h.publish(p)
	}
	h.noSession()
	// One line each, up to the rate limit.
	if got := strings.Count(h.logs.String(), "notification dropped"); got != min(len(bad), dropWarnBurst) {
		t.Errorf("%d drop lines for %d bad payloads", got, len(bad))
	}
	if strings.Contains(h.logs.String(), notifytest.GoodToken) {
		t.Error("token in log")
	}
}

func TestCapRefuses(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxTunnels = 2 })
	h.start()
	h.publish(note("tok-1", "SSH"))
	h.publish(note("tok-2", "HTTP"))
	h.session()
	h.session()
	h.publish(note("tok-3", "SSH", "HTTP"))
	h.logs.waitLog(t, "max_tunnels reached")
	if n := len(stateFiles(t, h.cfg.StateDir)); n != 2 {
		t.Errorf("%d state files, want 2", n)
	}
}

func TestRotationAtCapReplacesDisconnected(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxTunnels = 1 })
	h.connect = false // sessions never report connected
	h.start()
	h.publish(note("tok-old", "SSH"))
	old := h.session()
	h.publish(note("tok-new", "SSH"))
	s := h.session()
	if s.cfg.AccessToken != "tok-new" || old.cfg.AccessToken != "tok-old" {
		t.Fatal("wrong sessions")
	}
	h.logs.waitLog(t, `"reason":"replaced"`, tokenID("tok-old"))
	files := stateFiles(t, h.cfg.StateDir)
	if len(files) != 1 || !strings.Contains(files[0], tokenID("tok-new")) {
		t.Errorf("state files %v", files)
	}
}

func TestRotatedTokenOldSessionRejected(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.publish(note("tok-old", "SSH"))
	old := h.session()
	h.publish(note("tok-new", "SSH"))
	h.session()
	old.result <- fmt.Errorf("connect: %w", &tunnel.HandshakeError{StatusCode: 401, Message: "revoked"})
	h.logs.waitLog(t, `"reason":"rejected by service"`)
	files := stateFiles(t, h.cfg.StateDir)
	if len(files) != 1 || !strings.Contains(files[0], tokenID("tok-new")) {
		t.Errorf("state files %v", files)
	}
	// The old token's notification again (QoS 1 redelivery) is ignored.
	h.publish(note("tok-old", "SSH"))
	h.logs.waitLog(t, "notification for an ended tunnel ignored")
}

func TestUnmappedServices(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.publish(note("tok-1", "SSH", "VNC"))
	s := h.session()
	h.logs.waitLog(t, `"service":"VNC"`, "add `VNC: <host:port or unix:/path>` under services:")
	if _, ok := s.cfg.Services["VNC"]; ok {
		t.Error("unmapped service passed to the session")
	}
	h.publish(note("tok-2", "VNC", "RDP"))
	h.logs.waitLog(t, "none of its services is in the services map")
	h.noSession()
}

func TestStateLifecycleAndResume(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.publish(note("tok-keep", "SSH"))
	s1 := h.session()
	h.publish(note("tok-close", "HTTP"))
	s2 := h.session()

	dir := filepath.Join(h.cfg.StateDir, "tunnels")
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v err %v", fi.Mode(), err)
	}
	for _, f := range stateFiles(t, h.cfg.StateDir) {
		if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, fi.Mode())
		}
	}
	s2.result <- nil // service closed the tunnel
	h.logs.waitLog(t, `"reason":"closed by service"`)
	if files := stateFiles(t, h.cfg.StateDir); len(files) != 1 {
		t.Fatalf("state files %v", files)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	h.logs.waitLog(t, `"reason":"agent stopping"`)

	// Restart: the open tunnel resumes with the same tokens.
	h.start()
	r := h.session()
	if r.cfg.AccessToken != s1.cfg.AccessToken || r.cfg.ClientToken != s1.cfg.ClientToken || r.cfg.ClientToken == "" {
		t.Errorf("resumed with different tokens")
	}
	h.logs.waitLog(t, `"resumed":true`)
	for _, tok := range []string{"tok-keep", "tok-close", s1.cfg.ClientToken} {
		if strings.Contains(h.logs.String(), tok) {
			t.Errorf("secret %q in the log", tok)
		}
	}
}

func TestExpiry(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxTunnelLifetime = 50 * time.Millisecond })
	h.start()
	h.publish(note("tok-1", "SSH"))
	h.session()
	h.logs.waitLog(t, `"reason":"expired"`)
	if files := stateFiles(t, h.cfg.StateDir); len(files) != 0 {
		t.Errorf("state files %v", files)
	}
}

func TestExpiredWhileStoppedNotResumed(t *testing.T) {
	h := newHarness(t, nil)
	st, err := newStore(h.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	rec := &record{Version: recordVersion, AccessToken: "tok", ClientToken: protocol.NewClientToken(), Region: "us-east-1",
		Services: []string{"SSH"}, Created: time.Now().Add(-2 * time.Hour), Expires: time.Now().Add(-time.Hour)}
	if err := st.save(tokenID("tok"), rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(st.dir, "garbage.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.logs.waitLog(t, "expired while the agent was stopped", "removing unreadable tunnel state file")
	h.noSession()
	if files := stateFiles(t, h.cfg.StateDir); len(files) != 1 { // the marker's
		t.Errorf("state files %v", files)
	}
}

func TestSourceErrorStopsAgent(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.publish(note("tok-1", "SSH"))
	h.session()
	h.src.err = errors.New("socket lost")
	close(h.src.payloads)
	select {
	case err := <-h.done:
		if err == nil || !strings.Contains(err.Error(), "socket lost") {
			t.Errorf("Run = %v", err)
		}
		h.cancel()
		h.cancel = nil
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop")
	}
	// The tunnel is kept for the restart.
	if files := stateFiles(t, h.cfg.StateDir); len(files) != 1 {
		t.Errorf("state files %v", files)
	}
}

func TestNewValidates(t *testing.T) {
	cfg := config.Default()
	if _, err := New(cfg, &chanSource{}, slog.New(slog.DiscardHandler)); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("got %v", err)
	}
}

func TestClientTokenShape(t *testing.T) {
	tok := protocol.NewClientToken()
	if len(tok) != 36 || strings.Trim(tok, "0123456789abcdef-") != "" {
		t.Errorf("client token %q", tok)
	}
	if tokenID("a") == tokenID("b") || len(tokenID("a")) != 24 {
		t.Error("tokenID")
	}
}

// At the cap, a connected tunnel with the same services is another
// operator's tunnel, not a rotation: the new notification is refused.
func TestCapDoesNotReplaceConnected(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxTunnels = 1 })
	h.start()
	h.publish(note("tok-a", "SSH"))
	h.session()
	h.logs.waitLog(t, `"event":"tunnel.connected"`)
	h.publish(note("tok-b", "SSH"))
	h.logs.waitLog(t, "max_tunnels reached")
	if files := stateFiles(t, h.cfg.StateDir); len(files) != 1 || !strings.Contains(files[0], tokenID("tok-a")) {
		t.Errorf("state files %v", files)
	}
}
