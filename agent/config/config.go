// Package config holds the tunnel-agent settings: the Config struct, its
// defaults, loading from a YAML file (unknown keys rejected with their line)
// and validation with messages that tell the user what to fix.
package config

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Defaults used when a setting is absent.
const (
	DefaultPort        = 8883
	DefaultMaxTunnels  = 10
	DefaultStateDir    = "/var/lib/tunnel-agent"
	DefaultLogLevel    = "info"
	DefaultLogFormat   = "text"
	DefaultConfigPath  = "/etc/tunnel-agent/config.yaml"
	MaxServiceLifetime = 12 * time.Hour // the service's maximum tunnel lifetime
	// DefaultConnBuffer and DefaultConnStallTimeout equal the agent/tunnel
	// library defaults (tunnel.DefaultConnBufferSize, tunnel.DefaultStallTimeout).
	DefaultConnBuffer       ByteSize = 1 << 20
	DefaultConnStallTimeout          = time.Second
	// Bounds of conn_buffer and conn_stall_timeout.
	MinConnBuffer       ByteSize = 32 << 10
	MaxConnBuffer       ByteSize = 64 << 20
	MaxConnStallTimeout          = time.Minute
	// DefaultMaxConnections (per tunnel, as the C++ localproxy),
	// DefaultMaxTotalConnections and DefaultQueueBudget equal the agent/tunnel
	// defaults of the same names. The budget fits a 64 MB device: 16
	// connections' worth of conn_buffer.
	DefaultMaxConnections               = 128
	DefaultMaxTotalConnections          = 256
	DefaultQueueBudget         ByteSize = 16 << 20
	// Bounds of max_connections, max_total_connections and queue_budget.
	MaxMaxConnections          = 65536
	MaxQueueBudget    ByteSize = 1 << 30
)

// Sentinel errors.
var (
	// ErrInvalid wraps every validation failure.
	ErrInvalid = errors.New("invalid configuration")
)

