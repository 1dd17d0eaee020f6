package emulator

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStateSurvivesRestart checks what the state file keeps across a
// restart: tunnels (open, closed, deleted), tags, rotated tokens, used and
// bound tokens, client tokens bound before a rotation, and the open count.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	cfg := Config{StateDir: dir, Now: clock.Now, MaxOpenTunnels: 3}
	s1 := newStore(withDefaults(t, &cfg))
	s1.sv = newSaver(filepath.Join(dir, stateFileName), s1.snapshot, cfg.Logger)
	open := func(s *store, body string) openTunnelResponse {
		var r openTunnelRequest
		if err := decodeRequest([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		resp, err := s.open(&r)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	a := open(s1, `{"destinationConfig":{"thingName":"pi-1","services":["SSH"]},"tags":[{"key":"k","value":"v"}]}`)
	b := open(s1, `{"description":"closed"}`)
	c := open(s1, `{"description":"deleted"}`)
	if _, _, herr := s1.admit(a.DestinationAccessToken, "0123456789abcdef0123456789abcdef", modeDest); herr != nil {
		t.Fatal(herr)
	}
	if _, _, herr := s1.admit(a.SourceAccessToken, "", modeSource); herr != nil {
		t.Fatal(herr)
	}
	mode := "DESTINATION"
	_, rot, err := s1.rotate(&rotateRequest{TunnelID: &a.TunnelID, ClientMode: &mode})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.close(b.TunnelID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.close(c.TunnelID, true); err != nil {
		t.Fatal(err)
	}

	s2 := newStore(&cfg)
	if err := s2.load(filepath.Join(dir, stateFileName)); err != nil {
		t.Fatal(err)
	}
	d, err := s2.describe(a.TunnelID)
	if err != nil || d.Status != statusOpen || len(d.Tags) != 1 || d.DestinationConfig.ThingName != "pi-1" ||
		!time.Time(d.CreatedAt).Equal(clock.Now()) || d.DestinationConnectionState.Status != connDown {
		t.Fatalf("tunnel a after restart: %+v %v", d, err)
	}
	if d, err := s2.describe(b.TunnelID); err != nil || d.Status != statusClosed {
		t.Fatalf("tunnel b: %+v %v", d, err)
	}
	if _, err := s2.describe(c.TunnelID); err == nil {
		t.Fatal("deleted tunnel came back")
	}
	for _, tc := range []struct {
		name, token, client string
		mode                int
		want                string // "" admitted
	}{
		{"old destination token revoked", a.DestinationAccessToken, "0123456789abcdef0123456789abcdef", modeDest, msgTokenUnknown},
		{"client token stays bound after rotation", rot.DestinationAccessToken, "0123456789abcdef0123456789abcdef", modeDest, msgClientInUse},
		{"used source token without client token", a.SourceAccessToken, "", modeSource, msgTokenReused},
		{"rotated token fresh", rot.DestinationAccessToken, "", modeDest, ""},
	} {
		_, _, herr := s2.admit(tc.token, tc.client, tc.mode)
		if (herr == nil) != (tc.want == "") || (herr != nil && herr.msg != tc.want) {
			t.Errorf("%s: %v", tc.name, herr)
		}
	}
	if n := s2.openCount(clock.Now()); n != 1 {
		t.Errorf("open count %d after restart", n)
	}

	// An unreadable state file stops the emulator with a clear error.
	if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{StateDir: dir}); !errors.Is(err, ErrBadState) {
		t.Fatalf("corrupt state: %v", err)
	}
}

func withDefaults(t *testing.T, c *Config) *Config {
	t.Helper()
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	return c
}
