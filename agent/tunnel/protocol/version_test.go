package protocol

import "testing"

func TestVersion(t *testing.T) {
	tests := []struct {
		sub         string
		v           Version
		svc, connID bool
		name        string
	}{
		{SubprotocolV1, V1, false, false, "V1"},
		{SubprotocolV2, V2, true, false, "V2"},
		{SubprotocolV3, V3, true, true, "V3"},
	}
	for _, tc := range tests {
		v, ok := VersionOf(tc.sub)
		if !ok || v != tc.v {
			t.Errorf("VersionOf(%q) = %v, %v", tc.sub, v, ok)
		}
		if v.Subprotocol() != tc.sub || v.HasServiceIDs() != tc.svc || v.HasConnectionIDs() != tc.connID || v.String() != tc.name {
			t.Errorf("%v: subprotocol %q, service ids %v, connection ids %v, name %q", v, v.Subprotocol(), v.HasServiceIDs(), v.HasConnectionIDs(), v.String())
		}
	}
	for _, sub := range []string{"", "aws.iot.securetunneling-4.0", "aws.iot.securetunneling-3.0 "} {
		if v, ok := VersionOf(sub); ok {
			t.Errorf("VersionOf(%q) = %v, true", sub, v)
		}
	}
	if got := Version(0).Subprotocol(); got != "" {
		t.Errorf("Version(0).Subprotocol() = %q", got)
	}
	if Subprotocols[0] != SubprotocolV3 || len(Subprotocols) != 3 {
		t.Errorf("Subprotocols = %v: newest first", Subprotocols)
	}
}