// validClientID reports whether id is 1-128 bytes of printable ASCII
// without spaces (0x21-0x7e), the MQTT client ids AWS IoT takes. A loop,
// not the regular expression it replaces (`^[\x21-\x7e]{1,128}$`), which
// stayed compiled in the heap: 36 KB.
func validClientID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for i := range len(id) {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// Config is the complete agent configuration. YAML keys are the snake_case
// names in the struct tags; every key can also be set by a command-line flag.
type Config struct {
	// ThingName is the AWS IoT thing; the agent subscribes to
	// $aws/things/<thing_name>/tunnels/notify.
	ThingName string `yaml:"thing_name"`
	// Endpoint is the AWS IoT data endpoint (xxxx-ats.iot.<region>.amazonaws.com).
	Endpoint string `yaml:"endpoint"`
	// Port is 8883 (MQTT over TLS) or 443 (MQTT over TLS with ALPN x-amzn-mqtt-ca).
	Port int `yaml:"port"`
	// Cert, Key and RootCA are the device certificate, its private key and the
	// CA that signed the broker certificate (AmazonRootCA1.pem).
	Cert   string `yaml:"cert"`
	Key    string `yaml:"key"`
	RootCA string `yaml:"root_ca"`
	// ClientID is the MQTT client id; defaults to ThingName. AWS IoT allows
	// one connection per client id: a second connection with the same id (for
	// example the Greengrass nucleus, which connects as the thing name)
	// disconnects the first. On a Greengrass core use `tunnel-agent greengrass`
	// or set a distinct client_id such as "<thing>-tunnel" and allow it in the
	// policy (iot:Connect on client/<thing>-tunnel).
	ClientID string `yaml:"client_id"`
	// Services maps a tunnel service id to the local address it reaches:
	// "host:port" or "unix:/path". It is the allow-list: nothing outside it
	// is ever dialed.
	Services map[string]string `yaml:"services"`
	// MaxTunnels caps concurrent tunnels; more are refused with a log line.
	MaxTunnels int `yaml:"max_tunnels"`
	// MaxTunnelLifetime ends a tunnel locally after this long (0: the
	// service's own 12 h limit).
	MaxTunnelLifetime time.Duration `yaml:"max_tunnel_lifetime"`
	// DataEndpoint overrides the data-plane endpoint derived from the
	// notification's region ("host[:port]" or "wss://host:port").
	DataEndpoint string `yaml:"data_endpoint"`
	// CAFile is an extra CA bundle trusted for the data plane.
	CAFile string `yaml:"ca_file"`
	// HTTPSProxy is an http(s):// proxy URL for the data plane; empty means
	// the HTTPS_PROXY / NO_PROXY environment.
	HTTPSProxy string `yaml:"https_proxy"`
	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// StateDir holds the resumable tunnels (tunnels/<id>.json, mode 0600).
	StateDir string `yaml:"state_dir"`
	// AllowPlaintextDataPlane permits ws:// data endpoints. Local testing only.
	AllowPlaintextDataPlane bool `yaml:"allow_plaintext_data_plane"`
	// ConnBuffer bounds the bytes queued toward one local connection when the
	// local service reads slower than the tunnel delivers (the protocol has no
	// flow control). When it is full, tunnel data waits up to ConnStallTimeout
	// (holding up every stream of that tunnel meanwhile), then that connection
	// alone is reset. 32KiB..64MiB. A connection alone on its tunnel queues
	// at most 256KiB of it while its service reads (agent/tunnel's
	// DestinationSoloBufferSize).
	ConnBuffer ByteSize `yaml:"conn_buffer"`
	// ConnStallTimeout: see ConnBuffer. The waits of all connections of a
	// tunnel share one window, so however many local services stop reading,
	// the tunnel is held up for one ConnStallTimeout. 0..1m; 0 means the
	// default (1s).
	ConnStallTimeout time.Duration `yaml:"conn_stall_timeout"`
	// ControlSocket is the read-only Unix socket `tunnel-agent status`
	// asks (mode 0660); "off" disables it.
	ControlSocket string `yaml:"control_socket"`
	// MetricsListen serves Prometheus metrics on a loopback host:port or
	// unix:/path; empty (the default) serves none.
	MetricsListen string `yaml:"metrics_listen"`
	// AuditTopic, when set, is where every audit event is also published
	// (QoS 1, JSON); {thing} stands for the thing name.
	AuditTopic string `yaml:"audit_topic"`
	// AuditQueue bounds the audit events kept while they cannot be
	// published; the oldest are dropped (and counted) beyond it.
	AuditQueue int `yaml:"audit_queue"`
	// MaxConnections caps the local connections of one tunnel; a connection
	// over it is reset (the peer sees CONNECTION_RESET or STREAM_RESET) and a
	// rate-limited warning is logged. 1..65536, default 128.
	MaxConnections int `yaml:"max_connections"`
	// MaxTotalConnections caps the local connections across all tunnels.
	// 1..65536, default 256.
	MaxTotalConnections int `yaml:"max_total_connections"`
	// QueueBudget caps the bytes queued toward local connections across all
	// tunnels (each connection also within conn_buffer); data that would
	// pass it resets the connection it is for, unless that connection's own
	// local writer holds a buffer it is writing: that data waits for it as
	// for a full conn_buffer. conn_buffer..1GiB, default 16MiB.
	QueueBudget ByteSize `yaml:"queue_budget"`
}

// Default returns a Config with every default filled in.
func Default() Config {
	return Config{
		Port:       DefaultPort,
		Services:   map[string]string{},
		MaxTunnels: DefaultMaxTunnels,
		LogLevel:   DefaultLogLevel,
		LogFormat:  DefaultLogFormat,
		StateDir:   DefaultStateDir,

		ConnBuffer:       DefaultConnBuffer,
		ConnStallTimeout: DefaultConnStallTimeout,

		ControlSocket:       DefaultControlSocket,
		AuditQueue:          DefaultAuditQueue,
		MaxConnections:      DefaultMaxConnections,
		MaxTotalConnections: DefaultMaxTotalConnections,
		QueueBudget:         DefaultQueueBudget,
	}
}

// EffectiveClientID is ClientID, or ThingName when ClientID is empty.
func (c *Config) EffectiveClientID() string {
	if c.ClientID != "" {
		return c.ClientID
	}
	return c.ThingName
}

// Lifetime is the local tunnel lifetime: MaxTunnelLifetime capped at the
// service maximum.
func (c *Config) Lifetime() time.Duration {
	if c.MaxTunnelLifetime > 0 && c.MaxTunnelLifetime < MaxServiceLifetime {
		return c.MaxTunnelLifetime
	}
	return MaxServiceLifetime
}

// ValidateTunnel checks the settings the data plane needs (services, limits,
// state, logging). Validate adds the MQTT settings; the Greengrass mode,
// which gets MQTT through the nucleus, uses ValidateTunnel alone.
func (c *Config) ValidateTunnel() error {
	return joinInvalid(c.tunnelErrors())
}

func (c *Config) tunnelErrors() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(c.Services) == 0 {
		add("services: empty: list at least one service, e.g. `services: {SSH: 127.0.0.1:22}`")
	}
	for _, id := range sortedKeys(c.Services) {
		if !protocol.ValidServiceID(id) {
			add("services: id %q: must match [a-zA-Z0-9:_-]{1,128}", id)
		}
		if err := ValidateAddr(c.Services[id]); err != nil {
			add("services: %s: %w", id, err)
		}
	}
	if c.MaxTunnels < 1 {
		add("max_tunnels: %d: must be at least 1", c.MaxTunnels)
	}
	if c.MaxTunnelLifetime < 0 {
		add("max_tunnel_lifetime: %s: must not be negative", c.MaxTunnelLifetime)
	}
	if c.ConnBuffer < MinConnBuffer || c.ConnBuffer > MaxConnBuffer {
		add("conn_buffer: %s: must be between %s and %s (e.g. 1MiB)", c.ConnBuffer, MinConnBuffer, MaxConnBuffer)
	}
	if c.ConnStallTimeout < 0 || c.ConnStallTimeout > MaxConnStallTimeout {
		add("conn_stall_timeout: %s: must be between 0 and %s (e.g. 1s)", c.ConnStallTimeout, MaxConnStallTimeout)
	}
	if c.MaxConnections < 1 || c.MaxConnections > MaxMaxConnections {
		add("max_connections: %d: must be between 1 and %d (default %d)", c.MaxConnections, MaxMaxConnections, DefaultMaxConnections)
	}
	if c.MaxTotalConnections < 1 || c.MaxTotalConnections > MaxMaxConnections {
		add("max_total_connections: %d: must be between 1 and %d (default %d)", c.MaxTotalConnections, MaxMaxConnections, DefaultMaxTotalConnections)
	}
	if c.QueueBudget < c.ConnBuffer || c.QueueBudget > MaxQueueBudget {
		add("queue_budget: %s: must be between conn_buffer (%s) and %s (default %s)", c.QueueBudget, c.ConnBuffer, MaxQueueBudget, DefaultQueueBudget)
	}
	if c.StateDir == "" {
		add("state_dir: empty: set a writable directory, e.g. %s", DefaultStateDir)
	}
	if err := validateDataPlane(c); err != nil {
		errs = append(errs, err)
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("log_format: %q: must be text or json", c.LogFormat)
	}
	errs = append(errs, c.observeErrors()...)
	return errs
}

