package agent

import (
	"context"
	"iter"
	"log/slog"
	"maps"
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

// registry owns the tunnels the agent serves and the max_tunnels cap: the
// live tunnels by id, the tunnels replaced for a rotation whose sessions
// have not returned yet, and the ids of recently ended tunnels (a
// notification for one of them is a duplicate). Only the Run goroutine
// touches it, so it has no lock; other goroutines see the tunnels through
// the view that Snapshot reads (observe.go).
type registry struct {
	cap      int                     // max_tunnels; a reload may change it
	tunnels  map[string]*tunnelEntry // live, counted against cap
	replaced []*tunnelEntry          // cancelled for a rotation, ending pending
	ended    []string                // recently ended tunnel ids, oldest first
}

func newRegistry(maxTunnels int) *registry {
	return &registry{cap: maxTunnels, tunnels: make(map[string]*tunnelEntry)}
}

// tunnelEntry is one tunnel in the registry. The Run goroutine sets its
// plain fields before the session starts and never changes them after;
// connected and wasConnected are set by the session's event handler.
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

// ending is a session's return, sent by its goroutine to the Run goroutine.
type ending struct {
	id  string
	err error
	ctx context.Context
}

// has reports whether id is a live tunnel.
func (r *registry) has(id string) bool {
	_, ok := r.tunnels[id]
	return ok
}

// full reports whether the live tunnels reach the cap.
func (r *registry) full() bool { return len(r.tunnels) >= r.cap }

// pending counts the tunnels whose sessions have not returned: the live
// ones and the replaced ones.
func (r *registry) pending() int { return len(r.tunnels) + len(r.replaced) }

// live returns the live tunnels, in no order.
func (r *registry) live() iter.Seq[*tunnelEntry] { return maps.Values(r.tunnels) }

// add makes t a live tunnel.
func (r *registry) add(t *tunnelEntry) { r.tunnels[t.id] = t }

// take removes the tunnel id, live or replaced, and returns it; nil if
// the registry does not hold it.
func (r *registry) take(id string) *tunnelEntry {
	if t, ok := r.tunnels[id]; ok {
		delete(r.tunnels, id)
		return t
	}
	for i, t := range r.replaced {
		if t.id == id {
			r.replaced = slices.Delete(r.replaced, i, i+1)
			return t
		}
	}
	return nil
}

func (r *registry) wasEnded(id string) bool { return slices.Contains(r.ended, id) }

func (r *registry) rememberEnded(id string) {
	r.ended = append(r.ended, id)
	if len(r.ended) > endedMemory {
		r.ended = r.ended[len(r.ended)-endedMemory:]
	}
}

// makeRoom frees a slot for a notification at the cap by replacing a
// tunnel that looks like this one's previous token (same region and
// services) and is not connected or, failing that, the oldest tunnel that
// has not connected once in neverConnectedGrace (its data endpoint cannot
// be reached: it must not starve tunnels that can). It reports whether a
// slot was freed.
func (r *registry) makeRoom(log *slog.Logger, n notify.Notification, now time.Time) bool {
	var rotated, stale *tunnelEntry
	for _, t := range r.tunnels {
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
	delete(r.tunnels, old.id)
	r.replaced = append(r.replaced, old)
	return true
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}
