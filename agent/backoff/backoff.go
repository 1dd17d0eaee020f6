// Package backoff computes the delays of the programs' retry loops: an
// exponential ceiling (Min, doubling per retry, capped at Max) with jitter,
// so that a fleet that failed at the same moment does not retry in
// lockstep. It is the one backoff of the repository: the MQTT and
// Greengrass notification sources, the tunnel's reconnects and the API
// client all use it.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff is a full-jitter exponential backoff ("Exponential Backoff And
// Jitter", AWS Architecture Blog): the delay before retry n (1 for the
// first) is uniform in [0, min(Max, Min·2^(n-1))). A fleet that lost its
// broker at the same moment therefore comes back spread over the whole
// window instead of in lockstep.
type Backoff struct {
	Min, Max time.Duration
	// Rand returns a uniform value in [0, n); nil uses math/rand/v2.
	Rand func(n int64) int64
}

// Delay returns the wait before retry n (n >= 1).
func (b Backoff) Delay(n int) time.Duration {
	ceiling := b.Ceiling(n)
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(b.rand(int64(ceiling)))
}

// HalfJitter returns a wait before retry n (n >= 1) uniform in
// [Ceiling(n)/2, Ceiling(n)]: never much shorter than the ceiling, for a
// retry against a local peer that must not be hammered (the Greengrass
// nucleus).
func (b Backoff) HalfJitter(n int) time.Duration {
	ceiling := b.Ceiling(n)
	if ceiling <= 0 {
		return 0
	}
	return ceiling/2 + time.Duration(b.rand(int64(ceiling/2)+1))
}

// rand returns a uniform value in [0, n) from Rand, or from math/rand/v2.
func (b Backoff) rand(n int64) int64 {
	if b.Rand != nil {
		return b.Rand(n)
	}
	return rand.Int64N(n)
}

// Ceiling is the upper bound of Delay(n): Min·2^(n-1) capped at Max.
func (b Backoff) Ceiling(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := b.Min
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}
