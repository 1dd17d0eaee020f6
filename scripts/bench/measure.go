package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// latencySeries is p50 and p99 per repetition, in ns, and the context
// switches per round trip of the processes on the path.
type latencySeries struct{ p50, p99, switches, cpu []float64 }

func (b *bench) latencyInto(ctx context.Context, s *latencySeries, what, addr string, pids []int) error {
	before, cpu0 := ctxSwitches(pids), cpuOf(pids)
	p50, p99, n, err := b.latencyRun(ctx, directDial(addr))
	if err != nil {
		return fmt.Errorf("%s latency: %w", what, err)
	}
	s.p50, s.p99 = append(s.p50, p50), append(s.p99, p99)
	if len(pids) > 0 && n > 0 {
		s.switches = append(s.switches, float64(ctxSwitches(pids)-before)/float64(n))
		s.cpu = append(s.cpu, float64(cpuOf(pids)-cpu0)/float64(n))
	}
	return nil
}

// failOn records err, if any, as a failure of the bench.
func (b *bench) failOn(err error) {
	if err != nil {
		b.fail(err)
	}
}

// measureLatency runs the 64-byte echo round trip directly, through a chain
// of plain TCP relay processes, through the TLS floor's relays and through
// the tunnel, taking turns (latencyRep), and adds the p50 and p99 rows.
func (b *bench) measureLatency(ctx context.Context, st *stack) {
	var direct, chain, tlsChain, tun latencySeries
	chainAddr, relays, stop := b.keepChain(b.startRelayChain(ctx, b.echo.Addr()))
	defer stop()
	// The same three hops with TLS where the tunnel has it (the TLS
	// floor's relays): how much of what the tunnel adds is TLS itself.
	var tlsAddr string
	var tlsRelays []*child
	if !b.opts.lean {
		tlsAddr, tlsRelays, stop = b.keepChain(b.startTLSChain(ctx, "tls-floor-echo", b.echo.Addr()))
		defer stop()
	}
	for rep := range b.opts.reps {
		if ctx.Err() != nil {
			break
		}
		b.progress("latency rep %d/%d (64-byte echo, %s each, in turns of %s)", rep+1, b.opts.reps, b.opts.latDur, latSlice)
		paths := []*latencyPath{{what: "direct", addr: b.echo.Addr(), s: &direct}}
		if chainAddr != "" {
			paths = append(paths, &latencyPath{what: "relay chain", addr: chainAddr, pids: pidsOf(relays...), s: &chain})
		}
		if tlsAddr != "" {
			paths = append(paths, &latencyPath{what: "TLS relay chain", addr: tlsAddr, pids: pidsOf(tlsRelays...), s: &tlsChain})
		}
		if st != nil {
			paths = append(paths, &latencyPath{what: "tunnel", addr: st.addrs[svcEcho], pids: pidsOf(st.proxy, st.emu, st.agent), s: &tun})
		}
		b.latencyRep(ctx, paths, rep)
		for _, p := range lpPaths(st) {
			b.lpLatency(ctx, st, p)
		}
	}
	for _, l := range []struct {
		name       string
		tun, chain []float64
		dir        []float64
		limit      time.Duration
		target     string
		vsRelays   float64   // issue 19: added by the tunnel / added by the relays
		tls        []float64 // through the TLS floor's relays (none with --lean)
	}{
		{"p50", tun.p50, chain.p50, direct.p50, 200 * time.Microsecond, "added < 200 µs", 1.15, tlsChain.p50},
		{"p99", tun.p99, chain.p99, direct.p99, 2 * time.Millisecond, "added < 2 ms", 1.3, tlsChain.p99},
	} {
		dir := median(l.dir)
		t, added := median(l.tun), median(l.tun)-dir
		b.add(row{Section: secLatency, Metric: "round trip " + l.name + ", tunnel vs direct", Unit: unitMicros,
			Value: t, Samples: l.tun, Baseline: dir, Target: l.target, Note: addedNote(added),
			Status: judge(added, added < float64(l.limit))})
		c := median(l.chain)
		b.add(row{Section: secLatency, Metric: fmt.Sprintf("round trip %s, %d plain TCP relay processes (hop floor)", l.name, relayHops),
			Unit: unitMicros, Value: c, Samples: l.chain, Baseline: dir, Note: addedNote(c - dir)})
		r := row{Section: secLatency, Metric: fmt.Sprintf("round trip %s, added by the tunnel vs added by %d plain TCP relay processes", l.name, relayHops),
			Unit: unitMicros, Value: added, Baseline: c - dir, BaselineLabel: "added by the relays", Target: fmt.Sprintf("<= %.2fx", l.vsRelays)}
		r.Status = judge(r.ratio(), r.ratio() <= l.vsRelays)
		b.add(r)
		if len(l.tls) > 0 {
			tc := median(l.tls)
			b.add(row{Section: secLatency, Metric: fmt.Sprintf("round trip %s, %d TLS relay processes (TLS floor: tcp->tls, tls<->tls, tls->tcp)", l.name, relayHops),
				Unit: unitMicros, Value: tc, Samples: l.tls, Baseline: dir, Note: addedNote(tc - dir)})
			b.add(row{Section: secLatency, Metric: fmt.Sprintf("round trip %s, added by the tunnel vs added by %d TLS relay processes", l.name, relayHops),
				Unit: unitMicros, Value: added, Baseline: tc - dir, BaselineLabel: "added by the TLS relays"})
		}
	}
	// Each hop costs at least one wake-up per direction; more means
	// hand-offs between threads inside a process.
	b.add(row{Section: secLatency, Metric: "context switches per round trip, proxy + emulator + agent", Unit: unitCount,
		Value: median(tun.switches), Samples: tun.switches, Baseline: median(chain.switches),
		BaselineLabel: fmt.Sprintf("%d plain TCP relay processes", relayHops)})
	b.add(row{Section: secLatency, Metric: "CPU per round trip, proxy + emulator + agent", Unit: unitMicros,
		Value: median(tun.cpu), Samples: tun.cpu, Baseline: median(chain.cpu),
		BaselineLabel: fmt.Sprintf("%d plain TCP relay processes", relayHops)})
	if len(tlsChain.cpu) > 0 {
		b.add(row{Section: secLatency, Metric: "CPU per round trip, proxy + emulator + agent, vs the TLS floor", Unit: unitMicros,
			Value: median(tun.cpu), Samples: tun.cpu, Baseline: median(tlsChain.cpu),
			BaselineLabel: fmt.Sprintf("%d TLS relay processes", relayHops)})
	}
	b.addLPLatencyRows(lpPaths(st), tun)
}

