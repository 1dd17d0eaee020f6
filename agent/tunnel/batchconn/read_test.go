package batchconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// arrivals is a net.Conn whose reads return what a socket would hold:
// the data comes in segments (what arrived since the last read), and a
// read returns at most the rest of the current segment.
type arrivals struct {
	net.Conn
	segs  [][]byte
	reads int
	err   error // after the last segment (io.EOF if nil)
}

func (a *arrivals) Read(p []byte) (int, error) {
	a.reads++
	for len(a.segs) > 0 && len(a.segs[0]) == 0 {
		a.segs = a.segs[1:]
	}
	if len(a.segs) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		return 0, io.EOF
	}
	n := copy(p, a.segs[0])
	a.segs[0] = a.segs[0][n:]
	return n, nil
}

// TestReadAhead reads segmented input through a Conn with reads of a
// given size, as TLS does, and checks the bytes, the reads that reached
// the socket and that no read-ahead buffer is held once a read that did
// not fill it has been consumed.
func TestReadAhead(t *testing.T) {
	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}
	tests := []struct {
		name      string
		segs      []int // segment sizes
		p         int   // the caller's read size
		wantReads int   // reads that reach the socket, EOF included
	}{
		{"small messages go straight through", []int{100, 200, 50}, 1000, 4},
		{"a burst is read ahead", []int{1 << 20}, 16 << 10, 1 + (1<<20-16<<10)/readSize + 1 + 1},
		{"a read as large as the buffer goes straight through", []int{1 << 20}, readSize, 1<<20/readSize + 1},
		{"burst then message", []int{100 << 10, 300}, 16 << 10, 1 + 2 + 1 + 1},
		// straight 1, ahead 9, straight 1, ahead 2, EOF
		{"one byte reads", []int{10, 3}, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []byte
			a := &arrivals{}
			for i, n := range tt.segs {
				s := seq(n + i)[i:]
				want = append(want, s...)
				a.segs = append(a.segs, s)
			}
			c := New(a)
			var got []byte
			p := make([]byte, tt.p)
			for {
				n, err := c.Read(p)
				got = append(got, p[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if c.rbuf != nil && c.rpos == c.rend && !c.ahead {
					t.Fatal("a read-ahead buffer held with nothing in it")
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want %d (or different)", len(got), len(want))
			}
			if a.reads != tt.wantReads {
				t.Errorf("%d reads reached the socket, want %d", a.reads, tt.wantReads)
			}
			if c.rbuf != nil {
				t.Error("a read-ahead buffer held at the end")
			}
		})
	}
}

// TestReadAheadError: data read ahead comes before the error that ended
// it, and the buffer goes back.
func TestReadAheadError(t *testing.T) {
	boom := errors.New("reset")
	a := &arrivals{segs: [][]byte{bytes.Repeat([]byte{1}, 20), bytes.Repeat([]byte{2}, 30)}, err: boom}
	c := New(a)
	p := make([]byte, 20)
	if n, err := c.Read(p); n != 20 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	var got []byte
	var err error
	for err == nil {
		var n int
		n, err = c.Read(p)
		got = append(got, p[:n]...)
	}
	if !errors.Is(err, boom) || !bytes.Equal(got, bytes.Repeat([]byte{2}, 30)) {
		t.Fatalf("got %d bytes then %v", len(got), err)
	}
	if c.rbuf != nil {
		t.Fatal("read-ahead buffer held after the error")
	}
}

// TestReadBufferReleased: a burst leaves its read-ahead buffer on the free
// list, and ReleaseIdle empties it.
func TestReadBufferReleased(t *testing.T) {
	ReleaseIdle()
	c := New(&arrivals{segs: [][]byte{make([]byte, 100<<10)}})
	if _, err := io.Copy(io.Discard, io.LimitReader(c, 100<<10)); err != nil {
		t.Fatal(err)
	}
	if len(freeReads) != 1 {
		t.Fatalf("%d free read buffers after a burst, want 1", len(freeReads))
	}
	ReleaseIdle()
	if len(freeReads) != 0 {
		t.Fatalf("%d free read buffers after ReleaseIdle", len(freeReads))
	}
}
