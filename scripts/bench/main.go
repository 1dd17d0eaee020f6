// Command bench measures the tunnel against the raw loopback: it builds
// tunnel-emulator, tunnel-agent and tunnelctl, runs them as separate
// processes on loopback (tunnelctl proxy -> emulator relay (TLS) ->
// tunnel-agent -> a sink and an echo service in this process), and prints a
// Markdown table of throughput, latency, memory, CPU, connect time and
// binary size, each with its ratio to a baseline measured in the same run
// and the target of issue 7. It also writes the figures as JSON.
//
//	go run ./scripts/bench            # full: 5 repetitions, about 2-3 minutes, < 5 min
//	go run ./scripts/bench --quick    # CI: < 20 s
//
// With LOCALPROXY=<binary with the AWS localproxy command line> the tunnel
// rows are also measured with that binary as the source and as the
// destination, side by side with ours (see README.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// options are the command-line settings.
type options struct {
	quick    bool
	out      string
	reps     int
	bulk     int64         // bytes per bulk run (split over the streams)
	bulkMax  time.Duration // a bulk run stops sending after this long
	latDur   time.Duration // latency run length
	connects int           // OpenTunnel -> connected samples
	budget   time.Duration // the whole run
	keep     bool
	pprof    bool
	perf     bool
	// localproxy is the LOCALPROXY binary to compare with ("" off).
	localproxy string
	// noSizes skips the cross-builds of the size rows (tests only).
	noSizes bool
	// lean skips the TLS floor chains, the idle and many-tunnel rows and
	// the first-byte samples (tests of other rows only: less load, shorter).
	lean bool
	// hostile runs the hostile-peer drills of issue 20 instead (see hostile.go).
	hostile bool
	drills  string // which of them: letters of ABC
	// idle is how long the idle agent is watched (0: idleWindow's default);
	// idleOnly brings the stack up and measures only that.
	idle     time.Duration
	idleOnly bool
}

// parseOptions reads the flags and LOCALPROXY (via getenv).
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "CI mode: one repetition, smaller transfers, < 60 s")
	fs.StringVar(&o.out, "out", "bench-results.json", "JSON results file")
	fs.IntVar(&o.reps, "reps", 0, "repetitions per measurement (default 5, quick 1)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (binaries, configs, process logs) and print its path")
	fs.BoolVar(&o.pprof, "pprof", false, "print how to profile the agent and the emulator, then exit")
	fs.BoolVar(&o.perf, "perf", false, "build with symbols and run `perf record` on agent, emulator and proxy during the tunnel bulk runs; "+
		"prints their top functions (figures are slower under perf: do not compare them with a normal run)")
	fs.BoolVar(&o.hostile, "hostile", false, "run the hostile-peer drills (3000 connections, a 300 x 960 KB flood, 200,000 bad service ids) "+
		"and print the agent's RSS and fds before, during and after; exit 1 when a bound is missed")
	fs.StringVar(&o.drills, "drills", "ABC", "with --hostile: the drills to run (A connections, B flood, C service ids)")
	fs.DurationVar(&o.idle, "idle", 0, "watch the idle agent this long (default 60s, quick 1s); "+
		"120s covers every periodic event: pings at 20 s and 60 s, the runtime's forced collection at 2 min")
	fs.BoolVar(&o.idleOnly, "idle-only", false, "bring the stack up and measure only the idle agent (no bulk runs before it)")
	fs.DurationVar(&o.budget, "budget", 0, "abort the measurements after this long, builds not counted "+
		"(default 6m, quick 50s; with LOCALPROXY 12m, quick 100s)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.bulk, o.bulkMax, o.latDur, o.connects = 1<<30, 8*time.Second, 2*time.Second, 5
	def, budget := 5, 360*time.Second
	if o.quick {
		o.bulk, o.bulkMax, o.latDur, o.connects = 128<<20, 3*time.Second, 500*time.Millisecond, 3
		def, budget = 1, 50*time.Second
	}
	lp, err := checkLocalProxy(getenv(localProxyEnv))
	if err != nil {
		return o, err
	}
	if o.localproxy = lp; lp != "" {
		budget *= 2 // two more tunnel paths in every repetition
	}
	if o.reps <= 0 {
		o.reps = def
	}
	if o.budget <= 0 {
		o.budget = budget
	}
	return o, nil
}

// runChild plays one of the bench's re-executed children (the idle Go
// process, a relay) when the environment asks for it, and reports whether
// it did.
func runChild() bool {
	if os.Getenv(idleChildEnv) != "" {
		idleChild()
		return true
	}
	if to := os.Getenv(relayChildEnv); to != "" {
		relayChild(to)
		return true
	}
	return false
}

func main() {
	if runChild() {
		return
	}
	opts, err := parseOptions(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if opts.pprof {
		fmt.Print(pprofHelp)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, stop, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// run does the whole bench and reports; ok is false when a measurement
// failed (not when a target is missed).
func run(ctx context.Context, stopSignals func(), o options) (bool, error) {
	context.AfterFunc(ctx, stopSignals) // a second Ctrl-C kills the bench at once
	tmp, err := os.MkdirTemp("", "tunnel-bench-")
	if err != nil {
		return false, err
	}
	b := &bench{opts: o, tmp: tmp, log: os.Stderr}
	defer func() {
		b.stopAll()
		if o.keep {
			fmt.Fprintln(os.Stderr, "bench: kept", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()
	mode := "full"
	if o.quick {
		mode = "quick"
	}
	b.rep = &report{Started: time.Now().UTC(), Mode: mode, Reps: o.reps,
		Machine:    machine{NProc: runtime.NumCPU(), CPUModel: cpuModel(), GoVersion: runtime.Version(), Kernel: kernelRelease(), LoadStart: loadAvg()},
		LocalProxy: o.localproxy}
	if o.hostile {
		b.opts.noSizes = true
		ok := b.runHostile(ctx)
		for _, e := range b.rep.Errors {
			fmt.Fprintln(os.Stderr, "bench:", e)
		}
		return ok && len(b.rep.Errors) == 0, nil
	}
	b.runAll(ctx)
	b.rep.Seconds = time.Since(b.rep.Started).Seconds()
	b.rep.Machine.LoadEnd = loadAvg()
	b.rep.writeMarkdown(os.Stdout)
	if b.perfTop != "" {
		fmt.Printf("\nperf (tunnel bulk runs; overhead, %% of samples, process, function):\n%s\n", b.perfTop)
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return false, err
	}
	if err := b.rep.writeJSON(out); err != nil {
		return false, fmt.Errorf("write %s: %w", out, err)
	}
	fmt.Fprintf(os.Stdout, "\nJSON: %s (%.0f s)\n", out, b.rep.Seconds)
	for _, r := range b.rep.Rows {
		if r.Status == statusFail {
			return false, nil
		}
	}
	return len(b.rep.Errors) == 0, nil
}

const pprofHelp = `Profiling the tunnel path (the bench itself does not profile):

  go test -run '^$' -bench . -benchmem -cpuprofile cpu.out ./agent/tunnel/...
  go tool pprof -top -nodecount 30 agent/tunnel.test cpu.out

  go test -run '^$' -bench . -benchmem -cpuprofile cpu.out ./platform/emulator/...
  go tool pprof -top -nodecount 30 emulator.test cpu.out

Whole processes under load, on the real path (needs perf and permission):
  go run ./scripts/bench --quick --perf
builds the programs with symbols, records the agent, emulator and proxy
during the tunnel bulk runs and prints each one's top functions.
`
