package tunnel

import (
	"bytes"
	"testing"
)

// TestQueueGrowth: a queue's buffer is the power of two that holds its
// bytes (the sizes pool.go reuses) and doubles
// as it fills, up to its limit, and the shared budget counts its capacity.
// A connection whose first message arrived while it dialled keeps that
// buffer (as the local writer's spare) while idle: before, every such
// connection held a 32 KiB buffer.
func TestQueueGrowth(t *testing.T) {
	const limit = 256 << 10
	tests := []struct {
		name   string
		pushes []int // sizes pushed in turn
		want   int   // capacity of the buffer afterwards
	}{
		{"one small message", []int{64}, 64},
		{"doubling", []int{64, 64}, 128},
		{"a large push gets what it needs", []int{100, 40 << 10}, 64 << 10},
		{"doubling stops at the limit", []int{200 << 10, 10 << 10}, limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := NewLimits(0, 0, 0)
			q := &queue{limit: limit, lim: lim, wake: make(chan struct{}, 1)}
			var g stallGate
			for _, n := range tt.pushes {
				if r, _ := q.push(bytes.Repeat([]byte("x"), n), &g); r != pushed {
					t.Fatalf("push(%d) = %v", n, r)
				}
			}
			if got := cap(q.buf); got < tt.want || got > tt.want+tt.want/8 {
				// append may round up to a size class: within an eighth
				t.Errorf("cap(buf) = %d, want %d", got, tt.want)
			}
			if got := lim.Queued(); got != int64(cap(q.buf)) {
				t.Errorf("budget counts %d, want cap(buf) %d", got, cap(q.buf))
			}
		})
	}
}
