package greengrass

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

// eventKind says what a message on the subscription stream means.
type eventKind int

const (
	eventResponse eventKind = iota + 1 // initial SubscribeToIoTCoreResponse
	eventMessage                       // an IoTCoreMessage: topic + decoded payload
	eventError                         // an ApplicationError (the stream ends)
	eventClosed                        // TerminateStream without a model (the stream ends)
)

// event is a decoded message of the subscription stream.
type event struct {
	kind      eventKind
	topic     string // eventMessage
	payload   []byte // eventMessage: base64-decoded MQTT payload
	errorType string // eventError: model name, e.g. aws.greengrass#UnauthorizedError
	errorText string // eventError: the nucleus' message, sanitized for logs
	ends      bool   // the nucleus terminated the stream with this message
}

// decodeEvent interprets an ApplicationMessage or ApplicationError received on
// the subscription stream. first says whether the initial response is still
// awaited. Malformed content is an error; the caller decides what to do with it.
func decodeEvent(m message, first bool) (event, error) {
	ev := event{ends: m.Terminates()}
	switch m.Type {
	case typeApplicationError:
		ev.kind = eventError
		ev.errorType, ev.errorText = errorDetails(m)
		ev.ends = true
		return ev, nil
	case typeApplicationMessage:
	default:
		return event{}, fmt.Errorf("%w: %s on a stream", ErrProtocol, m.Type)
	}
	if m.ModelType == "" {
		if m.Terminates() {
			ev.kind = eventClosed
			return ev, nil
		}
		return event{}, fmt.Errorf("%w: stream message without %s", ErrProtocol, hdrModelType)
	}
	if m.ContentType != contentTypeJSON {
		return event{}, fmt.Errorf("%w: %s is %q, want %q", ErrProtocol, hdrContentType,
			sanitize(m.ContentType), contentTypeJSON)
	}
	want := modelIoTCoreMessage
	if first {
		want = modelSubscribeResp
	}
	if m.ModelType != want {
		return event{}, fmt.Errorf("%w: unexpected %s %q, want %q", ErrProtocol, hdrModelType,
			sanitize(m.ModelType), want)
	}
	if first {
		ev.kind = eventResponse
		return ev, nil
	}
	return decodeIoTCoreMessage(m.Payload, ev)
}

// iotCoreMessage is the JSON of aws.greengrass#IoTCoreMessage.
type iotCoreMessage struct {
	Message *struct {
		TopicName string  `json:"topicName"`
		Payload   *string `json:"payload"`
	} `json:"message"`
}

func decodeIoTCoreMessage(payload []byte, ev event) (event, error) {
	var msg iotCoreMessage
	if err := json.Unmarshal(payload, &msg); err != nil {
		return event{}, fmt.Errorf("%w: IoTCoreMessage is not JSON: %w", ErrProtocol, err)
	}
	if msg.Message == nil {
		return event{}, fmt.Errorf("%w: IoTCoreMessage without \"message\"", ErrProtocol)
	}
	ev.kind = eventMessage
	ev.topic = msg.Message.TopicName
	if msg.Message.Payload != nil {
		b, err := base64.StdEncoding.DecodeString(*msg.Message.Payload)
		if err != nil {
			return event{}, fmt.Errorf("%w: IoTCoreMessage payload is not base64: %w", ErrProtocol, err)
		}
		ev.payload = b
	}
	return ev, nil
}

// errorDetails reads the model name and the message of an ApplicationError.
// Modelled errors are JSON {"message": ...}; unmodelled ones are plain text.
func errorDetails(m message) (typ, text string) {
	typ = m.ModelType
	if typ == "" {
		typ = "unmodelled error"
	}
	var body struct {
		Message string `json:"message"`
	}
	if m.ContentType == contentTypeJSON && json.Unmarshal(m.Payload, &body) == nil {
		return sanitize(typ), sanitize(body.Message)
	}
	return sanitize(typ), sanitize(string(m.Payload))
}

// sanitize makes text from the nucleus safe for one log line: printable only,
// at most 256 runes.
func sanitize(s string) string {
	const maxRunes = 256
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxRunes {
			b.WriteString("...")
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
