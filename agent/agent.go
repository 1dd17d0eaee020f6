// Package agent is the device daemon's core: notifications in, tunnels out.
// It validates and deduplicates notifications, enforces the services
// allow-list and the tunnel cap, runs one destination tunnel.Session per
// tunnel, persists what is needed to resume tunnels across restarts, and
// writes the audit trail.
//
// Tunnel identity: notifications carry no tunnel id, so a tunnel is known by
// its access token (tokenID, a hash). An identical notification is a
// duplicate; a new token is a new session. A rotated token for an existing
// tunnel therefore starts a new session, and the old one ends by itself:
// the service revokes the old token, so its next handshake is refused (4xx,
// final) and its state file is removed. When the cap is reached, a new
// notification may replace an existing tunnel of the same region and
// services that is not connected (the usual rotation case); otherwise it is
// refused.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
)

// Sentinel errors.
var (
	// ErrSourceEnded means the notification source stopped without an error
	// while the agent was still running.
	ErrSourceEnded = errors.New("notification source ended")
	// errExpired and errReplaced are context causes that end a tunnel.
	errExpired  = errors.New("tunnel lifetime reached")
	errReplaced = errors.New("replaced by a newer notification")
)

const (
	inboxSize   = 64
	endedMemory = 256
)

// Agent receives notifications from a Source and serves tunnels.
type Agent struct {
	cfg        config.Config
	src        notify.Source
	log        *slog.Logger
	now        func() time.Time
	newSession sessionFactory

	inbox     chan []byte
	ready     chan struct{}
	readyOnce sync.Once
	readyHook atomic.Pointer[func()]
	eventHook atomic.Pointer[func(audit.Event)]
	view      view // what Snapshot reports

	// Owned by the Run goroutine.
	store    *store
	tunnels  map[string]*tunnelEntry
	ended    []string       // recently ended tunnel ids, oldest first
	replaced []*tunnelEntry // cancelled for a rotation, ending pending
	endings  chan ending
	wg       sync.WaitGroup
}

type tunnelEntry struct {
	id        string
	rec       *record
	started   time.Time
	cancel    context.CancelCauseFunc
	connected atomic.Bool
}

type ending struct {
	id  string
	err error
	ctx context.Context
}

// New checks the configuration and returns an Agent. log must not be nil.
func New(cfg config.Config, src notify.Source, log *slog.Logger) (*Agent, error) {
	if err := cfg.ValidateTunnel(); err != nil {
		return nil, err
	}
	if src == nil || log == nil {
		return nil, errors.New("agent: a notification source and a logger are required")
	}
	return &Agent{
		cfg: cfg, src: src, log: log, now: time.Now,
		newSession: newTunnelSession,
		inbox:      make(chan []byte, inboxSize),
		ready:      make(chan struct{}),
		tunnels:    make(map[string]*tunnelEntry),
		endings:    make(chan ending),
	}, nil
}

// Ready is closed after the first successful subscription.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// OnReady sets a function called after every successful subscription
// (e.g. to report readiness to systemd). Set it before Run.
func (a *Agent) OnReady(f func()) { a.readyHook.Store(&f) }

// Run serves until ctx is cancelled (nil) or the source fails (error).
// Tunnels are resumed from the state directory first. On return every
// tunnel session has ended; their state is kept for the next start.
func (a *Agent) Run(ctx context.Context) error {
	st, err := newStore(a.cfg.StateDir)
	if err != nil {
		return err
	}
	a.store = st
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.resume(ctx)

	srcErr := make(chan error, 1)
	a.wg.Go(func() { srcErr <- a.src.Run(ctx, a.deliver, a.onReady) })
	defer a.shutdown(cancel)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-srcErr:
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = ErrSourceEnded
			}
			return fmt.Errorf("notifications: %w", err)
		case p := <-a.inbox:
			a.handle(ctx, p)
		case e := <-a.endings:
			a.finish(ctx, e)
		}
	}
}

// shutdown cancels everything and waits for the sessions and the source.
func (a *Agent) shutdown(cancel context.CancelFunc) {
	cancel()
	// A cancelled parent tells finish that the agent is stopping: the state stays.
	stopping, stop := context.WithCancel(context.Background())
	stop()
	for len(a.tunnels)+len(a.replaced) > 0 {
		a.finish(stopping, <-a.endings)
	}
	a.wg.Wait()
}

// deliver is the Source callback: it never blocks.
func (a *Agent) deliver(payload []byte) {
	select {
	case a.inbox <- payload:
	default:
		a.log.Warn("notification dropped: agent busy (queue full)", attrEvent, "notification.dropped")
		a.emit(audit.Event{Event: audit.NotificationDropped, Reason: audit.ReasonQueueFull})
	}
}

func (a *Agent) onReady() {
	a.readyOnce.Do(func() { close(a.ready) })
	if f := a.readyHook.Load(); f != nil && *f != nil {
		(*f)()
	}
}

func (a *Agent) wasEnded(id string) bool { return slices.Contains(a.ended, id) }

func (a *Agent) rememberEnded(id string) {
	a.ended = append(a.ended, id)
	if len(a.ended) > endedMemory {
		a.ended = a.ended[len(a.ended)-endedMemory:]
	}
}