// keepChain takes what a chain start returned: the chain's entry ("" and
// the error recorded when it failed), its relays, and the func that stops
// them.
func (b *bench) keepChain(addr string, relays []*child, err error) (string, []*child, func()) {
	if err != nil {
		b.fail(err)
		addr = ""
	}
	return addr, relays, func() {
		for _, r := range relays {
			_ = r.stop()
		}
	}
}

// cpuOf sums the CPU time the processes used so far (0 for one gone).
func cpuOf(pids []int) time.Duration {
	var d time.Duration
	for _, pid := range pids {
		c, _ := readCPU(pid)
		d += c
	}
	return d
}

func addedNote(added float64) string {
	if math.IsNaN(added) {
		return ""
	}
	return fmt.Sprintf("added %.0f µs", added/1e3)
}

// latencyRun measures one connection's round trips; p50 and p99 in ns, and
// the number of round trips made (warm-up included).
func (b *bench) latencyRun(ctx context.Context, dial func(context.Context) (net.Conn, error)) (float64, float64, int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, b.opts.latDur+runSlack, errRunTimeout)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	rtts, err := measureLatency(ctx, c, b.opts.latDur, latWarm)
	if err != nil {
		return 0, 0, 0, err
	}
	return float64(percentile(rtts, 50)), float64(percentile(rtts, 99)), len(rtts) + latWarm, nil
}

const (
	// latWarm is how many round trips a new connection, and each turn
	// in latencyRep, makes at least before its times count.
	latWarm = 200
	// latSlice is how long one path runs before the next takes its turn
	// in latencyRep, latSliceWarm of it not counted.
	latSlice = 500 * time.Millisecond
	// latSliceWarm is how long each turn runs before its times count.
	// After another path's turn the processes of this one have slept,
	// and the host takes its time to wake them: medians of 20 ms windows
	// within 250 ms turns (quick runs, 4 repetitions) read 210-340 µs in
	// the first 20 ms and came down to 180-245 µs only after 80-120 ms,
	// the plain relays and the TLS relays as well as the tunnel.
	latSliceWarm = 150 * time.Millisecond
)

// latencyPath is one way to the echo service in latencyRep, and what one
// repetition measured on it.
type latencyPath struct {
	what string
	addr string
	pids []int // the processes on the path, for switches and CPU
	s    *latencySeries

	conn net.Conn
	err  error
	rtts []time.Duration // the counted round trips (the turns' warm-ups are not)
	sw   int64           // context switches of pids while counted
	cpu  time.Duration   // CPU time of pids while counted
}

