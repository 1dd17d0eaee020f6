package protocol

import (
	"bytes"
	"errors"
	"io"
	"slices"
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

// testLender lends FrameReader buffers and poisons each one given back,
// so that a reader that kept using a buffer after giving it back reads
// garbage.
type testLender struct{ gets, out int }

func (l *testLender) Get() []byte {
	l.gets++
	l.out++
	return make([]byte, ReadBufferSize)
}

func (l *testLender) Put(b []byte) {
	l.out--
	if len(b) != ReadBufferSize {
		panic("a buffer the lender did not lend")
	}
	for i := range b {
		b[i] = 0xaa
	}
}

// frameReaders are the two kinds of FrameReader, for tests that run on
// both; lend is nil for the one that owns its buffer.
var frameReaders = map[string]func(io.Reader, *testLender) *FrameReader{
	"own":     func(r io.Reader, _ *testLender) *FrameReader { return NewFrameReader(r) },
	"lending": func(r io.Reader, l *testLender) *FrameReader { return NewLendingFrameReader(r, l) },
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
	for kind, newReader := range frameReaders {
		for name, mk := range readers {
			t.Run(kind+"/"+name, func(t *testing.T) {
				lend := &testLender{}
				fr := newReader(mk(), lend)
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
				if lend.out != 0 {
					t.Fatalf("at the end of the stream %d buffers are still lent", lend.out)
				}
			})
		}
	}
}

// msgReader returns messages as a WebSocket reader does: a read never
// crosses the end of a message, and returns at most max bytes (a TLS
// record).
type msgReader struct {
	msgs [][]byte
	max  int
}

func (r *msgReader) Read(p []byte) (int, error) {
	for len(r.msgs) > 0 && len(r.msgs[0]) == 0 {
		r.msgs = r.msgs[1:]
	}
	if len(r.msgs) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.max)], r.msgs[0])
	r.msgs[0] = r.msgs[0][n:]
	return n, nil
}

// TestLendingFrameReaderBorrows checks when a lending reader holds a large
// buffer: never for frames that fit its small one (interactive traffic),
// once per message of large frames (it gives the buffer back when a
// message ends with a frame), and no longer once nothing is buffered.
func TestLendingFrameReaderBorrows(t *testing.T) {
	frame := func(payload int) []byte {
		b, err := AppendFrame(nil, &Message{Type: TypeData, StreamID: 1, ConnectionID: 1, Payload: make([]byte, payload)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	small, large := frame(100), frame(MaxPayload)
	join := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	tests := []struct {
		name     string
		msgs     [][]byte
		max      int // bytes a read returns at most
		wantGets int
	}{
		{"small frames, one byte a read", [][]byte{join(small, small), small}, 1, 0},
		{"small frames, many a read", [][]byte{join(small, small, small, small)}, MaxWSMessage, 0},
		{"small frames filling the small buffer", [][]byte{bytes.Repeat(small, 100)}, 1000, 0},
		{"large frames, two a message", [][]byte{join(large, large), join(large, large)}, 16 << 10, 2},
		{"large frames, one a message", [][]byte{large, large, large}, MaxWSMessage, 3},
		{"large frame across messages", [][]byte{large[:30000], large[30000:]}, MaxWSMessage, 1},
		{"large then small", [][]byte{join(large, small), small}, 16 << 10, 1},
		{"small then large", [][]byte{join(small, large)}, 16 << 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lend := &testLender{}
			fr := NewLendingFrameReader(&msgReader{msgs: slices.Clone(tt.msgs), max: tt.max}, lend)
			ref := NewFrameReader(bytes.NewReader(join(tt.msgs...)))
			for i := 0; ; i++ {
				b, err := fr.Next()
				rb, rerr := ref.Next()
				if err != rerr || !bytes.Equal(b, rb) {
					t.Fatalf("frame %d: %d bytes, %v; want %d bytes, %v", i, len(b), err, len(rb), rerr)
				}
				if err != nil {
					break
				}
			}
			if lend.gets != tt.wantGets || lend.out != 0 {
				t.Fatalf("borrowed %d buffers (want %d), %d not given back", lend.gets, tt.wantGets, lend.out)
			}
		})
	}
	t.Run("release mid-frame", func(t *testing.T) {
		lend := &testLender{}
		fr := NewLendingFrameReader(&chunkReader{b: large[:len(large)-1], sizes: []int{8 << 10}}, lend)
		if _, err := fr.Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("Next = %v", err)
		}
		if lend.out != 1 {
			t.Fatalf("%d lent inside a frame, want 1", lend.out)
		}
		fr.Release()
		if lend.out != 0 {
			t.Fatalf("%d lent after Release", lend.out)
		}
	})
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
	for kind, newReader := range frameReaders {
		for _, tt := range tests {
			t.Run(kind+"/"+tt.name, func(t *testing.T) {
				fr := newReader(bytes.NewReader(tt.in), &testLender{})
				if _, err := fr.Next(); !errors.Is(err, tt.want) {
					t.Fatalf("Next = %v, want %v", err, tt.want)
				}
				if _, err := fr.Next(); !errors.Is(err, tt.want) {
					t.Fatalf("second Next = %v, want sticky %v", err, tt.want)
				}
			})
		}
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
