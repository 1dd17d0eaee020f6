package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const validYAML = `
thing_name: pi-1
endpoint: abc-ats.iot.eu-west-1.amazonaws.com
port: 443
cert: /etc/tunnel-agent/cert.pem
key: /etc/tunnel-agent/key.pem
root_ca: /etc/tunnel-agent/AmazonRootCA1.pem
services:
  SSH: 127.0.0.1:22
  ADMIN: unix:/run/admin.sock
max_tunnel_lifetime: 2h
log_format: json
`

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // substrings; empty: valid
		check   func(t *testing.T, c Config)
	}{
		{name: "valid", yaml: validYAML, check: func(t *testing.T, c Config) {
			if c.Port != 443 || c.MaxTunnels != DefaultMaxTunnels || c.MaxTunnelLifetime != 2*time.Hour {
				t.Errorf("got port %d max %d lifetime %s", c.Port, c.MaxTunnels, c.MaxTunnelLifetime)
			}
			if c.EffectiveClientID() != "pi-1" || c.Services["ADMIN"] != "unix:/run/admin.sock" {
				t.Errorf("client id %q services %v", c.EffectiveClientID(), c.Services)
			}
			if c.Lifetime() != 2*time.Hour {
				t.Errorf("lifetime %s", c.Lifetime())
			}
		}},
		{name: "empty file gives defaults then fails validation", yaml: "", wantErr: []string{"thing_name", "endpoint", "cert:", "services: empty"}},
		{name: "unknown key names key and line", yaml: validYAML + "max_tunels: 3\n", wantErr: []string{`unknown key "max_tunels"`, "line 13"}},
		{name: "typo nested type", yaml: "thing_name: [a]\n", wantErr: []string{"line 1"}},
		{name: "bad service id", yaml: strings.Replace(validYAML, "SSH:", "S S H:", 1), wantErr: []string{`id "S S H"`}},
		{name: "bad service addr", yaml: strings.Replace(validYAML, "127.0.0.1:22", "127.0.0.1", 1), wantErr: []string{"services: SSH", "host:port"}},
		{name: "relative unix", yaml: strings.Replace(validYAML, "unix:/run", "unix:run", 1), wantErr: []string{"absolute path"}},
		{name: "bad port", yaml: strings.Replace(validYAML, "port: 443", "port: 70000", 1), wantErr: []string{"port: 70000"}},
		{name: "bad log format", yaml: strings.Replace(validYAML, "log_format: json", "log_format: xml", 1), wantErr: []string{"log_format"}},
		{name: "bad log level", yaml: validYAML + "log_level: loud\n", wantErr: []string{"log_level"}},
		{name: "zero max tunnels", yaml: validYAML + "max_tunnels: 0\n", wantErr: []string{"max_tunnels"}},
		{name: "bad duration", yaml: strings.Replace(validYAML, "2h", "two hours", 1), wantErr: []string{"line 11"}},
		{name: "endpoint with scheme", yaml: strings.Replace(validYAML, "abc-ats", "mqtts://abc-ats", 1), wantErr: []string{"endpoint"}},
		{name: "plaintext needs opt-in", yaml: validYAML + "data_endpoint: ws://127.0.0.1:1\n", wantErr: []string{"allow_plaintext_data_plane"}},
		{name: "plaintext opt-in", yaml: validYAML + "data_endpoint: ws://127.0.0.1:1\nallow_plaintext_data_plane: true\n"},
		{name: "bad proxy", yaml: validYAML + "https_proxy: socks5://x\n", wantErr: []string{"https_proxy"}},
		{name: "client id with space", yaml: validYAML + "client_id: a b\n", wantErr: []string{"client_id"}},
		{name: "limits", yaml: validYAML + "max_connections: 16\nmax_total_connections: 64\nqueue_budget: 8MiB\n", check: func(t *testing.T, c Config) {
			if c.MaxConnections != 16 || c.MaxTotalConnections != 64 || c.QueueBudget != 8<<20 {
				t.Errorf("limits %d %d %s", c.MaxConnections, c.MaxTotalConnections, c.QueueBudget)
			}
		}},
		{name: "limit defaults", yaml: validYAML, check: func(t *testing.T, c Config) {
			if c.MaxConnections != 128 || c.MaxTotalConnections != 256 || c.QueueBudget != 16<<20 {
				t.Errorf("limits %d %d %s", c.MaxConnections, c.MaxTotalConnections, c.QueueBudget)
			}
		}},
		{name: "zero max connections", yaml: validYAML + "max_connections: 0\n", wantErr: []string{"max_connections: 0"}},
		{name: "huge total connections", yaml: validYAML + "max_total_connections: 100000\n", wantErr: []string{"max_total_connections"}},
		{name: "budget below conn_buffer", yaml: validYAML + "conn_buffer: 4MiB\nqueue_budget: 1MiB\n", wantErr: []string{"queue_budget", "conn_buffer"}},
		{name: "IPv6 endpoint", yaml: strings.Replace(validYAML, "abc-ats.iot.eu-west-1.amazonaws.com", "2001:db8::1", 1)},
		{name: "bracketed IPv6 endpoint", yaml: strings.Replace(validYAML, "abc-ats.iot.eu-west-1.amazonaws.com", `"[2001:db8::1]"`, 1)},
		{name: "IPv4 endpoint with port", yaml: strings.Replace(validYAML, "abc-ats.iot.eu-west-1.amazonaws.com", "10.0.0.1:8883", 1), wantErr: []string{"endpoint"}},
		{name: "duration as a number", yaml: validYAML + "conn_stall_timeout: 2\n",
			wantErr: []string{"conn_stall_timeout: `2` is not a duration such as 2s, 90m or 12h"}},
		{name: "several type errors", yaml: "max_tunnels: many\nconn_buffer: [1]\nallow_plaintext_data_plane: maybe\n",
			wantErr: []string{"line 1: max_tunnels: `many` is not a whole number", "line 2: conn_buffer:", "line 3: allow_plaintext_data_plane: `maybe` is not true or false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.yaml))
			if err == nil {
				err = c.Validate()
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got nil", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want ErrNotExist", err)
	}
}

func TestEffectiveHidesSecrets(t *testing.T) {
	c, err := Parse(strings.NewReader(validYAML + "https_proxy: http://user:hunter2@proxy:3128\n"))
	if err != nil {
		t.Fatal(err)
	}
	out := c.Effective()
	if strings.Contains(out, "hunter2") {
		t.Errorf("password printed:\n%s", out)
	}
	for _, want := range []string{"client_id: pi-1", "max_tunnel_lifetime: 2h0m0s", "SSH: 127.0.0.1:22"} {
		if !strings.Contains(out, want) {
			t.Errorf("effective output lacks %q:\n%s", want, out)
		}
	}
	// Round trip: what check-config prints loads again.
	back, err := Parse(strings.NewReader(strings.ReplaceAll(out, "xxxxx", "pw")))
	if err != nil || back.Validate() != nil {
		t.Errorf("effective output does not load back: %v", err)
	}
}

func TestLifetimeCappedAtServiceMax(t *testing.T) {
	c := Default()
	if c.Lifetime() != MaxServiceLifetime {
		t.Errorf("default lifetime %s", c.Lifetime())
	}
	c.MaxTunnelLifetime = 48 * time.Hour
	if c.Lifetime() != MaxServiceLifetime {
		t.Errorf("lifetime not capped: %s", c.Lifetime())
	}
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("../../configs/tunnel-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidClientID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"pi-1", true},
		{"!~", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"a b", false},
		{"a\x7f", false},
		{"é", false},
		{"a\n", false},
	}
	for _, tc := range tests {
		if got := validClientID(tc.id); got != tc.ok {
			t.Errorf("validClientID(%q) = %v, want %v", tc.id, got, tc.ok)
		}
	}
}
