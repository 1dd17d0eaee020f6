package tunnel

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

func TestNewValidation(t *testing.T) {
	ok := Config{Mode: ModeDestination, Region: "us-east-1", AccessToken: "secret-access-token-value", Services: map[string]string{"SSH": "127.0.0.1:22"}}
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error, "" for success
	}{
		{"ok", func(*Config) {}, ""},
		{"no mode", func(c *Config) { c.Mode = 0 }, "mode"},
		{"no token", func(c *Config) { c.AccessToken = "" }, "access token"},
		{"bad client token", func(c *Config) { c.ClientToken = "short" }, "client token"},
		{"no services", func(c *Config) { c.Services = nil }, "no services"},
		{"bad service id", func(c *Config) { c.Services = map[string]string{"a b": "x:1"} }, "service id"},
		{"bad region", func(c *Config) { c.Region = "US East" }, "region"},
		{"plaintext refused", func(c *Config) { c.Endpoint = "ws://127.0.0.1:1" }, "plaintext"},
		{"endpoint with path", func(c *Config) { c.Endpoint = "wss://h/x" }, "host[:port]"},
		{"bad client type", func(c *Config) { c.DestinationClientType = "V4" }, "V4"},
		{"V1 source with two services", func(c *Config) {
			c.Mode, c.DestinationClientType = ModeSource, "V1"
			c.Services = map[string]string{"A": "127.0.0.1:0", "B": "127.0.0.1:0"}
		}, "exactly one service"},
		{"source cannot bind", func(c *Config) { c.Mode = ModeSource; c.Services = map[string]string{"A": "256.0.0.1:1"} }, "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			s, err := New(cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				_ = s.Close()
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) && !strings.Contains(err.Error(), "listen") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), cfg.AccessToken) && cfg.AccessToken != "" {
				t.Fatal("token in error")
			}
		})
	}
}

func TestEndpointURL(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Mode: ModeDestination, Region: "us-east-1"}, "wss://data.tunneling.iot.us-east-1.amazonaws.com/tunnel?local-proxy-mode=destination"},
		{Config{Mode: ModeSource, Region: "cn-north-1"}, "wss://data.tunneling.iot.cn-north-1.amazonaws.com.cn/tunnel?local-proxy-mode=source"},
		{Config{Mode: ModeSource, Endpoint: "Example.COM:8443"}, "wss://example.com:8443/tunnel?local-proxy-mode=source"},
		{Config{Mode: ModeSource, Endpoint: "wss://h:1/"}, "wss://h:1/tunnel?local-proxy-mode=source"},
		{Config{Mode: ModeSource, Endpoint: "ws://h:1", AllowPlaintext: true}, "ws://h:1/tunnel?local-proxy-mode=source"},
	}
	for _, tt := range tests {
		got, err := endpointURL(&tt.cfg)
		if err != nil || got != tt.want {
			t.Errorf("endpointURL(%+v) = %q, %v; want %q", tt.cfg, got, err, tt.want)
		}
	}
}

func TestClientTokenGenerated(t *testing.T) {
	s, err := New(Config{Mode: ModeDestination, Region: "eu-west-1", AccessToken: "t", Services: map[string]string{"SSH": "x:22"}})
	if err != nil {
		t.Fatal(err)
	}
	if !protocol.ValidClientToken(s.ClientToken()) {
		t.Fatalf("generated client token %q does not match the service's pattern", s.ClientToken())
	}
}

func TestBackoffFullJitter(t *testing.T) {
	s := &Session{cfg: Config{ReconnectMin: time.Second, ReconnectMax: 2 * time.Minute}}
	for n := range 40 {
		ceil := min(2*time.Minute, time.Second<<min(n, 20))
		for range 50 {
			if d := s.backoff(n); d <= 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v, want (0, %v]", n, d, ceil)
			}
		}
	}
}

