package tunnel

import (
	"bytes"
	"slices"
	"testing"
)

// TestQueueGrowth: a queue's first chunk is the power of two that holds
// its bytes and doubles as it fills, up to chunkSize; more bytes go to
// further chunks of chunkSize (see pool.go). The shared budget counts the
// chunks' capacity, and the chunks hold the bytes in order. A connection
// whose first message arrived while it dialled holds that few bytes:
// before, every such connection held a 32 KiB buffer.
func TestQueueGrowth(t *testing.T) {
	const limit = 256 << 10
	tests := []struct {
		name   string
		pushes []int // sizes pushed in turn
		want   []int // capacities of the chunks afterwards
	}{
		{"one small message", []int{64}, []int{64}},
		{"doubling", []int{64, 64}, []int{128}},
		{"a large push gets what it needs", []int{100, 40 << 10}, []int{64 << 10}},
		{"a DATA payload", []int{64512, 64512}, []int{chunkSize, chunkSize}},
		{"beyond one chunk", []int{200 << 10, 10 << 10}, []int{chunkSize, chunkSize, chunkSize, chunkSize}},
		{"a small chunk grows, then more follow", []int{1000, 100 << 10}, []int{chunkSize, chunkSize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := NewLimits(0, 0, 0)
			q := &queue{limit: limit, lim: lim, wake: make(chan struct{}, 1)}
			var g stallGate
			var all []byte
			for i, n := range tt.pushes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				all = append(all, p...)
				if r, _ := q.push(p, &g); r != pushed {
					t.Fatalf("push(%d) = %v", n, r)
				}
			}
			var caps []int
			total := 0
			for _, c := range q.chunks {
				caps = append(caps, cap(c))
				total += cap(c)
			}
			if !slices.Equal(caps, tt.want) {
				t.Errorf("chunk capacities %v, want %v", caps, tt.want)
			}
			if got := lim.Queued(); got != int64(total) {
				t.Errorf("budget counts %d, want the chunks' capacity %d", got, total)
			}
			if got := bytes.Join(q.chunks, nil); !bytes.Equal(got, all) || q.queued != len(all) {
				t.Errorf("chunks hold %d bytes (queued %d), want the %d pushed, in order", len(got), q.queued, len(all))
			}
		})
	}
}
