package greengrass

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testThing = "pi-1"
	testToken = "svcuid-secret-7f3a"
	testTopic = "$aws/things/pi-1/tunnels/notify"
)

// runningSource is a Source.Run in the background with its callbacks recorded.
type runningSource struct {
	src       *Source
	delivered chan []byte
	ready     chan struct{}
	done      chan error
	cancel    context.CancelFunc
	logs      *tunneltest.SyncBuffer
}

func startSource(t *testing.T, path string, tweak func(*Config)) *runningSource {
	t.Helper()
	logs := &tunneltest.SyncBuffer{}
	cfg := Config{SocketPath: path, AuthToken: testToken, ThingName: testThing,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ResubscribeMin: time.Millisecond, ResubscribeMax: 5 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningSource{delivered: make(chan []byte, 16), ready: make(chan struct{}, 16),
		done: make(chan error, 1), cancel: cancel, logs: logs}
	rs.src = NewSource(cfg)
	go func() {
		rs.done <- rs.src.Run(ctx,
			func(p []byte) bool { rs.delivered <- p; return true },
			func() { rs.ready <- struct{}{} })
	}()
	t.Cleanup(func() {
		cancel()
		<-rs.done
		if strings.Contains(logs.String(), testToken) {
			t.Errorf("the auth token appears in the logs:\n%s", logs)
		}
	})
	return rs
}

func (rs *runningSource) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-rs.ready:
	case err := <-rs.done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("ready not called")
	}
}

func (rs *runningSource) waitDelivered(t *testing.T) []byte {
	t.Helper()
	select {
	case p := <-rs.delivered:
		return p
	case err := <-rs.done:
		t.Fatalf("Run returned before delivering: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing delivered")
	}
	return nil
}

