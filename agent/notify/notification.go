// Package notify receives tunnel notifications for the device: the
// Notification type and its validating parser, the notify topic name, and
// the Source interface with its MQTT (paho) implementation.
package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
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

// Parse decodes and validates a notification. Keys are matched exactly, as
// AWS sends them ("clientAccessToken", not "ClientAccessToken"); a key given
// twice, or a known key in another case, is refused. Unknown keys are
// tolerated; the error never contains the token.
func Parse(payload []byte) (Notification, error) {
	var n Notification
	if len(payload) > MaxPayload {
		return n, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(payload), MaxPayload)
	}
	if err := decodeExact(payload, &n); err != nil {
		return Notification{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := n.validate(); err != nil {
		return Notification{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return n, nil
}

// decodeExact decodes one JSON object into n, field by field, so that keys
// match exactly and at most once (encoding/json folds case and lets the
// last duplicate win).
func decodeExact(payload []byte, n *Notification) error {
	fields := map[string]any{
		"clientAccessToken": &n.ClientAccessToken, "clientMode": &n.ClientMode,
		"region": &n.Region, "services": &n.Services,
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object of the expected shape: %s", jsonReason(err))
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("not a JSON object of the expected shape: %s", jsonReason(err))
		}
		key, _ := tok.(string)
		dst, known := fields[key]
		if !known {
			for k := range fields {
				if strings.EqualFold(k, key) {
					return fmt.Errorf("key %q: the key is %q (keys are case-sensitive)", truncate(key), k)
				}
			}
			dst = new(json.RawMessage)
		} else if seen[key] {
			return fmt.Errorf("key %q appears twice", key)
		}
		seen[key] = true
		if err := dec.Decode(dst); err != nil {
			return fmt.Errorf("not a JSON object of the expected shape: %s", jsonReason(err))
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("not a JSON object of the expected shape: %s", jsonReason(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
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
	case !protocol.ValidRegion(n.Region):
		return fmt.Errorf("region %q is not an AWS region name (like us-east-1)", truncate(n.Region))
	case len(n.Services) == 0:
		return errors.New("services is empty or missing: a tunnel has at least one service")
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
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated or empty"
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
