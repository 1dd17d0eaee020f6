package memtrim

import (
	"cmp"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestDemandLimit(t *testing.T) {
	const base, step = 14 << 20, 1 << 20
	tests := []struct {
		name   string
		queued []int64 // successive values seen by Update
		limits []int64 // the limit after each
		sets   int
	}{
		{"nothing queued", []int64{0}, []int64{base}, 1},
		{"raised at once", []int64{0, 1, step + 1}, []int64{base, base + step, base + 2*step}, 3},
		{"one step down is kept", []int64{0, 3 * step, 2 * step}, []int64{base, base + 3*step, base + 3*step}, 2},
		{"two steps down lowers", []int64{0, 3 * step, step}, []int64{base, base + 3*step, base + step}, 3},
		{"hovering at a boundary sets once", []int64{0, step, step + 1, step, step + 1, step}, []int64{base, base + step, base + 2*step, base + 2*step, base + 2*step, base + 2*step}, 3},
		{"a full budget", []int64{0, 16 << 20, 0}, []int64{base, base + 16<<20, base}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v int64
			sets := 0
			q := &DemandLimit{base: base, step: step, demand: func() int64 { return v },
				rt: runtimeCtl{setLimit: func(int64) int64 { sets++; return 0 }}}
			for i, n := range tc.queued {
				v = n
				q.Update()
				if got := q.cur; got != tc.limits[i] {
					t.Errorf("queued %d: limit %d, want %d", n, got, tc.limits[i])
				}
			}
			if sets != tc.sets {
				t.Errorf("set %d times, want %d", sets, tc.sets)
			}
		})
	}
}

// fakeRuntime records what a DemandLimit does to the runtime.
type fakeRuntime struct {
	limit, inUse int64
	percent      int
	collects     int
	percentCalls int
	limitCalls   int

	mu  sync.Mutex // settling and quiet mode may collect from two timers
	log []string   // "release" and "collect", in order
}

func (f *fakeRuntime) note(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s == "collect" {
		f.collects++
	}
	f.log = append(f.log, s)
}

func (f *fakeRuntime) ctl() runtimeCtl {
	return runtimeCtl{
		setLimit:   func(n int64) int64 { f.limitCalls++; old := f.limit; f.limit = n; return old },
		setPercent: func(p int) int { f.percentCalls++; old := f.percent; f.percent = p; return old },
		collect:    func() { f.note("collect") },
		inUse:      func() int64 { return f.inUse },
		gcPercent:  func() int { return f.percent },
		after:      func(d time.Duration, fn func()) { time.AfterFunc(d, fn) },
	}
}

// Quiet mode on the fake clock: QuietAfter without a connection, one
// collection, GOGC off and the limit lowered to what is in use plus the
// headroom; a connection ends it at once and one within QuietAfter of the
// last close puts it off; a user's GOGC=off is left alone. The demander's
// free buffers are released before each of quiet mode's collections.
// change is a step of the fake clock tests: from at (since the start),
// conns connections are open, and Update runs.
type change struct {
	at    time.Duration
	conns int
}

// runSteps makes a DemandLimit over f (base 14 MiB, step 1 MiB, 64 KiB per
// connection) whose release is logged, plays steps on the fake clock of a
// synctest bubble and waits until end; the caller closes it.
func runSteps(f *fakeRuntime, steps []change, end time.Duration) *DemandLimit {
	return runStepsBusy(f, 0, steps, end)
}

// runStepsBusy is runSteps with busyPercent busy (0: none).
func runStepsBusy(f *fakeRuntime, busy int, steps []change, end time.Duration) *DemandLimit {
	var conns atomic.Int64
	start := time.Now()
	q := newDemandLimit(14<<20, 1<<20, func() int64 { return conns.Load() * 64 << 10 },
		func() bool { return conns.Load() == 0 }, f.ctl())
	q.mu.Lock()
	q.release = func() { f.note("release") }
	q.busyPercent = busy
	q.mu.Unlock()
	for _, c := range steps {
		time.Sleep(c.at - time.Since(start))
		conns.Store(int64(c.conns))
		q.Update()
	}
	time.Sleep(end - time.Since(start))
	synctest.Wait()
	return q
}

