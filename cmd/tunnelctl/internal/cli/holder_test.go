package cli

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// holderRig is a holder's serve loop in-process, with a unix echo server
// standing in for the tunnel's source socket.
type holderRig struct {
	h    *holder
	logs *tunneltest.SyncBuffer
	done chan error
	stop context.CancelFunc
}

func startHolderServe(t *testing.T, idle time.Duration) *holderRig {
	t.Helper()
	dir, err := os.MkdirTemp("", "th")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cache := &connectCache{dir: dir}
	logs := new(tunneltest.SyncBuffer)
	h := &holder{cache: cache, key: "k", o: connectOptions{idle: idle},
		log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	echo, err := net.Listen("unix", cache.inner("k"))
	if err != nil {
		t.Fatal(err)
	}
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { echo.Close(); <-echoDone })
	ln, err := h.listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &holderRig{h: h, logs: logs, done: make(chan error, 1), stop: cancel}
	ended := &sessionEnd{done: make(chan struct{})}
	go func() { r.done <- h.serve(ctx, ln, ended) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not return after cancel")
		}
	})
	return r
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo %q: %q %v", msg, got, err)
	}
}

// TestHolderIdleClose: connections are relayed; after the last one the holder
// waits the idle grace, then stops and removes its socket.
func TestHolderIdleClose(t *testing.T) {
	r := startHolderServe(t, 100*time.Millisecond)
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("unix", r.h.cache.socket("k"))
		if err != nil {
			t.Fatal(err)
		}
		echoOnce(t, c, strings.Repeat("x", i+1))
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the idle holder did not stop")
	}
	if _, err := os.Stat(r.h.cache.socket("k")); !os.IsNotExist(err) {
		t.Errorf("socket left after the idle close: %v", err)
	}
}

// TestHolderIdleCloseKeepsPendingConnection: a connect that dialed under the
// key's lock just as the idle grace ended is served, not dropped.
func TestHolderIdleCloseKeepsPendingConnection(t *testing.T) {
	r := startHolderServe(t, 50*time.Millisecond)
	lock, err := lockFile(context.Background(), r.h.cache.lockFile("k"))
	if err != nil {
		t.Fatal(err)
	}
	// The holder is idle and waits for the lock to close; a connect dials under it.
	waitFor(t, "the idle holder to wait for the lock", 10*time.Second, func() bool {
		return strings.Contains(r.logs.String(), "idle: taking the key's lock")
	})
	c, err := net.Dial("unix", r.h.cache.socket("k"))
	lock.release()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "still served")
	select {
	case err := <-r.done:
		t.Fatalf("serve ended with a connection open: %v", err)
	default:
	}
}
