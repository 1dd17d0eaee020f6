package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
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

// TestLatencyRep runs two paths to the echo service in turns and one to a
// closed port: the two get a p50 and a p99 each, the third is reported as
// an error, and neither stops the others.
func TestLatencyRep(t *testing.T) {
	echo, err := startServer(handleEcho)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	b := &bench{log: io.Discard, rep: &report{Started: time.Now()}, opts: options{latDur: 2 * latSlice}}
	var one, two, dead latencySeries
	paths := []*latencyPath{
		{what: "one", addr: echo.Addr(), s: &one},
		{what: "dead", addr: closed, s: &dead},
		{what: "two", addr: echo.Addr(), pids: []int{os.Getpid()}, s: &two},
	}
	b.latencyRep(context.Background(), paths, 1)
	for _, s := range []*latencySeries{&one, &two} {
		if len(s.p50) != 1 || len(s.p99) != 1 || s.p50[0] <= 0 || s.p99[0] < s.p50[0] {
			t.Errorf("p50 %v, p99 %v: want one each, 0 < p50 <= p99", s.p50, s.p99)
		}
	}
	if len(two.cpu) != 1 || len(two.switches) != 1 || len(one.cpu) != 0 {
		t.Errorf("CPU per round trip: %v with pids, %v without; want one and none", two.cpu, one.cpu)
	}
	if len(dead.p50) != 0 || len(b.rep.Errors) != 1 || !strings.Contains(b.rep.Errors[0], "dead latency") {
		t.Errorf("dead path: p50 %v, errors %q; want none and one error naming it", dead.p50, b.rep.Errors)
	}
	// Two turns of 500 ms, the first 150 ms of each not counted.
	if n := len(paths[0].rtts); n < 2 {
		t.Errorf("%d round trips counted on path one", n)
	}
}
