package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// lpPath is a tunnel with the LOCALPROXY binary at one end, measured like
// ours and interleaved with it.
type lpPath struct {
	role     lpRole
	lp       *child // the LOCALPROXY process
	proxy    *child // destination role: our tunnelctl proxy as the source
	tunnelID string
	addrs    map[string]string // where the load generator connects, per service
	cpu      *cpuMeter         // the LOCALPROXY process over its bulk runs
	lat      latencySeries
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

// lpStartAttempts bounds the retries when the localproxy exits at start
// (a picked port taken in between).
const lpStartAttempts = 3

// setupLocalProxy starts the LOCALPROXY paths (source, then destination)
// and measures their memory; a path that fails is reported and left out.
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
		b.progress("starting %s (%s)", r.label(), b.opts.localproxy)
		var p *lpPath
		var err error
		for attempt := 1; ; attempt++ {
			if r == lpSource {
				p, err = b.lpSourcePath(ctx, st, caDir)
			} else {
				p, err = b.lpDestinationPath(ctx, st, caDir)
			}
			if err == nil || p.lp == nil || !exited(p.lp) || attempt == lpStartAttempts || ctx.Err() != nil {
				break
			}
			b.progress("%s exited at start (a picked port taken?); retrying with a new tunnel and ports", r.label())
			b.stopPath(ctx, st, p)
		}
		if err != nil {
			b.fail(fmt.Errorf("%s not measured: %w", r.label(), err))
			b.stopPath(ctx, st, p)
			continue
		}
		p.cpu = &cpuMeter{pid: p.lp.pid()}
		st.lp = append(st.lp, p)
		b.lpMemory(ctx, st, p)
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

// lpSourcePath opens a tunnel to the bench thing (tunnel-agent connects as
// the destination) and starts LOCALPROXY as its source on free ports.
func (b *bench) lpSourcePath(ctx context.Context, st *stack, caDir string) (*lpPath, error) {
	p := &lpPath{role: lpSource}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tun, err := st.api.openTunnel(wctx, benchThing, tunnelServices)
	if err != nil {
		return p, err
	}
	p.tunnelID = tun.TunnelID
	if err := st.api.waitConnected(wctx, tun.TunnelID, false); err != nil {
		return p, fmt.Errorf("tunnel-agent did not connect: %w", err)
	}
	ports, err := freePorts(len(tunnelServices))
	if err != nil {
		return p, err
	}
	arg, err := lpServiceArg(tunnelServices, portAddrs(ports))
	if err != nil {
		return p, err
	}
	if p.lp, err = b.startLocalProxy(lpSource, arg, st.info.Data, caDir, tun.SourceAccessToken); err != nil {
		return p, err
	}
	p.addrs = map[string]string{}
	var order []string
	for i, s := range tunnelServices {
		p.addrs[s] = fmt.Sprintf("127.0.0.1:%d", ports[i])
		order = append(order, p.addrs[s])
	}
	ectx, stop := untilExit(wctx, p.lp)
	defer stop()
	if err := st.api.waitConnected(ectx, tun.TunnelID, true); err != nil {
		return p, err
	}
	return p, waitAccepting(ectx, order, p.addrs[svcEcho])
}

// lpDestinationPath opens a tunnel to a thing no agent serves, starts
// LOCALPROXY as its destination to the bench's services and a second
// `tunnelctl proxy` as its source.
func (b *bench) lpDestinationPath(ctx context.Context, st *stack, caDir string) (*lpPath, error) {
	p := &lpPath{role: lpDestination}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tun, err := st.api.openTunnel(wctx, lpNobodyThing, tunnelServices)
	if err != nil {
		return p, err
	}
	p.tunnelID = tun.TunnelID
	arg, err := lpServiceArg(tunnelServices, map[string]string{svcSink: b.sink.Addr(), svcEcho: b.echo.Addr(), svcGen: b.gen.Addr()})
	if err != nil {
		return p, err
	}
	if p.lp, err = b.startLocalProxy(lpDestination, arg, st.info.Data, caDir, tun.DestinationAccessToken); err != nil {
		return p, err
	}
	ectx, stop := untilExit(wctx, p.lp)
	defer stop()
	if err := st.api.waitConnected(ectx, tun.TunnelID, false); err != nil {
		return p, err
	}
	if p.proxy, p.addrs, err = b.startProxy(ectx, st.info, tun.SourceAccessToken, "tunnelctl proxy for localproxy"); err != nil {
		return p, err
	}
	if err := st.api.waitConnected(ectx, tun.TunnelID, true); err != nil {
		return p, err
	}
	return p, pingUntil(ectx, p.addrs[svcEcho])
}

// stopPath stops the processes of p and closes its tunnel.
func (b *bench) stopPath(ctx context.Context, st *stack, p *lpPath) {
	if p == nil {
		return
	}
	for _, c := range []*child{p.proxy, p.lp} {
		if c == nil {
			continue
		}
		if err := c.stop(); err != nil {
			b.progress("%v", err)
		}
	}
	if p.tunnelID != "" {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = st.api.closeTunnel(cctx, p.tunnelID)
		cancel()
	}
}

// stopLocalProxy ends every LOCALPROXY path.
func (b *bench) stopLocalProxy(ctx context.Context, st *stack) {
	for _, p := range lpPaths(st) {
		b.stopPath(ctx, st, p)
	}
}

// lpMemory adds the LOCALPROXY RSS rows: 1 tunnel, and with idleConns idle
// connections through it; ours is the process it stands in for.
func (b *bench) lpMemory(ctx context.Context, st *stack, p *lpPath) {
	settle(ctx, 500*time.Millisecond)
	one, many := b.rss(p.lp), math.NaN()
	err := b.holdIdleConns(ctx, p.addrs[svcEcho], func() { many = b.rss(p.lp) })
	if err != nil {
		b.fail(fmt.Errorf("%s: %w", p.role.label(), err))
	}
	ourOne, ourMany, label := st.proxyOne, st.proxyMany, "tunnelctl proxy"
	if p.role == lpDestination {
		ourOne, ourMany, label = st.agentOne, st.agentMany, "tunnel-agent (with MQTT)"
	}
	b.add(row{Section: secMemory, Metric: lpMetric("RSS, 1 tunnel", p.role), Unit: unitMiB, Value: one,
		Baseline: ourOne, BaselineLabel: label})
	b.add(row{Section: secMemory, Metric: lpMetric(fmt.Sprintf("RSS, %d idle connections", idleConns), p.role), Unit: unitMiB,
		Value: many, Baseline: ourMany, BaselineLabel: label})
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
				r := row{Section: secThroughput, Metric: lpMetric(bulkName(d.name, streams), p.role), Unit: unitMBps,
					Value: median(s.rates), Samples: s.rates, Baseline: oursRate, BaselineLabel: "ours"}
				if s.failed {
					r.Status = statusFail
				}
				b.add(r)
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
