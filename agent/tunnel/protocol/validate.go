package protocol

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
)

// The shapes of the names the protocol and the API carry (PROTOCOL.md
// §7.2, from the service's API model). This is their one home: the
// agent's configuration, the notification parser, the source proxy, the
// emulator and the Greengrass source all check names here.
var (
	// nameRe is the model's Service and ThingName: 1-128 of [a-zA-Z0-9:_-].
	// It also keeps MQTT wildcards and separators out of topics.
	nameRe = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
	// clientTokenRe is the data plane's client-token rule (PROTOCOL.md §3.2).
	clientTokenRe = regexp.MustCompile(`^[a-zA-Z0-9-]{32,128}$`)
)

// ValidServiceID reports whether s is a service id the API accepts
// (PROTOCOL.md §7.2 Service).
func ValidServiceID(s string) bool { return nameRe.MatchString(s) }

// ValidThingName reports whether s is an AWS IoT thing name (PROTOCOL.md
// §7.2 ThingName).
func ValidThingName(s string) bool { return nameRe.MatchString(s) }

// ValidClientToken reports whether s is a client token the service accepts
// (PROTOCOL.md §3.2): 32-128 of [a-zA-Z0-9-].
func ValidClientToken(s string) bool { return clientTokenRe.MatchString(s) }

// NewClientToken returns a random UUIDv4 string (36 characters of
// [0-9a-f-]), a valid client token (PROTOCOL.md §4: one fresh client token
// per access token). It is the repository's one UUID generator: the agent
// persists it before a session starts, tunnelctl's holder makes one, and
// the emulator names tunnels with it.
func NewClientToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
