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
//
// Roles: Run's event loop is the one goroutine that decides (dedupe,
// rotation, cap, allow-list), resumes, reloads and ends tunnels; it alone
// owns the registry (the tunnel entries and the max_tunnels cap,
// registry.go) and the state store, so neither has a lock. What other
// goroutines see or are told, Snapshot's view, the audit events and the
// sessions' event handlers, goes through observations (observe.go), which
// decides nothing and never blocks. Each session's tunnel.Config is built
// by sessionConfig (session.go).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
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

// takeWait is how long the source may wait for room in the inbox before
// leaving a notification unacknowledged (the broker redelivers it); a
// variable for tests.
var takeWait = 2 * time.Second

const (
	inboxSize = 64
	// At most dropWarnBurst malformed notifications are logged per
	// dropWarnWindow; the first line after that says how many were not.
	dropWarnBurst  = 32
	dropWarnWindow = time.Minute
)

// Agent receives notifications from a Source and serves tunnels. Its
// unexported methods run on the Run goroutine, except deliver and onReady,
// which the source calls from its own.
type Agent struct {
	cfg        config.Config
	src        notify.Source
	log        *slog.Logger
	now        func() time.Time
	newSession sessionFactory
	limits     *tunnel.Limits // shared by every tunnel session

	inbox     chan notify.Notification
	quit      chan struct{} // closed when Run stops taking notifications
	drops     dropLog
	obs       *observations // log lines, audit events and what Snapshot reports
	ready     chan struct{}
	readyOnce sync.Once
	readyHook atomic.Pointer[func()]
	started   func()        // after the state is loaded (set before Run)
	beat      func()        // from the event loop every beatEvery
	beatEvery time.Duration // 0: no heartbeat
	reloads   chan reloadRequest

	// Owned by the Run goroutine.
	store   *store
	reg     *registry
	endings chan ending
	wg      sync.WaitGroup
}

// New checks the configuration and returns an Agent. log must not be nil.
func New(cfg config.Config, src notify.Source, log *slog.Logger) (*Agent, error) {
	if err := cfg.ValidateTunnel(); err != nil {
		return nil, err
	}
	if src == nil || log == nil {
		return nil, errors.New("agent: a notification source and a logger are required")
	}
	a := &Agent{
		cfg: cfg, src: src, log: log, now: time.Now,
		newSession: newTunnelSession,
		limits:     tunnel.NewLimits(cfg.MaxTotalConnections, int64(cfg.QueueBudget), tunnel.DefaultMaxDials),
		inbox:      make(chan notify.Notification, inboxSize),
		quit:       make(chan struct{}),
		ready:      make(chan struct{}),
		reg:        newRegistry(cfg.MaxTunnels),
		endings:    make(chan ending),
		reloads:    make(chan reloadRequest),
	}
	// now is read through a: tests set a.now after New.
	a.obs = &observations{log: log, now: func() time.Time { return a.now() }, max: cfg.MaxTunnels}
	return a, nil
}

// Ready is closed after the first successful subscription.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// OnReady sets a function called after every successful subscription
// (e.g. to report readiness to systemd). Set it before Run.
func (a *Agent) OnReady(f func()) { a.readyHook.Store(&f) }

// Limits are the bounds every tunnel session shares (connections, the
// queue budget); tunnel-agent watches the bytes queued to set its memory
// limit. Call Limits.Watch before Run.
func (a *Agent) Limits() *tunnel.Limits { return a.limits }

// OnStarted sets a function called once Run has loaded the state and
// started the notification source (connecting in the background): the
// moment to tell systemd READY=1. Set it before Run.
func (a *Agent) OnStarted(f func()) { a.started = f }

// SetHeartbeat makes Run's event loop call f every interval (the systemd
// watchdog: a wedged loop stops the calls). Set it before Run.
func (a *Agent) SetHeartbeat(interval time.Duration, f func()) { a.beatEvery, a.beat = interval, f }

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
	if a.started != nil {
		a.started()
	}
	var beat <-chan time.Time
	if a.beatEvery > 0 && a.beat != nil {
		t := time.NewTicker(a.beatEvery)
		defer t.Stop()
		beat = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat:
			a.beat()
		case r := <-a.reloads:
			r.reply <- a.applyReload(r.cfg)
		case err := <-srcErr:
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = ErrSourceEnded
			}
			return fmt.Errorf("notifications: %w", err)
		case n := <-a.inbox:
			a.handle(ctx, n)
		case e := <-a.endings:
			a.finish(ctx, e)
		}
	}
}

// shutdown cancels everything and waits for the sessions and the source.
func (a *Agent) shutdown(cancel context.CancelFunc) {
	cancel()
	close(a.quit)
	// A cancelled parent tells finish that the agent is stopping: the state stays.
	stopping, stop := context.WithCancel(context.Background())
	stop()
	for a.reg.pending() > 0 {
		a.finish(stopping, <-a.endings)
	}
	a.wg.Wait()
}

// deliver is the Source callback. A malformed notification is dropped
// here, before it takes a slot in the inbox, and acknowledged (redelivery
// cannot fix it). A valid one waits up to takeWait for room; if there is
// none, deliver reports false so the source leaves it unacknowledged and
// the broker delivers it again.
func (a *Agent) deliver(payload []byte) bool {
	n, err := notify.Parse(payload)
	if err != nil {
		ev := audit.Event{Event: audit.NotificationDropped, Reason: err.Error()}
		if !a.drops.warn(a.log, err, len(payload)) {
			ev.Event = audit.NotificationDroppedQuiet // counted, not published: junk must not crowd out the trail
		}
		a.obs.emit(ev)
		return true
	}
	select {
	case a.inbox <- n:
		return true
	default:
	}
	t := time.NewTimer(takeWait)
	defer t.Stop()
	select {
	case a.inbox <- n:
		return true
	case <-a.quit:
		return false
	case <-t.C:
		a.log.Warn("notification not taken: agent busy (queue full); it stays unacknowledged and the broker delivers it again",
			attrEvent, audit.NotificationDeferred)
		a.obs.emit(audit.Event{Event: audit.NotificationDeferred, Reason: audit.ReasonQueueFull})
		return false
	}
}

// dropLog rate-limits the warning for malformed notifications: junk must
// not fill the device's flash.
type dropLog struct {
	mu          sync.Mutex
	windowStart time.Time
	logged      int
	suppressed  int
}

// warn logs the drop unless too many were logged lately; it reports
// whether it did.
func (d *dropLog) warn(log *slog.Logger, reason error, size int) bool {
	d.mu.Lock()
	now := time.Now()
	if now.Sub(d.windowStart) >= dropWarnWindow {
		d.windowStart, d.logged = now, 0
	}
	if d.logged >= dropWarnBurst {
		d.suppressed++
		d.mu.Unlock()
		return false
	}
	d.logged++
	n := d.suppressed
	d.suppressed = 0
	d.mu.Unlock()
	attrs := []any{attrEvent, "notification.dropped", attrReason, reason.Error(), attrBytes, size}
	if n > 0 {
		attrs = append(attrs, attrSuppressed, n)
	}
	log.Warn("notification dropped", attrs...)
	return true
}

func (a *Agent) onReady() {
	a.readyOnce.Do(func() { close(a.ready) })
	if f := a.readyHook.Load(); f != nil && *f != nil {
		(*f)()
	}
}
