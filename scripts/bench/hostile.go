package main

// The hostile-peer drills of issue 20 (--hostile): the real programs as
// separate processes, the agent's bounds measured from outside.
//
//	A. 3000 connections held open through tunnelctl proxy: the agent's RSS
//	   and fds stay bounded by max_connections (128).
//	B. a raw source (the bench itself, holding the source token of a second
//	   tunnel) starts 300 connections to a service that accepts and never
//	   reads and sends 960 KB into each: the agent's peak RSS stays within
//	   queue_budget (16 MiB) + 16 MiB.
//	C. the raw source sends 200,000 STREAM_STARTs with distinct unknown
//	   service ids: the agent writes at most 100 log lines per minute.
//
// Each drill prints the agent's RSS, fds and threads before, during (peak)
// and after. The exit status is 1 when a target is missed.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

const (
	svcStuck        = "STUCK"
	hostileConns    = 3000
	floodConns      = 300
	floodPerConn    = 960 << 10
	badServiceIDs   = 200000
	agentCap        = 128      // max_connections default
	queueBudget     = 16 << 20 // queue_budget default
	linesPerMinute  = 100
	rssTargetConns  = 48 << 20
	fdSlackOverCaps = 32
)

// handleStuck returns a handler that accepts and never reads, until stop
// is closed.
func handleStuck(stop <-chan struct{}) func(net.Conn) { return func(net.Conn) { <-stop } }

// procSample is what the drills read of the agent.
type procSample struct {
	rss          int64
	fds, threads int
	logLines     int
}

func sampleProc(c *child) procSample {
	var s procSample
	if m, err := readMem(c.pid()); err == nil {
		s.rss = m.RSS
	}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.pid()))
	s.fds = len(ents)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.pid())); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Threads:"); ok {
				s.threads, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	s.logLines = c.mark()
	return s
}

func (s procSample) String() string {
	return fmt.Sprintf("RSS %.1f MiB, fds %d, threads %d", float64(s.rss)/(1<<20), s.fds, s.threads)
}

// peakSampler samples the agent every 20 ms and keeps the highest RSS and
// fds until stopped.
func peakSampler(c *child) (stop func() procSample) {
	var mu sync.Mutex
	peak := sampleProc(c)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			s := sampleProc(c)
			mu.Lock()
			peak.rss, peak.fds, peak.threads = max(peak.rss, s.rss), max(peak.fds, s.fds), max(peak.threads, s.threads)
			mu.Unlock()
		}
	})
	return func() procSample {
		close(done)
		wg.Wait()
		return peak
	}
}

// hostileResult is one drill's line of the report.
type hostileResult struct {
	name                  string
	before, during, after procSample
	detail, target        string
	ok                    bool
}

// runHostile builds the programs, brings up emulator, agent and proxy, and
// runs the drills.
func (b *bench) runHostile(ctx context.Context) bool {
	if !b.build(ctx) {
		return false
	}
	stuckStop := make(chan struct{})
	defer func() {
		close(stuckStop)
		for _, s := range []*server{b.sink, b.echo, b.gen, b.stuck} {
			if s != nil {
				s.Close()
			}
		}
	}()
	var err error
	for _, s := range []struct {
		dst **server
		h   func(net.Conn)
	}{{&b.sink, handleSink}, {&b.echo, handleEcho}, {&b.gen, handleGen}} {
		if *s.dst, err = startServer(s.h); err != nil {
			b.fail(err)
			return false
		}
	}
	// A unix socket: small kernel buffers (a loopback TCP socket takes
	// megabytes), so the data backs up in the agent's queues at once.
	if b.stuck, err = startUnixServer(filepath.Join(b.tmp, "stuck.sock"), handleStuck(stuckStop)); err != nil {
		b.fail(err)
		return false
	}
	st, err := b.startStack(ctx)
	if err == nil {
		err = b.openFirstTunnel(ctx, st)
	}
	if err != nil {
		b.fail(err)
		return false
	}
	var results []hostileResult
	drills := map[string]func(context.Context, *stack) (hostileResult, error){"A": b.drillConnections, "B": b.drillFlood, "C": b.drillServiceIDs}
	for _, name := range strings.Split(b.opts.drills, "") {
		drill := drills[name]
		if drill == nil {
			b.fail(fmt.Errorf("--drills %q: use letters of ABC", b.opts.drills))
			return false
		}
		r, err := drill(ctx, st)
		if err != nil {
			b.fail(err)
			return false
		}
		results = append(results, r)
		b.progress("%s: %s", r.name, r.detail)
	}
	ok := true
	fmt.Println("| drill | agent before | agent during (peak) | agent after | result | target | |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range results {
		status := "ok"
		if !r.ok {
			status, ok = "MISSED", false
		}
		fmt.Printf("| %s | %v | %v | %v | %s | %s | %s |\n", r.name, r.before, r.during, r.after, r.detail, r.target, status)
	}
	return ok
}

