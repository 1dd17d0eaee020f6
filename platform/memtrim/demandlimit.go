package memtrim

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// DemandLimit keeps the Go runtime's soft memory limit at a base plus a
// demand (rounded up to a step): in the agent, what its connections hold,
// a share per connection plus the bytes queued toward local sockets. With
// few connections and little queued the collector then returns freed heap
// early, and the process stays small during a bulk transfer (the scavenger
// gives pages back to stay under the limit); a queue that fills
// legitimately (a slow reader), or many connections, raise the limit with
// them, so the collector does not run continuously over live data.
// Measured with 100 idle connections and a fixed 14 MiB limit, it ran 80
// times in 0.3 s.
//
// Quiet mode: QuietAfter after the last connection closed, the collector
// runs once, returns the free memory to the system, and is switched off
// (GOGC=off) with the limit lowered to twice what the runtime then holds,
// at least that plus QuietHeadroom (never above the regular limit). The
// runtime otherwise forces a collection every 2 minutes whatever was
// allocated, about half of an idle agent's CPU time (0.70 -> 0.35 s per
// hour with GOGC=off). What is allocated meanwhile (pings, a metrics
// scrape) is collected when it reaches the lower limit, as GOGC=100 would
// at twice the live heap. What stays live meanwhile (tunnels opening with
// no connection) has as much room again as was in use before the collector
// would run often at the limit. The first connection ends quiet mode. Not
// with GOGC=off or GOMEMLIMIT set by the user (the caller does not use a
// DemandLimit then), and only for the first DemandLimit of a process with
// an idle func, until it is closed (a test process may make several).
//
// Settling: SettleAfter after the last connection closed, if none is open
// then, the demander's free buffers are dropped and the collector runs
// once and returns the free memory, as quiet mode does later. Without it
// the heap a transfer used and freed stayed resident until quiet mode or
// the scavenger gave it back, and the next transfer started on top of it:
// the agent's peak during a bulk run followed the runs before it (quick
// bench runs, interleaved: 13.3-14.0 MiB for a single-stream upload after
// the earlier phases, 12.1-12.3 MiB with settling). At most once per
// SettleEvery, so that a client opening a connection every few hundred
// milliseconds costs at most one forced collection a second. Same
// conditions as quiet mode (an idle func).
//
// Busy percentage (FollowDemand, unless GOGC is set): from a connection's
// opening to the next settling the collector runs at BusyGCPercent.
//
// Safe for concurrent use.
type DemandLimit struct {
	base, step int64
	demand     func() int64
	idle       func() bool // nil: never quiet
	rt         runtimeCtl

	// release, if set, drops what the demander keeps for reuse (free
	// buffers), before the collections of settling and quiet mode (see
	// Releaser).
	release func()

	mu    sync.Mutex
	cur   int64 // the limit set
	quiet bool
	// user is the process's GC percentage (GOGC) when the DemandLimit was
	// made; busyPercent, if lower and not 0, is the one while busy (see
	// FollowDemand); percent is the one this DemandLimit set last.
	user, busyPercent, percent int
	gen                        uint64 // invalidates a pending switch to quiet mode
	pending                    bool
	owner                      bool // holds quietOwned

	busy     bool      // a connection was open since the last settling
	settling bool      // a settling is planned
	settled  time.Time // the last settling
}

// runtimeCtl is what DemandLimit does to the runtime (tests replace it).
type runtimeCtl struct {
	setLimit   func(int64) int64 // debug.SetMemoryLimit
	setPercent func(int) int     // debug.SetGCPercent
	collect    func()            // debug.FreeOSMemory
	inUse      func() int64      // the memory the limit counts, now
	gcPercent  func() int        // GOGC in effect
	after      func(time.Duration, func())
}

// QuietAfter is how long no connection must be open before quiet mode;
// QuietHeadroom is the least the runtime's memory may grow in it before a
// collection (the runtime's minimum heap goal). SettleAfter is how long
// after the last connection closed the runtime settles, at most once per
// SettleEvery.
const (
	QuietAfter    = 5 * time.Second
	QuietHeadroom = 4 << 20
	SettleAfter   = 200 * time.Millisecond
	SettleEvery   = time.Second
)

var realRuntime = runtimeCtl{
	setLimit: debug.SetMemoryLimit, setPercent: debug.SetGCPercent, collect: debug.FreeOSMemory,
	inUse: runtimeInUse, gcPercent: runtimeGCPercent,
	after: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
}

