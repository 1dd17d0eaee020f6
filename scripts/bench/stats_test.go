package main

import (
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain also plays the bench's re-executed children (the idle Go
// process and the relays), as main does, for the end-to-end test.
func TestMain(m *testing.M) {
	if runChild() {
		return
	}
	goleak.VerifyTestMain(m)
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"one", []float64{3}, 3},
		{"odd unsorted", []float64{9, 1, 5}, 5},
		{"even is mean of middle", []float64{4, 1, 3, 2}, 2.5},
		{"duplicates", []float64{2, 2, 7, 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			if got := median(tt.in); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
			for i := range in {
				if in[i] != tt.in[i] {
					t.Fatalf("median modified its input: %v", tt.in)
				}
			}
		})
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Microsecond
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single", []time.Duration{7}, 99, 7},
		{"p50 of 100", hundred, 50, 50 * time.Microsecond},
		{"p99 of 100", hundred, 99, 99 * time.Microsecond},
		{"p100 of 100", hundred, 100, 100 * time.Microsecond},
		{"p1 of 100", hundred, 1, time.Microsecond},
		{"p99 of 3 is max", []time.Duration{1, 2, 3}, 99, 3},
		{"p50 of 4 nearest rank", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"tiny p clamps to first", []time.Duration{5, 6}, 0.0001, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}
