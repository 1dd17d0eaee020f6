package tunnel

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
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

// SoloConnBufferSize bounds, in source mode, the queue of a connection
// while it is the only one open on its tunnel (when ConnBufferSize is
// larger); DestinationSoloBufferSize does in destination mode. A large
// ConnBufferSize keeps one slow client or service from holding up the
// others' streams for as long as its queue takes to fill; with no other
// stream there is nobody to hold up, and waiting for the local side as
// soon as this much is queued is the flow control the protocol lacks: the
// tunnel's TCP connection, then the peer, slow to the local side's pace,
// and the kernel's socket buffers keep the local side busy meanwhile.
//
// A source opens every connection itself, so the next one raises the
// bound before any of its data can arrive (streamTable.unboundSoloLocked).
// A destination learns of the next one from the WebSocket, which its
// reader reads only once the solo queue has room; that is as it was with
// the whole ConnBufferSize full, which a connection reaches within a few
// milliseconds when its service is the slower side. A local side that
// takes nothing for soloPatience gets the whole ConnBufferSize (see
// queue.limitLocked), so one that stopped reading does not hold the next
// connection's start back for longer than that.
//
// Measured with tunnelctl proxy (16 MiB ConnBufferSize) in a 1 GiB
// download, and with tunnel-agent (1 MiB) in a 1 GiB upload: see the
// README's performance notes.
const (
	SoloConnBufferSize        = DefaultConnBufferSize
	DestinationSoloBufferSize = 256 << 10
)

// soloBufferSize is the solo bound of a connection in mode m.
func soloBufferSize(m Mode) int {
	if m == ModeSource {
		return SoloConnBufferSize
	}
	return DestinationSoloBufferSize
}

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
	// it, or before the local dial finished), counting those its local
	// writer is writing out. When it is full, the data
	// waits up to ConnStallTimeout for room (holding up the WebSocket reader,
	// hence every stream, for that long); if the queue is still full, that
	// connection alone is reset. Default 1 MiB. A connection that is the
	// only one on its tunnel queues at most SoloConnBufferSize in source
	// mode and DestinationSoloBufferSize in destination mode (see there).
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

	// netDial, when set, opens every connection the session dials in place
	// of a net.Dialer: the one the WebSocket runs over (see Session.dialer)
	// and a destination's local ones (network "tcp" or "unix"). It is the
	// tests' seam: in-memory connections let a session run in a
	// testing/synctest bubble, where the ping, pong, stall and write
	// timeouts run on a fake clock.
	netDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Unnamed is the service id of an unnamed mapping (see Config.Services).
const Unnamed = ""

// validate checks what cannot be defaulted: the mode, the tokens and the
// service mapping.
func (cfg *Config) validate() error {
	if cfg.Mode != ModeSource && cfg.Mode != ModeDestination {
		return fmt.Errorf("mode must be source or destination")
	}
	if cfg.AccessToken == "" {
		return errors.New("access token is empty: pass the token from OpenTunnel or the MQTT notification")
	}
	if cfg.ClientToken != "" && !protocol.ValidClientToken(cfg.ClientToken) {
		return errors.New("client token must be 32-128 characters of a-z, A-Z, 0-9 and '-'")
	}
	return validateServices(cfg)
}

func validateServices(cfg *Config) error {
	if len(cfg.Services) == 0 {
		return errors.New("no services configured: map at least one service id to a local address")
	}
	for id, addr := range cfg.Services {
		if id == Unnamed && len(cfg.Services) > 1 {
			return errors.New("an unnamed service mapping must be the only one: name every service when there are several (e.g. SSH=22,HTTP=80)")
		}
		if id != Unnamed && !protocol.ValidServiceID(id) {
			return fmt.Errorf("service id %q must be 1-128 characters of a-z, A-Z, 0-9, ':', '_' and '-'", id)
		}
		if addr == "" {
			return fmt.Errorf("service %q has no local address", id)
		}
	}
	return nil
}

// setDefaults fills every zero field of a validated Config: a fresh client
// token, the Default* durations and sizes, shared Limits, a discarding
// logger and the environment's proxy.
func (cfg *Config) setDefaults() {
	if cfg.ClientToken == "" {
		cfg.ClientToken = protocol.NewClientToken()
	}
	orDefault(&cfg.PingInterval, DefaultPingInterval)
	orDefault(&cfg.PongTimeout, 2*cfg.PingInterval+5*time.Second)
	orDefault(&cfg.ReconnectMin, DefaultReconnectMin)
	orDefault(&cfg.ReconnectMax, DefaultReconnectMax)
	cfg.ReconnectMax = max(cfg.ReconnectMax, cfg.ReconnectMin)
	orDefault(&cfg.DialTimeout, DefaultDialTimeout)
	orDefault(&cfg.ConnBufferSize, DefaultConnBufferSize)
	cfg.ConnBufferSize = max(cfg.ConnBufferSize, protocol.MaxPayload)
	orDefault(&cfg.ConnStallTimeout, DefaultStallTimeout)
	orDefault(&cfg.MaxConnections, DefaultMaxConnections)
	if cfg.Limits == nil {
		cfg.Limits = NewLimits(0, 0, 0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Proxy == nil {
		cfg.Proxy = http.ProxyFromEnvironment
	}
}

// orDefault sets *p to d unless it is positive.
func orDefault[T int | time.Duration](p *T, d T) {
	if *p <= 0 {
		*p = d
	}
}

func parseClientType(s string) (protocol.Version, error) {
	switch strings.ToUpper(s) {
	case "":
		return 0, nil
	case "V1":
		return protocol.V1, nil
	case "V2":
		return protocol.V2, nil
	case "V3":
		return protocol.V3, nil
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
