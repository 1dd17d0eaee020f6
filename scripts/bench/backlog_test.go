package main

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// TestHoldIdleConnsPaced: behind a listener with a backlog of 0 whose owner
// accepts the next connection only once the last one has been served (the
// C++ source accepts, starts the stream, then accepts again), the 100 idle
// connections all open: each is dialled after the previous one answered.
// Dialling them all first would leave the third SYN unanswered.
func TestHoldIdleConnsPaced(t *testing.T) {
	ln, err := tunneltest.ListenBacklog0()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			var b [1]byte
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, b[:]); err != nil {
				continue
			}
			_, _ = c.Write(b[:])
		}
	})
	defer func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	b := &bench{log: io.Discard, rep: &report{Started: time.Now()}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	read := false
	if err := b.holdIdleConns(ctx, ln.Addr().String(), func() { read = true }); err != nil {
		t.Fatal(err)
	}
	if !read {
		t.Fatal("memory not read while the connections were open")
	}
}
