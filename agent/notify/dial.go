package notify

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// errProxy marks a failure to go through the HTTP CONNECT proxy.
var errProxy = errors.New("https proxy")

// attempt is one connection attempt: its dial can be aborted from another
// goroutine, and it records whether TLS completed, so that a later failure
// is known to be the broker's MQTT answer.
type attempt struct {
	ctx           context.Context
	handshakeDone atomic.Bool
	mu            sync.Mutex
	conn          net.Conn
	aborted       bool
}

// abort closes the attempt's connection (if any) so a pending CONNECT fails now.
func (a *attempt) abort() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.aborted = true
	if a.conn != nil {
		_ = a.conn.Close()
	}
}

func (a *attempt) keep(c net.Conn) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.aborted {
		_ = c.Close()
		return net.ErrClosed
	}
	a.conn = c
	return nil
}

// dialTLS opens the TLS connection to addr (host:port), through the HTTP
// CONNECT proxy when proxyURL is set, within timeout.
func dialTLS(a *attempt, addr string, tc *tls.Config, proxyURL *url.URL, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(a.ctx, timeout)
	defer cancel()
	var d net.Dialer
	var raw net.Conn
	var err error
	if proxyURL != nil {
		raw, err = dialProxy(ctx, &d, proxyURL, addr)
	} else {
		raw, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	if err := a.keep(raw); err != nil {
		return nil, err
	}
	conn := tls.Client(raw, tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	a.handshakeDone.Store(true)
	return &alertConn{Conn: conn}, nil
}

// alertConn recovers the reason a broker dropped us. With TLS 1.3 the
// client finishes its handshake before the server has checked the client
// certificate; a server that rejects it (OpenSSL: mosquitto, AWS IoT) sends
// an alert and closes, and our next write (the CONNECT) fails with
// "connection reset" while the alert waits unread. On a failed write, one
// short read fetches that alert, so the cause names the certificate.
type alertConn struct{ net.Conn }

func (c *alertConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err == nil {
		return n, nil
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var b [1]byte
	if _, rerr := c.Conn.Read(b[:]); rerr != nil {
		if _, ok := tlsAlert(rerr); ok {
			return n, fmt.Errorf("%w (after: %w)", rerr, err)
		}
	}
	return n, err
}

// dialProxy connects to addr through an HTTP(S) proxy with CONNECT. AWS IoT
// on port 443 (ALPN x-amzn-mqtt-ca) passes proxies that only allow 443.
func dialProxy(ctx context.Context, d *net.Dialer, proxy *url.URL, addr string) (net.Conn, error) {
	host := proxy.Host
	if proxy.Port() == "" {
		host = net.JoinHostPort(proxy.Hostname(), map[bool]string{true: "443", false: "80"}[proxy.Scheme == "https"])
	}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", errProxy, proxy.Redacted(), err)
	}
	if proxy.Scheme == "https" {
		tc := tls.Client(c, &tls.Config{ServerName: proxy.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("%w %s: TLS: %w", errProxy, proxy.Redacted(), err)
		}
		c = tc
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: addr}, Host: addr, Header: http.Header{}}
	if u := proxy.User; u != nil {
		pw, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)))
	}
	br := bufio.NewReader(c)
	err = req.Write(c)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("%w %s: CONNECT %s: %w", errProxy, proxy.Redacted(), addr, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_ = c.Close()
		return nil, fmt.Errorf("%w %s: CONNECT %s: %s", errProxy, proxy.Redacted(), addr, resp.Status)
	}
	if br.Buffered() > 0 { // a broker never speaks first; a proxy that does is broken
		_ = c.Close()
		return nil, fmt.Errorf("%w %s: data after the CONNECT answer", errProxy, proxy.Redacted())
	}
	return c, nil
}

// proxyFor picks the proxy for the broker: the configured URL, else
// HTTPS_PROXY / NO_PROXY from the environment (as the data plane does).
func proxyFor(configured, addr string) (*url.URL, error) {
	if configured != "" {
		u, err := url.Parse(configured)
		if err != nil {
			return nil, fmt.Errorf("https_proxy: %w", err)
		}
		return u, nil
	}
	req := &http.Request{URL: &url.URL{Scheme: "https", Host: addr}}
	return http.ProxyFromEnvironment(req)
}
