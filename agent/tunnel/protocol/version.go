package protocol

// Version is a version of the protocol's message format (PROTOCOL.md §6.10):
// V1 has neither service ids nor connection ids, V2 adds service ids (and
// SERVICE_IDS), V3 adds connection ids (and CONNECTION_START/RESET). The
// negotiated subprotocol caps what a WebSocket may carry; within that cap,
// each message's content says which version its sender speaks.
type Version int

// The versions, in the order they were introduced.
const (
	V1 Version = 1
	V2 Version = 2
	V3 Version = 3
)

// Subprotocols are the WebSocket subprotocols in order of preference, as a
// client offers them and a server picks among them.
var Subprotocols = []string{SubprotocolV3, SubprotocolV2, SubprotocolV1}

// VersionOf returns the version of a WebSocket subprotocol, and false for a
// subprotocol that is not one of the three.
func VersionOf(subprotocol string) (Version, bool) {
	switch subprotocol {
	case SubprotocolV1:
		return V1, true
	case SubprotocolV2:
		return V2, true
	case SubprotocolV3:
		return V3, true
	}
	return 0, false
}

// Subprotocol returns the WebSocket subprotocol of v ("" for no version).
func (v Version) Subprotocol() string {
	switch v {
	case V1:
		return SubprotocolV1
	case V2:
		return SubprotocolV2
	case V3:
		return SubprotocolV3
	}
	return ""
}

// HasServiceIDs reports whether messages of v carry a service id (field 5)
// and the service sends SERVICE_IDS.
func (v Version) HasServiceIDs() bool { return v >= V2 }

// HasConnectionIDs reports whether messages of v carry a connection id
// (field 7) and CONNECTION_START/CONNECTION_RESET exist.
func (v Version) HasConnectionIDs() bool { return v >= V3 }

// String returns "V1", "V2" or "V3".
func (v Version) String() string {
	switch v {
	case V1, V2, V3:
		return "V" + string(rune('0'+v))
	}
	return "unknown version"
}
