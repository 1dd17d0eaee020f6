package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// logBuf is a goroutine-safe log sink that tests search.
type logBuf struct{ tunneltest.SyncBuffer }

// waitLog waits until the log contains every string in want.
func (l *logBuf) waitLog(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := l.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(s, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never contained %q; log:\n%s", missing, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// chanSource is a notify.Source fed by a channel.
type chanSource struct {
	payloads chan []byte
	err      error
}

func (s *chanSource) Run(ctx context.Context, deliver func([]byte) bool, ready func()) error {
	ready()
	for {
		select {
		case <-ctx.Done():
			return nil
		case p, ok := <-s.payloads:
			if !ok {
				return s.err
			}
			deliver(p)
		}
	}
}

// fakeSession stands in for a tunnel.Session.
type fakeSession struct {
	cfg      tunnel.Config
	result   chan error             // what Run returns, unless ctx ends first
	services chan map[string]string // what SetServices was given
}

func (f *fakeSession) SetServices(m map[string]string) error {
	select {
	case f.services <- m:
	default:
	}
	return nil
}

func (f *fakeSession) Run(ctx context.Context) error {
	f.cfg.OnEvent(tunnel.Event{Kind: tunnel.EventConnected, ChannelID: "ch"})
	select {
	case <-ctx.Done():
		return nil
	case err := <-f.result:
		return err
	}
}

type harness struct {
	t        *testing.T
	cfg      config.Config
	src      *chanSource
	logs     *logBuf
	sessions chan *fakeSession
	cancel   context.CancelFunc
	done     chan error
	connect  bool
	clock    atomic.Int64 // unix nanoseconds of the agent's clock; 0: real time
	agent    *Agent
	setup    func(*Agent) // before Run
}

func newHarness(t *testing.T, mod func(*config.Config)) *harness {
	cfg := config.Default()
	cfg.ThingName = "pi-1"
	cfg.StateDir = t.TempDir()
	cfg.Services = map[string]string{"SSH": "127.0.0.1:22", "HTTP": "127.0.0.1:8080"}
	if mod != nil {
		mod(&cfg)
	}
	return &harness{t: t, cfg: cfg, logs: &logBuf{}, sessions: make(chan *fakeSession, 16), connect: true}
}

func (h *harness) start() {
	h.t.Helper()
	h.src = &chanSource{payloads: make(chan []byte)}
	a, err := New(h.cfg, h.src, slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		h.t.Fatal(err)
	}
	if h.clock.Load() != 0 {
		a.now = func() time.Time { return time.Unix(0, h.clock.Load()) }
	}
	a.newSession = func(c tunnel.Config) (runner, error) {
		f := &fakeSession{cfg: c, result: make(chan error, 1), services: make(chan map[string]string, 4)}
		if !h.connect {
			f.cfg.OnEvent = func(tunnel.Event) {}
		}
		h.sessions <- f
		return f, nil
	}
	h.agent = a
	if h.setup != nil {
		h.setup(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	<-a.Ready()
	h.t.Cleanup(func() { h.stop() })
}

func (h *harness) stop() error {
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("agent did not stop")
	}
	return nil
}

func (h *harness) publish(p string) { h.src.payloads <- []byte(p) }

func (h *harness) session() *fakeSession {
	h.t.Helper()
	select {
	case s := <-h.sessions:
		return s
	case <-time.After(10 * time.Second):
		h.t.Fatal("no session started")
	}
	return nil
}

func (h *harness) noSession() {
	h.t.Helper()
	// A marker notification is handled after everything published before it.
	h.publish(note("marker-token", "SSH"))
	s := h.session()
	if s.cfg.AccessToken != "marker-token" {
		h.t.Fatalf("unexpected session for token hash %s", tokenID(s.cfg.AccessToken))
	}
}

func note(token string, services ...string) string {
	b, _ := json.Marshal(map[string]any{"clientAccessToken": token, "clientMode": "destination",
		"region": "us-east-1", "services": services})
	return string(b)
}

func stateFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "tunnels", "*.json"))
	return m
}

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
	rec := &record{Version: recordVersion, AccessToken: "tok", ClientToken: tunnel.NewClientToken(), Region: "us-east-1",
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
	tok := tunnel.NewClientToken()
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
