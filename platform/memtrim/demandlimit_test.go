package memtrim

import "testing"

func TestDemandLimit(t *testing.T) {
	const base, step = 14 << 20, 1 << 20
	tests := []struct {
		name   string
		queued []int64 // successive values seen by Update
		limits []int64 // the limit after each
		sets   int
	}{
		{"nothing queued", []int64{0}, []int64{base}, 1},
		{"raised at once", []int64{0, 1, step + 1}, []int64{base, base + step, base + 2*step}, 3},
		{"one step down is kept", []int64{0, 3 * step, 2 * step}, []int64{base, base + 3*step, base + 3*step}, 2},
		{"two steps down lowers", []int64{0, 3 * step, step}, []int64{base, base + 3*step, base + step}, 3},
		{"hovering at a boundary sets once", []int64{0, step, step + 1, step, step + 1, step}, []int64{base, base + step, base + 2*step, base + 2*step, base + 2*step, base + 2*step}, 3},
		{"a full budget", []int64{0, 16 << 20, 0}, []int64{base, base + 16<<20, base}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v int64
			sets := 0
			q := &DemandLimit{base: base, step: step, demand: func() int64 { return v },
				set: func(int64) int64 { sets++; return 0 }}
			for i, n := range tc.queued {
				v = n
				q.Update()
				if got := q.cur; got != tc.limits[i] {
					t.Errorf("queued %d: limit %d, want %d", n, got, tc.limits[i])
				}
			}
			if sets != tc.sets {
				t.Errorf("set %d times, want %d", sets, tc.sets)
			}
		})
	}
}