// TestHandshake checks the request: path, mode, headers, offered
// subprotocols, and the events of a connection.
func TestHandshake(t *testing.T) {
	r := newRelay(t, true, "SSH")
	cfg := testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"})
	cfg.ClientToken = "fixed-client-token-0123456789abcdef0123"
	d := start(t, cfg)
	ev := d.ev.wait(t, "connected", isKind(EventConnected))
	if ev.Subprotocol != protocol.SubprotocolV3 || !strings.HasPrefix(ev.ChannelID, "chan-destination") {
		t.Fatalf("connected event %+v", ev)
	}
	h := r.headers("destination")
	if h.Get("access-token") != dstToken || h.Get("client-token") != cfg.ClientToken {
		t.Fatalf("headers %v", h)
	}
	if got := h.Values("Sec-Websocket-Protocol"); strings.Join(got, ",") != "aws.iot.securetunneling-3.0, aws.iot.securetunneling-2.0, aws.iot.securetunneling-1.0" {
		t.Fatalf("offered subprotocols %q", got)
	}
	d.ev.wait(t, "service ids", func(e Event) bool { return e.Kind == EventServiceIDs && e.Reason == "SSH" })
	if err := d.stop(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}

func TestNoSubprotocol(t *testing.T) {
	r := newRelay(t, true)
	r.setSubprotocol("destination", "none")
	d := start(t, testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"}))
	if err := d.result(t); !errors.Is(err, ErrNoSubprotocol) {
		t.Fatalf("Run = %v, want ErrNoSubprotocol", err)
	}
}

// TestRejected: a 4xx ends Run with ErrRejected, a *HandshakeError, a hint,
// and no secret in the error or the logs.
func TestRejected(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		body     string
		wantHint string
	}{
		{"reused token", 400, "Invalid access token: The access token was previously used and can not be used again.", "rotate"},
		{"client token mismatch", 400, "Invalid client token: The provided client token does not match the client token that was previously set.", "client token of its first use"},
		{"unknown token", 401, "Unauthorized", "revoked"},
		{"closed tunnel", 404, "tunnel not found", "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRelay(t, true)
			r.reject = func(*http.Request) (int, string) { return tt.code, tt.body }
			cfg := testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"})
			d := start(t, cfg)
			err := d.result(t)
			var he *HandshakeError
			if !errors.Is(err, ErrRejected) || !errors.As(err, &he) || he.StatusCode != tt.code || he.Message != tt.body {
				t.Fatalf("Run = %v (%#v)", err, he)
			}
			if !strings.Contains(err.Error(), tt.wantHint) {
				t.Fatalf("error %q has no hint %q", err, tt.wantHint)
			}
			assertNoSecrets(t, err.Error()+d.ev.logText(), cfg.AccessToken, d.s.ClientToken())
			if n := r.handshakes.Load(); n != 1 {
				t.Fatalf("%d handshakes after a 4xx, want 1 (no retry)", n)
			}
		})
	}
}

func assertNoSecrets(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Fatalf("secret %q.. leaked into errors or logs", s[:6])
		}
	}
}

// TestRetry5xx: 5xx answers are retried with backoff until one succeeds.
func TestRetry5xx(t *testing.T) {
	r := newRelay(t, true, "SSH")
	var n atomic.Int32
	r.reject = func(*http.Request) (int, string) {
		switch n.Add(1) {
		case 1:
			return 503, "busy"
		case 2:
			return 429, "slow down"
		case 3:
			return 502, "bad gateway"
		}
		return 0, ""
	}
	d := start(t, testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"}))
	d.ev.wait(t, "connected", isKind(EventConnected))
	if got := d.ev.count(EventReconnecting); got != 3 {
		t.Fatalf("%d reconnect waits, want 3", got)
	}
}

// TestReconnectAfterDrop: a dropped WebSocket is re-established with the same
// client token (the relay enforces the binding) and its streams are reset.
func TestReconnectAfterDrop(t *testing.T) {
	d, p, r := destination(t, map[string]string{"SSH": tunneltest.Echo(t)}, protocol.SubprotocolV3, "SSH")
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	d.ev.wait(t, "opened", isKind(EventStreamOpened))
	r.drop("destination")
	d.ev.wait(t, "disconnected", isKind(EventDisconnected))
	d.ev.wait(t, "stream reset on disconnect", isKind(EventStreamClosed))
	waitUntil(t, "second connection", func() bool { return d.ev.count(EventConnected) == 2 })
	// Stream ids restart after a reconnect.
	p2 := dialPeer(t, r, "source")
	p2.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1}, &msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("again")})
	p2.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
}

