package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/notify"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// handle turns one validated notification into at most one new tunnel.
func (a *Agent) handle(ctx context.Context, n notify.Notification) {
	id := tokenID(n.ClientAccessToken)
	log := a.log.With(attrTunnel, id)
	if a.reg.has(id) {
		log.Info("duplicate notification ignored: tunnel already open", attrEvent, "notification.duplicate")
		a.obs.emit(audit.Event{Event: audit.NotificationDup, Tunnel: id, Reason: "tunnel already open"})
		return
	}
	if a.reg.wasEnded(id) {
		log.Info("notification for an ended tunnel ignored", attrEvent, "notification.duplicate")
		a.obs.emit(audit.Event{Event: audit.NotificationDup, Tunnel: id, Reason: "tunnel ended"})
		return
	}
	if !a.allowedServices(log, id, n.Services) {
		a.reg.rememberEnded(id)
		return
	}
	if a.reg.full() && !a.reg.makeRoom(log, n, a.now()) {
		log.Warn("tunnel refused: max_tunnels reached; close a tunnel or raise max_tunnels",
			attrEvent, "tunnel.refused", attrMaxTunnels, a.reg.cap, attrServices, n.Services)
		a.obs.emit(audit.Event{Event: audit.TunnelRefused, Tunnel: id, Services: n.Services, Region: n.Region, Reason: audit.ReasonMaxTunnels})
		return
	}
	now := a.now()
	rec := &record{
		Version: recordVersion, AccessToken: n.ClientAccessToken, ClientToken: protocol.NewClientToken(),
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
func (a *Agent) allowedServices(log *slog.Logger, id string, services []string) bool {
	allowed := 0
	for _, s := range services {
		if _, ok := a.cfg.Services[s]; ok {
			allowed++
			continue
		}
		log.Warn("tunnel asks for a service that is not in the services map; its connections will be refused",
			attrEvent, "service.refused", attrService, s,
			attrHint, fmt.Sprintf("to allow it, add `%s: <host:port or unix:/path>` under services: in the config", s))
		a.obs.emit(audit.Event{Event: audit.ServiceRefused, Tunnel: id, Service: s, Reason: "not in the services map"})
	}
	if len(services) > 0 && allowed == 0 {
		log.Error("tunnel refused: none of its services is in the services map",
			attrEvent, "tunnel.refused", attrServices, services)
		a.obs.emit(audit.Event{Event: audit.TunnelRefused, Tunnel: id, Services: services, Reason: audit.ReasonNoService})
		return false
	}
	return true
}

// start runs one tunnel session in its own goroutine.
func (a *Agent) start(ctx context.Context, id string, rec *record, resumed bool) {
	t := &tunnelEntry{id: id, rec: rec, started: a.now(), resumed: resumed}
	tctx, cancel := context.WithCancelCause(ctx)
	tctx, stop := context.WithDeadlineCause(tctx, rec.Expires, errExpired)
	t.cancel = func(cause error) { cancel(cause); stop() }
	a.reg.add(t)
	var local time.Duration // max_tunnel_lifetime, when set
	if a.cfg.MaxTunnelLifetime > 0 {
		local = a.cfg.Lifetime()
	}
	a.obs.tunnelOpened(t, local)
	// The session is built here, on the loop's goroutine, which owns a.cfg.
	log := a.log.With(attrTunnel, id)
	sess, err := a.newSession(sessionConfig(&a.cfg, a.limits, t, log, a.obs.sessionEvents(t, log)))
	t.sess = sess
	a.wg.Go(func() {
		if err == nil {
			a.obs.attachStats(id, sess)
			err = sess.Run(tctx)
		}
		t.cancel(nil)
		a.endings <- ending{id: id, err: err, ctx: tctx}
	})
}

// finish records a tunnel's end. parent is the agent's context (nil when
// shutting down): if it is done, the tunnel's state is kept for resuming.
func (a *Agent) finish(parent context.Context, e ending) {
	t := a.reg.take(e.id)
	if t == nil {
		return
	}
	reason, final := classify(e, parent)
	if !final {
		a.obs.tunnelClosed(t, reason, nil)
		return
	}
	if err := a.store.remove(e.id); err != nil {
		a.log.Error("cannot remove tunnel state", attrTunnel, e.id, attrErr, err)
	}
	a.reg.rememberEnded(e.id)
	a.obs.tunnelClosed(t, reason, e.err)
	a.warnTokenTaken(t, e.err)
}

// tokenRaceWindow: a token refused as already used this soon after the
// notification arrived was used by another client on this device.
const tokenRaceWindow = 30 * time.Second

// warnTokenTaken spots another tunneling client on the same device: the
// AWS IoT Device Client's tunneling feature and the Greengrass
// aws.greengrass.SecureTunneling component subscribe to the same notify
// topic, and the single-use token goes to whoever connects first.
func (a *Agent) warnTokenTaken(t *tunnelEntry, err error) {
	var he *tunnel.HandshakeError
	if t.resumed || t.wasConnected.Load() || !errors.As(err, &he) ||
		!strings.Contains(strings.ToLower(he.Message), "previously used") || a.now().Sub(t.started) > tokenRaceWindow {
		return
	}
	a.log.Warn("the tunnel's access token was already used when this agent first connected: another tunneling client on "+
		"this device probably received the same notification and took the tunnel",
		attrEvent, "tunnel.token_taken", attrTunnel, t.id,
		attrHint, "disable the AWS IoT Device Client's tunneling feature (tunneling.enabled: false) or remove the Greengrass "+
			"aws.greengrass.SecureTunneling component; only one client may serve a thing's notify topic (see README, Migrating)")
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
