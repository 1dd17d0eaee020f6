package tunnel

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// TestIdleConnGoroutines: an idle local connection runs one goroutine, its
// reader; the local writer runs only while bytes are queued for the socket
// (issue 19: each goroutine's stack is RSS an idle connection holds). N
// connections through source -> relay -> destination over loopback TCP are
// 2N local connections (one at each end); the service behind the
// destination and the clients run no goroutine per connection. After a
// burst the destination's writer must have ended too.
func TestIdleConnGoroutines(t *testing.T) {
	tests := []struct {
		name  string
		burst int // bytes each client sends before it goes idle
	}{
		{"one byte each way", 1},
		{"a burst the local writer queues", 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			// One goroutine serves every connection in turn: read the
			// burst, answer one byte, keep the connection.
			served := make(chan []net.Conn, 1)
			go func() {
				var cs []net.Conn
				defer func() { served <- cs }()
				buf := make([]byte, 64<<10)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					cs = append(cs, c)
					if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, int64(tt.burst)), buf); err != nil {
						return
					}
					if _, err := c.Write([]byte{1}); err != nil {
						return
					}
				}
			}()
			p := newPair(t, pairOpts{dstExtra: map[string]string{"IDLE": ln.Addr().String()}, noSplit: true})
			addr := p.src.s.Addr("IDLE").String()
			var clients []net.Conn
			defer func() {
				for _, c := range clients {
					_ = c.Close()
				}
				_ = ln.Close()
				for _, c := range <-served {
					_ = c.Close()
				}
			}()
			burst := bytes.Repeat([]byte("x"), tt.burst)
			open := func() {
				t.Helper()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c)
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				if _, err := c.Write(burst); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
			}
			open() // what the first connection of a tunnel starts is not per connection
			base := settledGoroutines(func(n int) bool { return false })
			const n = 20
			for range n {
				open()
			}
			// The writers that took the bursts end once the queue is
			// empty: wait for that, not for a time.
			const want = 2 * n // one per local connection
			got := settledGoroutines(func(g int) bool { return g-base <= want }) - base
			t.Logf("%d goroutines for %d idle connections", got, n)
			if got > want {
				t.Errorf("%d goroutines for %d idle connections (%d local connections): %.2f per local connection, want 1",
					got, n, 2*n, float64(got)/(2*n))
			}
			// Each reader sent data (the burst, the reply) on its own
			// goroutine, which may have written TLS records and grown its
			// stack: idle, it waits on a fresh goroutine it started.
			// (A reader may still be on its way there: poll.)
			var fresh, readers int
			tunneltest.Poll(waitFor, func() bool { fresh, readers = idleReaders(); return readers >= 2*(n+1) && fresh == readers })
			if readers < 2*(n+1) || fresh != readers {
				t.Errorf("%d of %d idle local readers wait on a fresh goroutine, want all of %d", fresh, readers, 2*(n+1))
			}
		})
	}
}

// settledGoroutines returns runtime.NumGoroutine once ok accepts it, or the
// smallest count seen in a few seconds: goroutines that are ending still
// count for a moment.
func settledGoroutines(ok func(int) bool) int {
	least := runtime.NumGoroutine()
	for deadline := time.Now().Add(3 * time.Second); !ok(least) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		least = min(least, runtime.NumGoroutine())
	}
	return least
}

// idleReaders counts the goroutines waiting in a local reader (readLocal)
// and those of them that a local reader started (handing over to a fresh
// goroutine).
func idleReaders() (fresh, readers int) {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "(*localConn).readLocal") {
			continue
		}
		readers++
		if strings.Contains(g, "created by github.com/tunnel-agent/tunnel-agent/agent/tunnel.(*localConn).readLocal ") {
			fresh++
		}
	}
	return fresh, readers
}
