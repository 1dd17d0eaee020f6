package tunnel

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Log flood limits: a misbehaving peer must not fill the device's flash
// with logs, whatever it sends.
const (
	// warnEvery is the window of the per-kind line budget.
	warnEvery = 10 * time.Second
	// warnBurst is how many lines of one kind are written per window; the
	// rest are counted and reported by one "more suppressed" line when the
	// window is over.
	warnBurst = 3
	// maxWarnKinds bounds the kinds remembered; kinds are names from this
	// package, never peer input, so the bound is only a safeguard.
	maxWarnKinds = 64
	// maxPeerString bounds a peer-supplied string in a log line.
	maxPeerString = 64
)

// Kinds of rate-limited log lines. A kind never contains peer input.
const (
	warnUnmapped     = "unmapped"
	warnUnmappedV1   = "unmapped-v1"
	warnStartID0     = "start-id-0"
	warnConnID0      = "conn-id-0"
	warnConnReused   = "conn-reused"
	warnConnStartV2  = "connstart-v2"
	warnDial         = "dial"
	warnOverflow     = "overflow"
	warnBudget       = "queue-budget"
	warnMaxConns     = "max-connections"
	warnUnknownType  = "unknown-type"
	warnMalformed    = "malformed"
	warnStartAtSrc   = "start-at-source"
	warnConnAtSrc    = "connstart-at-source"
	warnServiceIDs   = "service-ids"
	warnNotInMap     = "service-not-in-map"
	warnUnnamedSrc   = "unnamed-source"
	warnNotInTunnel  = "not-in-tunnel"
	warnSessionReset = "session-reset"
	warnOtherOverCap = "other"
)

// rateLog writes at most warnBurst lines per kind per warnEvery to log and
// counts the rest. mu is a leaf: no line is written while it is held.
type rateLog struct {
	log *slog.Logger

	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	start      time.Time // of the current window
	written    int
	suppressed int
	level      slog.Level
	msg        string // of the last suppressed line
}

// warn logs a peer-triggered warning, rate-limited by kind.
func (r *rateLog) warn(kind, msg string, args ...any) {
	r.limited(slog.LevelWarn, kind, msg, args...)
}

// limited logs at level unless warnBurst lines of kind were already written
// in the current window.
func (r *rateLog) limited(level slog.Level, kind, msg string, args ...any) {
	if r.allow(time.Now(), level, kind, msg) {
		r.log.Log(context.Background(), level, msg, args...)
	}
}

// allow reports whether a line of kind may be written now. It first
// reports the suppressed lines of the window that ended, if any.
func (r *rateLog) allow(now time.Time, level slog.Level, kind, msg string) bool {
	r.mu.Lock()
	if r.kinds == nil {
		r.kinds = map[string]*logKind{}
	}
	k := r.kinds[kind]
	if k == nil {
		if len(r.kinds) >= maxWarnKinds {
			kind = warnOtherOverCap
			k = r.kinds[kind]
		}
		if k == nil {
			k = &logKind{start: now}
			r.kinds[kind] = k
		}
	}
	var report int
	var reportMsg string
	var reportLevel slog.Level
	if now.Sub(k.start) >= warnEvery {
		report, reportMsg, reportLevel = k.suppressed, k.msg, k.level
		k.start, k.written, k.suppressed = now, 0, 0
	}
	ok := k.written < warnBurst
	if ok {
		k.written++
	} else {
		k.suppressed++
		k.msg, k.level = msg, level
	}
	r.mu.Unlock()
	if report > 0 {
		logSuppressed(r.log, reportLevel, kind, reportMsg, report)
	}
	return ok
}

// flush reports the suppressed lines of every window that is over (all:
// of every window). Called periodically and when the link ends.
func (r *rateLog) flush(now time.Time, all bool) {
	type line struct {
		kind, msg string
		level     slog.Level
		n         int
	}
	var out []line
	r.mu.Lock()
	for kind, k := range r.kinds {
		if k.suppressed > 0 && (all || now.Sub(k.start) >= warnEvery) {
			out = append(out, line{kind, k.msg, k.level, k.suppressed})
			k.start, k.written, k.suppressed = now, 0, 0
		}
	}
	r.mu.Unlock()
	for _, x := range out {
		logSuppressed(r.log, x.level, x.kind, x.msg, x.n)
	}
}

func logSuppressed(log *slog.Logger, level slog.Level, kind, msg string, n int) {
	log.Log(context.Background(), level, strconv.Itoa(n)+" more suppressed: "+msg, "kind", kind, "suppressed", n)
}

// peerString bounds a string that came from the peer for a log line.
func peerString(s string) string {
	if len(s) <= maxPeerString {
		return s
	}
	return s[:maxPeerString] + "...(" + strconv.Itoa(len(s)) + " bytes)"
}
