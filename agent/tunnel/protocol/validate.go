package protocol

import (
	"crypto/rand"
	"encoding/hex"
)

// The shapes of the names the protocol and the API carry (PROTOCOL.md
// §7.2, from the service's API model). This is their one home: the
// agent's configuration, the notification parser, the source proxy, the
// emulator and the Greengrass source all check names here.
//
// They are checked byte by byte. Every character the rules allow is ASCII,
// so a string of other bytes (any byte of a multi-byte UTF-8 sequence
// included) fails, as it failed the regular expressions these loops
// replace, `^[a-zA-Z0-9:_-]{1,128}$` and `^[a-zA-Z0-9-]{32,128}$`
// (FuzzValidNames compares the two); compiled, those stayed in the heap of
// every process: 98 KB.

// ValidServiceID reports whether s is a service id the API accepts
// (PROTOCOL.md §7.2 Service): 1-128 of [a-zA-Z0-9:_-]. The same rule keeps
// MQTT wildcards and separators out of topics.
func ValidServiceID(s string) bool { return validChars(s, 1, 128, isNameByte) }

// ValidThingName reports whether s is an AWS IoT thing name (PROTOCOL.md
// §7.2 ThingName): the same rule as a service id.
func ValidThingName(s string) bool { return validChars(s, 1, 128, isNameByte) }

// ValidClientToken reports whether s is a client token the service accepts
// (PROTOCOL.md §3.2): 32-128 of [a-zA-Z0-9-].
func ValidClientToken(s string) bool { return validChars(s, 32, 128, isTokenByte) }

// validChars reports whether s has minLen to maxLen bytes, each accepted
// by ok.
func validChars(s string, minLen, maxLen int, ok func(byte) bool) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for i := range len(s) {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isNameByte(c byte) bool { return isAlnum(c) || c == ':' || c == '_' || c == '-' }

func isTokenByte(c byte) bool { return isAlnum(c) || c == '-' }

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
