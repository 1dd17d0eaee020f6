package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/batchconn"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

const (
	handshakeTimeout = 30 * time.Second
	// readLimit bounds one incoming WebSocket message. Messages are streamed
	// into the frame reader, never buffered whole, so the limit only guards
	// against nonsense; it is well above the protocol's 131076.
	readLimit = 8 * protocol.MaxWSMessage
	userAgent = "tunnel-agent"
)

// HandshakeError is a 4xx answer to the WebSocket handshake. Message is the
// server's body text (it never contains the token) and is safe to log.
type HandshakeError struct {
	StatusCode int
	Message    string
	ChannelID  string
}

func (e *HandshakeError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("tunnel service rejected the connection (HTTP %d: %s): %s", e.StatusCode, msg, e.Hint())
}

// Hint says what the user should do about the rejection.
func (e *HandshakeError) Hint() string {
	m := strings.ToLower(e.Message)
	switch {
	case strings.Contains(m, "previously used"):
		return "the access token was already used without this client token; rotate the tunnel's access token (RotateTunnelAccessToken) and connect with the new one"
	case strings.Contains(m, "client token"):
		return "the access token is bound to another client token; reconnect with the client token of its first use, or rotate the access token"
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden || strings.Contains(m, "token"):
		return "the access token is unknown, revoked or for another mode, or the tunnel is closed or expired; rotate the token or open a new tunnel"
	case e.StatusCode == http.StatusNotFound || strings.Contains(m, "closed") || strings.Contains(m, "expired"):
		return "the tunnel is closed or expired; open a new tunnel"
	}
	return "check the endpoint, region and mode match the tunnel and its token"
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *HandshakeError) Unwrap() error { return ErrRejected }

// dialer builds the WebSocket dialer: TLS 1.2+ with system roots (or
// cfg.RootCAs) plus cfg.CAFile, the configured proxy, TCP connections with
// batched writes (batchconn; cfg.netDial in tests), and a write buffer that
// holds a whole protocol-sized message so each message is one frame,
// lent for the message from wsWritePool; a small read buffer (wsReadBuffer).
//
// Without CAFile or RootCAs, RootCAs stays nil and crypto/tls verifies with
// the system roots it loads once per process. Before, each session cloned
// them (x509.SystemCertPool): about 25 KB per tunnel for nothing.
func (s *Session) dialer() (*websocket.Dialer, error) {
	pool := s.cfg.RootCAs
	if s.cfg.CAFile != "" {
		if pool == nil {
			sys, err := x509.SystemCertPool()
			if err != nil {
				sys = x509.NewCertPool()
			}
			pool = sys
		} else {
			pool = pool.Clone()
		}
		pem, err := os.ReadFile(s.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", s.cfg.CAFile)
		}
	}
	netDial := s.cfg.netDial
	if netDial == nil {
		netDial = batchconn.Dial()
	}
	return &websocket.Dialer{
		Proxy:            s.cfg.Proxy,
		NetDialContext:   netDial,
		TLSClientConfig:  &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		HandshakeTimeout: handshakeTimeout,
		Subprotocols:     protocol.Subprotocols,
		ReadBufferSize:   wsReadBuffer,
		WriteBufferSize:  protocol.MaxWSMessage,
		WriteBufferPool:  wsWritePool,
	}, nil
}

// wsReadBuffer is gorilla/websocket's read buffer per link: frame
// headers and the HTTP handshake go through it, and a read of a message's
// payload at least this long bypasses it (the FrameReader asks for up to
// 192 KiB at a time, and TLS returns at most a record), so a larger one
// only adds a copy and memory held by every tunnel, idle or not.
const wsReadBuffer = 4 << 10

// dial opens the WebSocket. A 4xx answer (except 408 and 429, which are
// throttling) gives a *HandshakeError; a missing subprotocol
// ErrNoSubprotocol; anything else is retryable.
func (s *Session) dial(ctx context.Context, d *websocket.Dialer) (*websocket.Conn, string, error) {
	h := http.Header{}
	h.Set("access-token", s.cfg.AccessToken)
	h.Set("client-token", s.cfg.ClientToken)
	h.Set("User-Agent", userAgent)
	ws, resp, err := d.DialContext(ctx, s.url, h)
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 &&
			resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			return nil, "", &HandshakeError{StatusCode: resp.StatusCode,
				Message: scrub(strings.TrimSpace(string(body)), s.cfg.AccessToken, s.cfg.ClientToken), ChannelID: resp.Header.Get("channel-id")}
		}
		if resp != nil {
			return nil, "", fmt.Errorf("connect to %s: HTTP %d: %w", s.url, resp.StatusCode, err)
		}
		return nil, "", fmt.Errorf("connect to %s: %w", s.url, scrubErr(err, s.cfg.AccessToken, s.cfg.ClientToken))
	}
	if !slices.Contains(protocol.Subprotocols, ws.Subprotocol()) {
		_ = ws.Close()
		return nil, "", fmt.Errorf("connect to %s: %w", s.url, ErrNoSubprotocol)
	}
	ws.SetReadLimit(readLimit)
	return ws, resp.Header.Get("channel-id"), nil
}

// scrub removes secrets from text that came from outside.
func scrub(s string, secrets ...string) string {
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, "[redacted]")
		}
	}
	return s
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func scrubErr(err error, secrets ...string) error {
	msg := scrub(err.Error(), secrets...)
	if msg == err.Error() {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}

// isRetryable reports whether Run should reconnect after err.
func isRetryable(err error) bool {
	return !errors.Is(err, ErrRejected) && !errors.Is(err, ErrNoSubprotocol)
}
