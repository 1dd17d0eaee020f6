// Package memtrim keeps a long-running tunnel process small: it gives back
// the resident pages of the program's own code and read-only data (which
// count in its RSS although the kernel can drop and re-read them at any
// time), and DemandLimit keeps the Go memory limit just above what the
// connections hold and gives freed memory back soon after the last
// connection closes (settling, then quiet mode).
//
// A Go binary of 8-12 MB is almost wholly resident after start-up (the
// kernel maps up to 64 KiB around each page fault, from the page cache):
// 7.3 MiB of tunnel-agent's 9.6 MiB when idle, most of it code and tables
// used once (configuration, TLS handshakes, certificate parsing, MQTT
// connect, a local connection's dial). Dropping them after such a phase
// keeps only what is touched again, the data path's code, resident. The
// pages stay in the page cache; a later touch maps them again without
// reading the disk.
package memtrim

import (
	"sync"
	"time"
)

// Trimmer drops the executable's resident read-only pages a little after
// a burst of one-off work (a tunnel connecting, local connections
// opening), once per burst. The zero value is not usable: use New. Safe for
// concurrent use.
type Trimmer struct {
	delay time.Duration
	drop  func() (int, error)

	mu    sync.Mutex
	timer *time.Timer // pending drop; nil when none
	last  time.Time   // the last drop
	done  bool        // Stop was called
}

// TrimDelay is how long after one-off work (a tunnel connecting, the MQTT
// subscription, a local connection's dial) tunnel-agent and tunnelctl
// proxy give back the pages of the code that did it: long enough for that
// work (TLS handshake, certificates) to end.
const TrimDelay = 200 * time.Millisecond

// TrimEvery is the least time from one drop to the next that SoonPaced
// schedules. Each drop costs the data path's pages faulted back (minor
// faults: the pages stay in the page cache), about a millisecond of CPU; a
// client that opens a connection every few hundred milliseconds (a web
// page through the tunnel) must not pay it for each.
const TrimEvery = time.Second

// New returns a Trimmer that drops delay after the first Soon or
// SoonPaced of a burst.
func New(delay time.Duration) *Trimmer {
	return &Trimmer{delay: delay, drop: DropExecPages}
}

// Soon schedules a drop in delay unless one is already pending.
func (t *Trimmer) Soon() { t.schedule(0) }

// SoonPaced is Soon for work that may come many times a second (local
// connections opening): the drop also waits until TrimEvery has passed
// since the last one.
func (t *Trimmer) SoonPaced() { t.schedule(TrimEvery) }

func (t *Trimmer) schedule(every time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timer != nil || t.done {
		return
	}
	d := max(t.delay, time.Until(t.last.Add(every)))
	t.timer = time.AfterFunc(d, t.fire)
}

func (t *Trimmer) fire() {
	t.mu.Lock()
	t.timer = nil
	t.last = time.Now()
	t.mu.Unlock()
	_, _ = t.drop() // best effort: a failure leaves the pages resident, nothing else
}

// Stop cancels a pending drop; later calls to Soon do nothing.
func (t *Trimmer) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
}
