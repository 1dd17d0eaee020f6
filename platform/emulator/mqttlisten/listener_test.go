package mqttlisten

import (
	"log/slog"
	"net"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newServer(t *testing.T) (*mqtt.Server, string) {
	t.Helper()
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(New("t", ln, &s.Listeners.ClientsWg)); err != nil {
		t.Fatal(err)
	}
	return s, ln.Addr().String()
}

// Close while clients keep connecting (some never sending CONNECT) returns,
// with every connection ended, and without a data race under -race: the
// race mochi's own listeners have.
func TestCloseWhileConnecting(t *testing.T) {
	for range 20 {
		s, addr := newServer(t)
		if err := s.Serve(); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var dialers sync.WaitGroup
		for range 4 {
			dialers.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.Dial("tcp", addr)
					if err != nil {
						continue
					}
					// Half a CONNECT: the server waits for the rest until closed.
					_, _ = c.Write([]byte{0x10, 0x20, 0x00, 0x04})
					_ = c.Close()
				}
			})
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		close(stop)
		dialers.Wait()
	}
}

// A server closed before Serve (a later listener failed to open) does not
// wait for an accept loop that never started.
func TestCloseBeforeServe(t *testing.T) {
	s, _ := newServer(t)
	s.Listeners.CloseAll(func(string) {})
}