// latencyRep is one repetition of the round-trip runs: each path gets a
// connection, then the paths take turns of latSlice each, in an order
// that rotates (from first on), until each has run for latDur. Measured
// one after the other in whole runs of latDur, the paths met the shared
// host at different moments, and the ratios between them moved with its
// load (in one quick run the TLS relays read 185 µs in one repetition and
// 395 µs in the next); in turns, a change of load lands on all of them
// more alike. p50 and p99 are taken over each path's round trips of the
// whole repetition.
func (b *bench) latencyRep(ctx context.Context, paths []*latencyPath, first int) {
	ctx, cancel := context.WithTimeoutCause(ctx, time.Duration(len(paths))*b.opts.latDur+runSlack, errRunTimeout)
	defer cancel()
	for _, p := range paths {
		p.conn, p.err = directDial(p.addr)(ctx)
		if p.err == nil {
			defer p.conn.Close()
		}
	}
	turns := max(1, int(b.opts.latDur/latSlice))
	run := b.opts.latDur/time.Duration(turns) - latSliceWarm
	scratch := make([]time.Duration, 0, 1<<12)
	for i := range turns {
		for j := range paths {
			p := paths[(first+i+j)%len(paths)]
			if p.err != nil {
				continue
			}
			if _, _, p.err = roundTrips(ctx, p.conn, latSliceWarm, latWarm, scratch); p.err != nil {
				continue
			}
			sw, cpu := ctxSwitches(p.pids), cpuOf(p.pids)
			p.rtts, _, p.err = roundTrips(ctx, p.conn, run, 0, p.rtts)
			p.sw += ctxSwitches(p.pids) - sw
			p.cpu += cpuOf(p.pids) - cpu
		}
	}
	for _, p := range paths {
		if p.err != nil {
			b.fail(fmt.Errorf("%s latency: %w", p.what, p.err))
			continue
		}
		slices.Sort(p.rtts)
		s := p.s
		s.p50 = append(s.p50, float64(percentile(p.rtts, 50)))
		s.p99 = append(s.p99, float64(percentile(p.rtts, 99)))
		if n := len(p.rtts); len(p.pids) > 0 && n > 0 {
			s.switches = append(s.switches, float64(p.sw)/float64(n))
			s.cpu = append(s.cpu, float64(p.cpu)/float64(n))
		}
	}
}

// runSlack is how much longer than planned a run may take before it is
// abandoned (a stuck tunnel must not eat the whole budget).
const runSlack = 20 * time.Second

// errRunTimeout ends a run that took runSlack longer than planned.
var errRunTimeout = errors.New("run took 20 s longer than planned: the tunnel stalled")

// cpuMeter accumulates the CPU time of processes over measured runs.
type cpuMeter struct {
	pid   int
	total time.Duration
	per   []float64 // CPU s/GiB per run
}

func (m *cpuMeter) sample() time.Duration {
	if m == nil {
		return 0
	}
	d, _ := readCPU(m.pid)
	return d
}

func (m *cpuMeter) record(before time.Duration, bytes int64) {
	if m == nil {
		return
	}
	d := m.sample() - before
	m.total += d
	m.per = append(m.per, d.Seconds()/(float64(bytes)/(1<<30)))
}

// bulkSeries collects one kind of bulk run over the repetitions.
type bulkSeries struct {
	rates  []float64
	bytes  int64
	failed bool
}

// direction is upload (proxy -> agent -> sink) or download (generator ->
// agent -> proxy).
type direction struct {
	name       string
	move       bulkFunc
	directAddr func(b *bench) string
	service    string
}

var directions = []direction{
	{"upload", upload, func(b *bench) string { return b.sink.Addr() }, svcSink},
	{"download", download, func(b *bench) string { return b.gen.Addr() }, svcGen},
}

// bulkKey names a series: direction, streams, through the tunnel or not,
// and the LOCALPROXY path ("" for ours).
type bulkKey struct {
	dir     string
	streams int
	tunnel  bool
	path    string
}

