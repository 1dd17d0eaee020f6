package memlimit

import (
	"runtime/debug"
	"testing"
)

func TestApply(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	tests := []struct {
		name      string
		env       string
		before    int64 // the limit the runtime has (from GOMEMLIMIT at start)
		want      int64
		wantFrom  string
		wantAfter int64
	}{
		{"no GOMEMLIMIT: the default applies", "", 1 << 40, 12 << 20, "default", 12 << 20},
		{"GOMEMLIMIT set: the runtime's value stays", "64MiB", 64 << 20, 64 << 20, EnvVar, 64 << 20},
		{"GOMEMLIMIT=off: no limit", "off", 1<<63 - 1, 1<<63 - 1, EnvVar, 1<<63 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetMemoryLimit(tt.before)
			got, from := Apply(12<<20, func(k string) string {
				if k == EnvVar {
					return tt.env
				}
				return ""
			})
			if got != tt.want || from != tt.wantFrom {
				t.Errorf("Apply = %d, %q; want %d, %q", got, from, tt.want, tt.wantFrom)
			}
			if now := debug.SetMemoryLimit(-1); now != tt.wantAfter {
				t.Errorf("runtime limit %d after Apply; want %d", now, tt.wantAfter)
			}
		})
	}
}
