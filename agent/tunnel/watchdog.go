package tunnel

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// errSilent ends a link whose peer sent nothing, not even a pong, for
// PongTimeout.
var errSilent = errors.New("ping timeout")

// watchdog declares a WebSocket dead when nothing arrived from it (a
// message, a ping or a pong) for timeout. It replaces a read deadline
// pushed forward at every pong: the runtime keeps a timer moved later at
// its old place until that time comes, so each push cost the idle process
// one more wake-up (every 40 s with the defaults, a third of its timer
// events). Here nothing moves: the writer's ping tick checks how long the
// peer has been silent, and only when the timeout would pass before the
// next tick is a timer set, for that very moment. A healthy link, whose
// pongs come back well within the timeout, never sets one.
type watchdog struct {
	base    time.Time
	heard   atomic.Int64 // ns since base when the peer was last heard
	timeout time.Duration
	dead    func(error)

	mu    sync.Mutex  // guards timer and stop
	timer *time.Timer // set while armed
	stop  bool
}

func newWatchdog(timeout time.Duration, dead func(error)) *watchdog {
	return &watchdog{base: time.Now(), timeout: timeout, dead: dead}
}

// hear notes that the peer sent something.
func (d *watchdog) hear() { d.heard.Store(int64(time.Since(d.base))) }

// check runs at each ping tick (and when the link starts); next is the
// time to the next tick.
func (d *watchdog) check(next time.Duration) {
	left := d.left()
	if left <= 0 {
		d.expire()
		return
	}
	if left < next {
		d.arm(left)
	}
}

// left is how long until the silence reaches the timeout.
func (d *watchdog) left() time.Duration {
	return time.Duration(d.heard.Load()) + d.timeout - time.Since(d.base)
}

func (d *watchdog) arm(in time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop || d.timer != nil { // an armed timer fires no later than this one would
		return
	}
	d.timer = time.AfterFunc(in, d.fire)
}

// fire runs on the timer: dead, or heard from since; then the timer is set
// again for the new end of the timeout.
func (d *watchdog) fire() {
	d.mu.Lock()
	d.timer = nil
	d.mu.Unlock()
	if left := d.left(); left > 0 {
		d.arm(left)
		return
	}
	d.expire()
}

func (d *watchdog) expire() {
	d.dead(fmt.Errorf("%w: nothing from the tunnel WebSocket (no pong, no message) for %s", errSilent, d.timeout))
}

// close stops the timer for good.
func (d *watchdog) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stop = true
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}
