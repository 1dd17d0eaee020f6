package tunnel

import (
	"sync/atomic"
	"time"
)

// stallGate bounds how long the WebSocket reader waits, in total, for full
// local queues of stuck local consumers. Waiting for one full queue holds
// up every stream of the tunnel, so the waits share one window: the first
// wait opens it for ConnStallTimeout; every stuck queue still full when it
// closes, or found full before another ConnStallTimeout has passed, is
// reset without waiting. N stuck local consumers thus stall the tunnel for
// one ConnStallTimeout, not N of them.
//
// A queue is stuck when its local writer is in a write and none of these
// happened since the window opened: the socket accepted a slice of a
// writer's write (writeSlice), the connection started (one still dialling
// has no writer yet), or its local reader waited for the WebSocket with
// what the service wrote (see queue.sending). Neither the writer taking
// the queue nor push's direct writes count: a service that never reads
// lets both happen until the kernel's socket buffer is full, and counting
// them gave each such connection a window of its own (N of them stalled the
// tunnel N seconds). A queue whose writer is not in a write (not scheduled
// yet in a busy process, or between two writes) is not stuck either: its
// data came while nothing was being written. A queue that is not stuck
// belongs to a busy local service that drains it, only not as fast as the
// tunnel fills it, or waits for the tunnel to take its replies: it is not
// reset for the stall of another connection but waits a ConnStallTimeout
// of its own (moving the window's end), and is reset only if it then stays
// full that long. Used by the reader goroutine alone: no lock.
type stallGate struct {
	stall   time.Duration
	until   time.Time    // end of the current or last window
	expired atomic.Int64 // waits that ran to the deadline (tests)
}

// wait returns how long a push that found its queue full may wait now;
// 0 means reset at once. took is when the queue's local side last moved:
// the socket accepted a slice of its writer's, or now while its reader
// waits for the WebSocket or no write is under way, or the connection's
// start.
func (g *stallGate) wait(now, took time.Time) time.Duration {
	switch {
	case g.until.IsZero(), !now.Before(g.until.Add(g.stall)):
		g.until = now.Add(g.stall) // no window lately: open one
	case took.After(g.until.Add(-g.stall)):
		g.until = now.Add(g.stall) // the queue moved since the window opened
	}
	return max(g.until.Sub(now), 0)
}
