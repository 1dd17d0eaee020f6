package demo

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestEchoOnceResetMidway: a peer that stops echoing and closes must make echoOnce
// return an error, never hang.
func TestEchoOnceResetMidway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 300<<10) // echo a little, then close
		n, _ := c.Read(buf[:64<<10])
		c.Write(buf[:n])
		c.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- echoOnce(context.Background(), ln.Addr().String(), 1, 8<<20) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("echoOnce succeeded against a peer that stopped")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("echoOnce hung after the peer stopped")
	}
}
