package greengrass

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestConfigFromEnv(t *testing.T) {
	full := map[string]string{
		EnvSocketPath: "/greengrass/v2/ipc.socket",
		EnvAuthToken:  testToken,
		EnvThingName:  testThing,
	}
	without := func(key string) map[string]string {
		m := map[string]string{}
		for k, v := range full {
			if k != key {
				m[k] = v
			}
		}
		return m
	}
	with := func(key, val string) map[string]string {
		m := without(key)
		m[key] = val
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    error
		wantMsg string
	}{
		{"all set", full, nil, ""},
		{"no socket", without(EnvSocketPath), ErrNotGreengrass, EnvSocketPath},
		{"no svcuid", without(EnvAuthToken), ErrNotGreengrass, EnvAuthToken},
		{"empty thing", with(EnvThingName, ""), ErrNotGreengrass, EnvThingName},
		{"wildcard thing", with(EnvThingName, "pi/#"), ErrConfig, "not a valid AWS IoT thing name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := configFromLookup(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error %q does not mention %q", err, tt.wantMsg)
				}
				if strings.Contains(err.Error(), testToken) {
					t.Errorf("error reveals the token: %v", err)
				}
				return
			}
			if cfg.SocketPath != full[EnvSocketPath] || cfg.AuthToken != testToken || cfg.ThingName != testThing {
				t.Errorf("cfg = %+v", cfg)
			}
		})
	}
}

func TestConfigLogValueHidesToken(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "greengrass",
		Config{SocketPath: "/s", AuthToken: testToken, ThingName: testThing})
	if strings.Contains(buf.String(), testToken) || !strings.Contains(buf.String(), testThing) {
		t.Fatalf("log line %s", buf.String())
	}
}

func TestTopic(t *testing.T) {
	if got := NewSource(Config{ThingName: testThing}).Topic(); got != testTopic {
		t.Fatalf("Topic = %q, want %q", got, testTopic)
	}
}
