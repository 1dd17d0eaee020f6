package protocol

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidNames(t *testing.T) {
	for _, s := range []string{"SSH", "a", "pi-1", "my_thing:2", strings.Repeat("x", 128)} {
		if !ValidServiceID(s) || !ValidThingName(s) {
			t.Errorf("%q refused", s)
		}
	}
	for _, s := range []string{"", "a b", "a/b", "#", "+", "ä", strings.Repeat("x", 129), "SSH\n"} {
		if ValidServiceID(s) || ValidThingName(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestValidClientToken(t *testing.T) {
	tests := []struct {
		token string
		ok    bool
	}{
		{NewClientToken(), true},
		{strings.Repeat("a", 32), true},
		{strings.Repeat("Z9-", 42) + "xx", true}, // 128
		{strings.Repeat("a", 31), false},
		{strings.Repeat("a", 129), false},
		{strings.Repeat("a", 31) + "_", false},
		{strings.Repeat("a", 31) + ":", false},
		{strings.Repeat("a", 32) + "\n", false},
		{strings.Repeat("ä", 16), false}, // 32 bytes
		{"", false},
	}
	for _, tc := range tests {
		if got := ValidClientToken(tc.token); got != tc.ok {
			t.Errorf("ValidClientToken(%q) = %v, want %v", tc.token, got, tc.ok)
		}
	}
}

// FuzzValidNames checks the byte loops against the regular expressions
// they replaced.
func FuzzValidNames(f *testing.F) {
	name := regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
	token := regexp.MustCompile(`^[a-zA-Z0-9-]{32,128}$`)
	for _, s := range []string{"", "SSH", "pi-1:a_b", "a b", "ä", "\xff", "SSH\n", NewClientToken(),
		strings.Repeat("x", 128), strings.Repeat("x", 129), strings.Repeat("-", 32), strings.Repeat("é", 20)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidServiceID(s), name.MatchString(s); got != want {
			t.Errorf("ValidServiceID(%q) = %v, the expression says %v", s, got, want)
		}
		if got, want := ValidThingName(s), name.MatchString(s); got != want {
			t.Errorf("ValidThingName(%q) = %v, the expression says %v", s, got, want)
		}
		if got, want := ValidClientToken(s), token.MatchString(s); got != want {
			t.Errorf("ValidClientToken(%q) = %v, the expression says %v", s, got, want)
		}
	})
}
