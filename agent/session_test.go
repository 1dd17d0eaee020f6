package agent

import (
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel"
)

// TestSlowConsumerSettingsReachSessions: conn_buffer and conn_stall_timeout
// are handed to every tunnel session, and the config defaults are the library's.
func TestSlowConsumerSettingsReachSessions(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(*config.Config)
		wantBuf   int
		wantStall time.Duration
	}{
		{"defaults", nil, tunnel.DefaultConnBufferSize, tunnel.DefaultStallTimeout},
		{"set", func(c *config.Config) { c.ConnBuffer, c.ConnStallTimeout = 256<<10, 5*time.Second }, 256 << 10, 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.mod)
			h.start()
			h.publish(note("tok-slow", "SSH"))
			s := h.session()
			if s.cfg.ConnBufferSize != tc.wantBuf || s.cfg.ConnStallTimeout != tc.wantStall {
				t.Errorf("session got ConnBufferSize %d, ConnStallTimeout %s; want %d, %s",
					s.cfg.ConnBufferSize, s.cfg.ConnStallTimeout, tc.wantBuf, tc.wantStall)
			}
		})
	}
}
