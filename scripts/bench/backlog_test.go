package main

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// listenBacklog0 listens on loopback with a backlog of 0, as the C++
// localproxy does: the kernel queues one finished handshake, further SYNs
// are dropped until it is accepted.
func listenBacklog0(t *testing.T) net.Listener {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "backlog0")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestHoldIdleConnsPaced: behind a listener with a backlog of 0 whose owner
// accepts the next connection only once the last one has been served (the
// C++ source accepts, starts the stream, then accepts again), the 100 idle
// connections all open: each is dialled after the previous one answered.
// Dialling them all first would leave the third SYN unanswered.
func TestHoldIdleConnsPaced(t *testing.T) {
	ln := listenBacklog0(t)
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
