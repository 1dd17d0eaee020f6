//go:build unix

package tunnel

import (
	"bytes"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestTryReadWrite: the non-blocking attempts take what the socket has
// (or has room for) and return 0 instead of waiting.
func TestTryReadWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n := tryRead(rc, buf); n != 0 {
		t.Fatalf("tryRead with nothing sent = %d, want 0", n)
	}
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var n int
	waitUntil(t, "the bytes to arrive", func() bool { n = tryRead(rc, buf); return n > 0 })
	if string(buf[:n]) != "hello" {
		t.Fatalf("tryRead = %q, want %q", buf[:n], "hello")
	}
	if n := tryWrite(rc, []byte("world")); n != 5 {
		t.Fatalf("tryWrite = %d, want 5", n)
	}
	got := make([]byte, 5)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(got); err != nil || !bytes.Equal(got, []byte("world")) {
		t.Fatalf("peer read %q, %v", got, err)
	}
	// A socket whose buffers are full takes nothing more, without blocking.
	big := make([]byte, 1<<20)
	for i := 0; i < 64 && tryWrite(rc, big) > 0; i++ {
	}
	if n := tryWrite(rc, big); n != 0 {
		t.Fatalf("tryWrite on a full socket = %d, want 0", n)
	}
	// Once the peer is gone a read attempt gets 0 (before or after the
	// FIN or RST arrives); the blocking Read then reports why.
	_ = peer.Close()
	if n := tryRead(rc, buf); n != 0 {
		t.Fatalf("tryRead at EOF = %d, want 0", n)
	}
}
