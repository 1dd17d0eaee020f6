package main

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestBulkAndEcho runs the load generator against the bench's own services
// over loopback, both directions, and a corrupting relay that must be caught.
func TestBulkAndEcho(t *testing.T) {
	sink, err := startServer(handleSink)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	gen, err := startServer(handleGen)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	echo, err := startServer(handleEcho)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tests := []struct {
		name    string
		move    bulkFunc
		addr    string
		streams int
	}{
		{"upload 1", upload, sink.Addr(), 1},
		{"upload 8", upload, sink.Addr(), 8},
		{"download 1", download, gen.Addr(), 1},
		{"download 8", download, gen.Addr(), 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rate, n, err := runBulk(ctx, tt.move, directDial(tt.addr), tt.streams, 32*chunkSize, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if n != 32*chunkSize || rate <= 0 {
				t.Errorf("moved %d bytes at %v B/s, want %d", n, rate, 32*chunkSize)
			}
		})
	}

	c, err := directDial(echo.Addr())(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := pingConn(ctx, c, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	rtts, err := measureLatency(ctx, c, 10*time.Millisecond, 5)
	if err != nil || len(rtts) == 0 {
		t.Fatalf("latency: %d samples, %v", len(rtts), err)
	}
}

// TestUploadDetectsCorruption relays to the sink through a proxy that flips
// one payload byte: the digest check must report it.
func TestUploadDetectsCorruption(t *testing.T) {
	sink, err := startServer(handleSink)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	relay, err := startServer(func(c net.Conn) {
		up, err := net.Dial("tcp", sink.Addr())
		if err != nil {
			return
		}
		defer up.Close()
		go func() { _, _ = io.Copy(c, up) }() // ends when c or up closes
		buf := make([]byte, 4096)
		flipped := false
		for {
			n, err := c.Read(buf)
			if n > 100 && !flipped {
				buf[100] ^= 0xff
				flipped = true
			}
			if _, werr := up.Write(buf[:n]); werr != nil || err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, err = runBulk(ctx, upload, directDial(relay.Addr()), 1, 4*chunkSize, 10*time.Second)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("got %v, want ErrDigestMismatch", err)
	}
}
