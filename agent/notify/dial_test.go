package notify

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
)

// connectProxy is an HTTP CONNECT proxy on loopback (like squid with
// CONNECT allowed). It counts tunnels and checks the credentials.
type connectProxy struct {
	addr    string
	tunnels atomic.Int32
	auth    atomic.Value // last Proxy-Authorization
}

func startConnectProxy(t *testing.T) *connectProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return p
}

func (p *connectProxy) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil || req.Method != http.MethodConnect {
		_, _ = io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	p.auth.Store(req.Header.Get("Proxy-Authorization"))
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	_ = c.SetDeadline(time.Time{})
	p.tunnels.Add(1)
	_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// MQTT goes through an HTTP CONNECT proxy (https_proxy), with credentials.
func TestMQTTThroughConnectProxy(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{})
	proxy := startConnectProxy(t)
	cfg := testConfig(t, p, b.Port(), nil)
	cfg.Proxy = "http://user:s3cret@" + proxy.addr
	r := startSourceCfg(t, cfg)
	wait(t, r.ready, "ready through the proxy")
	b.Publish(t, Topic(thing), []byte("via proxy"))
	if got := string(wait(t, r.payloads, "payload")); got != "via proxy" {
		t.Errorf("got %q", got)
	}
	if proxy.tunnels.Load() == 0 {
		t.Error("the connection did not go through the proxy")
	}
	if a, _ := proxy.auth.Load().(string); a != "Basic dXNlcjpzM2NyZXQ=" {
		t.Errorf("Proxy-Authorization %q", a)
	}
}

// A proxy that refuses is a classified cause that names the proxy, never
// its password.
func TestMQTTProxyRefused(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	cfg := testConfig(t, p, refusedPort(t), nil)
	proxy := startConnectProxy(t)
	cfg.Proxy = "http://user:s3cret@" + proxy.addr
	src, err := NewMQTTSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = src.Check(t.Context())
	var c Cause
	if !asCause(err, &c) || c.Kind != CauseProxy || !strings.Contains(c.Detail, "502") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("proxy password in the error: %v", err)
	}
}

// An IPv6 literal endpoint works, bracketed or not.
func TestMQTTIPv6Endpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback here")
	}
	ln.Close()
	p := notifytest.NewPKI(t, thing)
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{Addr: "[::1]:0"})
	for _, ep := range []string{"::1", "[::1]"} {
		cfg := testConfig(t, p, b.Port(), nil)
		cfg.Endpoint = ep
		cfg.TLSConfig = nil
		src, err := NewMQTTSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Check(t.Context()); err != nil {
			t.Fatalf("%s: %v", ep, err)
		}
	}
}
