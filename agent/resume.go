package agent

import "context"

// resume restarts the tunnels persisted by a previous run, dropping those
// whose lifetime is over.
func (a *Agent) resume(ctx context.Context) {
	recs, bad, err := a.store.load()
	if err != nil {
		a.log.Error("cannot read saved tunnels; none resumed", attrErr, err)
		return
	}
	for _, id := range bad {
		a.log.Warn("removing unreadable tunnel state file", attrTunnel, id)
		_ = a.store.remove(id)
	}
	now := a.now()
	for id, rec := range recs {
		switch {
		case !now.Before(rec.Expires):
			a.log.Info("saved tunnel expired while the agent was stopped", attrEvent, evTunnelClosed,
				attrTunnel, id, attrServices, rec.Services, attrReason, "expired")
			_ = a.store.remove(id)
		case a.reg.full():
			a.log.Warn("saved tunnel not resumed: max_tunnels reached", attrTunnel, id)
		default:
			a.start(ctx, id, rec, true)
		}
	}
}