func TestTunnelClosedEndsRun(t *testing.T) {
	r := newRelay(t, true, "SSH")
	d := start(t, testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"}))
	d.ev.wait(t, "connected", isKind(EventConnected))
	r.closeTunnel()
	if err := d.result(t); err != nil {
		t.Fatalf("Run after the service closed the tunnel = %v, want nil", err)
	}
}

// TestPingTimeouts runs a destination in a synctest bubble over an
// in-memory connection, where the ping ticker and the watchdog run on
// the fake clock: with pings answered an idle link stays up indefinitely,
// and once they go unanswered it is declared dead exactly PongTimeout after
// the last pong, and re-established. The cases with the default intervals
// (20 s, 45 s) take as long in real time as the ones with short ones.
func TestPingTimeouts(t *testing.T) {
	tests := []struct {
		name        string
		ping, pong  time.Duration // 0: the defaults
		freezeAfter time.Duration // the relay stops answering pings; 0: never
		watch       time.Duration // how long the link is watched when never frozen
	}{
		{"defaults, answered, an hour", 0, 0, 0, time.Hour},
		{"defaults, unanswered after 10m10s", 0, 0, 10*time.Minute + 10*time.Second, 0},
		{"short, answered, a minute", 50 * time.Millisecond, 400 * time.Millisecond, 0, time.Minute},
		{"short, unanswered at once", 50 * time.Millisecond, 400 * time.Millisecond, time.Nanosecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newMemRelay(t, "SSH")
				cfg := testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"})
				cfg.PingInterval, cfg.PongTimeout = tt.ping, tt.pong
				d := start(t, cfg)
				_, up := d.ev.waitAt(t, "connected", isKind(EventConnected))
				ping, pong := d.s.cfg.PingInterval, d.s.cfg.PongTimeout
				if tt.freezeAfter == 0 {
					time.Sleep(tt.watch + ping/2)
					if n := d.ev.count(EventDisconnected); n != 0 {
						t.Fatalf("idle link with answered pings dropped after %v: %s", time.Since(up), d.ev.logText())
					}
					if got, want := r.pongs.Load(), int64(tt.watch/ping); got != want {
						t.Errorf("%d pings answered in %v, want one per %v: %d", got, tt.watch, ping, want)
					}
					return
				}
				time.Sleep(tt.freezeAfter)
				r.freeze("destination")
				lastPong := up.Add(time.Since(up) / ping * ping) // the last ping before the freeze was answered
				time.Sleep(pong)                                 // (waitAt gives up after waitFor)
				ev, down := d.ev.waitAt(t, "disconnected", isKind(EventDisconnected))
				if !strings.Contains(ev.Reason, "timeout") {
					t.Fatalf("disconnect reason %q, want a timeout", ev.Reason)
				}
				if got := down.Sub(lastPong); got != pong {
					t.Errorf("declared dead %v after the last pong, want PongTimeout = %v", got, pong)
				}
				waitUntil(t, "reconnected", func() bool { return d.ev.count(EventConnected) == 2 })
			})
		})
	}
}

// TestPingsOverTLS is TestPingTimeouts over loopback TCP and TLS, in real
// time: pongs that come back through TLS keep the link up past
// PongTimeout, and without them it is declared dead and re-established.
//
// The watchdog runs on wall-clock time here, so a stall of the whole test
// process longer than PongTimeout ends a link however many pongs are
// queued in its socket (with 200 ms that happened under -race on the
// loaded machine). The link with answered pings therefore has a
// PongTimeout of one second (50 pings) and is watched only until it
// outlived it by a quarter: that it survives at all past PongTimeout shows
// the pongs extend the deadline. The two cases run in parallel.
func TestPingsOverTLS(t *testing.T) {
	tests := []struct {
		name       string
		ping, pong time.Duration
		answered   bool
	}{
		{"answered", 20 * time.Millisecond, time.Second, true},
		{"unanswered", 50 * time.Millisecond, 400 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRelay(t, true, "SSH")
			cfg := testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"})
			cfg.PingInterval, cfg.PongTimeout = tt.ping, tt.pong
			d := start(t, cfg)
			_, up := d.ev.waitAt(t, "connected", isKind(EventConnected))
			if tt.answered {
				outlived := func() bool { return time.Since(up) > 5*tt.pong/4 }
				if tunneltest.Poll(waitFor, func() bool { return d.ev.count(EventDisconnected) != 0 || outlived() }); !outlived() {
					t.Fatalf("idle link with answered pings dropped after %v: %s", time.Since(up), d.ev.logText())
				}
				if d.ev.count(EventDisconnected) != 0 || r.pongs.Load() == 0 {
					t.Fatalf("%d pings answered, link dropped: %s", r.pongs.Load(), d.ev.logText())
				}
				return
			}
			r.freeze("destination")
			ev := d.ev.wait(t, "disconnected", isKind(EventDisconnected))
			if !strings.Contains(ev.Reason, "timeout") {
				t.Fatalf("disconnect reason %q, want a timeout", ev.Reason)
			}
			waitUntil(t, "reconnected", func() bool { return d.ev.count(EventConnected) == 2 })
		})
	}
}

