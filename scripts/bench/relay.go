package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// The process-hop floor for latency: the bench re-executes itself as plain
// TCP relays (no TLS, no framing, io.Copy both ways) chained like the
// tunnel's three processes, in front of the echo service. What the tunnel
// adds beyond this chain is TLS, WebSocket and the tunnel protocol.
const (
	relayChildEnv = "TUNNEL_BENCH_RELAY_TO"
	relayHops     = 3
)

// relayChild forwards every connection to the address in relayChildEnv
// until SIGTERM.
func relayChild(to string) {
	mode := os.Getenv(relayModeEnv)
	ln, err := relayListen(mode)
	if err != nil {
		os.Exit(1)
	}
	fmt.Println("ready", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	context.AfterFunc(ctx, func() { ln.Close() })
	var wg sync.WaitGroup
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		wg.Go(func() { relayConn(ctx, c, mode, to) })
	}
	wg.Wait()
}

func relayConn(ctx context.Context, c net.Conn, mode, to string) {
	defer c.Close()
	up, err := relayDial(mode, to)
	if err != nil {
		return
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(up, c); up.Close() })
	_, _ = io.Copy(c, up)
	c.Close()
	wg.Wait()
}

// startRelayChain starts relayHops relays in front of to and returns the
// address of the first and the relay processes.
func (b *bench) startRelayChain(ctx context.Context, to string) (string, []*child, error) {
	modes := make([]string, relayHops)
	for i := range modes {
		modes[i] = modeTCPToTCP
	}
	return b.startChain(ctx, to, modes, func(i int, _ string) string { return fmt.Sprintf("relay-%d", relayHops-i) })
}

// startChain starts one relay per mode in front of to, the first nearest
// to it, each named by name, and returns the chain's entry and the relays
// in that order.
func (b *bench) startChain(ctx context.Context, to string, modes []string, name func(i int, mode string) string) (string, []*child, error) {
	var relays []*child
	for i, mode := range modes {
		c, addr, err := b.startRelay(ctx, name(i, mode), to, mode)
		if c != nil {
			relays = append(relays, c)
		}
		if err != nil {
			return "", relays, err
		}
		to = addr
	}
	return to, relays, nil
}

// relayKey names the bulk series through the relay chain.
const relayKey = "upload via relays"

// relayFloor is a relay chain in front of the sink, with CPU meters.
type relayFloor struct {
	relays []*child
	meters []*cpuMeter
}

// startRelayFloor starts the relay chain to the sink; addr is "" when it
// could not start.
func (b *bench) startRelayFloor(ctx context.Context) (string, *relayFloor) {
	f := &relayFloor{}
	addr, relays, err := b.startRelayChain(ctx, b.sink.Addr())
	f.relays = relays
	if err != nil {
		b.fail(err)
		return "", f
	}
	for _, r := range relays {
		f.meters = append(f.meters, &cpuMeter{pid: r.pid()})
	}
	return addr, f
}

func (f *relayFloor) stop() {
	for _, r := range f.relays {
		_ = r.stop()
	}
}

// perProcess is the mean CPU seconds per GiB of one relay process.
func (f *relayFloor) perProcess(bytes int64) float64 {
	if len(f.meters) == 0 || bytes == 0 {
		return math.NaN()
	}
	var total time.Duration
	for _, m := range f.meters {
		total += m.total
	}
	return total.Seconds() / float64(len(f.meters)) / (float64(bytes) / (1 << 30))
}
