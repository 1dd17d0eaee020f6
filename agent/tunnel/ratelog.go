package tunnel

import (
	"sync"
	"time"
)

// warnEvery bounds how often one kind of peer-triggered warning is logged:
// a misbehaving peer must not fill the device's flash with logs.
const warnEvery = 10 * time.Second

// rateLog remembers when each kind of warning was last logged.
type rateLog struct {
	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

// warn logs msg unless a warning of the same key was logged less than
// warnEvery ago; the next one logged says how many were suppressed.
func (l *link) warn(key, msg string, args ...any) {
	r := &l.rate
	now := time.Now()
	r.mu.Lock()
	if r.last == nil {
		r.last, r.suppressed = map[string]time.Time{}, map[string]int{}
	}
	if t, ok := r.last[key]; ok && now.Sub(t) < warnEvery {
		r.suppressed[key]++
		r.mu.Unlock()
		return
	}
	r.last[key] = now
	n := r.suppressed[key]
	delete(r.suppressed, key)
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Warn(msg, args...)
}