func TestPlaintextAndCAFile(t *testing.T) {
	t.Run("ws with AllowPlaintext", func(t *testing.T) {
		r := newRelay(t, false, "SSH")
		d := start(t, testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"}))
		d.ev.wait(t, "connected", isKind(EventConnected))
	})
	t.Run("CA file", func(t *testing.T) {
		r := newRelay(t, true, "SSH")
		file := filepath.Join(t.TempDir(), "ca.pem")
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
		if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"})
		cfg.RootCAs, cfg.CAFile = nil, file
		d := start(t, cfg)
		d.ev.wait(t, "connected", isKind(EventConnected))
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		r := newRelay(t, true, "SSH")
		cfg := testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"})
		cfg.RootCAs = nil
		d := start(t, cfg)
		ev := d.ev.wait(t, "reconnecting", isKind(EventReconnecting))
		if !strings.Contains(ev.Err.Error(), "certificate") {
			t.Fatalf("error %v, want a certificate error", ev.Err)
		}
	})
}

// TestHTTPSProxy connects through an HTTP CONNECT proxy with basic auth.
func TestHTTPSProxy(t *testing.T) {
	r := newRelay(t, true, "SSH")
	var auth atomic.Value
	proxyAddr := connectProxy(t, func(h string) { auth.Store(h) })
	cfg := testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"})
	cfg.Proxy = func(*http.Request) (*url.URL, error) {
		return &url.URL{Scheme: "http", Host: proxyAddr, User: url.UserPassword("user", "proxy-secret")}, nil
	}
	d := start(t, cfg)
	d.ev.wait(t, "connected", isKind(EventConnected))
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:proxy-secret"))
	if got, _ := auth.Load().(string); got != want {
		t.Fatalf("Proxy-Authorization %q, want %q", got, want)
	}
	assertNoSecrets(t, d.ev.logText(), "proxy-secret", cfg.AccessToken)
}

// connectProxy is a minimal HTTP CONNECT proxy.
func connectProxy(t *testing.T, seen func(auth string)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { proxyConn(ctx, c, seen) })
		}
	})
	t.Cleanup(func() { cancel(); _ = ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func proxyConn(ctx context.Context, c net.Conn, seen func(string)) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	seen(req.Header.Get("Proxy-Authorization"))
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	stop := context.AfterFunc(ctx, func() { _ = c.Close(); _ = up.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(up, br); _ = up.Close() })
	_, _ = io.Copy(c, up)
	_ = c.Close()
	wg.Wait()
}

func TestRunTwice(t *testing.T) {
	r := newRelay(t, true, "SSH")
	d := start(t, testConfig(r, ModeDestination, map[string]string{"SSH": "127.0.0.1:22"}))
	d.ev.wait(t, "connected", isKind(EventConnected))
	if err := d.s.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Run = %v", err)
	}
}

func TestWarningsRateLimited(t *testing.T) {
	d, p, _ := destination(t, map[string]string{"SSH": tunneltest.Echo(t)}, protocol.SubprotocolV3, "SSH")
	for range 50 {
		p.send(&msg{Type: protocol.Type(77), StreamID: 1})
	}
	p.send(&msg{Type: tStart, StreamID: 1, ServiceID: "SSH", ConnectionID: 1}, &msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1, Payload: []byte("x")})
	p.expect(msg{Type: tData, StreamID: 1, ServiceID: "SSH", ConnectionID: 1})
	if n := strings.Count(d.ev.logText(), "unknown type"); n != warnBurst {
		t.Fatalf("%d warnings for 50 unknown messages, want %d", n, warnBurst)
	}
}
