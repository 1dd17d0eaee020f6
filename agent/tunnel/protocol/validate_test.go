package protocol

import (
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
