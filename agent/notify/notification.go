// Package notify receives tunnel notifications for the device: the
// Notification type and its validating parser, the notify topic name, and
// the Source interface with its MQTT (paho) implementation.
package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// Limits applied by Parse.
const (
	// MaxPayload is the largest notification accepted; real ones are < 2 KiB
	// (a token is at most 4096 characters).
	MaxPayload = 8 << 10
	// MaxServices is the service quota per tunnel.
	MaxServices = 3
	// MaxTokenLen is the longest access token accepted (as the C++ proxy).
	MaxTokenLen = 4096
)

// Sentinel errors.
var (
	// ErrMalformed wraps every reason a notification is dropped.
	ErrMalformed = errors.New("malformed tunnel notification")
	// ErrSubscribeRefused means the broker answered the subscription with
	// a failure (SUBACK 0x80): the device policy lacks iot:Subscribe.
	ErrSubscribeRefused = errors.New("subscription refused")
)

var (
	regionRe  = regexp.MustCompile(`^[a-z0-9-]+$`)
	serviceRe = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
)

// Notification is the payload AWS IoT publishes on the notify topic.
type Notification struct {
	ClientAccessToken string   `json:"clientAccessToken"`
	ClientMode        string   `json:"clientMode"`
	Region            string   `json:"region"`
	Services          []string `json:"services"`
}

// String never prints the token.
func (n Notification) String() string {
	return fmt.Sprintf("{mode=%s region=%s services=%v}", n.ClientMode, n.Region, n.Services)
}

// Parse decodes and validates a notification. Unknown keys are tolerated;
// the error never contains the token.
func Parse(payload []byte) (Notification, error) {
	var n Notification
	if len(payload) > MaxPayload {
		return n, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(payload), MaxPayload)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&n); err != nil {
		return Notification{}, fmt.Errorf("%w: not a JSON object of the expected shape: %s", ErrMalformed, jsonReason(err))
	}
	if dec.More() {
		return Notification{}, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	if err := n.validate(); err != nil {
		return Notification{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return n, nil
}

func (n *Notification) validate() error {
	switch {
	case n.ClientMode != "destination":
		return fmt.Errorf("clientMode %q is not \"destination\"", truncate(n.ClientMode))
	case n.ClientAccessToken == "":
		return errors.New("clientAccessToken is empty")
	case len(n.ClientAccessToken) > MaxTokenLen:
		return fmt.Errorf("clientAccessToken longer than %d characters", MaxTokenLen)
	case strings.IndexFunc(n.ClientAccessToken, notTokenRune) >= 0:
		return errors.New("clientAccessToken contains spaces or control characters")
	case !regionRe.MatchString(n.Region):
		return fmt.Errorf("region %q does not match ^[a-z0-9-]+$", truncate(n.Region))
	case len(n.Services) > MaxServices:
		return fmt.Errorf("%d services, at most %d", len(n.Services), MaxServices)
	}
	seen := make(map[string]bool, len(n.Services))
	for _, s := range n.Services {
		if !serviceRe.MatchString(s) {
			return fmt.Errorf("service %q does not match [a-zA-Z0-9:_-]{1,128}", truncate(s))
		}
		if seen[s] {
			return fmt.Errorf("service %q listed twice", s)
		}
		seen[s] = true
	}
	return nil
}

// Topic is the notify topic of a thing.
func Topic(thing string) string {
	return "$aws/things/" + thing + "/tunnels/notify"
}

func notTokenRune(r rune) bool {
	return r > unicode.MaxASCII || r <= ' ' || r == 0x7f
}

// jsonReason describes a decode error without echoing input values.
func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has type %s, want %s", te.Field, te.Value, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	return "invalid JSON"
}

func truncate(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
