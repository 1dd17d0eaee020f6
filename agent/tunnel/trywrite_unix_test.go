//go:build unix

package tunnel

import (
	"bytes"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTryReadWrite: the non-blocking attempts take what the socket has
// (or has room for) and return 0 instead of waiting.
func TestTryReadWrite(t *testing.T) {
	peer, c := tcpPair(t)
	rc := rawConn(t, c)
	tryRead, tryWrite := newTryReader(rc).try, newTryWriter(rc).try
	buf := make([]byte, 64)
	if n := tryRead(buf); n != 0 {
		t.Fatalf("tryRead with nothing sent = %d, want 0", n)
	}
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var n int
	waitUntil(t, "the bytes to arrive", func() bool { n = tryRead(buf); return n > 0 })
	if string(buf[:n]) != "hello" {
		t.Fatalf("tryRead = %q, want %q", buf[:n], "hello")
	}
	if n := tryWrite([]byte("world")); n != 5 {
		t.Fatalf("tryWrite = %d, want 5", n)
	}
	got := make([]byte, 5)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(got); err != nil || !bytes.Equal(got, []byte("world")) {
		t.Fatalf("peer read %q, %v", got, err)
	}
	// A socket whose buffers are full takes nothing more, without blocking.
	big := make([]byte, 1<<20)
	for i := 0; i < 64 && tryWrite(big) > 0; i++ {
	}
	if n := tryWrite(big); n != 0 {
		t.Fatalf("tryWrite on a full socket = %d, want 0", n)
	}
	// Once the peer is gone a read attempt gets 0 (before or after the
	// FIN or RST arrives); the blocking Read then reports why.
	_ = peer.Close()
	if n := tryRead(buf); n != 0 {
		t.Fatalf("tryRead at EOF = %d, want 0", n)
	}
}

// TestReadableWaiter: the wait returns once the socket has data (which the
// next read still gets), at EOF and once the socket is closed, and not
// while nothing arrived.
func TestReadableWaiter(t *testing.T) {
	tests := []struct {
		name string
		act  func(peer, c net.Conn)
		want string // what a read then gets
	}{
		{"data", func(peer, _ net.Conn) { _, _ = peer.Write([]byte("hi")) }, "hi"},
		{"EOF", func(peer, _ net.Conn) { _ = peer.Close() }, "EOF"},
		{"closed", func(_, c net.Conn) { _ = c.Close() }, "use of closed network connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer, c := tcpPair(t)
			rc, err := c.(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			wait := readableWaiter(rc)
			done := make(chan struct{})
			go func() { wait(); close(done) }()
			select {
			case <-done:
				t.Fatal("the wait returned with nothing to read")
			case <-time.After(50 * time.Millisecond):
			}
			tt.act(peer, c)
			<-done
			buf := make([]byte, 8)
			n, err := c.Read(buf)
			got := string(buf[:n])
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("read after the wait = %q, want %q", got, tt.want)
			}
			// Data already there: the wait returns at once.
			if tt.name == "data" {
				_, _ = peer.Write([]byte("again"))
				waitUntil(t, "the bytes to arrive", func() bool {
					var p [8]byte
					m, _, _ := syscall.Recvfrom(sysfd(t, rc), p[:], syscall.MSG_PEEK)
					return m == 5
				})
				wait()
				if n, _ := c.Read(buf); string(buf[:n]) != "again" {
					t.Errorf("second read = %q", buf[:n])
				}
			}
		})
	}
}

func sysfd(t *testing.T, rc syscall.RawConn) int {
	var fd int
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// tcpPair is a connected loopback pair, closed at the end of the test.
func tcpPair(t *testing.T) (peer, c net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	c, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return peer, c
}

func rawConn(t *testing.T, c net.Conn) syscall.RawConn {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestTryAllocatesNothing: a direct write is made for every DATA frame
// that finds its local socket idle, so an attempt must not allocate.
func TestTryAllocatesNothing(t *testing.T) {
	_, c := tcpPair(t)
	rc := rawConn(t, c)
	w, r := newTryWriter(rc), newTryReader(rc)
	buf := make([]byte, 64)
	if a := testing.AllocsPerRun(100, func() { w.try(buf[:1]) }); a != 0 {
		t.Errorf("a write attempt allocates %v times", a)
	}
	if a := testing.AllocsPerRun(100, func() { r.try(buf) }); a != 0 {
		t.Errorf("a read attempt allocates %v times", a)
	}
}
