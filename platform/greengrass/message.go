package greengrass

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// msgType is the value of the ":message-type" header.
type msgType int32

const (
	typeApplicationMessage msgType = 0
	typeApplicationError   msgType = 1
	typePing               msgType = 2
	typePingResponse       msgType = 3
	typeConnect            msgType = 4
	typeConnectAck         msgType = 5
	typeProtocolError      msgType = 6
	typeInternalError      msgType = 7
)

func (t msgType) String() string {
	names := [...]string{"ApplicationMessage", "ApplicationError", "Ping", "PingResponse",
		"Connect", "ConnectAck", "ProtocolError", "InternalError"}
	if t >= 0 && int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("MessageType(%d)", int32(t))
}

// Values of the ":message-flags" header.
const (
	flagConnectionAccepted int32 = 1
	flagTerminateStream    int32 = 2
)

// Header names and fixed values of event-stream RPC and the Greengrass model.
const (
	hdrMessageType  = ":message-type"
	hdrMessageFlags = ":message-flags"
	hdrStreamID     = ":stream-id"
	hdrVersion      = ":version"
	hdrContentType  = ":content-type"
	hdrOperation    = "operation"
	hdrModelType    = "service-model-type"

	protocolVersion = "0.1.0"
	contentTypeJSON = "application/json"

	opSubscribeToIoTCore  = "aws.greengrass#SubscribeToIoTCore"
	modelSubscribeRequest = "aws.greengrass#SubscribeToIoTCoreRequest"
	modelSubscribeResp    = "aws.greengrass#SubscribeToIoTCoreResponse"
	modelIoTCoreMessage   = "aws.greengrass#IoTCoreMessage"
	modelUnauthorized     = "aws.greengrass#UnauthorizedError"
)

// Size limits of the event-stream framing. MaxMessageSize bounds what this client
// reads from the nucleus: an MQTT payload (128 KiB at most in AWS IoT Core)
// base64-encoded inside JSON fits well below it.
const (
	MaxMessageSize = 1 << 20
	preludeSize    = 12 // total length, headers length, prelude CRC
	minMessageSize = preludeSize + 4
)

// message is one event-stream RPC message with its RPC headers parsed.
type message struct {
	typ         msgType
	flags       int32
	streamID    int32
	modelType   string // service-model-type, "" if absent
	contentType string // :content-type, "" if absent
	operation   string // operation, "" if absent (client to server only)
	version     string // :version, "" if absent (Connect only)
	payload     []byte
}

func (m message) terminates() bool { return m.flags&flagTerminateStream != 0 }

// readMessage reads one event-stream message from r and parses its RPC headers.
// The length prefix is checked against MaxMessageSize before anything is
// allocated; the codec itself would trust it.
func readMessage(r io.Reader, dec *eventstream.Decoder) (message, error) {
	var prelude [preludeSize]byte
	if _, err := io.ReadFull(r, prelude[:]); err != nil {
		return message{}, err
	}
	total := binary.BigEndian.Uint32(prelude[0:4])
	headersLen := binary.BigEndian.Uint32(prelude[4:8])
	if total > MaxMessageSize {
		return message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, total, MaxMessageSize)
	}
	if total < minMessageSize || headersLen > total-minMessageSize {
		return message{}, fmt.Errorf("%w: bad lengths in prelude (total %d, headers %d)",
			ErrProtocol, total, headersLen)
	}
	buf := make([]byte, total)
	copy(buf, prelude[:])
	if _, err := io.ReadFull(r, buf[preludeSize:]); err != nil {
		return message{}, noEOF(err)
	}
	raw, err := dec.Decode(bytes.NewReader(buf), nil)
	if err != nil {
		return message{}, fmt.Errorf("%w: decoding event-stream message: %w", ErrProtocol, err)
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
func parseMessage(raw eventstream.Message) (message, error) {
	m := message{payload: raw.Payload}
	typ, ok, err := int32Header(raw.Headers, hdrMessageType)
	if err != nil {
		return message{}, err
	}
	if !ok {
		return message{}, fmt.Errorf("%w: message without %s header", ErrProtocol, hdrMessageType)
	}
	m.typ = msgType(typ)
	if m.flags, _, err = int32Header(raw.Headers, hdrMessageFlags); err != nil {
		return message{}, err
	}
	if m.streamID, _, err = int32Header(raw.Headers, hdrStreamID); err != nil {
		return message{}, err
	}
	for _, h := range []struct {
		name string
		dst  *string
	}{
		{hdrModelType, &m.modelType},
		{hdrContentType, &m.contentType},
		{hdrOperation, &m.operation},
		{hdrVersion, &m.version},
	} {
		if *h.dst, err = stringHeader(raw.Headers, h.name); err != nil {
			return message{}, err
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

// encode turns m into an event-stream message, RPC headers first, optional
// string headers only when set.
func (m message) encode() eventstream.Message {
	hs := eventstream.Headers{
		{Name: hdrMessageType, Value: eventstream.Int32Value(m.typ)},
		{Name: hdrMessageFlags, Value: eventstream.Int32Value(m.flags)},
		{Name: hdrStreamID, Value: eventstream.Int32Value(m.streamID)},
	}
	for _, h := range []struct{ name, val string }{
		{hdrVersion, m.version},
		{hdrOperation, m.operation},
		{hdrModelType, m.modelType},
		{hdrContentType, m.contentType},
	} {
		if h.val != "" {
			hs = append(hs, eventstream.Header{Name: h.name, Value: eventstream.StringValue(h.val)})
		}
	}
	return eventstream.Message{Headers: hs, Payload: m.payload}
}

func newEncoder() *eventstream.Encoder { return eventstream.NewEncoder() }
func newDecoder() *eventstream.Decoder { return eventstream.NewDecoder() }