// measureBulk runs bulk transfers, both directions, 1 and 8 streams,
// directly and through the tunnel, interleaved per repetition so that
// noise hits both alike.
func (b *bench) measureBulk(ctx context.Context, st *stack) {
	series := map[bulkKey]*bulkSeries{}
	self := &cpuMeter{pid: os.Getpid()}
	var agent, emu, proxy *cpuMeter
	if st != nil {
		agent, emu, proxy = &cpuMeter{pid: st.agent.pid()}, &cpuMeter{pid: st.emu.pid()}, &cpuMeter{pid: st.proxy.pid()}
	}
	floorAddr, floor := b.startRelayFloor(ctx)
	defer floor.stop()
	tlsf := &tlsFloor{addrs: map[string]string{}, meters: map[string]*cpuMeter{}}
	if !b.opts.lean {
		tlsf = b.startTLSFloor(ctx)
	}
	defer tlsf.stop()
	var pk peaks
	var procs map[string]*child
	if st != nil {
		procs = map[string]*child{"tunnel-agent": st.agent, "tunnelctl proxy": st.proxy, "tunnel-emulator": st.emu}
	}
	perf := b.startPerf(st)
	for rep := range b.opts.reps {
		for _, d := range directions {
			for _, streams := range []int{1, 8} {
				if ctx.Err() != nil {
					break
				}
				b.progress("bulk rep %d/%d, %s, %d stream(s)", rep+1, b.opts.reps, d.name, streams)
				b.failOn(b.bulkRun(ctx, d, directDial(d.directAddr(b)), streams, series, bulkKey{d.name, streams, false, ""}, []*cpuMeter{self}, nil))
				if floorAddr != "" && d.name == "upload" && streams == 1 {
					b.failOn(b.bulkRun(ctx, d, directDial(floorAddr), 1, series, bulkKey{relayKey, 1, false, ""}, floor.meters, nil))
				}
				if streams == 1 {
					tlsf.run(ctx, b, d, series)
				}
				if st != nil {
					key := bulkKey{d.name, streams, true, ""}
					pk.reset(procs)
					b.failOn(b.bulkRun(ctx, d, directDial(st.addrs[d.service]), streams, series, key,
						[]*cpuMeter{agent, emu, proxy}, st.agent))
					pk.record(key, procs)
				}
				for _, p := range lpPaths(st) {
					b.lpBulk(ctx, st, p, d, streams, series)
				}
			}
		}
	}
	perf.stop(ctx, b)
	var direct, tunnel int64
	for k, s := range series {
		if k.dir == relayKey || strings.HasPrefix(k.dir, tlsFloorKey) || k.path != "" {
			continue
		}
		if k.tunnel {
			tunnel += s.bytes
		} else {
			direct += s.bytes
		}
	}
	b.addBulkRows(series)
	relayBytes := int64(0)
	if s := series[bulkKey{relayKey, 1, false, ""}]; s != nil {
		relayBytes = s.bytes
	}
	b.addCPURows(self, floor, tlsf, agent, emu, proxy, direct, relayBytes, tunnel)
	b.addPeakRows(&pk, st)
	b.addLPBulkRows(lpPaths(st), series, proxy, agent, tunnel)
}

// bulkRun does one bulk transfer and records its rate, bytes and the CPU
// of meters. On failure the series is marked failed and the error says why,
// with the agent's warnings of the run, if any.
func (b *bench) bulkRun(ctx context.Context, d direction, dial func(context.Context) (net.Conn, error), streams int,
	series map[bulkKey]*bulkSeries, key bulkKey, meters []*cpuMeter, agent *child) error {
	s := series[key]
	if s == nil {
		s = &bulkSeries{}
		series[key] = s
	}
	before := make([]time.Duration, len(meters))
	for i, m := range meters {
		before[i] = m.sample()
	}
	from := 0
	if agent != nil {
		from = agent.mark()
	}
	rctx, cancel := context.WithTimeoutCause(ctx, b.opts.bulkMax+runSlack, errRunTimeout)
	rate, n, err := runBulk(rctx, d.move, dial, streams, b.opts.bulk, b.opts.bulkMax)
	cancel()
	if err != nil {
		where := "direct"
		if key.tunnel {
			where = "tunnel"
		}
		if key.path != "" {
			where = "tunnel, " + key.path
		}
		if agent != nil {
			if w := agentWarnings(agent, from); w != "" {
				err = fmt.Errorf("%w; tunnel-agent logged: %s", err, w)
			}
		}
		if key.path == "" {
			s.failed = true // a LOCALPROXY run may be retried on a fresh process
		}
		return fmt.Errorf("bulk %s %s, %d stream(s): %w", where, d.name, streams, err)
	}
	for i, m := range meters {
		m.record(before[i], n)
	}
	s.rates = append(s.rates, rate)
	s.bytes += n
	return nil
}

