package main

import (
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
	"github.com/tunnel-agent/tunnel-agent/platform/memtrim"
)

func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	tests := []struct {
		name    string
		fromEnv bool
		want    int64
	}{
		{"GOMEMLIMIT set: left alone", true, math.MaxInt64},
		{"default: the base while nothing is queued", false, memtrim.AgentLimitBase},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			desc, q := setMemoryLimit(tunnel.NewLimits(0, 0, 0), tc.fromEnv)
			if q != nil {
				defer q.Close() // no quiet mode for the rest of the process
				if os.Getenv("GOGC") == "" && !strings.Contains(desc, "GOGC=25 while one is") {
					t.Errorf("limit described as %q, without the busy GOGC", desc)
				}
			}
			if got := debug.SetMemoryLimit(-1); got != tc.want {
				t.Errorf("memory limit %d, want %d", got, tc.want)
			}
		})
	}
}
