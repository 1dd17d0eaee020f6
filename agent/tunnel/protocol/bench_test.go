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