func TestDemandLimitQuiet(t *testing.T) {
	const base, step = 14 << 20, 1 << 20
	tests := []struct {
		name        string
		userPercent int
		steps       []change
		end         time.Duration
		quiet       bool
		collects    int
		limit       int64
		percent     int
		inUse       int64 // 0: 3 MiB
	}{
		{"idle from the start", 100, nil, QuietAfter, true, 1, 3<<20 + QuietHeadroom, -1, 0},
		{"not 1 ns before", 100, nil, QuietAfter - time.Nanosecond, false, 0, base, 100, 0},
		{"a connection ends it", 100, []change{{10 * time.Second, 1}}, time.Minute, false, 1, base + step, 100, 0},
		{"closed again: settled, then quiet again", 100, []change{{10 * time.Second, 1}, {20 * time.Second, 0}}, 20*time.Second + QuietAfter, true, 3, 3<<20 + QuietHeadroom, -1, 0},
		{"a connection within QuietAfter puts it off (its close settles)", 100, []change{{QuietAfter / 2, 1}, {QuietAfter, 0}}, QuietAfter * 3 / 2, false, 1, base + step, 100, 0},
		{"... until QuietAfter after its close", 100, []change{{QuietAfter / 2, 1}, {QuietAfter, 0}}, 2 * QuietAfter, true, 2, 3<<20 + QuietHeadroom, -1, 0},
		{"GOGC=50 is restored", 50, []change{{10 * time.Second, 1}}, time.Minute, false, 1, base + step, 50, 0},
		{"GOGC=off by the user: never quiet", -1, nil, time.Hour, false, 0, base, -1, 0},
		{"6 MiB in use: twice that", 100, nil, QuietAfter, true, 1, 12 << 20, -1, 6 << 20},
		{"9 MiB in use: the regular limit", 100, nil, QuietAfter, true, 1, base, -1, 9 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRuntime{percent: tc.userPercent, inUse: cmp.Or(tc.inUse, 3<<20)}
				q := runSteps(f, tc.steps, tc.end)
				defer q.Close()
				q.mu.Lock()
				quiet := q.quiet
				q.mu.Unlock()
				if quiet != tc.quiet || f.collects != tc.collects || f.limit != tc.limit || f.percent != tc.percent {
					t.Errorf("quiet %v, collections %d, limit %d MiB, GOGC %d; want %v, %d, %d MiB, %d",
						quiet, f.collects, f.limit>>20, f.percent, tc.quiet, tc.collects, tc.limit>>20, tc.percent)
				}
				if got, want := strings.Join(f.log, " "), strings.TrimSpace(strings.Repeat("release collect ", tc.collects)); got != want {
					t.Errorf("calls %q, want %q", got, want)
				}
			})
		})
	}
}

