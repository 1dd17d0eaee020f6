package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"time"
)

// idleConns is how many idle connections the memory measurement holds.
const idleConns = 100

// stack is the running tunnel path.
type stack struct {
	emu, agent, proxy *child
	info              emulatorInfo
	api               *apiClient
	tunnel            openedTunnel
	addrs             map[string]string // proxy listen address per service
	connect           []time.Duration   // OpenTunnel -> agent connected samples
	startToSubscribed time.Duration     // agent process start -> "subscribed" log event
	// Resident memory baselines: agent idle, emulator and proxy with the
	// tunnel open and no connections; agent with 1 tunnel, agent and proxy
	// with idleConns idle connections (for the LOCALPROXY rows).
	agentIdle, emuOne, proxyOne    float64
	agentOne, agentMany, proxyMany float64
	lp                             []*lpPath // the LOCALPROXY paths (empty without LOCALPROXY)
}

// bringUp starts the emulator and the agent, measures the agent's idle
// memory, opens the first tunnel (one connect sample), starts the proxy
// and measures memory with one tunnel and with 100 idle connections. It
// returns nil when the tunnel path could not be set up.
func (b *bench) bringUp(ctx context.Context) *stack {
	floor := b.goFloorRSS(ctx)
	memRow := func(metric string, v, base float64, label, target string, ok bool) {
		r := row{Section: secMemory, Metric: metric, Unit: unitMiB, Value: v, Baseline: base, BaselineLabel: label, Target: target, Status: statusInfo}
		if target != "" {
			r.Status = judge(v, ok)
		}
		b.add(r)
	}
	idle, one, many := math.NaN(), math.NaN(), math.NaN()
	defer func() {
		memRow("agent RSS idle (subscribed, no tunnel)", idle, floor, "bare Go process", "< 12 MiB", idle < 12<<20)
		memRow("agent RSS, 1 tunnel open", one, idle, "agent idle", "", true)
		memRow(fmt.Sprintf("agent RSS, 1 tunnel + %d idle connections", idleConns), many, idle, "agent idle", "< 24 MiB", many < 24<<20)
	}()
	st, err := b.startStack(ctx)
	if err != nil {
		b.fail(err)
		return nil
	}
	settle(ctx, 500*time.Millisecond)
	idle = b.rss(st.agent)
	st.agentIdle = idle
	if err := b.openFirstTunnel(ctx, st); err != nil {
		b.fail(err)
		return nil
	}
	settle(ctx, 500*time.Millisecond)
	one = b.rss(st.agent)
	st.emuOne, st.proxyOne = b.rss(st.emu), b.rss(st.proxy)
	many, err = b.idleConnsRSS(ctx, st)
	if err != nil {
		b.fail(err)
	}
	st.agentOne, st.agentMany = one, many
	return st
}

func (b *bench) rss(c *child) float64 {
	m, err := readMem(c.pid())
	if err != nil {
		b.fail(err)
		return math.NaN()
	}
	return float64(m.RSS)
}

