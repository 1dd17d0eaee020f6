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
