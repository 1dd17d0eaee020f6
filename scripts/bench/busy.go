package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"time"
)

// Several busy tunnels at once: one stream through each of the many-tunnel
// phase's number of tunnels, each direction, with the agent's CPU and peak
// memory. It runs after the single-tunnel bulk runs, so that what it leaves
// in the agent's runtime (more threads, spans and stacks) does not raise
// the issue 19 peak rows. Before busy tunnels counted in the agent's
// memory limit, five of them held about 5 MB of live heap under a 12 MiB
// limit and the collector ran back to back: the agent spent 2.1-2.3x its
// single-tunnel CPU per GiB on a download.

// busyReps is how many runs per direction the phase makes (at most the
// bench's repetitions): each full run opens the tunnels once and moves
// 1 GiB per run, about 3 s.
const busyReps = 3

// oneTunnel holds the single-tunnel figures the busy rows compare with,
// from the bulk runs of the same bench run.
type oneTunnel struct {
	rate     map[string]float64 // 1-stream median rate per direction
	agentCPU float64            // agent CPU s/GiB over all tunnel bulk runs
}

// measureBusyTunnels opens tunnels up to manyShape's count and moves data
// through all of them at once, one stream each.
func (b *bench) measureBusyTunnels(ctx context.Context, st *stack) {
	if st == nil || ctx.Err() != nil || b.opts.lean {
		return
	}
	tunnels, _ := b.opts.manyShape()
	b.progress("opening %d tunnels for the busy-tunnel runs", tunnels)
	extra, err := b.openTunnels(ctx, st, tunnels, "busy ")
	defer extra.close(ctx, b, st)
	if err != nil {
		b.fail(err)
		return
	}
	settle(ctx, 500*time.Millisecond)
	before := b.rss(st.agent)
	procs := map[string]*child{"tunnel-agent": st.agent}
	for _, d := range directions {
		// Series and peaks of their own: the single-tunnel rows' keys
		// must not take these runs in.
		series := map[bulkKey]*bulkSeries{}
		var pk peaks
		key := bulkKey{d.name, tunnels, true, ""}
		agent := &cpuMeter{pid: st.agent.pid()}
		for rep := range min(b.opts.reps, busyReps) {
			if ctx.Err() != nil {
				break
			}
			b.progress("busy tunnels, %s, rep %d: %d tunnels x 1 stream", d.name, rep+1, tunnels)
			pk.reset(procs)
			if err := b.bulkRun(ctx, d, roundRobin(extra.addrs[d.service]), tunnels, series, key, []*cpuMeter{agent}, st.agent); err != nil {
				b.fail(fmt.Errorf("through %d tunnels at once: %w", tunnels, err))
				return
			}
			pk.record(key, procs)
			settle(ctx, 500*time.Millisecond)
		}
		s := series[key]
		if s == nil {
			return
		}
		peak := math.NaN()
		if pk.ok {
			peak = pk.max[key]["tunnel-agent"]
		}
		what := fmt.Sprintf("%s, %d tunnels at once (1 stream each)", d.name, tunnels)
		b.add(row{Section: secThroughput, Metric: "bulk " + what, Unit: unitMBps, Value: median(s.rates), Samples: s.rates,
			Baseline: b.one.rate[d.name], BaselineLabel: "1 tunnel, 1 stream"})
		b.add(row{Section: secCPU, Metric: "agent CPU per GiB, " + what, Unit: unitCPUPerG, Value: perGiB(agent, s.bytes),
			Baseline: b.one.agentCPU, BaselineLabel: "through 1 tunnel (agent CPU per GiB moved)"})
		b.add(row{Section: secMemory, Metric: "tunnel-agent peak RSS (VmHWM), bulk " + what, Unit: unitMiB, Value: peak,
			Baseline: before, BaselineLabel: fmt.Sprintf("%d tunnels, no connection", tunnels)})
	}
}

// roundRobin dials addrs in turn.
func roundRobin(addrs []string) func(context.Context) (net.Conn, error) {
	var next atomic.Int64
	return func(ctx context.Context) (net.Conn, error) {
		return directDial(addrs[int(next.Add(1)-1)%len(addrs)])(ctx)
	}
}
