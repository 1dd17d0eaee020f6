package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// lpPath is the LOCALPROXY binary in one role. Every measurement run gets
// a fresh process and tunnel (lpRun): the AWS C++ localproxy exits on its
// own (a local reader that falls behind makes it overflow, `[fatal]
// basic_multi_buffer too long`), and one crash must not fail every later
// run. Exits the bench did not ask for are counted and reported.
type lpPath struct {
	role  lpRole
	caDir string
	cpu   *cpuMeter // the LOCALPROXY processes over their completed bulk runs
	lat   latencySeries
	// starts counts processes started; crashes those that exited before
	// the bench stopped them; runs and completed count measurement runs.
	starts, crashes, runs, completed int
}

// lpRun is one LOCALPROXY process with its tunnel.
type lpRun struct {
	lp       *child // the LOCALPROXY process
	proxy    *child // destination role: our tunnelctl proxy as the source
	tunnelID string
	addrs    map[string]string // where the load generator connects, per service
}

// lpPaths returns the LOCALPROXY paths of st (none when st is nil).
func lpPaths(st *stack) []*lpPath {
	if st == nil {
		return nil
	}
	return st.lp
}

// peerAgent is tunnel-agent when it is the far end of p (source role),
// whose warnings explain a failed run.
func (p *lpPath) peerAgent(st *stack) *child {
	if p.role == lpSource {
		return st.agent
	}
	return nil
}

// lpAttempts bounds the fresh processes one run may use: a process that
// exits before the run completed (a crash, or a picked port taken at
// start) is replaced by a new one with a new tunnel.
const lpAttempts = 3

// setupLocalProxy prepares the LOCALPROXY paths (source, then destination)
// and measures their memory, each in a process of its own.
func (b *bench) setupLocalProxy(ctx context.Context, st *stack) {
	if b.opts.localproxy == "" || st == nil || ctx.Err() != nil {
		return
	}
	caDir, err := b.lpCADir(ctx, st.info.CAFile)
	if err != nil {
		b.fail(err)
		return
	}
	for _, r := range []lpRole{lpSource, lpDestination} {
		p := &lpPath{role: r, caDir: caDir, cpu: &cpuMeter{}}
		st.lp = append(st.lp, p)
		b.lpMemory(ctx, st, p)
	}
}

// withLocalProxy runs measure on a fresh LOCALPROXY process of p, retrying
// with a new one when the process exits on its own before measure
// succeeded. It reports whether the run completed; a failure that is not a
// crash is a bench failure.
func (b *bench) withLocalProxy(ctx context.Context, st *stack, p *lpPath, what string, measure func(r *lpRun) error) bool {
	p.runs++
	for attempt := 1; attempt <= lpAttempts && ctx.Err() == nil; attempt++ {
		r, err := b.startLPRun(ctx, st, p)
		if err == nil {
			err = measure(r)
		}
		crashed := r.lp != nil && exitedWithin(r.lp, err)
		b.stopRun(ctx, st, r)
		if crashed {
			p.crashes++
			b.progress("%s exited on its own during %s (%v; attempt %d of %d); last output:\n%s",
				p.role.label(), what, r.lp.err, attempt, lpAttempts, r.lp.tail(5))
			if err == nil {
				p.completed++ // the run completed before the exit
				return true
			}
			continue
		}
		if err != nil {
			if r.lp != nil { // what it said explains a failure on its side
				err = fmt.Errorf("%w; its last output:\n%s", err, r.lp.tail(5))
			}
			b.fail(fmt.Errorf("%s, %s: %w", p.role.label(), what, err))
			return false
		}
		p.completed++
		return true
	}
	if ctx.Err() == nil {
		b.progress("%s: %s not measured: every process exited", p.role.label(), what)
	}
	return false
}

// exitedWithin reports whether c has exited; after a failed run (err) it
// waits a moment for the exit that may have caused it.
func exitedWithin(c *child, err error) bool {
	if err == nil {
		return exited(c)
	}
	select {
	case <-c.done:
		return true
	case <-time.After(2 * time.Second):
		return false
	}
}

// exited reports whether c has ended.
func exited(c *child) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// startLPRun opens a tunnel and starts a LOCALPROXY process for it.
func (b *bench) startLPRun(ctx context.Context, st *stack, p *lpPath) (*lpRun, error) {
	p.starts++
	if p.role == lpSource {
		return b.lpSourceRun(ctx, st, p)
	}
	return b.lpDestinationRun(ctx, st, p)
}

// lpName names the process of a run (and its log file in the temp dir).
func (p *lpPath) lpName() string { return fmt.Sprintf("localproxy %s %d", p.role, p.starts) }

