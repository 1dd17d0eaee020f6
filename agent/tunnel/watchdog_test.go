package tunnel

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// The watchdog on the fake clock, driven the way writeLoop drives it (a
// check at start and at every ping tick) with the peer answering each ping
// at once until it falls silent: dead exactly timeout after it was last
// heard, whatever the two intervals; and a healthy link never sets a timer,
// which is the point (each would wake an idle process).
func TestWatchdog(t *testing.T) {
	for _, c := range []struct {
		name          string
		ping, timeout time.Duration
		silentAfter   time.Duration // 0: never
	}{
		{"defaults, healthy for an hour", 20 * time.Second, 45 * time.Second, 0},
		{"defaults, silent after 10m10s", 20 * time.Second, 45 * time.Second, 10*time.Minute + 10*time.Second},
		{"timeout shorter than the ping interval, silent at once", 20 * time.Second, 5 * time.Second, time.Nanosecond},
		{"timeout a whole number of intervals, silent", 10 * time.Second, 30 * time.Second, 95 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				died := make(chan error, 1)
				start := time.Now()
				d := newWatchdog(c.timeout, func(err error) {
					select {
					case died <- err:
					default:
					}
				})
				defer d.close()
				d.hear() // the handshake
				last := start
				healthy := func() bool { return c.silentAfter == 0 || time.Since(start) < c.silentAfter }
				tick := time.NewTicker(c.ping)
				defer tick.Stop()
				d.check(c.ping)
				for time.Since(start) < time.Hour {
					select {
					case err := <-died:
						if c.silentAfter == 0 {
							t.Fatalf("healthy link declared dead at %s: %v", time.Since(start), err)
						}
						if !errors.Is(err, errSilent) {
							t.Errorf("error %v, want errSilent", err)
						}
						if got := time.Since(last); got != c.timeout {
							t.Errorf("dead %s after last heard, want %s", got, c.timeout)
						}
						return
					case <-tick.C:
						d.check(c.ping)
						if healthy() {
							d.hear() // the pong, at once
							last = time.Now()
						}
					}
				}
				if c.silentAfter != 0 {
					t.Fatal("a silent peer was never declared dead")
				}
				if c.timeout > c.ping && d.timer != nil {
					t.Error("a healthy link set a timer")
				}
			})
		})
	}
}
