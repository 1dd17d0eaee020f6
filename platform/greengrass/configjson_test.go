package greengrass

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeConfigJSON(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        error
	}{
		{"integral float", `{"max_tunnels":10.0,"services":{"SSH":"127.0.0.1:22"}}`,
			`{"max_tunnels":10,"services":{"SSH":"127.0.0.1:22"}}`, nil},
		{"exponent", `{"max_tunnels":1e1}`, `{"max_tunnels":10}`, nil},
		{"fraction kept", `{"x":[1.5,2.0]}`, `{"x":[1.5,2]}`, nil},
		{"strings untouched", `{"max_tunnel_lifetime":"2h","log_level":"10.0"}`,
			`{"log_level":"10.0","max_tunnel_lifetime":"2h"}`, nil},
		{"unknown keys kept for the parser to refuse", `{"bogus":true}`, `{"bogus":true}`, nil},
		{"not an object", `["a"]`, "", ErrConfig},
		{"uninterpolated variable", `{configuration:/agent}`, "", ErrConfig},
		{"trailing data", `{} {}`, "", ErrConfig},
		{"too large", `{"a":"` + strings.Repeat("x", MaxConfigJSON) + `"}`, "", ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeConfigJSON([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
