package tunnel

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Mode is the end of the tunnel a Session serves.
type Mode int

// Modes.
const (
	ModeSource Mode = iota + 1
	ModeDestination
)

func (m Mode) String() string {
	switch m {
	case ModeSource:
		return "source"
	case ModeDestination:
		return "destination"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Defaults.
const (
	DefaultPingInterval   = 20 * time.Second
	DefaultReconnectMin   = time.Second
	DefaultReconnectMax   = 2 * time.Minute
	DefaultDialTimeout    = 10 * time.Second
	DefaultConnBufferSize = 1 << 20
	DefaultStallTimeout   = time.Second
)

// Config configures a Session. See New for validation and defaults.
type Config struct {
	Mode Mode
	// Endpoint is "host[:port]" (wss, port 443 by default) or a full
	// "wss://host:port" or "ws://host:port" URL (ws only with AllowPlaintext).
	Endpoint string
	// Region is used when Endpoint is empty:
	// data.tunneling.iot.<region>.amazonaws.com (.com.cn for cn-* regions).
	Region string
	// AccessToken is the client access token. It is never logged.
	AccessToken string
	// ClientToken is sent as client-token so that reconnects can reuse the
	// single-use access token. Generated (UUIDv4) if empty; kept across reconnects.
	ClientToken string
	// RootCAs verifies the service; nil means the system roots. CAFile (PEM)
	// is appended to them if set.
	RootCAs *x509.CertPool
	CAFile  string
	// AllowPlaintext permits ws:// endpoints (local testing only).
	AllowPlaintext bool
	// Proxy picks the HTTP CONNECT proxy; nil means http.ProxyFromEnvironment
	// (HTTPS_PROXY / NO_PROXY, with user:password@ for basic auth).
	Proxy func(*http.Request) (*url.URL, error)
	// Services maps service ids to local addresses. Destination: the
	// allow-list of "host:port" or "unix:/path" to dial. Source: the address
	// to listen on per service ("127.0.0.1:0" picks a port).
	//
	// A single entry with the empty id (Unnamed) is the C++ localproxy's
	// "V1 format" mapping (-s port, -d host:port): it stands for the tunnel's
	// only service, whatever its id, as announced by SERVICE_IDS, and for
	// the streams of a V1 peer. With a tunnel of several services it
	// matches none of them.
	Services map[string]string
	// DestinationClientType (source only): "" (auto: V3, falling back to V2
	// when the destination proves to be V2), "V1", "V2" or "V3".
	DestinationClientType string
	// PingInterval between WebSocket pings (default 20 s). PongTimeout: with
	// no pong or other traffic for this long the WebSocket is considered dead
	// and reconnected (default 2*PingInterval + 5 s).
	PingInterval time.Duration
	PongTimeout  time.Duration
	// ReconnectMin and ReconnectMax bound the full-jitter exponential
	// backoff between connection attempts (default 1 s and 2 min).
	ReconnectMin, ReconnectMax time.Duration
	// DialTimeout bounds a local dial (destination) and how long an accepted
	// local connection waits for the tunnel to be connected (source). Default 10 s.
	DialTimeout time.Duration
	// ConnBufferSize bounds the bytes queued toward one local connection
	// (data that arrived from the tunnel faster than the local socket takes
	// it, or before the local dial finished). When it is full, the data
	// waits up to ConnStallTimeout for room (holding up the WebSocket reader,
	// hence every stream, for that long); if the queue is still full, that
	// connection alone is reset. Default 1 MiB.
	ConnBufferSize int
	// ConnStallTimeout: see ConnBufferSize. The waits of all connections
	// share one window, so N stuck connections hold the tunnel up for one
	// ConnStallTimeout, not N (see stallGate). Default 1 s.
	ConnStallTimeout time.Duration
	// MaxConnections caps the local connections of this tunnel
	// (destination): a STREAM_START or CONNECTION_START over it is answered
	// with a reset and a rate-limited warning. Default 128, as the C++
	// localproxy.
	MaxConnections int
	// Limits are shared by every session of the process: connections in
	// all tunnels, bytes queued toward local connections, local dials in
	// flight. nil gives the session Limits of its own with the defaults.
	Limits *Limits
	// Logger receives the session's logs; nil discards them.
	Logger *slog.Logger
	// OnEvent receives lifecycle events. It is called synchronously from
	// session goroutines and must not block.
	OnEvent func(Event)
}

// Unnamed is the service id of an unnamed mapping (see Config.Services).
const Unnamed = ""

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

var (
	clientTokenRe = regexp.MustCompile(`^[a-zA-Z0-9-]{32,128}$`)
	serviceRe     = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
)

// Session is one end of one tunnel. Create it with New and call Run once.
type Session struct {
	cfg       Config
	url       string
	log       *slog.Logger
	listeners map[string]net.Listener // source mode
	version   int                     // source mode: configured destination client type; 0 = auto

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
	if err := applyDefaults(&cfg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
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
		if s.version == 1 && len(cfg.Services) != 1 {
			return nil, fmt.Errorf("%w: destination client type V1 carries no service ids, so exactly one service can be forwarded, not %d", ErrInvalidConfig, len(cfg.Services))
		}
		if err := s.listen(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func validateServices(cfg *Config) error {
	if len(cfg.Services) == 0 {
		return errors.New("no services configured: map at least one service id to a local address")
	}
	for id, addr := range cfg.Services {
		if id == Unnamed && len(cfg.Services) > 1 {
			return errors.New("an unnamed service mapping must be the only one: name every service when there are several (e.g. SSH=22,HTTP=80)")
		}
		if id != Unnamed && !serviceRe.MatchString(id) {
			return fmt.Errorf("service id %q must be 1-128 characters of a-z, A-Z, 0-9, ':', '_' and '-'", id)
		}
		if addr == "" {
			return fmt.Errorf("service %q has no local address", id)
		}
	}
	return nil
}

func applyDefaults(cfg *Config) error {
	if cfg.Mode != ModeSource && cfg.Mode != ModeDestination {
		return fmt.Errorf("mode must be source or destination")
	}
	if cfg.AccessToken == "" {
		return errors.New("access token is empty: pass the token from OpenTunnel or the MQTT notification")
	}
	if cfg.ClientToken == "" {
		cfg.ClientToken = NewClientToken()
	} else if !clientTokenRe.MatchString(cfg.ClientToken) {
		return errors.New("client token must be 32-128 characters of a-z, A-Z, 0-9 and '-'")
	}
	if err := validateServices(cfg); err != nil {
		return err
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = 2*cfg.PingInterval + 5*time.Second
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = DefaultReconnectMin
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = DefaultReconnectMax
	}
	cfg.ReconnectMax = max(cfg.ReconnectMax, cfg.ReconnectMin)
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.ConnBufferSize <= 0 {
		cfg.ConnBufferSize = DefaultConnBufferSize
	}
	cfg.ConnBufferSize = max(cfg.ConnBufferSize, protocol.MaxPayload)
	if cfg.ConnStallTimeout <= 0 {
		cfg.ConnStallTimeout = DefaultStallTimeout
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.Limits == nil {
		cfg.Limits = NewLimits(0, 0, 0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Proxy == nil {
		cfg.Proxy = http.ProxyFromEnvironment
	}
	return nil
}

func parseClientType(s string) (int, error) {
	switch strings.ToUpper(s) {
	case "":
		return 0, nil
	case "V1":
		return 1, nil
	case "V2":
		return 2, nil
	case "V3":
		return 3, nil
	}
	return 0, fmt.Errorf("destination client type %q: use V1, V2, V3 or leave it empty for automatic", s)
}

// endpointURL builds wss://<endpoint>/tunnel?local-proxy-mode=<mode>.
func endpointURL(cfg *Config) (string, error) {
	ep := cfg.Endpoint
	if ep == "" {
		if !protocol.ValidRegion(cfg.Region) {
			return "", fmt.Errorf("region %q is not an AWS region name: set a region like us-east-1 or an endpoint", peerString(cfg.Region))
		}
		ep = "data.tunneling.iot." + cfg.Region + ".amazonaws.com"
		if strings.HasPrefix(cfg.Region, "cn-") {
			ep += ".cn"
		}
	}
	if !strings.Contains(ep, "://") {
		ep = "wss://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", cfg.Endpoint, err)
	}
	switch {
	case u.Scheme == "wss":
	case u.Scheme == "ws" && cfg.AllowPlaintext:
	case u.Scheme == "ws":
		return "", fmt.Errorf("endpoint %q is plaintext ws://: use wss:// or allow plaintext for local testing", cfg.Endpoint)
	default:
		return "", fmt.Errorf("endpoint %q: scheme must be wss", cfg.Endpoint)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("endpoint %q: give only host[:port]", cfg.Endpoint)
	}
	u.Host = strings.ToLower(u.Host)
	u.Path = "/tunnel"
	u.RawQuery = "local-proxy-mode=" + cfg.Mode.String()
	return u.String(), nil
}

// NewClientToken returns a random UUIDv4 string (36 characters of
// [0-9a-f-]), a client token as the protocol requires (^[a-zA-Z0-9-]{32,128}$).
// Callers that persist the client token before the session starts (to resume
// a tunnel after a restart) make it with this.
func NewClientToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
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
