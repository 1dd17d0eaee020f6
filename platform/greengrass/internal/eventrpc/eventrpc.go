// Package eventrpc is the event-stream RPC layer of Greengrass IPC, shared by
// the component-side client (package greengrass) and the test nucleus (package
// fakenucleus): message types, flags, header names, the Greengrass model
// names, and one message read/encode step on top of the AWS event-stream codec
// of github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream. The protocol and its
// sources are described in package greengrass's doc comment.
package eventrpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// Type is the value of the ":message-type" header.
type Type int32

const (
	TypeApplicationMessage Type = 0
	TypeApplicationError   Type = 1
	TypePing               Type = 2
	TypePingResponse       Type = 3
	TypeConnect            Type = 4
	TypeConnectAck         Type = 5
	TypeProtocolError      Type = 6
	TypeInternalError      Type = 7
)

func (t Type) String() string {
	names := [...]string{"ApplicationMessage", "ApplicationError", "Ping", "PingResponse",
		"Connect", "ConnectAck", "ProtocolError", "InternalError"}
	if t >= 0 && int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("MessageType(%d)", int32(t))
}

// Values of the ":message-flags" header.
const (
	FlagConnectionAccepted int32 = 1
	FlagTerminateStream    int32 = 2
)

// Header names and fixed values of event-stream RPC and the Greengrass model.
const (
	HdrMessageType  = ":message-type"
	HdrMessageFlags = ":message-flags"
	HdrStreamID     = ":stream-id"
	HdrVersion      = ":version"
	HdrContentType  = ":content-type"
	HdrOperation    = "operation"
	HdrModelType    = "service-model-type"

	ProtocolVersion = "0.1.0"
	ContentTypeJSON = "application/json"

	OpSubscribeToIoTCore   = "aws.greengrass#SubscribeToIoTCore"
	ModelSubscribeRequest  = "aws.greengrass#SubscribeToIoTCoreRequest"
	ModelSubscribeResponse = "aws.greengrass#SubscribeToIoTCoreResponse"
	ModelIoTCoreMessage    = "aws.greengrass#IoTCoreMessage"
	ModelUnauthorized      = "aws.greengrass#UnauthorizedError"

	OpPublishToIoTCore    = "aws.greengrass#PublishToIoTCore"
	ModelPublishRequest   = "aws.greengrass#PublishToIoTCoreRequest"
	ModelPublishResponse  = "aws.greengrass#PublishToIoTCoreResponse"
	ModelServiceError     = "aws.greengrass#ServiceError"
	ModelInvalidArguments = "aws.greengrass#InvalidArgumentsError"
	ContentTypeText       = "text/plain"

	// IPCServiceMQTTProxy is the accessControl key of the IoT Core operations.
	IPCServiceMQTTProxy = "aws.greengrass.ipc.mqttproxy"
)

// Errors of the framing layer. Check them with errors.Is.
var (
	// ErrProtocol: the peer sent something that is not event-stream RPC.
	ErrProtocol = errors.New("greengrass ipc protocol error")
	// ErrMessageTooLarge: a message exceeds MaxMessageSize.
	ErrMessageTooLarge = errors.New("greengrass ipc message too large")
)

// Size limits of the event-stream framing. MaxMessageSize bounds what this client
// reads from the nucleus: an MQTT payload (128 KiB at most in AWS IoT Core)
// base64-encoded inside JSON fits well below it.
const (
	MaxMessageSize = 1 << 20
	preludeSize    = 12 // total length, headers length, prelude CRC
	minMessageSize = preludeSize + 4
)

// Message is one event-stream RPC message with its RPC headers parsed.
type Message struct {
	Type        Type
	Flags       int32
	StreamID    int32
	ModelType   string // service-model-type, "" if absent
	ContentType string // :content-type, "" if absent
	Operation   string // operation, "" if absent (client to server only)
	Version     string // :version, "" if absent (Connect only)
	Payload     []byte
}

func (m Message) Terminates() bool { return m.Flags&FlagTerminateStream != 0 }

