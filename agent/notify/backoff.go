package notify

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
	r := b.Rand
	if r == nil {
		r = rand.Int64N
	}
	return time.Duration(r(int64(ceiling)))
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
