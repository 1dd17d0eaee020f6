package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// bench holds one run: options, temp dir, started processes, the report.
type bench struct {
	opts     options
	tmp      string
	log      io.Writer
	rep      *report
	root     string
	bins     map[string]string
	sink     *server
	echo     *server
	gen      *server
	stuck    *server // --hostile: accepts and never reads
	children []*child
	perfTop  string // perf report of the tunnel bulk runs (--perf)
	one      oneTunnel
}

// start runs a program and registers it for cleanup; its output is logged
// to <tmp>/<name>.log.
func (b *bench) start(name, bin string, args, env []string) (*child, error) {
	if bin == "" {
		return nil, fmt.Errorf("%s was not built", name)
	}
	logPath := filepath.Join(b.tmp, strings.ReplaceAll(name, " ", "-")+".log")
	c, err := startChild(name, bin, args, env, logPath)
	if err != nil {
		return nil, err
	}
	b.children = append(b.children, c)
	return c, nil
}

// stopAll stops the started processes, newest first.
func (b *bench) stopAll() {
	for i := len(b.children) - 1; i >= 0; i-- {
		if err := b.children[i].stop(); err != nil {
			b.progress("%v", err)
		}
	}
	b.children = nil
}

func (b *bench) progress(format string, args ...any) {
	el := time.Since(b.rep.Started).Round(time.Second)
	fmt.Fprintf(b.log, "bench: [%3.0fs] %s\n", el.Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) fail(err error) {
	b.progress("error: %v", err)
	b.rep.Errors = append(b.rep.Errors, err.Error())
}

func (b *bench) add(r row) { b.rep.Rows = append(b.rep.Rows, r) }

// runAll runs every phase; a failed phase is recorded and the rest go on
// where they can.
func (b *bench) runAll(ctx context.Context) {
	if !b.build(ctx) {
		return
	}
	ctx, cancel := context.WithTimeoutCause(ctx, b.opts.budget, fmt.Errorf("time budget of %s used up (--budget)", b.opts.budget))
	defer cancel()
	var err error
	if b.sink, err = startServer(handleSink); err != nil {
		b.fail(err)
		return
	}
	defer b.sink.Close()
	if b.echo, err = startServer(handleEcho); err != nil {
		b.fail(err)
		return
	}
	defer b.echo.Close()
	if b.gen, err = startServer(handleGen); err != nil {
		b.fail(err)
		return
	}
	defer b.gen.Close()
	st := b.bringUp(ctx)
	if b.opts.idleOnly {
		b.measureIdle(ctx, st)
	} else {
		b.measurePhases(ctx, st)
	}
	if ctx.Err() != nil {
		b.fail(fmt.Errorf("stopped early, figures incomplete: %w", context.Cause(ctx)))
	}
	if st != nil && st.tunnel.TunnelID != "" {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = st.api.closeTunnel(cctx, st.tunnel.TunnelID)
		cancel()
	}
}

// measurePhases runs the measurements after bringUp.
func (b *bench) measurePhases(ctx context.Context, st *stack) {
	// Before the bulk runs: the heap they free stays resident for a while,
	// and new connections reuse it without growing the RSS.
	b.measureManyConns(ctx, st)
	b.setupLocalProxy(ctx, st)
	b.measureLatency(ctx, st)
	b.measureBulk(ctx, st)
	b.addLPCrashRows(st)
	b.measureIdle(ctx, st)
	b.measureConnect(ctx, st)
	b.measurePeak(st)
	b.measureBusyTunnels(ctx, st)
}

// build builds the programs for this machine and the device binaries for
// the size rows, bounded by buildTimeout (not counted in the budget).
func (b *bench) build(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	root, err := moduleRoot(ctx)
	if err != nil {
		b.fail(err)
		return false
	}
	b.root = root
	binDir := filepath.Join(b.tmp, "bin")
	// The builds run side by side: a quick run spent 7 of its 20-odd
	// seconds building one program after the other, mostly linking.
	var sizes []row
	var sizeErrs []error
	var wg sync.WaitGroup
	if !b.opts.noSizes {
		wg.Go(func() { sizes, sizeErrs = b.sizeRows(ctx, binDir) })
	}
	b.progress("building %s (go build -trimpath -ldflags \"-s -w\")%s", strings.Join(programs, ", "), b.sizeTargetNote())
	bins, errs := buildPrograms(ctx, root, binDir, b.opts.perf)
	wg.Wait()
	b.bins = bins
	for _, e := range append(errs, sizeErrs...) {
		b.fail(e)
	}
	for _, r := range sizes {
		b.add(r)
	}
	return ctx.Err() == nil
}

// sizeTargetNote names the device builds that run beside the host's.
func (b *bench) sizeTargetNote() string {
	if b.opts.noSizes {
		return ""
	}
	names := make([]string, len(sizeTargets))
	for i, t := range sizeTargets {
		names[i] = t.Name
	}
	return ", and tunnel-agent for " + strings.Join(names, " and ")
}

// buildTimeout bounds the builds (a cold cache builds everything).
const buildTimeout = 4 * time.Minute

// directDial dials the bench's own service.
func directDial(addr string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return d.DialContext(ctx, "tcp", addr)
	}
}

// settle lets a process finish the allocations that follow an event
// before its memory is read. A fixed pause: there is no condition to poll.
func settle(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// The Go-runtime floor: the bench re-executes itself with idleChildEnv set
// and reads the memory of a bare Go process with one TCP listener.
const idleChildEnv = "TUNNEL_BENCH_IDLE_CHILD"

func idleChild() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	defer ln.Close()
	fmt.Println("ready", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
}

// goFloorRSS measures the idle child's resident memory.
func (b *bench) goFloorRSS(ctx context.Context) float64 {
	self, err := os.Executable()
	if err != nil {
		return math.NaN()
	}
	c, err := b.start("go-floor", self, nil, []string{idleChildEnv + "=1"})
	if err != nil {
		return math.NaN()
	}
	defer c.stop()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, _, err := c.waitLine(wctx, 0, func(l string) bool { return strings.HasPrefix(l, "ready") }); err != nil {
		return math.NaN()
	}
	settle(ctx, 300*time.Millisecond)
	m, err := readMem(c.pid())
	if err != nil {
		return math.NaN()
	}
	return float64(m.RSS)
}
