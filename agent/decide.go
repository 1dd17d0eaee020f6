package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

// handle turns one raw notification into at most one new tunnel.
func (a *Agent) handle(ctx context.Context, payload []byte) {
	n, err := notify.Parse(payload)
	if err != nil {
		a.log.Warn("notification dropped", attrEvent, "notification.dropped", attrReason, err.Error(), "bytes", len(payload))
		return
	}
	id := tokenID(n.ClientAccessToken)
	log := a.log.With(attrTunnel, id)
	if _, ok := a.tunnels[id]; ok {
		log.Info("duplicate notification ignored: tunnel already open", attrEvent, "notification.duplicate")
		return
	}
	if a.wasEnded(id) {
		log.Info("notification for an ended tunnel ignored", attrEvent, "notification.duplicate")
		return
	}
	if !a.allowedServices(log, n.Services) {
		a.rememberEnded(id)
		return
	}
	if len(a.tunnels) >= a.cfg.MaxTunnels && !a.makeRoom(log, n) {
		log.Warn("tunnel refused: max_tunnels reached; close a tunnel or raise max_tunnels",
			attrEvent, "tunnel.refused", "max_tunnels", a.cfg.MaxTunnels, attrServices, n.Services)
		return
	}
	now := a.now()
	rec := &record{
		Version: recordVersion, AccessToken: n.ClientAccessToken, ClientToken: tunnel.NewClientToken(),
		Region: n.Region, Services: n.Services, Created: now, Expires: now.Add(a.cfg.Lifetime()),
	}
	if err := a.store.save(id, rec); err != nil {
		// Serve anyway: only resuming after a restart is lost.
		log.Error("cannot persist tunnel; it will not survive an agent restart", attrErr, err)
	}
	a.start(ctx, id, rec, false)
}

// allowedServices logs every requested service missing from the allow-list
// and reports whether the tunnel can serve anything at all.
func (a *Agent) allowedServices(log *slog.Logger, services []string) bool {
	allowed := 0
	for _, s := range services {
		if _, ok := a.cfg.Services[s]; ok {
			allowed++
			continue
		}
		log.Warn("tunnel asks for a service that is not in the services map; its connections will be refused",
			attrEvent, "service.refused", attrService, s,
			attrHint, fmt.Sprintf("to allow it, add `%s: <host:port or unix:/path>` under services: in the config", s))
	}
	if len(services) > 0 && allowed == 0 {
		log.Error("tunnel refused: none of its services is in the services map",
			attrEvent, "tunnel.refused", attrServices, services)
		return false
	}
	return true
}

// makeRoom frees a slot for a notification at the cap by replacing a
// tunnel that looks like this one's previous token (same region and
// services) and is not connected or, failing that, the oldest tunnel that
// has not connected once in neverConnectedGrace (its data endpoint cannot
// be reached: it must not starve tunnels that can). It reports whether a
// slot was freed.
func (a *Agent) makeRoom(log *slog.Logger, n notify.Notification) bool {
	var rotated, stale *tunnelEntry
	now := a.now()
	for _, t := range a.tunnels {
		if t.connected.Load() {
			continue
		}
		if t.rec.Region == n.Region && sameSet(t.rec.Services, n.Services) && (rotated == nil || t.started.Before(rotated.started)) {
			rotated = t
		}
		if !t.everConnected.Load() && now.Sub(t.started) >= neverConnectedGrace && (stale == nil || t.started.Before(stale.started)) {
			stale = t
		}
	}
	old := rotated
	switch {
	case rotated != nil:
		log.Info("replacing a disconnected tunnel with the same services (token rotation)", "replaced", rotated.id)
	case stale != nil:
		old = stale
		log.Warn("replacing a tunnel that has not connected since it started: max_tunnels reached",
			attrEvent, "tunnel.replaced", "replaced", stale.id, "not_connected_for", now.Sub(stale.started).Round(time.Second).String())
	default:
		return false
	}
	old.cancel(errReplaced)
	// Not counted from now on; its ending still arrives and is handled.
	delete(a.tunnels, old.id)
	a.replaced = append(a.replaced, old)
	return true
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// start runs one tunnel session in its own goroutine.
func (a *Agent) start(ctx context.Context, id string, rec *record, resumed bool) {
	t := &tunnelEntry{id: id, rec: rec, started: a.now()}
	tctx, cancel := context.WithCancelCause(ctx)
	tctx, stop := context.WithDeadlineCause(tctx, rec.Expires, errExpired)
	t.cancel = func(cause error) { cancel(cause); stop() }
	a.tunnels[id] = t
	a.auditTunnelOpened(t, resumed)
	a.wg.Go(func() {
		var err error
		sess, err := a.newSession(a.sessionSpec(t))
		if err == nil {
			err = sess.Run(tctx)
		}
		t.cancel(nil)
		a.endings <- ending{id: id, err: err, ctx: tctx}
	})
}

// finish records a tunnel's end. parent is the agent's context (nil when
// shutting down): if it is done, the tunnel's state is kept for resuming.
func (a *Agent) finish(parent context.Context, e ending) {
	t, ok := a.tunnels[e.id]
	if ok {
		delete(a.tunnels, e.id)
	} else if t = a.takeReplaced(e.id); t == nil {
		return
	}
	reason, final := classify(e, parent)
	if !final {
		a.auditTunnelClosed(t, reason, nil)
		return
	}
	if err := a.store.remove(e.id); err != nil {
		a.log.Error("cannot remove tunnel state", attrTunnel, e.id, attrErr, err)
	}
	a.rememberEnded(e.id)
	a.auditTunnelClosed(t, reason, e.err)
}

func (a *Agent) takeReplaced(id string) *tunnelEntry {
	for i, t := range a.replaced {
		if t.id == id {
			a.replaced = slices.Delete(a.replaced, i, i+1)
			return t
		}
	}
	return nil
}

// classify names why a session ended and whether the tunnel is over for
// good (state removed) or only paused by the agent stopping.
func classify(e ending, parent context.Context) (reason string, final bool) {
	cause := context.Cause(e.ctx)
	switch {
	case errors.Is(cause, errExpired):
		return "expired", true
	case errors.Is(cause, errReplaced):
		return "replaced", true
	case parent.Err() != nil:
		return "agent stopping", false
	case e.err == nil:
		return "closed by service", true
	case isRejected(e.err):
		return "rejected by service", true
	}
	return "failed", true
}
