package config

import (
	"os"
	"strings"
	"testing"
)

func TestByteSize(t *testing.T) {
	tests := []struct {
		yaml    string
		want    ByteSize
		wantErr string
	}{
		{"conn_buffer: 262144\n", 256 << 10, ""},
		{"conn_buffer: 256KiB\n", 256 << 10, ""},
		{"conn_buffer: 1MiB\n", 1 << 20, ""},
		{"conn_buffer: \"2 mb\"\n", 2 << 20, ""},
		{"conn_buffer: 64M\n", 64 << 20, ""},
		{"conn_buffer: 1.5MiB\n", 0, "256KiB"},
		{"conn_buffer: -1\n", 0, "256KiB"},
		{"conn_buffer: [1]\n", 0, "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.yaml, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || cfg.ConnBuffer != tc.want {
				t.Fatalf("got %d, %v; want %d", cfg.ConnBuffer, err, tc.want)
			}
			if back, err := ParseByteSize(cfg.ConnBuffer.String()); err != nil || back != tc.want {
				t.Errorf("String %q does not parse back: %d, %v", cfg.ConnBuffer, back, err)
			}
		})
	}
}

// TestExampleDocumentsSlowConsumerKeys: the example config documents both keys
// (commented out) with the default values.
func TestExampleDocumentsSlowConsumerKeys(t *testing.T) {
	b, err := os.ReadFile("../../configs/tunnel-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("# conn_buffer:", "conn_buffer:", "# conn_stall_timeout:", "conn_stall_timeout:").Replace(string(b))
	if s == string(b) {
		t.Fatal("the example does not document conn_buffer / conn_stall_timeout")
	}
	c, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	if c.ConnBuffer != DefaultConnBuffer || c.ConnStallTimeout != DefaultConnStallTimeout {
		t.Errorf("example values %s, %s differ from the defaults", c.ConnBuffer, c.ConnStallTimeout)
	}
}