// startStack starts the emulator, issues the device certificate and starts
// the agent, waiting until it has subscribed.
func (b *bench) startStack(ctx context.Context) (*stack, error) {
	for _, p := range programs {
		if b.bins[p] == "" {
			return nil, fmt.Errorf("tunnel path not measured: %s did not build", p)
		}
	}
	b.progress("starting tunnel-emulator and tunnel-agent")
	st := &stack{}
	var err error
	if st.emu, st.info, err = b.startEmulator(ctx); err != nil {
		return nil, err
	}
	st.api = newAPIClient(st.info.APIURL)
	cert, key, err := b.issueDeviceCert(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := b.writeAgentConfig(st.info, cert, key)
	if err != nil {
		return nil, err
	}
	if st.agent, st.startToSubscribed, err = b.startAgent(ctx, cfg); err != nil {
		return nil, err
	}
	return st, nil
}

// openFirstTunnel opens the tunnel the measurements use and starts the
// source proxy for it, waiting until both ends are connected.
func (b *bench) openFirstTunnel(ctx context.Context, st *stack) error {
	d, tun, err := b.connectOnce(ctx, st)
	if err != nil {
		return err
	}
	st.tunnel = tun
	st.connect = append(st.connect, d)
	b.progress("tunnel %s open, agent connected after %s; starting tunnelctl proxy", tun.TunnelID, d.Round(time.Microsecond))
	st.proxy, st.addrs, err = b.startProxy(ctx, st.info, tun.SourceAccessToken, "tunnelctl proxy")
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return st.api.waitConnected(wctx, tun.TunnelID, true)
}

// idleConnsRSS opens idleConns connections through the tunnel to the echo
// service, checks each one answers, and reads the agent's memory.
func (b *bench) idleConnsRSS(ctx context.Context, st *stack) (float64, error) {
	b.progress("opening %d idle connections through the tunnel", idleConns)
	agent, proxy := math.NaN(), math.NaN()
	err := b.holdIdleConns(ctx, st.addrs[svcEcho], func() {
		if pm, err := readMem(st.proxy.pid()); err == nil {
			proxy = float64(pm.RSS)
		}
		agent = b.rss(st.agent)
	})
	st.proxyMany = proxy
	b.add(row{Section: secMemory, Metric: fmt.Sprintf("tunnelctl proxy RSS, %d idle connections", idleConns), Unit: unitMiB,
		Value: proxy, Baseline: st.proxyOne, BaselineLabel: "proxy, no connections"})
	return agent, err
}

// holdIdleConns opens idleConns connections to the echo service at addr,
// checks each one answers, lets the processes settle (idleSettle) and
// calls read while they are open. The dials are paced: each connection's
// echo comes back before the next dial, so a listener with a tiny backlog
// (the C++ localproxy listens with a backlog of 0: simultaneous connects
// are dropped and retried by TCP a second later, or reset) has accepted
// the previous one.
func (b *bench) holdIdleConns(ctx context.Context, addr string, read func()) error {
	ctx, cancel := context.WithTimeoutCause(ctx, 30*time.Second, errors.New("the idle connections took longer than 30 s to open"))
	defer cancel()
	conns := make([]net.Conn, 0, idleConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := directDial(addr)
	for range idleConns {
		c, err := dial(ctx)
		if err != nil {
			return fmt.Errorf("idle connection %d: %w", len(conns)+1, err)
		}
		conns = append(conns, c)
		if err := pingConn(ctx, c, 10*time.Second); err != nil {
			return fmt.Errorf("idle connection %d does not reach the echo service through the tunnel: %w", len(conns), err)
		}
	}
	settle(ctx, idleSettle)
	read()
	return nil
}

// connectOnce opens a tunnel and returns the time from the OpenTunnel call
// to the agent's "tunnel connected" log event (its JSON timestamp has
// nanosecond resolution and is taken when the session reports the
// WebSocket up), cross-checked with DescribeTunnel.
func (b *bench) connectOnce(ctx context.Context, st *stack) (time.Duration, openedTunnel, error) {
	from := st.agent.mark()
	t0 := time.Now()
	tun, err := st.api.openTunnel(ctx, benchThing, tunnelServices)
	if err != nil {
		return 0, tun, err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	line, _, err := st.agent.waitLine(wctx, from, agentEvent("tunnel connected"))
	if err != nil {
		return 0, tun, fmt.Errorf("waiting for the agent to connect tunnel %s: %w", tun.TunnelID, err)
	}
	a, _ := parseAgentLine(line)
	d := a.Time.Sub(t0)
	if d <= 0 {
		return 0, tun, errors.New("agent log time precedes the OpenTunnel call: clocks disagree")
	}
	if err := st.api.waitConnected(wctx, tun.TunnelID, false); err != nil {
		return 0, tun, err
	}
	return d, tun, nil
}
