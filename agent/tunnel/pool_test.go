package tunnel

import "testing"

func TestQueueBufSizes(t *testing.T) {
	tests := []struct {
		n, size, class int
	}{
		{1, 1, -1},
		{minQueueBuf, minQueueBuf, 0},
		{minQueueBuf + 1, 2 * minQueueBuf, -1},
		{64512, 64 << 10, -1}, // a DATA payload: its queue starts at 64 KiB
		{64 << 10, 64 << 10, 1},
		{1 << 20, 1 << 20, 5},
		{(1 << 20) + 1, 2 << 20, -1},
		{2 << 20, 2 << 20, -1}, // larger than pooled
	}
	for _, tc := range tests {
		if got := queueBufSize(tc.n); got != tc.size {
			t.Errorf("queueBufSize(%d) = %d, want %d", tc.n, got, tc.size)
		}
		if got := queueBufClass(tc.n); got != tc.class {
			t.Errorf("queueBufClass(%d) = %d, want %d", tc.n, got, tc.class)
		}
	}
	if len(queueBufs) != queueBufClass(maxPooledQueueBuf)+1 {
		t.Errorf("%d free lists for %d sizes", len(queueBufs), queueBufClass(maxPooledQueueBuf)+1)
	}
}

func TestQueueBufReuse(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		reuse bool
	}{
		{"pooled size", 256 << 10, true},
		{"not a power of two", 100 << 10, false},
		{"larger than pooled", 4 << 20, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := getQueueBuf(tc.n)
			if len(b) != 0 || cap(b) != tc.n {
				t.Fatalf("getQueueBuf(%d): len %d cap %d", tc.n, len(b), cap(b))
			}
			b = append(b, 1, 2, 3)
			putQueueBuf(b)
			c := getQueueBuf(tc.n)
			if len(c) != 0 || cap(c) != tc.n {
				t.Fatalf("getQueueBuf(%d) after put: len %d cap %d", tc.n, len(c), cap(c))
			}
			if same := &b[:1][0] == &c[:1][0]; same != tc.reuse {
				t.Errorf("buffer reused: %v, want %v", same, tc.reuse)
			}
		})
	}
}