func (b *bench) addBulkRows(series map[bulkKey]*bulkSeries) {
	get := func(k bulkKey) *bulkSeries {
		if s := series[k]; s != nil {
			return s
		}
		return &bulkSeries{}
	}
	var runs int
	var total int64
	failed := false
	for _, s := range series {
		runs += len(s.rates)
		total += s.bytes
		failed = failed || s.failed
	}
	for _, d := range directions {
		t1, t8 := get(bulkKey{d.name, 1, true, ""}), get(bulkKey{d.name, 8, true, ""})
		m1, m8 := median(t1.rates), median(t8.rates)
		if b.one.rate == nil {
			b.one.rate = map[string]float64{}
		}
		b.one.rate[d.name] = m1
		d1 := median(get(bulkKey{d.name, 1, false, ""}).rates)
		b.add(row{Section: secThroughput, Metric: "bulk " + d.name + ", 1 stream, tunnel vs direct", Unit: unitMBps, Value: m1,
			Samples: t1.rates, Baseline: d1, Target: ">= 25% of direct", Status: bulkStatus(t1, m1, m1 >= 0.25*d1)})
		b.add(row{Section: secThroughput, Metric: "bulk " + d.name + ", 8 streams, tunnel vs direct", Unit: unitMBps, Value: m8,
			Samples: t8.rates, Baseline: median(get(bulkKey{d.name, 8, false, ""}).rates),
			Target: fmt.Sprintf(">= 1 stream (%.0f MB/s)", m1/1e6), Status: bulkStatus(t8, m8, m8 >= m1)})
	}
	if fs := series[bulkKey{relayKey, 1, false, ""}]; fs != nil {
		b.add(row{Section: secThroughput, Metric: fmt.Sprintf("bulk upload, 1 stream, %d plain TCP relay processes (hop floor)", relayHops),
			Unit: unitMBps, Value: median(fs.rates), Samples: fs.rates, Baseline: median(get(bulkKey{"upload", 1, false, ""}).rates)})
	}
	status := statusPass
	if failed {
		status = statusFail
	}
	b.add(row{Section: secThroughput, Metric: fmt.Sprintf("SHA-256 received = sent (%d runs ok, %.1f GiB)", runs, float64(total)/(1<<30)),
		Unit: unitMBps, Value: math.NaN(), Baseline: math.NaN(), Target: "every run completes and matches", Status: status})
}

// bulkStatus is FAIL when a run of the series failed, else PASS/MISS.
func bulkStatus(s *bulkSeries, v float64, ok bool) string {
	if s.failed {
		return statusFail
	}
	return judge(v, ok)
}

// addCPURows adds the CPU per GiB of the plain relay, of each TLS floor
// position, and of each tunnel process as a ratio to the TLS floor of its
// position (target <= 2x).
func (b *bench) addCPURows(self *cpuMeter, floor *relayFloor, tlsf *tlsFloor, agent, emu, proxy *cpuMeter, directBytes, relayBytes, tunnelBytes int64) {
	plain, plainLabel := perGiB(self, directBytes), "generator+sink, direct"
	if f := floor.perProcess(relayBytes); !math.IsNaN(f) {
		plain, plainLabel = f, "plain TCP relay process"
		b.add(row{Section: secCPU, Metric: "plain TCP relay process CPU per GiB (io.Copy, no TLS)", Unit: unitCPUPerG, Value: f,
			Baseline: perGiB(self, directBytes), BaselineLabel: "generator+sink, direct"})
	}
	for _, m := range tlsFloorModes {
		b.add(row{Section: secCPU, Metric: fmt.Sprintf("TLS floor CPU per GiB, %s relay (in the %s's place)", m.mode, m.like),
			Unit: unitCPUPerG, Value: tlsf.perGiB(m.like), Baseline: plain, BaselineLabel: plainLabel})
	}
	for _, p := range []struct {
		name, like string
		m          *cpuMeter
	}{{"agent", "agent", agent}, {"emulator", "emulator", emu}, {"tunnelctl proxy", "tunnelctl proxy", proxy}} {
		var samples []float64
		if p.m != nil {
			samples = p.m.per
		}
		v, base := perGiB(p.m, tunnelBytes), tlsf.perGiB(p.like)
		if p.name == "agent" {
			b.one.agentCPU = v
		}
		r := row{Section: secCPU, Metric: p.name + " CPU per GiB moved", Unit: unitCPUPerG, Value: v,
			Samples: samples, Baseline: base, BaselineLabel: "TLS floor (" + p.like + " position)", Target: "<= 2x TLS floor"}
		r.Status = judge(r.ratio(), r.ratio() <= 2)
		b.add(r)
	}
}
