package agent

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify"
)

const (
	endedMemory = 256
	// neverConnectedGrace is how long a tunnel that has never connected
	// (unresolvable or unreachable data endpoint) holds its max_tunnels
	// slot against a new notification.
	neverConnectedGrace = 2 * time.Minute
)

type tunnelEntry struct {
	id           string
	rec          *record
	started      time.Time
	resumed      bool
	cancel       context.CancelCauseFunc
	sess         runner
	connected    atomic.Bool
	wasConnected atomic.Bool
}

type ending struct {
	id  string
	err error
	ctx context.Context
}

func (a *Agent) wasEnded(id string) bool { return slices.Contains(a.ended, id) }

func (a *Agent) rememberEnded(id string) {
	a.ended = append(a.ended, id)
	if len(a.ended) > endedMemory {
		a.ended = a.ended[len(a.ended)-endedMemory:]
	}
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
		if !t.wasConnected.Load() && now.Sub(t.started) >= neverConnectedGrace && (stale == nil || t.started.Before(stale.started)) {
			stale = t
		}
	}
	old := rotated
	switch {
	case rotated != nil:
		log.Info("replacing a disconnected tunnel with the same services (token rotation)", attrReplaced, rotated.id)
	case stale != nil:
		old = stale
		log.Warn("replacing a tunnel that has not connected since it started: max_tunnels reached",
			attrEvent, "tunnel.replaced", attrReplaced, stale.id, attrNotConnectedFor, now.Sub(stale.started).Round(time.Second).String())
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

func (a *Agent) takeReplaced(id string) *tunnelEntry {
	for i, t := range a.replaced {
		if t.id == id {
			a.replaced = slices.Delete(a.replaced, i, i+1)
			return t
		}
	}
	return nil
}