// Validate checks the whole configuration for the standalone (MQTT) mode.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !protocol.ValidThingName(c.ThingName) {
		add("thing_name: %q: set the AWS IoT thing name ([a-zA-Z0-9:_-]{1,128})", c.ThingName)
	}
	if c.Endpoint == "" || (strings.ContainsAny(c.Endpoint, "/: ") && !isIPv6Literal(c.Endpoint)) {
		add("endpoint: %q: set the AWS IoT endpoint host (aws iot describe-endpoint --endpoint-type iot:Data-ATS), without scheme or port", c.Endpoint)
	}
	if c.Port != 8883 && c.Port != 443 && (c.Port < 1 || c.Port > 65535) {
		add("port: %d: use 8883, or 443 (ALPN x-amzn-mqtt-ca)", c.Port)
	}
	for _, f := range []struct{ key, val string }{{"cert", c.Cert}, {"key", c.Key}, {"root_ca", c.RootCA}} {
		if f.val == "" {
			add("%s: empty: set the path of the PEM file", f.key)
		}
	}
	if id := c.EffectiveClientID(); id != "" && !validClientID(id) {
		add("client_id: %q: printable ASCII without spaces, at most 128 characters", id)
	}
	errs = append(errs, c.tunnelErrors()...)
	return joinInvalid(errs)
}

// isIPv6Literal accepts "2001:db8::1" and "[2001:db8::1]" as an endpoint.
func isIPv6Literal(s string) bool {
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	return ip != nil && ip.To4() == nil
}

func validateDataPlane(c *Config) error {
	if strings.HasPrefix(c.DataEndpoint, "ws://") && !c.AllowPlaintextDataPlane {
		return fmt.Errorf("data_endpoint: ws:// is plaintext: use wss:// or set allow_plaintext_data_plane: true (local testing only)")
	}
	if c.HTTPSProxy != "" && !strings.HasPrefix(c.HTTPSProxy, "http://") && !strings.HasPrefix(c.HTTPSProxy, "https://") {
		return fmt.Errorf("https_proxy: must be an http:// or https:// URL")
	}
	return nil
}

// ValidateAddr checks a service address: "host:port" or "unix:/abs/path".
func ValidateAddr(addr string) error {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%q: a unix socket needs an absolute path, e.g. unix:/run/admin.sock", addr)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("%q: use host:port (e.g. 127.0.0.1:22) or unix:/path", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be 1-65535", addr)
	}
	return nil
}

func joinInvalid(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