// drillConnections holds hostileConns connections open through tunnelctl
// proxy to the echo service.
func (b *bench) drillConnections(ctx context.Context, st *stack) (hostileResult, error) {
	r := hostileResult{name: fmt.Sprintf("%d connections through tunnelctl proxy", hostileConns)}
	b.progress("drill A: %d connections through tunnelctl proxy", hostileConns)
	r.before = sampleProc(st.agent)
	stop := peakSampler(st.agent)
	conns := make([]net.Conn, 0, hostileConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := directDial(st.addrs[svcEcho])
	for range hostileConns {
		c, err := dial(ctx)
		if err != nil {
			return r, fmt.Errorf("connection %d to tunnelctl proxy: %w", len(conns)+1, err)
		}
		conns = append(conns, c)
	}
	settle(ctx, 2*time.Second)
	var working atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			if pingConn(ctx, c, 5*time.Second) == nil {
				working.Add(1)
			}
		})
	}
	wg.Wait()
	r.during = stop()
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	settle(ctx, 3*time.Second)
	r.after = sampleProc(st.agent)
	r.detail = fmt.Sprintf("%d of %d connections echoed", working.Load(), hostileConns)
	r.target = fmt.Sprintf("RSS <= %d MiB, fds <= %d", rssTargetConns>>20, agentCap+fdSlackOverCaps)
	r.ok = r.during.rss <= rssTargetConns && r.during.fds <= agentCap+fdSlackOverCaps && working.Load() > 0
	return r, nil
}

// drillFlood: floodConns connections to the service that never reads, each
// sent floodPerConn bytes, from a raw source on a second tunnel.
func (b *bench) drillFlood(ctx context.Context, st *stack) (hostileResult, error) {
	r := hostileResult{name: fmt.Sprintf("%d connections x %d KiB into a service that never reads", floodConns, floodPerConn>>10)}
	b.progress("drill B: %s", r.name)
	src, err := b.hostileSource(ctx, st)
	if err != nil {
		return r, err
	}
	defer src.close()
	r.before = sampleProc(st.agent)
	stop := peakSampler(st.agent)
	src.send(&protocol.Message{Type: protocol.TypeStreamStart, StreamID: 1, ServiceID: svcStuck, ConnectionID: 1})
	for cid := uint32(2); cid <= floodConns; cid++ {
		src.send(&protocol.Message{Type: protocol.TypeConnectionStart, StreamID: 1, ServiceID: svcStuck, ConnectionID: cid})
	}
	src.flush()
	chunk := make([]byte, protocol.MaxPayload)
	for cid := uint32(1); cid <= floodConns; cid++ {
		for sent := 0; sent < floodPerConn; sent += len(chunk) {
			n := min(len(chunk), floodPerConn-sent)
			src.send(&protocol.Message{Type: protocol.TypeData, StreamID: 1, ServiceID: svcStuck, ConnectionID: cid, Payload: chunk[:n]})
		}
	}
	markErr := src.mark(ctx)
	r.during = stop()
	resets := src.resets.Load()
	src.close()
	settle(ctx, 12*time.Second) // the drain of a reset stream is bounded by 10 s
	r.after = sampleProc(st.agent)
	r.detail = fmt.Sprintf("%d connections reset by the agent", resets)
	if markErr != nil {
		r.detail += " (" + markErr.Error() + ")"
	}
	r.target = fmt.Sprintf("peak RSS <= queue_budget + 16 MiB = %d MiB", (queueBudget+16<<20)>>20)
	r.ok = r.during.rss <= queueBudget+16<<20 && markErr == nil
	return r, nil
}

// drillServiceIDs: badServiceIDs STREAM_STARTs with distinct unknown ids.
func (b *bench) drillServiceIDs(ctx context.Context, st *stack) (hostileResult, error) {
	r := hostileResult{name: fmt.Sprintf("%d distinct unknown service ids", badServiceIDs)}
	b.progress("drill C: %s", r.name)
	src, err := b.hostileSource(ctx, st)
	if err != nil {
		return r, err
	}
	defer src.close()
	r.before = sampleProc(st.agent)
	stop := peakSampler(st.agent)
	start := time.Now()
	pad := strings.Repeat("x", 100)
	for i := range badServiceIDs {
		src.send(&protocol.Message{Type: protocol.TypeStreamStart, StreamID: int32(i + 1), ServiceID: pad + strconv.Itoa(i)})
	}
	markErr := src.mark(ctx)
	elapsed := time.Since(start)
	r.during = stop()
	src.close()
	settle(ctx, time.Second)
	r.after = sampleProc(st.agent)
	lines := r.after.logLines - r.before.logLines
	minutes := max(1, int((elapsed+time.Minute-1)/time.Minute))
	r.detail = fmt.Sprintf("%d agent log lines in %s (%d resets)", lines, elapsed.Round(time.Millisecond), src.resets.Load())
	if markErr != nil {
		r.detail += " (" + markErr.Error() + ")"
	}
	r.target = fmt.Sprintf("<= %d log lines per minute", linesPerMinute)
	r.ok = lines <= linesPerMinute*minutes && markErr == nil
	return r, nil
}
