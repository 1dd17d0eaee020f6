package protocol

import "regexp"

// The shapes of the names the protocol and the API carry (PROTOCOL.md
// §7.2, from the service's API model). This is their one home: the
// agent's configuration, the notification parser, the source proxy, the
// emulator and the Greengrass source all check names here.
var (
	// nameRe is the model's Service and ThingName: 1-128 of [a-zA-Z0-9:_-].
	// It also keeps MQTT wildcards and separators out of topics.
	nameRe = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
)

// ValidServiceID reports whether s is a service id the API accepts
// (PROTOCOL.md §7.2 Service).
func ValidServiceID(s string) bool { return nameRe.MatchString(s) }

// ValidThingName reports whether s is an AWS IoT thing name (PROTOCOL.md
// §7.2 ThingName).
func ValidThingName(s string) bool { return nameRe.MatchString(s) }
