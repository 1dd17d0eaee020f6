package tunnel

import (
	"context"
	"fmt"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
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

// TestLimitsWatch: the watch function is called when Demand (bytes
// queued plus a share per connection) moves into another step, and when
// the Limits stop or start being Idle, not on every reserve, release or
// connection.
func TestLimitsWatch(t *testing.T) {
	const closeConn, linkBusy, linkIdle = -1 << 20, -2 << 20, -3 << 20
	tests := []struct {
		name   string
		ops    []int // > 0 reserve, < 0 release, 0 a new connection, closeConn, linkBusy, linkIdle
		calls  int
		demand int64
	}{
		{"within the first step", []int{10, 20, -30, 99}, 3, 99},                        // not idle at 10, idle at 0, not at 99
		{"within the first step, with a connection", []int{0, 10, 20, -30, 99}, 2, 139}, // not idle, then 139
		{"up one step", []int{100}, 1, 100},
		{"up and back", []int{150, -100}, 2, 50},
		{"up two steps at once", []int{250}, 1, 250},
		{"refused reservation", []int{1001}, 0, 0},
		{"hovering at a boundary", []int{99, 1, -1, 1, -1}, 5, 99},
		{"connections count", []int{0, 0, 0}, 2, 120},
		{"connections over the cap", []int{0, 0, 0, 0, 0, 0}, 2, 160},
		{"the first connection and the last close", []int{0, closeConn, 0, 0, closeConn, closeConn}, 4, 0},
		{"one busy link: in the base", []int{0, linkBusy, 0}, 1, 80},
		{"a second busy link", []int{0, linkBusy, 0, linkBusy}, 2, 80 + linkBuffers},
		{"back to one busy link", []int{0, linkBusy, 0, linkBusy, linkIdle}, 3, 80},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLimits(4, 1000, 0)
			calls := 0
			l.Watch(100, 40, func() { calls++ })
			for _, op := range tc.ops {
				switch {
				case op == closeConn:
					l.releaseConn()
				case op == linkBusy:
					l.linkBusy()
				case op == linkIdle:
					l.linkIdle()
				case op > 0:
					l.reserve(op)
				case op < 0:
					l.release(-op)
				default:
					l.takeConn()
				}
			}
			if calls != tc.calls || l.Demand() != tc.demand {
				t.Errorf("watch called %d times, Demand %d; want %d, %d", calls, l.Demand(), tc.calls, tc.demand)
			}
		})
	}
}

// TestLimitsBusyLinks: two tunnels share the agent's Limits, each over
// loopback TLS to a real echo service. Demand counts linkBuffers for the
// second tunnel that carries a connection, not for the first and not for
// a second connection on a busy tunnel, and drops it when the connections
// close.
func TestLimitsBusyLinks(t *testing.T) {
	lim := NewLimits(0, 0, 0)
	lim.Watch(1, 0, func() {})
	echo := map[string]string{"SSH": tunneltest.Echo(t)}
	shared := func(c *Config) { c.Limits = lim }
	_, p1 := hostileDestination(t, echo, shared, "SSH")
	_, p2 := hostileDestination(t, echo, shared, "SSH")
	conn := func(p *rawPeer, typ protocol.Type, cid uint32) func() {
		return func() { p.send(&msg{Type: typ, StreamID: 1, ServiceID: "SSH", ConnectionID: cid}) }
	}
	for _, step := range []struct {
		what   string
		do     []func()
		conns  int
		demand int64
	}{
		{"a connection through the first tunnel", []func(){conn(p1, tStart, 1)}, 1, 0},
		{"a second one through the first tunnel", []func(){conn(p1, tConnStart, 2)}, 2, 0},
		{"a connection through the second tunnel", []func(){conn(p2, tStart, 1)}, 3, linkBuffers},
		{"the first tunnel's connections reset", []func(){conn(p1, tConnReset, 1), conn(p1, tConnReset, 2)}, 1, 0},
		{"the second tunnel's connection reset", []func(){conn(p2, tConnReset, 1)}, 0, 0},
	} {
		for _, do := range step.do {
			do()
		}
		waitUntil(t, fmt.Sprintf("%s: %d connections and Demand %d", step.what, step.conns, step.demand), func() bool {
			return lim.Connections() == step.conns && lim.Demand() == step.demand
		})
	}
}
