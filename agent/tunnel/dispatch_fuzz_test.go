package tunnel

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// FuzzDispatch feeds arbitrary message sequences from the peer into the
// stream state machine of a destination and of a source link (no network:
// local dials go to closed addresses); it must neither panic nor hang.
func FuzzDispatch(f *testing.F) {
	var seed []byte
	for _, m := range []*protocol.Message{
		{Type: protocol.TypeServiceIDs, AvailableServiceIDs: []string{"A", "B"}},
		{Type: protocol.TypeStreamStart, StreamID: 1, ServiceID: "A", ConnectionID: 1},
		{Type: protocol.TypeData, StreamID: 1, ServiceID: "A", ConnectionID: 1, Payload: []byte("x")},
		{Type: protocol.TypeConnectionStart, StreamID: 1, ServiceID: "A", ConnectionID: 2},
		{Type: protocol.TypeConnectionReset, StreamID: 1, ServiceID: "A", ConnectionID: 2},
		{Type: protocol.TypeStreamStart, StreamID: 2},
		{Type: protocol.TypeStreamReset, StreamID: 1, ServiceID: "A"},
		{Type: protocol.TypeSessionReset},
	} {
		seed, _ = protocol.AppendFrame(seed, m)
	}
	f.Add(seed, false)
	f.Add(seed, true)
	closed := closedAddr(f)
	f.Fuzz(func(t *testing.T, in []byte, sourceMode bool) {
		cfg := Config{Mode: ModeDestination, Region: "us-east-1", AccessToken: "x", Logger: slog.New(slog.DiscardHandler),
			Services: map[string]string{"A": closed, "B": "unix:/nonexistent/sock"}}
		if sourceMode {
			cfg.Mode = ModeSource
			cfg.Services = map[string]string{"A": "127.0.0.1:0"}
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		l := &link{s: s, log: s.log, version: protocol.V3, rate: rateLog{log: s.log}, streams: newStreamTable(s.log, sourceMode)}
		l.dest.l, l.src.l = l, l
		l.ctx, l.cancel = context.WithCancelCause(context.Background())
		l.w = newWritePath(l.ctx, l.cancel, &memConn{}, nil, l.log, time.Second)
		fr := protocol.NewFrameReader(bytes.NewReader(in))
		var m protocol.Message
		for n := 0; n < 200; n++ {
			err := fr.ReadMessage(&m)
			if errors.Is(err, protocol.ErrMalformed) || errors.Is(err, protocol.ErrPayloadTooLarge) {
				continue
			}
			if err != nil {
				break
			}
			l.dispatch(&m)
		}
		l.cancel(errors.New("done"))
		l.streams.abortAll("done")
		l.wg.Wait()
	})
}
