package tunnel

import (
	"context"
	"sync/atomic"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Defaults of the bounds a peer cannot push the agent past.
const (
	// DefaultMaxConnections caps the local connections of one tunnel, as the
	// C++ localproxy's default.
	DefaultMaxConnections = 128
	// DefaultMaxTotalConnections caps the local connections of every
	// session sharing one Limits (the whole agent).
	DefaultMaxTotalConnections = 256
	// DefaultQueueBudget caps the bytes queued toward local connections
	// across every session sharing one Limits: room for 16 connections
	// whose local side reads slower than the tunnel delivers, on a device
	// with 64 MB of memory.
	DefaultQueueBudget = 16 << 20
	// DefaultMaxDials caps the local dials in progress at once.
	DefaultMaxDials = 16
)

// Limits are the bounds shared by every session of one process (the
// agent): connections, bytes queued toward local sockets, and local dials
// in flight. A peer holding a tunnel's source token that tries to exhaust
// the device hits them; the connection over a limit is reset, the others
// carry on. The zero value is not usable: use NewLimits. Safe for
// concurrent use.
type Limits struct {
	maxConns int64
	budget   int64
	dials    chan struct{}

	conns  atomic.Int64
	queued atomic.Int64
	peak   atomic.Int64 // highest queued seen (tests, figures)
	links  atomic.Int64 // links carrying at least one connection

	watch     func()       // see Watch; nil: none
	watchStep int64        // its granularity in bytes
	perConn   int64        // what Demand counts per connection
	lastStep  atomic.Int64 // Demand / watchStep when watch was last called
}

// Watch makes the Limits call f when Demand moves into another multiple of
// step, and when Idle changes (f reads Demand and Idle itself: calls from
// several goroutines may come in any order). Demand counts the bytes
// queued, perConn bytes for each connection and linkBuffers for each busy
// link after the first. f must be quick and must not block; tunnel-agent
// and tunnelctl proxy set the Go memory limit from it. Call Watch before
// the Limits are used.
func (b *Limits) Watch(step, perConn int64, f func()) {
	b.watch, b.watchStep, b.perConn = f, max(step, 1), perConn
}

// Demand is the memory the connections hold by the Limits' count: the
// bytes queued toward local sockets, plus the Watch's perConn for each
// connection, plus linkBuffers for each link carrying connections but the
// first, whose buffers the caller's base covers (see linkBuffers).
func (b *Limits) Demand() int64 {
	return b.queued.Load() + b.conns.Load()*b.perConn + max(b.links.Load()-1, 0)*linkBuffers
}

// linkBuffers is what a link holds while it carries connections, besides
// its queues toward local sockets (counted as queued bytes): its local
// readers' DATA frames (maxLinkFrames), the WebSocket's write buffer, its
// FrameReader's buffer and batchconn's batch and read-ahead buffers, about
// 1.4 MiB. tunnel-agent's memory limit has room for one busy link in its
// base; each further one raises the limit by this much. Before, five
// tunnels moving data at once held about 5 MB of live heap under the
// 12 MiB limit of their five connections, and the collector ran back to
// back (50-108 collections a second, heap goal = live heap): 2.8 s of agent
// CPU per GiB downloaded instead of 1.2 with one tunnel.
const linkBuffers = maxLinkFrames*frameBufSize + protocol.MaxWSMessage + protocol.ReadBufferSize + batchconn.BusyBuffers

// linkBusy counts a link whose first connection opened; linkIdle one
// whose last connection closed.
func (b *Limits) linkBusy() {
	b.links.Add(1)
	b.noteDemand()
}

func (b *Limits) linkIdle() {
	b.links.Add(-1)
	b.noteDemand()
}

// Idle reports that no connection is open and nothing is queued.
func (b *Limits) Idle() bool { return b.conns.Load() == 0 && b.queued.Load() == 0 }

// noteDemand calls the watch function when Demand is in another step, or
// when the last connection closed or the first opened (a step of its own,
// -1, for DemandLimit's quiet mode).
func (b *Limits) noteDemand() {
	if b.watch == nil {
		return
	}
	s := b.Demand() / b.watchStep
	if b.Idle() {
		s = -1
	}
	if last := b.lastStep.Load(); s != last && b.lastStep.CompareAndSwap(last, s) {
		b.watch()
	}
}

// NewLimits returns Limits; a value <= 0 takes the default.
func NewLimits(maxConns int, queueBudget int64, maxDials int) *Limits {
	if maxConns <= 0 {
		maxConns = DefaultMaxTotalConnections
	}
	if queueBudget <= 0 {
		queueBudget = DefaultQueueBudget
	}
	if maxDials <= 0 {
		maxDials = DefaultMaxDials
	}
	b := &Limits{maxConns: int64(maxConns), budget: queueBudget, dials: make(chan struct{}, maxDials)}
	b.lastStep.Store(-1) // idle
	return b
}

// takeConn counts a new connection, or reports false at the cap.
func (b *Limits) takeConn() bool {
	if b.conns.Add(1) > b.maxConns {
		b.conns.Add(-1)
		return false
	}
	b.noteDemand()
	return true
}

func (b *Limits) releaseConn() {
	b.conns.Add(-1)
	b.noteDemand()
}

// reserve counts n queued bytes, or reports false when the budget has no
// room for them.
func (b *Limits) reserve(n int) bool {
	v := b.queued.Add(int64(n))
	if v > b.budget {
		b.queued.Add(-int64(n))
		return false
	}
	b.noteDemand()
	for {
		p := b.peak.Load()
		if v <= p || b.peak.CompareAndSwap(p, v) {
			return true
		}
	}
}

func (b *Limits) release(n int) {
	if n > 0 {
		b.queued.Add(-int64(n))
		b.noteDemand()
	}
}

// acquireDial waits for a dial slot; false when ctx ended first.
func (b *Limits) acquireDial(ctx context.Context) bool {
	select {
	case b.dials <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (b *Limits) releaseDial() { <-b.dials }

// Connections is the number of local connections held now.
func (b *Limits) Connections() int { return int(b.conns.Load()) }

// Queued is the number of bytes queued toward local connections now.
func (b *Limits) Queued() int64 { return b.queued.Load() }

// PeakQueued is the highest Queued seen.
func (b *Limits) PeakQueued() int64 { return b.peak.Load() }

// Budget is the queue budget in bytes.
func (b *Limits) Budget() int64 { return b.budget }

// ReleaseIdle drops the buffers the process keeps for reuse: the free
// frames, queue chunks and the WebSocket's write, read and batch buffers,
// about 3 MiB after a bulk transfer (maxFreeFrames frames, maxFreeChunks
// chunks, two of each WebSocket buffer), which an idle process would
// otherwise keep. memtrim's settling
// and quiet mode call it before their collections (Limits is a
// memtrim.Releaser); the next connection allocates afresh.
func (l *Limits) ReleaseIdle() { releaseFreeBuffers() }
