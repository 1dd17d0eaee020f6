package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// vectors are the byte examples of protocol.md §5.3.
var vectors = []struct {
	name string
	msg  Message
	hex  string
}{
	{"stream start v3", Message{Type: TypeStreamStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1}, "000b080210012a035353483801"},
	{"stream start v1", Message{Type: TypeStreamStart, StreamID: 1}, "000408021001"},
	{"data v3", Message{Type: TypeData, StreamID: 1, Payload: []byte("hi"), ServiceID: "SSH", ConnectionID: 1}, "000f08011001220268692a035353483801"},
	{"stream reset", Message{Type: TypeStreamReset, StreamID: 1, ServiceID: "SSH"}, "0009080310012a03535348"},
	{"connection reset", Message{Type: TypeConnectionReset, StreamID: 1, ServiceID: "SSH", ConnectionID: 2}, "000b080710012a035353483802"},
	{"service ids", Message{Type: TypeServiceIDs, AvailableServiceIDs: []string{"SSH", "HTTP"}}, "000d08053203535348320448545450"},
	{"session reset", Message{Type: TypeSessionReset}, "00020804"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			want, err := hex.DecodeString(v.hex)
			if err != nil {
				t.Fatal(err)
			}
			got, err := AppendFrame(nil, &v.msg)
			if err != nil {
				t.Fatalf("AppendFrame: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendFrame = %x, want %x", got, want)
			}
			if sz := v.msg.Size(); sz != len(want)-LengthSize {
				t.Errorf("Size = %d, want %d", sz, len(want)-LengthSize)
			}
			var m Message
			if err := NewFrameReader(bytes.NewReader(want)).ReadMessage(&m); err != nil {
				t.Fatalf("ReadMessage: %v", err)
			}
			if !equal(&m, &v.msg) {
				t.Fatalf("decoded %+v, want %+v", m, v.msg)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []Message{
		{Type: TypeData, StreamID: -1, Payload: bytes.Repeat([]byte{7}, MaxPayload), ServiceID: "svc", ConnectionID: 1<<32 - 1},
		{Type: Type(99), Ignorable: true},
		{Type: TypeConnectionStart, StreamID: 1<<31 - 1, ServiceID: "a:b_c-d", ConnectionID: 3},
		{},
	}
	for _, want := range tests {
		b, err := want.Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		var got Message
		if err := got.Unmarshal(b); err != nil {
			t.Fatalf("Unmarshal(%x): %v", b, err)
		}
		if !equal(&got, &want) {
			t.Fatalf("round trip of %+v gave %+v", want, got)
		}
	}
}

func TestIgnorableLast(t *testing.T) {
	b, _ := (&Message{Type: Type(42), Ignorable: true, StreamID: 1}).Marshal(nil)
	if !bytes.HasSuffix(b, []byte{0x18, 0x01}) {
		t.Fatalf("ignorable must be the last field (aws-c-iot quirk): %x", b)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		want error
	}{
		{"truncated varint", "0880", ErrMalformed},
		{"truncated bytes", "2205aa", ErrMalformed},
		{"truncated group", "0b", ErrMalformed},
		{"field number zero", "0001", ErrMalformed},
		{"end group without start", "0c", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tt.hex)
			var m Message
			if err := m.Unmarshal(b); !errors.Is(err, tt.want) {
				t.Fatalf("Unmarshal(%s) = %v, want %v", tt.hex, err, tt.want)
			}
		})
	}
	big := protowire.AppendBytes([]byte{0x22}, make([]byte, MaxPayload+1))
	var m Message
	if err := m.Unmarshal(big); err == nil || !strings.Contains(err.Error(), "64512") {
		t.Fatalf("oversized payload: %v", err)
	}
}

func TestUnknownFieldsSkipped(t *testing.T) {
	// type=DATA, field 9 varint, payload as varint (wrong wire type: skipped like the reference does),, field 10 bytes, field 11 fixed32, field 12 fixed64, streamId=5
	b, _ := hex.DecodeString("0801" + "4801" + "2001" + "52020102" + "5d01020304" + "610102030405060708" + "1005")
	var m Message
	if err := m.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if m.Type != TypeData || m.StreamID != 5 {
		t.Fatalf("got %+v", m)
	}
}

func TestMarshalPayloadTooLarge(t *testing.T) {
	m := Message{Type: TypeData, StreamID: 1, Payload: make([]byte, MaxPayload+1)}
	if _, err := AppendFrame(nil, &m); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("AppendFrame = %v, want ErrPayloadTooLarge", err)
	}
	m = Message{Type: TypeServiceIDs, AvailableServiceIDs: []string{strings.Repeat("x", 70000)}}
	if out, err := AppendFrame([]byte{1}, &m); !errors.Is(err, ErrFrameTooLarge) || len(out) != 1 {
		t.Fatalf("AppendFrame = %v (len %d), want ErrFrameTooLarge and dst unchanged", err, len(out))
	}
	if _, err := AppendFrame(nil, &Message{}); !errors.Is(err, ErrBadLength) {
		t.Fatalf("empty message: %v", err)
	}
}

func TestServiceIDReusedWithoutAlloc(t *testing.T) {
	b, _ := (&Message{Type: TypeData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("x")}).Marshal(nil)
	var m Message
	allocs := testing.AllocsPerRun(100, func() {
		if err := m.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Unmarshal of DATA allocates %v times, want 0", allocs)
	}
}

func TestTypeString(t *testing.T) {
	if TypeConnectionReset.String() != "CONNECTION_RESET" || Type(12).String() != "TYPE_12" {
		t.Fatal(TypeConnectionReset.String(), Type(12).String())
	}
}

func equal(a, b *Message) bool {
	return a.Type == b.Type && a.StreamID == b.StreamID && a.Ignorable == b.Ignorable &&
		bytes.Equal(a.Payload, b.Payload) && a.ServiceID == b.ServiceID &&
		a.ConnectionID == b.ConnectionID &&
		(len(a.AvailableServiceIDs) == 0 && len(b.AvailableServiceIDs) == 0 ||
			reflect.DeepEqual(a.AvailableServiceIDs, b.AvailableServiceIDs))
}

func TestValidRegion(t *testing.T) {
	for _, r := range []string{"us-east-1", "eu-central-2", "ap-southeast-5", "us-gov-west-1", "cn-northwest-1",
		"us-isob-east-1", "il-central-1", "mx-central-1", "ca-west-1", "ap-northeast-3"} {
		if !ValidRegion(r) {
			t.Errorf("ValidRegion(%q) = false", r)
		}
	}
	for _, r := range []string{"", "attacker", "s3", "-", "US-EAST-1", "us-east-0", "us-east-1.evil.com", "us-east-1x",
		"evil.com/x", "useast-1", "us-middle-1", strings.Repeat("a", 64), strings.Repeat("a", 65)} {
		if ValidRegion(r) {
			t.Errorf("ValidRegion(%q) = true", r)
		}
	}
}
