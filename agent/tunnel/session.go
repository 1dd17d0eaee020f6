package tunnel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Errors.
var (
	// ErrRejected: the service refused the WebSocket handshake with a 4xx;
	// retrying with the same token will not help. The error chain holds a
	// *HandshakeError.
	ErrRejected = errors.New("tunnel service rejected the connection")
	// ErrNoSubprotocol: the server accepted the WebSocket without agreeing to
	// any aws.iot.securetunneling subprotocol.
	ErrNoSubprotocol = errors.New("tunnel server echoed no aws.iot.securetunneling subprotocol: the endpoint is not an AWS IoT Secure Tunneling data plane")
	// ErrInvalidConfig: New was given an unusable Config.
	ErrInvalidConfig = errors.New("invalid tunnel config")
	// ErrTextMessage: the server sent a text WebSocket message, which the
	// protocol forbids.
	ErrTextMessage = errors.New("tunnel server sent a text WebSocket message")
	// ErrClosed: the session was already run or closed.
	ErrClosed = errors.New("tunnel session already used or closed")
)

// Session is one end of one tunnel. Create it with New and call Run once.
type Session struct {
	cfg       Config
	url       string
	log       *slog.Logger
	listeners map[string]net.Listener // source mode
	version   protocol.Version        // source mode: configured destination client type; 0 = auto

	// live is the destination's services map once SetServices replaced
	// cfg.Services (nil before).
	live atomic.Pointer[map[string]string]

	mu      sync.Mutex
	cur     *link         // connected and ready link, nil while down
	changed chan struct{} // closed and replaced whenever cur changes
	used    bool
	closed  bool

	stats statsBook // per-service counts for Stats
}

// New validates cfg, fills defaults and, in source mode, binds the listeners.
func New(cfg Config) (*Session, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	cfg.setDefaults()
	u, err := endpointURL(&cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	s := &Session{cfg: cfg, url: u, log: cfg.Logger, changed: make(chan struct{})}
	s.version, err = parseClientType(cfg.DestinationClientType)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Mode == ModeSource {
		if s.version == protocol.V1 && len(cfg.Services) != 1 {
			return nil, fmt.Errorf("%w: destination client type V1 carries no service ids, so exactly one service can be forwarded, not %d", ErrInvalidConfig, len(cfg.Services))
		}
		if err := s.listen(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ClientToken returns the client token sent on every handshake.
func (s *Session) ClientToken() string { return s.cfg.ClientToken }

// URL returns the data-plane URL the session connects to (no secrets).
func (s *Session) URL() string { return s.url }

// Addr returns the bound listener of a service in source mode, or nil.
func (s *Session) Addr(service string) net.Addr {
	if l, ok := s.listeners[service]; ok {
		return l.Addr()
	}
	return nil
}

// Close releases the listeners of a session whose Run was never called. Run
// releases them itself when it returns.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used || s.closed {
		return nil
	}
	s.closed = true
	s.closeListeners()
	return nil
}

func (s *Session) closeListeners() {
	for _, l := range s.listeners {
		_ = l.Close()
	}
}

func (s *Session) emit(e Event) {
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(e)
	}
}
