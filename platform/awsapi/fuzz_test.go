package awsapi

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzParseError checks that any error response becomes a one-line *APIError.
func FuzzParseError(f *testing.F) {
	f.Add(400, "ResourceNotFoundException:http://x/", []byte(`{"__type":"a#ResourceNotFoundException","message":"m"}`))
	f.Add(503, "", []byte("plain\ntext"))
	f.Add(400, "", []byte(`{"code":"X","Message":"y"}`))
	f.Fuzz(func(t *testing.T, status int, typ string, body []byte) {
		h := http.Header{}
		h.Set("X-Amzn-ErrorType", typ)
		e := parseError("Op", status, h, body)
		if e.Code == "" {
			t.Fatal("empty code")
		}
		if strings.Contains(e.Message, "\n") {
			t.Fatalf("multi-line message %q", e.Message)
		}
	})
}

// FuzzEpochTime checks the timestamp decoder never panics.
func FuzzEpochTime(f *testing.F) {
	for _, s := range []string{"1764104400", "1764104400.123", "null", `"x"`, "-1e20"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e EpochTime
		_ = e.UnmarshalJSON(b)
	})
}

// FuzzIniValue checks the shared-config reader never panics and returns one line.
func FuzzIniValue(f *testing.F) {
	f.Add("[profile emu]\ntunnel_data_endpoint = 127.0.0.1:8443\n", "emu")
	f.Add("[default]\ntunnel_data_endpoint=\"h:1\"\n[profile x]\n", "default")
	f.Add("[profile emu\n=\n[]\n", "emu")
	f.Fuzz(func(t *testing.T, content, profile string) {
		v := iniValue(strings.NewReader(content), profile, ProfileDataEndpoint)
		if strings.ContainsAny(v, "\n") {
			t.Fatalf("value %q spans lines", v)
		}
	})
}

func TestIniValue(t *testing.T) {
	const cfg = "# c\n[default]\ntunnel_data_endpoint = d:1\n[profile emu]\nregion = x\n tunnel_data_endpoint = \"e:2\"\n[emu2]\ntunnel_data_endpoint = f:3\n"
	for profile, want := range map[string]string{"default": "d:1", "emu": "e:2", "emu2": "f:3", "none": ""} {
		if got := iniValue(strings.NewReader(cfg), profile, ProfileDataEndpoint); got != want {
			t.Errorf("profile %s: %q, want %q", profile, got, want)
		}
	}
}
