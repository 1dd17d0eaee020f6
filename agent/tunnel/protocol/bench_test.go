package protocol

import (
	"bytes"
	"testing"
)

func BenchmarkAppendFrame(b *testing.B) {
	for _, size := range []int{64, 16384, MaxPayload} {
		b.Run(sizeName(size), func(b *testing.B) {
			m := Message{Type: TypeData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: make([]byte, size)}
			buf := make([]byte, 0, MaxWSMessage)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = AppendFrame(buf[:0], &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFrameReader(b *testing.B) {
	for _, size := range []int{64, 16384, MaxPayload} {
		b.Run(sizeName(size), func(b *testing.B) {
			m := Message{Type: TypeData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: make([]byte, size)}
			var stream []byte
			for len(stream) < 1<<20 {
				stream, _ = AppendFrame(stream, &m)
			}
			frames := 0
			for rd := NewFrameReader(bytes.NewReader(stream)); rd.ReadMessage(&m) == nil; {
				frames++
			}
			r := bytes.NewReader(stream)
			fr := NewFrameReader(r)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if n == frames {
					r.Reset(stream)
					fr.Reset(r)
					n = 0
				}
				if err := fr.ReadMessage(&m); err != nil {
					b.Fatal(err)
				}
				n++
			}
		})
	}
}

func sizeName(n int) string {
	switch n {
	case 64:
		return "64B"
	case 16384:
		return "16KiB"
	default:
		return "63KiB"
	}
}

// BenchmarkFrameReaderMessages reads a bulk stream as the tunnel receives
// it: WebSocket messages of two full DATA frames, read at most a TLS
// record (16 KiB) at a time, by a reader that owns its buffer and by one
// that borrows it (and gives it back at the end of every message).
func BenchmarkFrameReaderMessages(b *testing.B) {
	m := Message{Type: TypeData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: make([]byte, MaxPayload)}
	msg, _ := AppendFrame(nil, &m)
	msg, _ = AppendFrame(msg, &m)
	const perRound = 64
	for _, kind := range []string{"own", "lending"} {
		b.Run(kind, func(b *testing.B) {
			r := &msgReader{}
			fr := NewFrameReader(r)
			if kind == "lending" {
				fr = NewLendingFrameReader(r, &oneLender{})
			}
			b.SetBytes(int64(len(m.Payload)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if n == 0 {
					r.msgs, r.max = r.msgs[:0], 16<<10
					for range perRound {
						r.msgs = append(r.msgs, msg)
					}
					n = 2 * perRound
				}
				if err := fr.ReadMessage(&m); err != nil {
					b.Fatal(err)
				}
				n--
			}
		})
	}
}

// oneLender keeps one buffer, as the tunnel's free list does for one link.
type oneLender struct{ free []byte }

func (l *oneLender) Get() []byte {
	if b := l.free; b != nil {
		l.free = nil
		return b
	}
	return make([]byte, ReadBufferSize)
}

func (l *oneLender) Put(b []byte) { l.free = b }