// Quiet mode on the real runtime: GOGC reads off and the limit is what is
// in use plus the headroom; garbage allocated meanwhile is collected at
// that limit (the process does not grow past it); a connection restores
// GOGC and the regular limit.
// Settling on the fake clock: SettleAfter after the last connection
// closed, if none is open then, the free buffers are released and the
// collector runs once; at most once per SettleEvery; never before a first
// connection; not in quiet mode.
func TestDemandLimitSettle(t *testing.T) {
	s := time.Second
	tests := []struct {
		name     string
		steps    []change
		end      time.Duration
		collects int
	}{
		{"idle from the start: none", nil, QuietAfter - 1, 0},
		{"a close settles", []change{{s, 1}, {2 * s, 0}}, 2*s + SettleAfter, 1},
		{"not 1 ns before", []change{{s, 1}, {2 * s, 0}}, 2*s + SettleAfter - 1, 0},
		{"once", []change{{s, 1}, {2 * s, 0}}, 2*s + QuietAfter - 1, 1},
		{"a connection open then: none", []change{{s, 1}, {2 * s, 0}, {2*s + SettleAfter/2, 1}}, 4 * s, 0},
		{"... its close settles", []change{{s, 1}, {2 * s, 0}, {2*s + SettleAfter/2, 1}, {3 * s, 0}}, 3*s + SettleAfter, 1},
		{"the next close waits for SettleEvery", []change{{s, 1}, {2 * s, 0}, {2*s + SettleAfter + 1, 1}, {2*s + 2*SettleAfter, 0}}, 2*s + SettleAfter + SettleEvery - 1, 1},
		{"... then settles", []change{{s, 1}, {2 * s, 0}, {2*s + SettleAfter + 1, 1}, {2*s + 2*SettleAfter, 0}}, 2*s + SettleAfter + SettleEvery, 2},
		{"two connections: the last close counts", []change{{s, 2}, {2 * s, 1}, {3 * s, 0}}, 3*s + SettleAfter, 1},
		{"... not the first", []change{{s, 2}, {2 * s, 1}, {3 * s, 0}}, 3*s + SettleAfter - 1, 0},
		{"quiet mode later collects again", []change{{s, 1}, {2 * s, 0}}, 2*s + QuietAfter, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRuntime{percent: 100, inUse: 3 << 20}
				q := runSteps(f, tc.steps, tc.end)
				defer q.Close()
				if f.collects != tc.collects {
					t.Errorf("collections %d, want %d", f.collects, tc.collects)
				}
				if got, want := strings.Join(f.log, " "), strings.TrimSpace(strings.Repeat("release collect ", tc.collects)); got != want {
					t.Errorf("calls %q, want %q", got, want)
				}
			})
		})
	}
}

// The busy percentage on the fake clock: set when a connection opens,
// kept until the settling after the last close, off in quiet mode and set
// again by the next connection; a lower GOGC of the user's is kept, and
// GOGC=off is never touched. Each change is one call.
func TestDemandLimitBusyPercent(t *testing.T) {
	s := time.Second
	tests := []struct {
		name    string
		user    int
		steps   []change
		end     time.Duration
		percent int
		calls   int
	}{
		{"idle: GOGC", 100, nil, s, 100, 0},
		{"a connection: busy", 100, []change{{s, 1}}, 2 * s, 25, 1},
		{"more connections: no more calls", 100, []change{{s, 1}, {2 * s, 2}, {3 * s, 1}}, 4 * s, 25, 1},
		{"closed: busy until settling", 100, []change{{s, 1}, {2 * s, 0}}, 2*s + SettleAfter - 1, 25, 1},
		{"settled: GOGC", 100, []change{{s, 1}, {2 * s, 0}}, 2*s + SettleAfter, 100, 2},
		{"quiet: off", 100, []change{{s, 1}, {2 * s, 0}}, 2*s + QuietAfter, -1, 3},
		{"a connection in quiet mode: busy", 100, []change{{s, 1}, {2 * s, 0}, {10 * s, 1}}, 11 * s, 25, 4},
		{"GOGC=10 is kept", 10, []change{{s, 1}}, 2 * s, 10, 0},
		{"GOGC=off is kept", -1, []change{{s, 1}, {2 * s, 0}}, time.Minute, -1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRuntime{percent: tc.user, inUse: 3 << 20}
				q := runStepsBusy(f, 25, tc.steps, tc.end)
				if f.percent != tc.percent || f.percentCalls != tc.calls {
					t.Errorf("GOGC %d after %d calls, want %d after %d", f.percent, f.percentCalls, tc.percent, tc.calls)
				}
				q.Close()
				if f.percent != tc.user {
					t.Errorf("GOGC %d after Close, want %d", f.percent, tc.user)
				}
			})
		})
	}
}