// lpSourceRun opens a tunnel to the bench thing (tunnel-agent connects as
// the destination) and starts LOCALPROXY as its source on free ports.
func (b *bench) lpSourceRun(ctx context.Context, st *stack, p *lpPath) (*lpRun, error) {
	r := &lpRun{}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tun, err := st.api.openTunnel(wctx, benchThing, tunnelServices)
	if err != nil {
		return r, err
	}
	r.tunnelID = tun.TunnelID
	if err := st.api.waitConnected(wctx, tun.TunnelID, false); err != nil {
		return r, fmt.Errorf("tunnel-agent did not connect: %w", err)
	}
	ports, err := freePorts(len(tunnelServices))
	if err != nil {
		return r, err
	}
	arg, err := lpServiceArg(tunnelServices, portAddrs(ports))
	if err != nil {
		return r, err
	}
	if r.lp, err = b.startLocalProxy(p.lpName(), lpSource, arg, st.info.Data, p.caDir, tun.SourceAccessToken); err != nil {
		return r, err
	}
	r.addrs = map[string]string{}
	var order []string
	for i, s := range tunnelServices {
		r.addrs[s] = fmt.Sprintf("127.0.0.1:%d", ports[i])
		order = append(order, r.addrs[s])
	}
	ectx, stop := untilExit(wctx, r.lp)
	defer stop()
	if err := st.api.waitConnected(ectx, tun.TunnelID, true); err != nil {
		return r, err
	}
	return r, waitAccepting(ectx, order, r.addrs[svcEcho])
}

// lpDestinationRun opens a tunnel to a thing no agent serves, starts
// LOCALPROXY as its destination to the bench's services and a second
// `tunnelctl proxy` as its source.
func (b *bench) lpDestinationRun(ctx context.Context, st *stack, p *lpPath) (*lpRun, error) {
	r := &lpRun{}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tun, err := st.api.openTunnel(wctx, lpNobodyThing, tunnelServices)
	if err != nil {
		return r, err
	}
	r.tunnelID = tun.TunnelID
	arg, err := lpServiceArg(tunnelServices, map[string]string{svcSink: b.sink.Addr(), svcEcho: b.echo.Addr(), svcGen: b.gen.Addr()})
	if err != nil {
		return r, err
	}
	if r.lp, err = b.startLocalProxy(p.lpName(), lpDestination, arg, st.info.Data, p.caDir, tun.DestinationAccessToken); err != nil {
		return r, err
	}
	ectx, stop := untilExit(wctx, r.lp)
	defer stop()
	if err := st.api.waitConnected(ectx, tun.TunnelID, false); err != nil {
		return r, err
	}
	if r.proxy, r.addrs, err = b.startProxy(ectx, st.info, tun.SourceAccessToken, "tunnelctl proxy for localproxy"); err != nil {
		return r, err
	}
	if err := st.api.waitConnected(ectx, tun.TunnelID, true); err != nil {
		return r, err
	}
	return r, pingUntil(ectx, r.addrs[svcEcho])
}

// stopRun stops the processes of r and closes its tunnel.
func (b *bench) stopRun(ctx context.Context, st *stack, r *lpRun) {
	if r == nil {
		return
	}
	for _, c := range []*child{r.proxy, r.lp} {
		if c == nil {
			continue
		}
		if err := c.stop(); err != nil {
			b.progress("%v", err)
		}
	}
	if r.tunnelID != "" {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = st.api.closeTunnel(cctx, r.tunnelID)
		cancel()
	}
}

// lpMemory adds the LOCALPROXY RSS rows: 1 tunnel, and with idleConns idle
// connections through it; ours is the process it stands in for.
func (b *bench) lpMemory(ctx context.Context, st *stack, p *lpPath) {
	one, many := math.NaN(), math.NaN()
	b.withLocalProxy(ctx, st, p, "memory", func(r *lpRun) error {
		settle(ctx, 500*time.Millisecond)
		one = b.rss(r.lp)
		return b.holdIdleConns(ctx, r.addrs[svcEcho], func() { many = b.rss(r.lp) })
	})
	ourOne, ourMany, label := st.proxyOne, st.proxyMany, "tunnelctl proxy"
	if p.role == lpDestination {
		ourOne, ourMany, label = st.agentOne, st.agentMany, "tunnel-agent (with MQTT)"
	}
	b.add(row{Section: secMemory, Metric: lpMetric("RSS, 1 tunnel", p.role), Unit: unitMiB, Value: one,
		Baseline: ourOne, BaselineLabel: label})
	b.add(row{Section: secMemory, Metric: lpMetric(fmt.Sprintf("RSS, %d idle connections", idleConns), p.role), Unit: unitMiB,
		Value: many, Baseline: ourMany, BaselineLabel: label})
}

