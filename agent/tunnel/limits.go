package tunnel

import (
	"context"
	"sync/atomic"
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
	return &Limits{maxConns: int64(maxConns), budget: queueBudget, dials: make(chan struct{}, maxDials)}
}

// takeConn counts a new connection, or reports false at the cap.
func (b *Limits) takeConn() bool {
	if b.conns.Add(1) > b.maxConns {
		b.conns.Add(-1)
		return false
	}
	return true
}

func (b *Limits) releaseConn() { b.conns.Add(-1) }

// reserve counts n queued bytes, or reports false when the budget has no
// room for them.
func (b *Limits) reserve(n int) bool {
	v := b.queued.Add(int64(n))
	if v > b.budget {
		b.queued.Add(-int64(n))
		return false
	}
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
