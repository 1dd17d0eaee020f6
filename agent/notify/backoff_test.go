package notify

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // the largest value Rand may return
	b := Backoff{Min: time.Second, Max: 2 * time.Minute, Rand: top}
	tests := []struct {
		n       int
		ceiling time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{7, 64 * time.Second}, {8, 2 * time.Minute}, {50, 2 * time.Minute},
	}
	for _, tt := range tests {
		if got := b.Ceiling(tt.n); got != tt.ceiling {
			t.Errorf("Ceiling(%d) = %s, want %s", tt.n, got, tt.ceiling)
		}
		if got := b.Delay(tt.n); got != tt.ceiling-1 {
			t.Errorf("Delay(%d) = %s, want just under %s", tt.n, got, tt.ceiling)
		}
	}
	zero := Backoff{Min: time.Second, Max: time.Minute, Rand: func(int64) int64 { return 0 }}
	if d := zero.Delay(5); d != 0 {
		t.Errorf("full jitter starts at 0, got %s", d)
	}
	// The real generator stays below the ceiling and varies.
	real := Backoff{Min: time.Second, Max: 2 * time.Minute}
	seen := map[time.Duration]bool{}
	for range 100 {
		d := real.Delay(3)
		if d < 0 || d >= 4*time.Second {
			t.Fatalf("Delay(3) = %s outside [0, 4s)", d)
		}
		seen[d] = true
	}
	if len(seen) < 50 {
		t.Errorf("only %d distinct delays in 100", len(seen))
	}
}