// lpLatency measures one round-trip run through a fresh process of p.
func (b *bench) lpLatency(ctx context.Context, st *stack, p *lpPath) {
	b.withLocalProxy(ctx, st, p, "latency", func(r *lpRun) error {
		return b.latencyInto(ctx, &p.lat, p.role.label(), r.addrs[svcEcho], nil)
	})
}

// lpBulk makes one bulk run through a fresh process of p; its CPU counts
// toward p.cpu when the run completes.
func (b *bench) lpBulk(ctx context.Context, st *stack, p *lpPath, d direction, streams int, series map[bulkKey]*bulkSeries) {
	key := bulkKey{d.name, streams, true, p.role.label()}
	if series[key] == nil {
		series[key] = &bulkSeries{}
	}
	b.withLocalProxy(ctx, st, p, bulkName(d.name, streams), func(r *lpRun) error {
		m := &cpuMeter{pid: r.lp.pid()}
		err := b.bulkRun(ctx, d, directDial(r.addrs[d.service]), streams, series, key, []*cpuMeter{m}, p.peerAgent(st))
		if err == nil {
			p.cpu.total += m.total
			p.cpu.per = append(p.cpu.per, m.per...)
		}
		return err
	})
}

// addLPCrashRows reports, per role, the LOCALPROXY processes that exited
// on their own out of those started, and the runs completed.
func (b *bench) addLPCrashRows(st *stack) {
	for _, p := range lpPaths(st) {
		b.add(row{Section: secThroughput, Metric: lpMetric("processes that exited on their own (crashes)", p.role), Unit: unitRuns,
			Value: float64(p.crashes), Baseline: math.NaN(),
			Note: fmt.Sprintf("of %d started; %d of %d runs completed, each on a fresh process", p.starts, p.completed, p.runs)})
	}
}

// addLPLatencyRows compares the LOCALPROXY round trips with ours (tun).
func (b *bench) addLPLatencyRows(paths []*lpPath, tun latencySeries) {
	for _, p := range paths {
		for _, l := range []struct {
			name     string
			lp, ours []float64
		}{{"p50", p.lat.p50, tun.p50}, {"p99", p.lat.p99, tun.p99}} {
			b.add(row{Section: secLatency, Metric: lpMetric("round trip "+l.name, p.role), Unit: unitMicros,
				Value: median(l.lp), Samples: l.lp, Baseline: median(l.ours), BaselineLabel: "ours"})
		}
	}
}

// addLPBulkRows compares the LOCALPROXY bulk rates and CPU per GiB with
// ours: tunnelctl proxy for the source, tunnel-agent for the destination.
func (b *bench) addLPBulkRows(paths []*lpPath, series map[bulkKey]*bulkSeries, proxy, agent *cpuMeter, tunnelBytes int64) {
	for _, p := range paths {
		label := p.role.label()
		var bytes int64
		for _, d := range directions {
			for _, streams := range []int{1, 8} {
				s, ours := series[bulkKey{d.name, streams, true, label}], series[bulkKey{d.name, streams, true, ""}]
				if s == nil {
					s = &bulkSeries{}
				}
				oursRate := math.NaN()
				if ours != nil {
					oursRate = median(ours.rates)
				}
				bytes += s.bytes
				b.add(row{Section: secThroughput, Metric: lpMetric(bulkName(d.name, streams), p.role), Unit: unitMBps,
					Value: median(s.rates), Samples: s.rates, Baseline: oursRate, BaselineLabel: "ours",
					Note: fmt.Sprintf("runs completed: %d", len(s.rates))})
			}
		}
		our, name := proxy, "tunnelctl proxy"
		if p.role == lpDestination {
			our, name = agent, "tunnel-agent"
		}
		b.add(row{Section: secCPU, Metric: lpMetric("CPU per GiB moved", p.role), Unit: unitCPUPerG,
			Value: perGiB(p.cpu, bytes), Samples: p.cpu.per, Baseline: perGiB(our, tunnelBytes), BaselineLabel: name})
	}
}

// bulkName is "bulk upload, 1 stream" or "bulk download, 8 streams".
func bulkName(dir string, streams int) string {
	if streams == 1 {
		return "bulk " + dir + ", 1 stream"
	}
	return fmt.Sprintf("bulk %s, %d streams", dir, streams)
}

// perGiB is the CPU seconds per GiB of m over bytes (NaN when unknown).
func perGiB(m *cpuMeter, bytes int64) float64 {
	if m == nil || bytes == 0 {
		return math.NaN()
	}
	return m.total.Seconds() / (float64(bytes) / (1 << 30))
}
