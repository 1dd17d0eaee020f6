package tunneltest

import (
	"testing"
	"time"
)

// pollEvery is how often Poll asks again: short enough not to slow a test
// down, long enough not to starve the code under test on a 2-core machine.
const pollEvery = 5 * time.Millisecond

// Poll asks cond until it holds, for at most d, and reports whether it held.
// It is the tests' one way to wait for a condition they cannot be told
// about (a log line, a state seen through an API); the caller fails with
// what it knows when Poll returns false.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery) // poll interval, not a wait for a condition
	}
	return true
}

// WaitFor is Poll that fails the test, naming what it waited for.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}
