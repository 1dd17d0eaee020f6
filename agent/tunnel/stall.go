package tunnel

import (
	"sync/atomic"
	"time"
)

// stallGate bounds how long the WebSocket reader waits, in total, for full
// local queues. Waiting for one full queue holds up every stream of the
// tunnel, so the waits share one window: the first wait opens it for
// ConnStallTimeout; every queue still full when it closes, or found full
// before another ConnStallTimeout has passed, is reset without waiting. N
// stuck local consumers thus stall the tunnel for one ConnStallTimeout,
// not N of them. Used by the reader goroutine alone: no lock.
type stallGate struct {
	stall   time.Duration
	until   time.Time    // end of the current or last window
	expired atomic.Int64 // waits that ran to the deadline (tests)
}

// wait returns how long a push that found its queue full may wait now;
// 0 means reset at once.
func (g *stallGate) wait(now time.Time) time.Duration {
	if g.until.IsZero() || !now.Before(g.until.Add(g.stall)) {
		g.until = now.Add(g.stall)
	}
	return max(g.until.Sub(now), 0)
}
