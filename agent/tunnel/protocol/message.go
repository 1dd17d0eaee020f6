package protocol

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Type is the Message.Type enum of the tunneling protocol.
type Type int32

// Message types (PROTOCOL.md §5.3). Types 5-7 exist only in V2/V3.
const (
	TypeUnknown         Type = 0
	TypeData            Type = 1
	TypeStreamStart     Type = 2
	TypeStreamReset     Type = 3
	TypeSessionReset    Type = 4
	TypeServiceIDs      Type = 5
	TypeConnectionStart Type = 6
	TypeConnectionReset Type = 7
)

// Size limits (PROTOCOL.md §5.2).
const (
	// MaxPayload is the largest DATA payload a peer may send.
	MaxPayload = 64512
	// MaxWSMessage is the largest WebSocket message the service sends or accepts.
	MaxWSMessage = 131076
	// MaxFrameBody is the largest encoded Message a 2-byte length prefix can carry.
	MaxFrameBody = 65535
	// LengthSize is the size of the frame length prefix.
	LengthSize = 2
)

// WebSocket subprotocols, newest first in order of preference.
const (
	SubprotocolV1 = "aws.iot.securetunneling-1.0"
	SubprotocolV2 = "aws.iot.securetunneling-2.0"
	SubprotocolV3 = "aws.iot.securetunneling-3.0"
)

// Errors returned by the codec.
var (
	// ErrBadLength: a frame length prefix of 0 (a Message always has a type).
	ErrBadLength = errors.New("tunnel frame has length 0: the peer is not speaking the tunneling protocol")
	// ErrPayloadTooLarge: a DATA payload over MaxPayload bytes.
	ErrPayloadTooLarge = errors.New("tunnel message payload exceeds 64512 bytes")
	// ErrFrameTooLarge: an encoded Message over MaxFrameBody bytes.
	ErrFrameTooLarge = errors.New("encoded tunnel message exceeds 65535 bytes")
	// ErrMalformed: the bytes are not a valid protobuf Message.
	ErrMalformed = errors.New("malformed tunnel message")
)

var typeNames = [...]string{"UNKNOWN", "DATA", "STREAM_START", "STREAM_RESET",
	"SESSION_RESET", "SERVICE_IDS", "CONNECTION_START", "CONNECTION_RESET"}

// String returns the protocol name of t, e.g. "STREAM_START".
func (t Type) String() string {
	if t >= 0 && int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE_%d", int32(t))
}

// Message is one tunnel message. Zero values are omitted on the wire
// (proto3), so an empty ServiceID and a zero ConnectionID are "absent".
type Message struct {
	Type                Type
	StreamID            int32
	Ignorable           bool
	Payload             []byte
	ServiceID           string
	AvailableServiceIDs []string
	ConnectionID        uint32
}

// Field numbers of Message.
const (
	fieldType         protowire.Number = 1
	fieldStreamID     protowire.Number = 2
	fieldIgnorable    protowire.Number = 3
	fieldPayload      protowire.Number = 4
	fieldServiceID    protowire.Number = 5
	fieldAvailableIDs protowire.Number = 6
	fieldConnectionID protowire.Number = 7
)

// Size returns the length of the protobuf encoding of m.
func (m *Message) Size() int {
	n := 0
	if m.Type != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(m.Type)))
	}
	if m.StreamID != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(m.StreamID)))
	}
	if len(m.Payload) > 0 {
		n += 1 + protowire.SizeBytes(len(m.Payload))
	}
	if m.ServiceID != "" {
		n += 1 + protowire.SizeBytes(len(m.ServiceID))
	}
	for _, s := range m.AvailableServiceIDs {
		n += 1 + protowire.SizeBytes(len(s))
	}
	if m.ConnectionID != 0 {
		n += 1 + protowire.SizeVarint(uint64(m.ConnectionID))
	}
	if m.Ignorable {
		n += 2
	}
	return n
}

// Marshal appends the protobuf encoding of m to dst. Fields are written in
// field-number order, except ignorable, which goes last because the aws-c-iot
// decoder keeps the flag only when it is the last field (PROTOCOL.md §5.3).
// int32 values are sign-extended varints, as protobuf requires.
func (m *Message) Marshal(dst []byte) ([]byte, error) {
	if len(m.Payload) > MaxPayload {
		return dst, ErrPayloadTooLarge
	}
	if m.Type != 0 {
		dst = protowire.AppendTag(dst, fieldType, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(m.Type)))
	}
	if m.StreamID != 0 {
		dst = protowire.AppendTag(dst, fieldStreamID, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(m.StreamID)))
	}
	if len(m.Payload) > 0 {
		dst = protowire.AppendTag(dst, fieldPayload, protowire.BytesType)
		dst = protowire.AppendBytes(dst, m.Payload)
	}
	if m.ServiceID != "" {
		dst = protowire.AppendTag(dst, fieldServiceID, protowire.BytesType)
		dst = protowire.AppendString(dst, m.ServiceID)
	}
	for _, s := range m.AvailableServiceIDs {
		dst = protowire.AppendTag(dst, fieldAvailableIDs, protowire.BytesType)
		dst = protowire.AppendString(dst, s)
	}
	if m.ConnectionID != 0 {
		dst = protowire.AppendTag(dst, fieldConnectionID, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(m.ConnectionID))
	}
	if m.Ignorable {
		dst = protowire.AppendTag(dst, fieldIgnorable, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	return dst, nil
}

// Unmarshal decodes b into m, replacing all of m's fields. m.Payload aliases
// b (no copy): copy it if b is reused. m.ServiceID is reused without an
// allocation when it equals the previous value. Unknown fields are skipped, as
// proto3 requires; malformed input and payloads over MaxPayload are errors.
func (m *Message) Unmarshal(b []byte) error {
	prevService := m.ServiceID
	*m = Message{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		n, err := m.consumeField(num, typ, b, prevService)
		if err != nil {
			return fmt.Errorf("%w: field %d: %w", ErrMalformed, num, err)
		}
		b = b[n:]
	}
	if len(m.Payload) > MaxPayload {
		return ErrPayloadTooLarge
	}
	return nil
}

// consumeField decodes one field value and returns its length. Unknown
// fields, and known fields with an unexpected wire type, are skipped, as the
// reference protobuf runtime does.
func (m *Message) consumeField(num protowire.Number, typ protowire.Type, b []byte, prevService string) (int, error) {
	want := protowire.VarintType
	switch num {
	case fieldPayload, fieldServiceID, fieldAvailableIDs:
		want = protowire.BytesType
	case fieldType, fieldStreamID, fieldIgnorable, fieldConnectionID:
	default:
		want = -1
	}
	if typ != want {
		n := protowire.ConsumeFieldValue(num, typ, b)
		return n, protowire.ParseError(n)
	}
	if want == protowire.VarintType {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		switch num {
		case fieldType:
			m.Type = Type(int32(v))
		case fieldStreamID:
			m.StreamID = int32(v)
		case fieldIgnorable:
			m.Ignorable = v != 0
		case fieldConnectionID:
			m.ConnectionID = uint32(v)
		}
		return n, nil
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	switch num {
	case fieldPayload:
		m.Payload = v
	case fieldServiceID:
		if string(v) == prevService {
			m.ServiceID = prevService
		} else {
			m.ServiceID = string(v)
		}
	case fieldAvailableIDs:
		m.AvailableServiceIDs = append(m.AvailableServiceIDs, string(v))
	}
	return n, nil
}
