// Package tunneltest holds test fixtures shared by the packages that test
// tunnels end to end: local TCP services on loopback for a tunnel to reach,
// checks that bytes sent through a tunnel to an echo service come back,
// SyncBuffer, a goroutine-safe sink for logs and command output, Poll and
// WaitFor, the one way to wait for a condition, and an in-memory network
// (MemPipe, MemListener, MemNet) for tests in a testing/synctest bubble.
// It is imported only from _test.go files and never ships in a binary.
package tunneltest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Serve runs handler for each connection of a new listener on 127.0.0.1:0 and
// returns its address. Each connection is closed when its handler returns;
// at the end of the test the listener and every open connection are closed
// and all handlers are waited for.
func Serve(t testing.TB, handler func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ServeListener(t, ln, handler)
}

// ServeListener is Serve on a listener of the caller's (a MemListener, say).
func ServeListener(t testing.TB, ln net.Listener, handler func(net.Conn)) string {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					_ = c.Close()
				}()
				handler(c)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Echo starts a loopback TCP service that echoes every connection.
func Echo(t testing.TB) string {
	t.Helper()
	return Serve(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// EchoCheck sends n random bytes through addr, which leads to an echo
// service, and checks that the same bytes come back.
func EchoCheck(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	data := make([]byte, n)
	_, _ = rand.Read(data)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(data); errc <- err }()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		<-errc
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return errors.New("echo mismatch")
	}
	return nil
}

// EchoEventually retries EchoCheck (Poll) for up to 20 s, for a path whose
// far end may still be connecting, and returns the last error.
func EchoEventually(addr string, n int) error {
	var err error
	Poll(20*time.Second, func() bool { err = EchoCheck(addr, n); return err == nil })
	return err
}