// waitDone returns Run's result; it puts it back so that the cleanup sees it too.
func (rs *runningSource) waitDone(t *testing.T) error {
	t.Helper()
	select {
	case err := <-rs.done:
		rs.done <- err
		if err != nil && strings.Contains(err.Error(), testToken) {
			t.Errorf("the auth token appears in the error: %v", err)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func TestSourceDeliversNotifications(t *testing.T) {
	fake := newFakeNucleus(t)
	rs := startSource(t, fake.path, nil)
	nc := fake.accept(t)
	nc.connect(testToken, true)
	stream := nc.expectSubscribe(testTopic)
	if stream != 1 {
		t.Errorf("first stream id = %d, want 1", stream)
	}
	nc.respond(stream)
	rs.waitReady(t)

	payloads := [][]byte{
		[]byte(`{"clientAccessToken":"cat","clientMode":"destination","region":"us-east-1","services":["SSH"]}`),
		{0, 1, 2, 0xff, '\n'},
		[]byte(`{}`),
	}
	for i, p := range payloads {
		if i == 1 {
			nc.ping("are you there")
			nc.push(stream, "$aws/things/other/tunnels/notify", []byte("not ours"))
		}
		nc.push(stream, testTopic, p)
		if got := rs.waitDelivered(t); !bytes.Equal(got, p) {
			t.Errorf("delivered %q, want %q", got, p)
		}
	}
	rs.cancel()
	if err := rs.waitDone(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	nc.expectClosed()
	if len(rs.delivered) != 0 {
		t.Errorf("message for another topic was delivered: %q", <-rs.delivered)
	}
}

func TestSourceFailures(t *testing.T) {
	tests := []struct {
		name    string
		nucleus func(nc *nucleusConn)
		want    error
		wantMsg []string
	}{
		{
			name: "socket dropped after subscribing",
			nucleus: func(nc *nucleusConn) {
				nc.connect(testToken, true)
				nc.respond(nc.expectSubscribe(testTopic))
				_ = nc.c.Close()
			},
			want:    ErrConnectionLost,
			wantMsg: []string{"restarts the component"},
		},
		{
			name: "unauthorized subscription",
			nucleus: func(nc *nucleusConn) {
				nc.connect(testToken, true)
				nc.fail(nc.expectSubscribe(testTopic), modelUnauthorized,
					"Authorization failed with error Principal io.github.tunnelagent.TunnelAgent is not authorized")
			},
			want: ErrUnauthorized,
			wantMsg: []string{"aws.greengrass.ipc.mqttproxy", "aws.greengrass#SubscribeToIoTCore",
				testTopic, RecipeTopicResource, "accessControl", "is not authorized"},
		},
		{
			name:    "token refused",
			nucleus: func(nc *nucleusConn) { nc.connect(testToken, false) },
			want:    ErrConnectRejected,
			wantMsg: []string{"SVCUID"},
		},
		{
			name: "connection-level protocol error",
			nucleus: func(nc *nucleusConn) {
				nc.connect(testToken, true)
				nc.expectSubscribe(testTopic)
				nc.send(message{Type: typeProtocolError, Payload: []byte("bad stream id")})
			},
			want:    ErrProtocol,
			wantMsg: []string{"bad stream id"},
		},
		{
			name: "oversized message",
			nucleus: func(nc *nucleusConn) {
				nc.connect(testToken, true)
				nc.expectSubscribe(testTopic)
				_, _ = nc.c.Write([]byte{0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
			},
			want: ErrMessageTooLarge,
		},
		{
			name: "ping before ConnectAck",
			nucleus: func(nc *nucleusConn) {
				nc.recv()
				nc.send(message{Type: typePing})
			},
			want:    ErrProtocol,
			wantMsg: []string{"expected ConnectAck"},
		},
		{
			name:    "no ConnectAck",
			nucleus: func(nc *nucleusConn) { nc.recv() },
			want:    ErrConnect,
			wantMsg: []string{"ConnectAck"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeNucleus(t)
			rs := startSource(t, fake.path, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
			tt.nucleus(fake.accept(t))
			err := rs.waitDone(t)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Run = %v, want %v", err, tt.want)
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestSourceResubscribes(t *testing.T) {
	fake := newFakeNucleus(t)
	rs := startSource(t, fake.path, nil)
	nc := fake.accept(t)
	nc.connect(testToken, true)

	// A cloud-side failure is retried on a new stream, not fatal.
	s1 := nc.expectSubscribe(testTopic)
	nc.fail(s1, "aws.greengrass#ServiceError", "Subscribe to topic failed with error timeout")
	s2 := nc.expectSubscribe(testTopic)
	if s2 != s1+1 {
		t.Errorf("retry stream id = %d, want %d", s2, s1+1)
	}
	nc.respond(s2)
	rs.waitReady(t)

	// The nucleus closing the stream makes the source subscribe again.
	nc.send(message{Type: typeApplicationMessage, Flags: flagTerminateStream, StreamID: s2})
	s3 := nc.expectSubscribe(testTopic)
	nc.push(s2, testTopic, []byte("late message on the old stream"))
	nc.respond(s3)
	rs.waitReady(t)
	nc.push(s3, testTopic, []byte("new"))
	if got := rs.waitDelivered(t); string(got) != "new" {
		t.Errorf("delivered %q, want %q", got, "new")
	}
}

func TestSourceNoNucleus(t *testing.T) {
	err := NewSource(Config{SocketPath: "/nonexistent/ipc.socket", AuthToken: testToken,
		ThingName: testThing}).Run(context.Background(), func([]byte) bool { return true }, func() {})
	if !errors.Is(err, ErrConnect) {
		t.Fatalf("Run = %v, want ErrConnect", err)
	}
}

func TestSourceInvalidConfig(t *testing.T) {
	err := NewSource(Config{SocketPath: "/x", ThingName: "a/+"}).Run(context.Background(),
		func([]byte) bool { return true }, func() {})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Run = %v, want ErrConfig", err)
	}
}

func TestSourceCancelDuringHandshake(t *testing.T) {
	fake := newFakeNucleus(t)
	rs := startSource(t, fake.path, nil)
	nc := fake.accept(t)
	nc.recv() // Connect, never acknowledged
	rs.cancel()
	if err := rs.waitDone(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}
