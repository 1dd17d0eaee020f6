package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

// echoFirstByte is when the echo service last read the first byte of a
// connection (UnixNano): the moment a byte was forwarded to the local
// service.
var echoFirstByte atomic.Int64

// firstByteOnce opens a tunnel (the emulator publishes the notification
// during the OpenTunnel call) and, at once, runs a source session in this
// process for it, dials its ECHO listener and writes one byte. It returns
// the time from the OpenTunnel call to the byte reaching the echo service
// behind the agent, and to the agent's "tunnel connected" log event.
func (b *bench) firstByteOnce(ctx context.Context, st *stack) (first, connected time.Duration, id string, err error) {
	from := st.agent.mark()
	t0 := time.Now()
	tun, err := st.api.openTunnel(ctx, benchThing, tunnelServices)
	if err != nil {
		return 0, 0, "", err
	}
	s, err := tunnel.New(tunnel.Config{Mode: tunnel.ModeSource, Endpoint: "wss://" + st.info.Data, CAFile: st.info.CAFile,
		AccessToken: tun.SourceAccessToken, Services: map[string]string{svcEcho: "127.0.0.1:0"}})
	if err != nil {
		return 0, 0, tun.TunnelID, fmt.Errorf("source session: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// Run binds the listeners first; Addr is nil until then.
	wg.Go(func() { _ = s.Run(sctx) })
	var addr net.Addr
	for addr == nil {
		if addr = s.Addr(svcEcho); addr == nil {
			select {
			case <-sctx.Done():
				return 0, 0, tun.TunnelID, errors.New("source session did not listen")
			case <-time.After(time.Millisecond):
			}
		}
	}
	// A connection made before the destination is connected is reset by
	// the service (as AWS does): dial again, as a user's client would.
	for {
		err := tryFirstByte(sctx, addr.String())
		if err == nil {
			break
		}
		select {
		case <-sctx.Done():
			return 0, 0, tun.TunnelID, fmt.Errorf("first byte through a new tunnel: %w", err)
		case <-time.After(2 * time.Millisecond):
		}
	}
	first = time.Unix(0, echoFirstByte.Load()).Sub(t0)
	line, _, err := st.agent.waitLine(sctx, from, agentEvent("tunnel connected"))
	if err != nil {
		return first, 0, tun.TunnelID, err
	}
	a, _ := parseAgentLine(line)
	return first, a.Time.Sub(t0), tun.TunnelID, nil
}

// measureFirstByte adds the notification -> first byte forwarded row.
func (b *bench) measureFirstByte(ctx context.Context, st *stack) {
	if st == nil || b.opts.lean {
		return
	}
	var firsts, conns []float64
	n := b.opts.connects
	if b.opts.quick {
		n = 1
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		b.progress("notification -> first byte sample %d/%d", i+1, n)
		f, c, id, err := b.firstByteOnce(ctx, st)
		if id != "" {
			b.closeAndWait(ctx, st, id)
		}
		if err != nil {
			b.fail(err)
			break
		}
		firsts, conns = append(firsts, float64(f)), append(conns, float64(c))
	}
	b.add(row{Section: secConnect, Metric: "notification (OpenTunnel call) -> first byte forwarded to the local service, source connecting at once",
		Unit: unitMillis, Value: median(firsts), Samples: firsts, Baseline: median(conns), BaselineLabel: "-> agent connected, same samples"})
}

// addStartRow adds process start -> subscribed (embedded broker).
func (b *bench) addStartRow(st *stack, handshake float64) {
	if st == nil || st.startToSubscribed == 0 {
		return
	}
	b.add(row{Section: secConnect, Metric: "tunnel-agent process start -> subscribed (emulator's embedded broker)", Unit: unitMillis,
		Value: float64(st.startToSubscribed), Baseline: handshake, BaselineLabel: "TCP+TLS handshake"})
}

// tryFirstByte dials addr and waits for a 1-byte echo.
func tryFirstByte(ctx context.Context, addr string) error {
	c, err := directDial(addr)(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return pingConn(ctx, c, 5*time.Second)
}
