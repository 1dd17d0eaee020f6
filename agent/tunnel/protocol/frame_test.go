package protocol

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func testStream(t testing.TB) ([]byte, []Message) {
	t.Helper()
	var msgs []Message
	for i := range 50 {
		msgs = append(msgs, Message{Type: TypeData, StreamID: int32(i + 1), ServiceID: "SSH", ConnectionID: 1,
			Payload: bytes.Repeat([]byte{byte(i)}, (i*7919)%MaxPayload+1)})
	}
	msgs = append(msgs, Message{Type: TypeSessionReset})
	var stream []byte
	for i := range msgs {
		var err error
		if stream, err = AppendFrame(stream, &msgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return stream, msgs
}

// chunkReader returns the stream in reads of sizes cycling through sizes,
// to split frames across reads and merge many frames into one read.
type chunkReader struct {
	b     []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(c.sizes[c.i%len(c.sizes)], len(p), len(c.b))
	c.i++
	n = copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func TestFrameReaderBoundaries(t *testing.T) {
	stream, msgs := testStream(t)
	readers := map[string]func() io.Reader{
		"whole":     func() io.Reader { return bytes.NewReader(stream) },
		"one byte":  func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"odd sizes": func() io.Reader { return &chunkReader{b: stream, sizes: []int{1, 3, 70000, 131076, 2, 5000}} },
		"ws size":   func() io.Reader { return &chunkReader{b: stream, sizes: []int{MaxWSMessage}} },
		"data err":  func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			fr := NewFrameReader(mk())
			var m Message
			for i := range msgs {
				if err := fr.ReadMessage(&m); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !equal(&m, &msgs[i]) {
					t.Fatalf("frame %d mismatch", i)
				}
			}
			if err := fr.ReadMessage(&m); err != io.EOF {
				t.Fatalf("after last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestFrameReaderErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"zero length", []byte{0, 0, 8, 1}, ErrBadLength},
		{"eof in prefix", []byte{0}, io.ErrUnexpectedEOF},
		{"eof in body", []byte{0, 4, 8, 2}, io.ErrUnexpectedEOF},
		{"empty", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := NewFrameReader(bytes.NewReader(tt.in))
			if _, err := fr.Next(); !errors.Is(err, tt.want) {
				t.Fatalf("Next = %v, want %v", err, tt.want)
			}
			if _, err := fr.Next(); !errors.Is(err, tt.want) {
				t.Fatalf("second Next = %v, want sticky %v", err, tt.want)
			}
		})
	}
	errRead := errors.New("boom")
	fr := NewFrameReader(iotest.ErrReader(errRead))
	if _, err := fr.Next(); !errors.Is(err, errRead) {
		t.Fatalf("reader error: %v", err)
	}
}

func TestFrameReaderMalformedMessageKeepsFraming(t *testing.T) {
	in := []byte{0, 2, 0x08, 0x80} // truncated varint inside a well-framed body
	in, _ = AppendFrame(in, &Message{Type: TypeSessionReset})
	fr := NewFrameReader(bytes.NewReader(in))
	var m Message
	if err := fr.ReadMessage(&m); !errors.Is(err, ErrMalformed) {
		t.Fatalf("first: %v", err)
	}
	if err := fr.ReadMessage(&m); err != nil || m.Type != TypeSessionReset {
		t.Fatalf("second: %v %+v", err, m)
	}
}

func TestFrameReaderMaxFrame(t *testing.T) {
	body := make([]byte, MaxFrameBody)
	in := append([]byte{0xff, 0xff}, body...)
	in = append(in, in...)
	fr := NewFrameReader(&chunkReader{b: in, sizes: []int{MaxWSMessage}})
	for range 2 {
		b, err := fr.Next()
		if err != nil || len(b) != MaxFrameBody {
			t.Fatalf("Next = %d bytes, %v", len(b), err)
		}
	}
}

func TestNoProgress(t *testing.T) {
	fr := NewFrameReader(zeroReader{})
	if _, err := fr.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("Next = %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestEncodeData(t *testing.T) {
	tests := []Message{
		{Type: TypeData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("hi")},
		{Type: TypeData, StreamID: -5, Payload: bytes.Repeat([]byte{1}, MaxPayload)},
		{Type: TypeData, StreamID: 300, ServiceID: "a", Payload: bytes.Repeat([]byte{2}, 200)},
		{Type: TypeData},
	}
	for _, m := range tests {
		want, err := AppendFrame(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, DataHeadroom+MaxPayload+200)
		copy(buf[DataHeadroom:], m.Payload)
		got, err := EncodeData(buf, len(m.Payload), m.StreamID, m.ServiceID, m.ConnectionID)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("EncodeData = %x, want %x", got[:min(len(got), 40)], want[:min(len(want), 40)])
		}
	}
	if _, err := EncodeData(make([]byte, DataHeadroom+MaxPayload+1), MaxPayload+1, 1, "", 0); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatal(err)
	}
}
