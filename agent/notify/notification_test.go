package notify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

const goodToken = "AQGAAXh0b2tlbi1mb3ItdGVzdHM"

func TestParseValid(t *testing.T) {
	tests := []struct {
		name, payload string
		want          Notification
	}{
		{"documented", `{"clientAccessToken":"` + goodToken + `","clientMode":"destination","region":"us-east-1","services":["SSH"]}`,
			Notification{goodToken, "destination", "us-east-1", []string{"SSH"}}},
		{"three services and unknown keys", `{"clientAccessToken":"` + goodToken + `","clientMode":"destination","region":"cn-north-1","services":["SSH","HTTP","a:b_c-d"],"extra":{"x":1}}`,
			Notification{goodToken, "destination", "cn-north-1", []string{"SSH", "HTTP", "a:b_c-d"}}},
		{"keys in another order, unknown keys of every type", `{"services":["SSH"],"x":null,"y":[1,{"z":"w"}],"region":"us-gov-west-1","clientMode":"destination","clientAccessToken":"` + goodToken + `","n":1.5}`,
			Notification{goodToken, "destination", "us-gov-west-1", []string{"SSH"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.payload))
			if err != nil {
				t.Fatal(err)
			}
			if n.ClientAccessToken != tt.want.ClientAccessToken || n.Region != tt.want.Region ||
				strings.Join(n.Services, ",") != strings.Join(tt.want.Services, ",") {
				t.Errorf("got %+v want %+v", n, tt.want)
			}
			if strings.Contains(n.String(), goodToken) {
				t.Error("String() prints the token")
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	bad := notifytest.BadPayloads()
	if len(bad) < 20 {
		t.Fatalf("corpus has %d entries, want >= 20", len(bad))
	}
	for name, p := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(p))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
			if strings.Contains(err.Error(), goodToken) {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}

func TestTopic(t *testing.T) {
	if got := Topic("pi-1"); got != "$aws/things/pi-1/tunnels/notify" {
		t.Errorf("Topic = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range notifytest.BadPayloads() {
		f.Add([]byte(p))
	}
	f.Add([]byte(`{"clientAccessToken":"` + goodToken + `","clientMode":"destination","region":"us-east-1","services":["SSH","HTTP"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			if n.ClientAccessToken != "" {
				t.Fatal("token returned with an error")
			}
			return
		}
		if n.ClientMode != "destination" || n.ClientAccessToken == "" || !protocol.ValidRegion(n.Region) || len(n.Services) > MaxServices {
			t.Fatalf("accepted invalid notification %v", n)
		}
		if len(b) > MaxPayload {
			t.Fatal("accepted oversized payload")
		}
	})
}

// TestSeedCorpusCommitted keeps the committed seed corpus in place.
func TestSeedCorpusCommitted(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParse", "*"))
	if len(files) < 5 {
		t.Fatalf("testdata/fuzz/FuzzParse has %d files", len(files))
	}
	if _, err := os.Stat(files[0]); err != nil {
		t.Fatal(err)
	}
}
