package protocol

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// FuzzFrameReader feeds arbitrary bytes, split at arbitrary read sizes, to the
// frame reader; every frame that decodes must re-encode to a frame that
// decodes to the same message. A lending reader fed the same reads must
// return the same frames and errors, and give back what it borrowed.
func FuzzFrameReader(f *testing.F) {
	for _, v := range vectors {
		b, _ := AppendFrame(nil, &v.msg)
		f.Add(b, uint8(1))
		f.Add(append(b, b...), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		sizes := []int{int(chunk) + 1, 7, 1}
		fr := NewFrameReader(&chunkReader{b: in, sizes: sizes})
		lend := &testLender{}
		lr := NewLendingFrameReader(&chunkReader{b: in, sizes: sizes}, lend)
		for {
			b, err := fr.Next()
			lb, lerr := lr.Next()
			if lerr != err || !bytes.Equal(lb, b) {
				t.Fatalf("lending reader: %d bytes, %v; owning reader: %d bytes, %v", len(lb), lerr, len(b), err)
			}
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrBadLength) {
					t.Fatalf("unexpected error %v", err)
				}
				lr.Release()
				if lend.out != 0 {
					t.Fatalf("%d buffers not given back", lend.out)
				}
				return
			}
			var m Message
			if err := m.Unmarshal(b); err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrPayloadTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				continue
			}
			checkRoundTrip(t, &m)
		}
	})
}

// FuzzUnmarshal decodes arbitrary bytes and compares the result with the
// reference protobuf runtime decoding the same bytes against the schema.
func FuzzUnmarshal(f *testing.F) {
	for _, v := range vectors {
		b, _ := v.msg.Marshal(nil)
		f.Add(b)
	}
	f.Add([]byte{0x08, 0x2a, 0x18, 0x01, 0x48, 0x01})
	ref := refDescriptor(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		var m Message
		err := m.Unmarshal(in)
		dm := dynamicpb.NewMessage(ref)
		refErr := proto.UnmarshalOptions{}.Unmarshal(in, dm)
		if err != nil {
			// The reference accepts payloads over 64512 bytes; nothing else
			// it accepts may be rejected.
			if refErr == nil && !errors.Is(err, ErrPayloadTooLarge) {
				t.Fatalf("rejected what the reference accepts: %v", err)
			}
			return
		}
		if refErr == nil {
			compareRef(t, &m, dm)
		}
		checkRoundTrip(t, &m)
	})
}

func checkRoundTrip(t *testing.T, m *Message) {
	t.Helper()
	frame, err := AppendFrame(nil, m)
	if err != nil {
		if errors.Is(err, ErrBadLength) && m.Size() == 0 {
			return
		}
		if errors.Is(err, ErrFrameTooLarge) {
			return
		}
		t.Fatalf("re-encode %+v: %v", m, err)
	}
	var back Message
	if err := NewFrameReader(bytes.NewReader(frame)).ReadMessage(&back); err != nil {
		t.Fatalf("decode re-encoded: %v", err)
	}
	if !equal(&back, m) {
		t.Fatalf("round trip changed %+v to %+v", m, back)
	}
}

func compareRef(t *testing.T, m *Message, dm *dynamicpb.Message) {
	t.Helper()
	fd := dm.Descriptor().Fields()
	get := func(name string) protoreflect.Value { return dm.Get(fd.ByName(protoreflect.Name(name))) }
	if int32(get("type").Enum()) != int32(m.Type) || int32(get("streamId").Int()) != m.StreamID ||
		get("ignorable").Bool() != m.Ignorable || !bytes.Equal(get("payload").Bytes(), m.Payload) ||
		get("serviceId").String() != m.ServiceID || uint32(get("connectionId").Uint()) != m.ConnectionID {
		t.Fatalf("decoded %+v, reference %v", m, dm)
	}
	ids := get("availableServiceIds").List()
	if ids.Len() != len(m.AvailableServiceIDs) {
		t.Fatalf("service ids %v, reference %v", m.AvailableServiceIDs, ids)
	}
	for i := range ids.Len() {
		if ids.Get(i).String() != m.AvailableServiceIDs[i] {
			t.Fatalf("service ids %v, reference %v", m.AvailableServiceIDs, ids)
		}
	}
}

// refDescriptor builds the Message descriptor of PROTOCOL.md §5.3 for the
// reference protobuf runtime.
func refDescriptor(tb testing.TB) protoreflect.MessageDescriptor {
	tb.Helper()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(), Label: label.Enum(), JsonName: proto.String(name)}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	var values []*descriptorpb.EnumValueDescriptorProto
	for i, n := range typeNames {
		values = append(values, &descriptorpb.EnumValueDescriptorProto{Name: proto.String(n), Number: proto.Int32(int32(i))})
	}
	file := &descriptorpb.FileDescriptorProto{
		Name: proto.String("Message.proto"), Package: proto.String("com.amazonaws.iot.securedtunneling"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name:     proto.String("Message"),
			EnumType: []*descriptorpb.EnumDescriptorProto{{Name: proto.String("Type"), Value: values}},
			Field: []*descriptorpb.FieldDescriptorProto{
				field("type", 1, descriptorpb.FieldDescriptorProto_TYPE_ENUM, opt, ".com.amazonaws.iot.securedtunneling.Message.Type"),
				field("streamId", 2, descriptorpb.FieldDescriptorProto_TYPE_INT32, opt, ""),
				field("ignorable", 3, descriptorpb.FieldDescriptorProto_TYPE_BOOL, opt, ""),
				field("payload", 4, descriptorpb.FieldDescriptorProto_TYPE_BYTES, opt, ""),
				field("serviceId", 5, descriptorpb.FieldDescriptorProto_TYPE_STRING, opt, ""),
				field("availableServiceIds", 6, descriptorpb.FieldDescriptorProto_TYPE_STRING, rep, ""),
				field("connectionId", 7, descriptorpb.FieldDescriptorProto_TYPE_UINT32, opt, ""),
			},
		}},
	}
	fd, err := protodesc.NewFile(file, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return fd.Messages().Get(0)
}

// TestReferenceEncoding checks that our encoding equals the reference
// runtime's deterministic encoding for the §5.3 vectors.
func TestReferenceEncoding(t *testing.T) {
	ref := refDescriptor(t)
	for _, v := range vectors {
		body, _ := v.msg.Marshal(nil)
		dm := dynamicpb.NewMessage(ref)
		if err := proto.Unmarshal(body, dm); err != nil {
			t.Fatalf("%s: reference cannot decode: %v", v.name, err)
		}
		refBody, err := proto.MarshalOptions{Deterministic: true}.Marshal(dm)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, refBody) {
			t.Fatalf("%s: ours %x, reference %x", v.name, body, refBody)
		}
	}
}