// runtimeInUse is the memory the runtime's limit counts: everything it
// mapped, less the heap returned to the system.
func runtimeInUse() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64())
}

func runtimeGCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// NewDemandLimit sets the memory limit for the demand now and returns the
// DemandLimit that moves it with the demand (see Update). idle (nil: never)
// reports that no connection is open, for quiet mode.
func NewDemandLimit(base, step int64, demand func() int64, idle func() bool) *DemandLimit {
	if idle != nil && !quietOwned.CompareAndSwap(false, true) {
		idle = nil // GOGC is the process's: one DemandLimit may switch it
	}
	q := newDemandLimit(base, step, demand, idle, realRuntime)
	q.owner = idle != nil
	return q
}

// quietOwned: a DemandLimit of this process has quiet mode.
var quietOwned atomic.Bool

// Close ends quiet mode for good (GOGC is restored) and lets another
// DemandLimit have it; the limit stays as it is.
func (q *DemandLimit) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.idle = nil
	q.gen++
	q.pending = false
	q.quiet, q.busy = false, false
	q.setPercentLocked()
	if q.owner {
		q.owner = false
		quietOwned.Store(false)
	}
}

func newDemandLimit(base, step int64, demand func() int64, idle func() bool, rt runtimeCtl) *DemandLimit {
	q := &DemandLimit{base: base, step: max(step, 1), demand: demand, idle: idle, rt: rt}
	q.user = q.rt.gcPercent()
	q.percent = q.user
	if q.user < 0 {
		q.idle = nil // GOGC=off already
	}
	q.Update()
	return q
}

// Update sets the limit for the demand now. It raises the limit at
// once and lowers it only when it is two steps too high: setting it stops
// the world briefly, and a queue that hovers at a step boundary must not
// set it on every crossing. It leaves quiet mode when a connection is open,
// and arranges for it when none is.
func (q *DemandLimit) Update() {
	q.mu.Lock()
	defer q.mu.Unlock()
	idle := q.idle != nil && q.idle()
	if !idle {
		q.busy = q.idle != nil
		q.gen++
		q.pending = false
		if q.quiet {
			q.quiet = false
			q.cur = 0 // the regular limit, below
		}
		q.setPercentLocked()
	}
	if q.quiet {
		return
	}
	n := max(q.demand(), 0)
	want := q.base + (n+q.step-1)/q.step*q.step
	if q.cur == 0 || want > q.cur || want <= q.cur-2*q.step {
		q.rt.setLimit(want)
		q.cur = want
	}
	if idle && !q.pending {
		q.pending = true
		gen := q.gen
		q.rt.after(QuietAfter, func() { q.goQuiet(gen) })
	}
	if idle && q.busy && !q.settling {
		q.settling = true
		d := max(SettleAfter, time.Until(q.settled.Add(SettleEvery)))
		q.rt.after(d, q.settle)
	}
}

// settle drops the free buffers and returns the free memory if no
// connection is open; otherwise the next close plans another settling.
func (q *DemandLimit) settle() {
	q.mu.Lock()
	q.settling = false
	ok := !q.quiet && q.idle != nil && q.idle()
	if ok {
		q.busy = false
		q.settled = time.Now()
		q.setPercentLocked()
	}
	release := q.release
	q.mu.Unlock()
	if ok {
		q.giveBack(release)
	}
}

// giveBack drops the demander's free buffers (release, read under mu) and
// collects, returning the free memory. Called without mu: a connection
// that opens meanwhile does not wait for the collection.
func (q *DemandLimit) giveBack(release func()) {
	if release != nil {
		release()
	}
	q.rt.collect()
}

// goQuiet enters quiet mode if no connection opened since Update planned it.
func (q *DemandLimit) goQuiet(gen uint64) {
	q.mu.Lock()
	if q.gen != gen { // a connection opened: Update cleared pending
		q.mu.Unlock()
		return
	}
	q.pending = false
	ok := !q.quiet && q.idle != nil && q.idle()
	release := q.release
	q.mu.Unlock()
	if !ok {
		return
	}
	q.giveBack(release)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.gen != gen || q.quiet || q.idle == nil || !q.idle() {
		return
	}
	q.quiet = true
	q.setPercentLocked()
	n := q.rt.inUse()
	q.cur = min(n+max(n, QuietHeadroom), q.cur)
	q.rt.setLimit(q.cur)
}

