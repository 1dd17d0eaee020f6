package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// logBuf is a goroutine-safe log sink that tests search.
type logBuf struct{ tunneltest.SyncBuffer }

// waitLog waits until the log contains every string in want.
func (l *logBuf) waitLog(t *testing.T, want ...string) {
	t.Helper()
	missing := ""
	if !tunneltest.Poll(20*time.Second, func() bool {
		s := l.String()
		missing = ""
		for _, w := range want {
			if !strings.Contains(s, w) {
				missing = w
				return false
			}
		}
		return true
	}) {
		t.Fatalf("log never contained %q; log:\n%s", missing, l.String())
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
