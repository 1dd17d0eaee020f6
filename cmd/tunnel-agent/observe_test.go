package main

import (
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/control"
)

// countTrims counts the drops observers ask for.
type countTrims struct{ soon int }

func (c *countTrims) Soon() { c.soon++ }
func (c *countTrims) Stop() {}

type noSnapshot struct{}

func (noSnapshot) Snapshot() agent.Snapshot { return agent.Snapshot{} }

// The binary's pages are dropped after one-off work: a tunnel connecting
// or closing, a local connection opening. Not on a stream's end or a
// reconnect attempt (the pings' code would only come back).
func TestObserveTrims(t *testing.T) {
	srv, err := control.New(control.Options{Agent: noSnapshot{}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		event string
		trim  bool
	}{
		{audit.TunnelOpened, false},
		{audit.TunnelConnected, true},
		{audit.StreamStarted, true},
		{audit.StreamEnded, false},
		{audit.TunnelDisconnected, false},
		{audit.TunnelReconnecting, false},
		{audit.TunnelClosed, true},
	}
	for _, tc := range tests {
		t.Run(tc.event, func(t *testing.T) {
			c := &countTrims{}
			o := &observers{srv: srv, trim: c}
			o.observe(audit.Event{Event: tc.event, Tunnel: "t1"})
			if got := c.soon == 1; got != tc.trim {
				t.Errorf("trim scheduled: %v, want %v", got, tc.trim)
			}
		})
	}
}