// ReadMessage reads one event-stream message from r and parses its RPC headers.
// The length prefix is checked against MaxMessageSize before anything is
// allocated; the codec itself would trust it.
func ReadMessage(r io.Reader, dec *eventstream.Decoder) (Message, error) {
	var prelude [preludeSize]byte
	if _, err := io.ReadFull(r, prelude[:]); err != nil {
		return Message{}, err
	}
	total := binary.BigEndian.Uint32(prelude[0:4])
	headersLen := binary.BigEndian.Uint32(prelude[4:8])
	if total > MaxMessageSize {
		return Message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, total, MaxMessageSize)
	}
	if total < minMessageSize || headersLen > total-minMessageSize {
		return Message{}, fmt.Errorf("%w: bad lengths in prelude (total %d, headers %d)",
			ErrProtocol, total, headersLen)
	}
	buf := make([]byte, total)
	copy(buf, prelude[:])
	if _, err := io.ReadFull(r, buf[preludeSize:]); err != nil {
		return Message{}, noEOF(err)
	}
	raw, err := dec.Decode(bytes.NewReader(buf), nil)
	if err != nil {
		return Message{}, fmt.Errorf("%w: decoding event-stream message: %w", ErrProtocol, err)
	}
	return parseMessage(raw)
}

// noEOF turns an EOF inside a message into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseMessage extracts the RPC headers. ":message-type" is required;
// ":message-flags" and ":stream-id" default to 0. A header of the wrong type is
// an error.
func parseMessage(raw eventstream.Message) (Message, error) {
	m := Message{Payload: raw.Payload}
	typ, ok, err := int32Header(raw.Headers, HdrMessageType)
	if err != nil {
		return Message{}, err
	}
	if !ok {
		return Message{}, fmt.Errorf("%w: message without %s header", ErrProtocol, HdrMessageType)
	}
	m.Type = Type(typ)
	if m.Flags, _, err = int32Header(raw.Headers, HdrMessageFlags); err != nil {
		return Message{}, err
	}
	if m.StreamID, _, err = int32Header(raw.Headers, HdrStreamID); err != nil {
		return Message{}, err
	}
	for _, h := range []struct {
		name string
		dst  *string
	}{
		{HdrModelType, &m.ModelType},
		{HdrContentType, &m.ContentType},
		{HdrOperation, &m.Operation},
		{HdrVersion, &m.Version},
	} {
		if *h.dst, err = stringHeader(raw.Headers, h.name); err != nil {
			return Message{}, err
		}
	}
	return m, nil
}

func int32Header(hs eventstream.Headers, name string) (int32, bool, error) {
	v := hs.Get(name)
	if v == nil {
		return 0, false, nil
	}
	iv, ok := v.(eventstream.Int32Value)
	if !ok {
		return 0, false, fmt.Errorf("%w: header %s is %T, want int32", ErrProtocol, name, v)
	}
	return int32(iv), true, nil
}

func stringHeader(hs eventstream.Headers, name string) (string, error) {
	v := hs.Get(name)
	if v == nil {
		return "", nil
	}
	sv, ok := v.(eventstream.StringValue)
	if !ok {
		return "", fmt.Errorf("%w: header %s is %T, want string", ErrProtocol, name, v)
	}
	return string(sv), nil
}

// Encode turns m into an event-stream message, RPC headers first, optional
// string headers only when set.
func (m Message) Encode() eventstream.Message {
	hs := eventstream.Headers{
		{Name: HdrMessageType, Value: eventstream.Int32Value(m.Type)},
		{Name: HdrMessageFlags, Value: eventstream.Int32Value(m.Flags)},
		{Name: HdrStreamID, Value: eventstream.Int32Value(m.StreamID)},
	}
	for _, h := range []struct{ name, val string }{
		{HdrVersion, m.Version},
		{HdrOperation, m.Operation},
		{HdrModelType, m.ModelType},
		{HdrContentType, m.ContentType},
	} {
		if h.val != "" {
			hs = append(hs, eventstream.Header{Name: h.name, Value: eventstream.StringValue(h.val)})
		}
	}
	return eventstream.Message{Headers: hs, Payload: m.Payload}
}

func NewEncoder() *eventstream.Encoder { return eventstream.NewEncoder() }
func NewDecoder() *eventstream.Decoder { return eventstream.NewDecoder() }
