package memtrim

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTrimmer(t *testing.T) {
	tests := []struct {
		name  string
		run   func(tr *Trimmer)
		drops int64
	}{
		{"one Soon", func(tr *Trimmer) { tr.Soon() }, 1},
		{"a burst is one drop", func(tr *Trimmer) {
			tr.Soon()
			time.Sleep(time.Second)
			tr.Soon()
		}, 1},
		{"bursts apart are two", func(tr *Trimmer) {
			tr.Soon()
			time.Sleep(3 * time.Second)
			tr.Soon()
		}, 2},
		{"Stop cancels", func(tr *Trimmer) {
			tr.Soon()
			tr.Stop()
			tr.Soon()
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var n atomic.Int64
				tr := New(2 * time.Second)
				tr.drop = func() (int, error) { n.Add(1); return 0, nil }
				tc.run(tr)
				time.Sleep(10 * time.Second)
				synctest.Wait()
				if got := n.Load(); got != tc.drops {
					t.Errorf("drops = %d, want %d", got, tc.drops)
				}
				tr.Stop()
			})
		})
	}
}

// SoonPaced waits until TrimEvery has passed since the last drop; Soon
// waits only the delay.
func TestTrimmerPaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var at []time.Duration
		tr := New(200 * time.Millisecond)
		tr.drop = func() (int, error) {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Since(start))
			return 0, nil
		}
		defer tr.Stop()
		tr.Soon() // drop at 0.2 s
		time.Sleep(300 * time.Millisecond)
		tr.SoonPaced() // 0.3 s: not before 1.2 s
		time.Sleep(2 * time.Second)
		tr.SoonPaced() // 2.3 s: 2.5 s, a second after the last
		time.Sleep(400 * time.Millisecond)
		tr.Soon() // 2.7 s: 2.9 s, not paced
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		want := []time.Duration{200 * time.Millisecond, 1200 * time.Millisecond, 2500 * time.Millisecond, 2900 * time.Millisecond}
		if !slices.Equal(at, want) {
			t.Errorf("drops at %v, want %v", at, want)
		}
	})
}
