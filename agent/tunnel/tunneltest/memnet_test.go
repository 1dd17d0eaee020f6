package tunneltest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// TestMemPipe checks the in-memory connection in a bubble: buffering up to
// MemBufSize, deadlines on the fake clock, and what each end sees after a
// close.
func TestMemPipe(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, a, b net.Conn)
	}{
		{"a write returns once buffered", func(t *testing.T, a, b net.Conn) {
			if n, err := a.Write(make([]byte, MemBufSize)); n != MemBufSize || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			got := make([]byte, 2*MemBufSize)
			if n, err := io.ReadAtLeast(b, got, MemBufSize); n != MemBufSize || err != nil {
				t.Fatalf("Read = %d, %v", n, err)
			}
		}},
		{"a full buffer waits for the reader", func(t *testing.T, a, b net.Conn) {
			data := bytes.Repeat([]byte("x"), 3*MemBufSize)
			done := make(chan error, 1)
			go func() { _, err := a.Write(data); done <- err }()
			synctest.Wait()
			select {
			case err := <-done:
				t.Fatalf("Write of 3 buffers returned before anything was read: %v", err)
			default:
			}
			got, err := io.ReadAll(io.LimitReader(b, int64(len(data))))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, %v", len(got), err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}},
		{"read deadline on the fake clock", func(t *testing.T, a, b net.Conn) {
			start := time.Now()
			_ = b.SetReadDeadline(start.Add(45 * time.Second))
			_, err := b.Read(make([]byte, 1))
			if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) != 45*time.Second {
				t.Fatalf("Read = %v after %v, want a timeout after 45s", err, time.Since(start))
			}
			_ = b.SetReadDeadline(time.Time{}) // cleared: reads work again
			_, _ = a.Write([]byte("y"))
			if n, err := b.Read(make([]byte, 1)); n != 1 || err != nil {
				t.Fatalf("Read after clearing the deadline = %d, %v", n, err)
			}
		}},
		{"write deadline when the reader stops", func(t *testing.T, a, b net.Conn) {
			start := time.Now()
			_ = a.SetWriteDeadline(start.Add(time.Minute))
			n, err := a.Write(make([]byte, 2*MemBufSize))
			if n != MemBufSize || !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) != time.Minute {
				t.Fatalf("Write = %d, %v after %v, want %d and a timeout after 1m", n, err, time.Since(start), MemBufSize)
			}
		}},
		{"close: the peer drains, then EOF; writes fail", func(t *testing.T, a, b net.Conn) {
			_, _ = a.Write([]byte("last"))
			_ = a.Close()
			got, err := io.ReadAll(b)
			if string(got) != "last" || err != nil {
				t.Fatalf("ReadAll = %q, %v", got, err)
			}
			if _, err := b.Write([]byte("z")); !errors.Is(err, io.ErrClosedPipe) {
				t.Fatalf("Write to a closed peer = %v", err)
			}
			if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read on a closed end = %v", err)
			}
		}},
		{"close wakes a blocked reader", func(t *testing.T, a, b net.Conn) {
			done := make(chan error, 1)
			go func() { _, err := b.Read(make([]byte, 1)); done <- err }()
			synctest.Wait()
			_ = b.Close()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked Read after Close = %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a, b := MemPipe(memAddr("a"), memAddr("b"))
				defer a.Close()
				defer b.Close()
				tt.run(t, a, b)
			})
		})
	}
}

func TestMemListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := NewMemListener("svc.test:80")
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(c, c)
			_ = c.Close()
		}()
		c, err := ln.Dial(t.Context(), "tcp", "anything:1")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("echo"))
		got := make([]byte, 4)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "echo" {
			t.Fatalf("echo = %q, %v", got, err)
		}
		_ = c.Close()
		_ = ln.Close()
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v", err)
		}
		if _, err := ln.Dial(t.Context(), "tcp", ""); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Dial after Close = %v", err)
		}
	})
}

func TestMemNet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n MemNet
		for _, name := range []string{"a.test:1", "/run/b.sock"} {
			ServeListener(t, n.Listen(name), func(c net.Conn) { _, _ = io.WriteString(c, name) })
		}
		tests := []struct {
			network, addr string
			want          string // "" : refused
		}{
			{"tcp", "a.test:1", "a.test:1"},
			{"unix", "/run/b.sock", "/run/b.sock"},
			{"tcp", "c.test:1", ""},
		}
		for _, tt := range tests {
			c, err := n.Dial(t.Context(), tt.network, tt.addr)
			if tt.want == "" {
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("Dial %s = %v, want connection refused", tt.addr, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Dial %s: %v", tt.addr, err)
			}
			got, err := io.ReadAll(c)
			if string(got) != tt.want || err != nil {
				t.Errorf("Dial %s reached %q (%v), want %q", tt.addr, got, err, tt.want)
			}
			_ = c.Close()
		}
	})
}
