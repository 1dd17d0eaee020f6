package tunnel

import (
	"context"
	"testing"
)

func TestLimits(t *testing.T) {
	l := NewLimits(2, 100, 1)
	for i, want := range []bool{true, true, false} {
		if got := l.takeConn(); got != want {
			t.Fatalf("connection %d of a cap of 2: taken %v", i+1, got)
		}
	}
	l.releaseConn()
	if !l.takeConn() || l.Connections() != 2 {
		t.Fatal("a released connection is not available again")
	}
	if !l.reserve(60) || l.reserve(41) || !l.reserve(40) || l.Queued() != 100 || l.PeakQueued() != 100 {
		t.Fatalf("budget of 100: queued %d peak %d", l.Queued(), l.PeakQueued())
	}
	l.release(100)
	if l.Queued() != 0 || l.PeakQueued() != 100 {
		t.Fatalf("after release: queued %d peak %d", l.Queued(), l.PeakQueued())
	}
	// One dial slot: a second dial waits, and gives up with its context.
	if !l.acquireDial(context.Background()) {
		t.Fatal("first dial slot")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if l.acquireDial(ctx) {
		t.Fatal("a second dial got a slot while the only one is taken")
	}
	l.releaseDial()
	if !l.acquireDial(context.Background()) {
		t.Fatal("the released dial slot is not available again")
	}
	d := NewLimits(0, 0, 0)
	if d.maxConns != DefaultMaxTotalConnections || d.Budget() != DefaultQueueBudget || cap(d.dials) != DefaultMaxDials {
		t.Errorf("defaults %d %d %d", d.maxConns, d.Budget(), cap(d.dials))
	}
}
