package greengrass

import (
	"bytes"
	"errors"
	"testing"
)

func TestDecodeEvent(t *testing.T) {
	appMsg := func(model, body string) message {
		return message{Type: typeApplicationMessage, StreamID: 1, ModelType: model,
			ContentType: contentTypeJSON, Payload: []byte(body)}
	}
	tests := []struct {
		name    string
		m       message
		first   bool
		want    event
		wantErr error
	}{
		{"initial response", appMsg(modelSubscribeResp, `{}`), true, event{kind: eventResponse}, nil},
		{"message", appMsg(modelIoTCoreMessage, `{"message":{"topicName":"a/b","payload":"aGk="}}`), false,
			event{kind: eventMessage, topic: "a/b", payload: []byte("hi")}, nil},
		{"message without payload", appMsg(modelIoTCoreMessage, `{"message":{"topicName":"a/b"}}`), false,
			event{kind: eventMessage, topic: "a/b"}, nil},
		{"unauthorized", message{Type: typeApplicationError, Flags: flagTerminateStream, ModelType: modelUnauthorized,
			ContentType: contentTypeJSON, Payload: []byte(`{"message":"no\nway"}`)}, true,
			event{kind: eventError, errorType: modelUnauthorized, errorText: "no?way", ends: true}, nil},
		{"unmodelled error", message{Type: typeApplicationError, Flags: flagTerminateStream,
			ContentType: "text/plain", Payload: []byte("InternalServerError")}, true,
			event{kind: eventError, errorType: "unmodelled error", errorText: "InternalServerError", ends: true}, nil},
		{"stream closed", message{Type: typeApplicationMessage, Flags: flagTerminateStream}, false,
			event{kind: eventClosed, ends: true}, nil},
		{"response expected, message came", appMsg(modelIoTCoreMessage, `{}`), true, event{}, ErrProtocol},
		{"message expected, response came", appMsg(modelSubscribeResp, `{}`), false, event{}, ErrProtocol},
		{"no model type", appMsg("", `{}`), false, event{}, ErrProtocol},
		{"text content", message{Type: typeApplicationMessage, ModelType: modelIoTCoreMessage,
			ContentType: "text/plain"}, false, event{}, ErrProtocol},
		{"bad json", appMsg(modelIoTCoreMessage, `{"message":`), false, event{}, ErrProtocol},
		{"no message member", appMsg(modelIoTCoreMessage, `{"other":1}`), false, event{}, ErrProtocol},
		{"payload not base64", appMsg(modelIoTCoreMessage, `{"message":{"topicName":"t","payload":"%%"}}`),
			false, event{}, ErrProtocol},
		{"ping on a stream", message{Type: typePing, StreamID: 1}, false, event{}, ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeEvent(tt.m, tt.first)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got.kind != tt.want.kind || got.topic != tt.want.topic || !bytes.Equal(got.payload, tt.want.payload) ||
				got.errorType != tt.want.errorType || got.errorText != tt.want.errorText || got.ends != tt.want.ends {
				t.Errorf("event = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadMessageRejectsBadPreludes(t *testing.T) {
	tests := []struct {
		name    string
		prelude []byte
		want    error
	}{
		{"too large", []byte{0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrMessageTooLarge},
		{"shorter than a message", []byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}, ErrProtocol},
		{"headers longer than message", []byte{0, 0, 0, 20, 0, 0, 0, 5, 0, 0, 0, 0}, ErrProtocol},
		{"bad crc", []byte{0, 0, 0, 16, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0}, ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readMessage(bytes.NewReader(tt.prelude), newDecoder())
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMessageRoundTrip(t *testing.T) {
	in := message{Type: typeApplicationMessage, Flags: flagTerminateStream, StreamID: 7,
		ModelType: modelIoTCoreMessage, ContentType: contentTypeJSON, Operation: opSubscribeToIoTCore,
		Version: protocolVersion, Payload: []byte(`{"a":1}`)}
	var buf bytes.Buffer
	if err := newEncoder().Encode(&buf, in.Encode()); err != nil {
		t.Fatal(err)
	}
	out, err := readMessage(&buf, newDecoder())
	if err != nil {
		t.Fatal(err)
	}
	if out.Type != in.Type || out.Flags != in.Flags || out.StreamID != in.StreamID || out.ModelType != in.ModelType ||
		out.ContentType != in.ContentType || out.Operation != in.Operation || out.Version != in.Version ||
		!bytes.Equal(out.Payload, in.Payload) {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
}