func TestDemandLimitQuietRuntime(t *testing.T) {
	before := runtimeGCPercent()
	if before < 0 {
		t.Skip("GOGC=off in the environment")
	}
	t.Cleanup(func() {
		debug.SetGCPercent(before)
		debug.SetMemoryLimit(math.MaxInt64)
	})
	rt := realRuntime
	quietNow := make(chan func(), 1)
	rt.after = func(_ time.Duration, f func()) { quietNow <- f } // run by the test, not a timer
	var conns atomic.Int64
	// A base well above what a test process holds: the quiet limit must
	// come out under it, whatever ran before in this process.
	const base = 64 << 20
	q := newDemandLimit(base, LimitStep, func() int64 { return conns.Load() * LimitPerConn },
		func() bool { return conns.Load() == 0 }, rt)
	(<-quietNow)()
	limit := debug.SetMemoryLimit(-1)
	if p := runtimeGCPercent(); p != -1 || limit >= base || limit < QuietHeadroom {
		t.Fatalf("quiet: GOGC %d, limit %d MiB; want off and under %d MiB", p, limit>>20, base>>20)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gcs := ms.NumGC
	var sink []byte
	for range 1024 { // 64 MiB of garbage, 16 times the headroom
		sink = make([]byte, 64<<10)
		sink[0] = 1
	}
	runtime.ReadMemStats(&ms)
	t.Logf("quiet: limit %.1f MiB, %d collections for 64 MiB of garbage, %.1f MiB in use after",
		float64(limit)/(1<<20), ms.NumGC-gcs, float64(runtimeInUse())/(1<<20))
	if ms.NumGC == gcs {
		t.Error("no collection at the quiet limit")
	}
	if u := runtimeInUse(); u > limit+2<<20 {
		t.Errorf("in use %d MiB, past the quiet limit %d MiB", u>>20, limit>>20)
	}
	conns.Store(1)
	q.Update()
	if p, l := runtimeGCPercent(), debug.SetMemoryLimit(-1); p != before || l != base+LimitStep {
		t.Errorf("after a connection: GOGC %d, limit %d MiB; want %d and %d MiB", p, l>>20, before, (base+LimitStep)>>20)
	}
}

// fakeDemander is a Demander with n connections of LimitPerConn each.
type fakeDemander struct {
	n     atomic.Int64
	watch func()
}

func (d *fakeDemander) Demand() int64              { return d.n.Load() * LimitPerConn }
func (d *fakeDemander) Idle() bool                 { return d.n.Load() == 0 }
func (d *fakeDemander) Watch(_, _ int64, f func()) { d.watch = f }

// FollowDemand on the real runtime: BusyGCPercent while a connection is
// open, unless GOGC is set; GOGC again after Close.
func TestFollowDemandBusyRuntime(t *testing.T) {
	before := runtimeGCPercent()
	t.Cleanup(func() {
		debug.SetGCPercent(before)
		debug.SetMemoryLimit(math.MaxInt64)
	})
	for _, env := range []string{"", "100"} {
		t.Run("GOGC="+env, func(t *testing.T) {
			t.Setenv("GOGC", env)
			debug.SetGCPercent(100)
			d := &fakeDemander{}
			q := FollowDemand(d, 64<<20)
			d.n.Store(1)
			d.watch()
			want, busy := 100, 0
			if env == "" {
				want, busy = BusyGCPercent, BusyGCPercent
			}
			if b := q.BusyPercent(); b != busy {
				t.Errorf("BusyPercent %d, want %d", b, busy)
			}
			if p := runtimeGCPercent(); p != want {
				t.Errorf("a connection open: GOGC %d, want %d", p, want)
			}
			q.Close()
			if p := runtimeGCPercent(); p != 100 {
				t.Errorf("after Close: GOGC %d, want 100", p)
			}
		})
	}
}
