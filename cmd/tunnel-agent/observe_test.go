package main

import (
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent"
	"github.com/tunnel-agent/tunnel-agent/agent/audit"
	"github.com/tunnel-agent/tunnel-agent/agent/control"
)

// countTrims counts the drops observers ask for.
type countTrims struct{ soon, paced int }

func (c *countTrims) Soon()      { c.soon++ }
func (c *countTrims) SoonPaced() { c.paced++ }
func (c *countTrims) Stop()      {}

type noSnapshot struct{}

func (noSnapshot) Snapshot() agent.Snapshot { return agent.Snapshot{} }

// The binary's pages are dropped after one-off work: a tunnel connecting
// or closing, a local connection opening (paced: a client may open many a
// second). Not on a stream's end or a reconnect attempt (the pings' code
// would only come back).
func TestObserveTrims(t *testing.T) {
	srv, err := control.New(control.Options{Agent: noSnapshot{}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		event       string
		soon, paced int
	}{
		{audit.TunnelOpened, 0, 0},
		{audit.TunnelConnected, 1, 0},
		{audit.StreamStarted, 0, 1},
		{audit.StreamEnded, 0, 0},
		{audit.TunnelDisconnected, 0, 0},
		{audit.TunnelReconnecting, 0, 0},
		{audit.TunnelClosed, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.event, func(t *testing.T) {
			c := &countTrims{}
			o := &observers{srv: srv, trim: c}
			o.observe(audit.Event{Event: tc.event, Tunnel: "t1"})
			if c.soon != tc.soon || c.paced != tc.paced {
				t.Errorf("Soon %d, SoonPaced %d; want %d, %d", c.soon, c.paced, tc.soon, tc.paced)
			}
		})
	}
}