// BusyPercent is the GC percentage this DemandLimit sets while connections
// are open, or 0 when it leaves GOGC alone then (GOGC set by the user, not
// made by FollowDemand, or not the process's quiet-mode owner).
func (q *DemandLimit) BusyPercent() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.owner && q.busyPercent > 0 && q.busyPercent < q.user {
		return q.busyPercent
	}
	return 0
}

// setPercentLocked sets the GC percentage for the state, if it changed
// (setting it stops the world briefly): off in quiet mode; busyPercent
// from a connection's opening to the next settling, if it is lower than
// GOGC; else GOGC.
func (q *DemandLimit) setPercentLocked() {
	p := q.user
	switch {
	case q.quiet:
		p = -1
	case q.busy && q.busyPercent > 0 && q.busyPercent < q.user:
		p = q.busyPercent
	}
	if p != q.percent {
		q.rt.setPercent(p)
		q.percent = p
	}
}

// The limit of tunnel-agent and tunnelctl proxy: a base with no
// connection (the runtime, TLS, the frames in flight of one busy tunnel),
// LimitPerConn more for each connection, the buffers of each further busy
// tunnel (tunnel.Limits.Demand) and the bytes queued toward local sockets,
// moved in steps of LimitStep.
//
// The demand is rounded up to a step, so while any connection is open the
// limit is at least base+LimitStep: 12 MiB for the agent. The figures
// below were measured that way.
//
// Both were 12 MiB until tunnels held their WebSocket buffers only while
// they use them (55af0df, dafdee1). At 11 MiB the agent collected 8-13
// times per quick bench run as at 12, at the same CPU per GiB, and full
// runs read its 8-stream peaks 0.8-1.0 MiB lower; 10.5 MiB collected 27-29
// times. tunnelctl proxy, as a source, keeps more in flight toward its
// clients: at 11 MiB one full run spent 1.67 s per GiB instead of
// 1.28-1.45; at 11.5 MiB two full runs spent 1.35-1.40 s and read every
// bulk peak at 14.2-15.7 MiB, where at 12 the 8-stream upload read
// 16.0-16.3.
const (
	AgentLimitBase = 11 << 20
	ProxyLimitBase = 23 << 19 // 11.5 MiB
	LimitPerConn   = 64 << 10
	LimitStep      = 1 << 20
)

// Demander is what FollowDemand follows: tunnel.Limits.
type Demander interface {
	// Demand is the memory the connections hold by the Demander's count.
	Demand() int64
	// Idle reports that no connection is open.
	Idle() bool
	// Watch calls f when Demand moves into another multiple of step,
	// counting perConn bytes per connection, and when Idle changes.
	Watch(step, perConn int64, f func())
}

// Releaser is a Demander that keeps memory for reuse while it has work
// (free lists of buffers). Settling and quiet mode call ReleaseIdle before
// their collections, so that an idle process gives that memory back too.
type Releaser interface {
	ReleaseIdle()
}

// BusyGCPercent is the collector's percentage while connections are open
// (FollowDemand), unless GOGC is set. During a bulk transfer the heap
// holds little more than the frames and queues in flight, and what is
// allocated per byte is small (crypto/tls allocates 24 bytes per record
// it reads: about 1.5 MB per GiB); at GOGC=100 the runtime's minimum heap
// goal of 4 MiB let that garbage pile up for a whole 1 GiB run, without a
// single collection, and it all stayed resident: a single-stream upload
// grew the agent by 2.3 MiB. At 25 the goal is a quarter above what is
// live: bench runs of 1 GiB, interleaved, read the agent's peaks 0.3-1.1
// MiB lower (single-stream upload 12.7-13.1 MiB against 13.4-13.8) at the
// same CPU per GiB and throughput.
const BusyGCPercent = 25

// FollowDemand sets the Go memory limit to base (AgentLimitBase or
// ProxyLimitBase) plus d's demand now, and again whenever the demand moves
// a step, with quiet mode while d is idle (calling d's ReleaseIdle first,
// if d is a Releaser), and BusyGCPercent while it is busy unless GOGC is
// set. Call it before d is used.
func FollowDemand(d Demander, base int64) *DemandLimit {
	q := NewDemandLimit(base, LimitStep, d.Demand, d.Idle)
	if r, ok := d.(Releaser); ok {
		q.mu.Lock()
		q.release = r.ReleaseIdle
		q.mu.Unlock()
	}
	if os.Getenv("GOGC") == "" {
		q.mu.Lock()
		q.busyPercent = BusyGCPercent
		q.mu.Unlock()
	}
	d.Watch(LimitStep, LimitPerConn, q.Update)
	return q
}
