package emulator

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Defaults applied by Config.setDefaults.
const (
	DefaultRegion         = "us-east-1"
	DefaultAccountID      = "123456789012"
	DefaultMaxOpenTunnels = 100
	DefaultRetention      = 3 * time.Hour
	defaultSweepInterval  = time.Second
	// API server bounds (doc.go): a request, headers and body, must arrive
	// within DefaultAPIReadTimeout; the answer must leave within
	// DefaultAPIWriteTimeout; a kept-alive connection may idle
	// DefaultAPIIdleTimeout; at most DefaultMaxAPIConns connections are
	// served at once (more wait in the listen backlog).
	DefaultAPIReadTimeout  = 30 * time.Second
	DefaultAPIWriteTimeout = 30 * time.Second
	DefaultAPIIdleTimeout  = 60 * time.Second
	DefaultMaxAPIConns     = 256
	// DefaultMaxDataConns bounds data-plane connections (handshakes and
	// WebSockets together).
	DefaultMaxDataConns = 1024
	maxAPIHeaderBytes   = 64 << 10
	loopbackAnyPort     = "127.0.0.1:0"
)

// Config configures an Emulator. Empty addresses mean 127.0.0.1:0, except
// MQTTPlainAddr, where empty means no plain listener.
type Config struct {
	APIAddr       string // control plane (HTTP, or HTTPS with APITLS)
	DataAddr      string // data plane WebSocket (wss unless DataPlaintext)
	MQTTAddr      string // embedded broker, mutual TLS
	MQTTPlainAddr string // embedded broker, plain TCP (debugging only)

	Region         string        // default us-east-1
	AccountID      string        // default 123456789012
	MaxOpenTunnels int           // LimitExceededException beyond this; default 100
	StateDir       string        // CA, certificates and tunnels.json; default DefaultStateDir()
	Retention      time.Duration // how long closed tunnels stay listable; default 3h
	Strict         bool          // close connections that violate protocol.md §10 item 5

	// NoAuth accepts API requests without checking their SigV4 signature.
	// By default the Authorization header must be well formed, scoped to
	// SigningName and Region, and dated within 5 minutes.
	NoAuth bool
	// Credentials maps access key ids to secret access keys. When set, the
	// signature itself is verified and unknown keys are refused
	// (LoadCredentials reads an AWS shared credentials file).
	Credentials map[string]string

	// RotateDisconnects closes the connection of a mode whose token is
	// rotated (AWS's behaviour is unknown; by default connections stay up).
	RotateDisconnects bool

	// BrokerAllowAll lets every client of the embedded broker connect with
	// any client id and subscribe to anything. By default the per-thing
	// policy of AWS IoT Core applies (see thingPolicy).
	BrokerAllowAll bool
	// ClientIDs lists, per thing, client ids it may connect with besides
	// its thing name (a policy's iot:Connect on client/<id>).
	ClientIDs map[string][]string
	// PublishTopicFormats are topics a thing may publish to (%s is the
	// thing name), as an extra iot:Publish statement allows: the README's
	// statement for tunnel-agent's audit_topic is "tunnel-agent/%s/events".
	// By default a thing may publish nowhere.
	PublishTopicFormats []string

	MQTTURL           string // tcp://host:port or ssl://host:port: external broker instead of the embedded one
	NotifyTopicFormat string // default DefaultNotifyTopicFormat; must contain one %s
	APITLS            bool   // serve the API over HTTPS with the emulator's server certificate
	DataPlaintext     bool   // serve ws:// instead of wss:// (debugging only)

	Bandwidth     int64         // bytes per second per tunnel, both directions together (AWS: about 800 KB/s); 0: unlimited
	IdleTimeout   time.Duration // drop a data-plane connection without traffic for this long, like AWS's load balancer (~60s); 0: never
	SweepInterval time.Duration // how often expiry and retention are checked; default 1s

	APIReadTimeout  time.Duration // whole request, headers and body; default DefaultAPIReadTimeout
	APIWriteTimeout time.Duration // default DefaultAPIWriteTimeout
	APIIdleTimeout  time.Duration // kept-alive connection between requests; default DefaultAPIIdleTimeout
	MaxAPIConns     int           // API connections served at once; default DefaultMaxAPIConns
	MaxDataConns    int           // data-plane connections at once; default DefaultMaxDataConns

	Now    func() time.Time // clock; default time.Now (tests inject one)
	Logger *slog.Logger     // default: discard
}

// DefaultStateDir returns $XDG_STATE_HOME/tunnel-emulator, or
// ~/.local/state/tunnel-emulator.
func DefaultStateDir() (string, error) {
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "tunnel-emulator"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find home directory for the state directory (set --state-dir): %w", err)
	}
	return filepath.Join(home, ".local", "state", "tunnel-emulator"), nil
}

func (c *Config) setDefaults() error {
	for _, a := range []*string{&c.APIAddr, &c.DataAddr, &c.MQTTAddr} {
		if *a == "" {
			*a = loopbackAnyPort
		}
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Region, DefaultRegion)
	def(&c.AccountID, DefaultAccountID)
	def(&c.NotifyTopicFormat, DefaultNotifyTopicFormat)
	if c.MaxOpenTunnels == 0 {
		c.MaxOpenTunnels = DefaultMaxOpenTunnels
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defDur(&c.APIReadTimeout, DefaultAPIReadTimeout)
	defDur(&c.APIWriteTimeout, DefaultAPIWriteTimeout)
	defDur(&c.APIIdleTimeout, DefaultAPIIdleTimeout)
	if c.MaxAPIConns <= 0 {
		c.MaxAPIConns = DefaultMaxAPIConns
	}
	if c.MaxDataConns <= 0 {
		c.MaxDataConns = DefaultMaxDataConns
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = defaultSweepInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.StateDir == "" {
		d, err := DefaultStateDir()
		if err != nil {
			return err
		}
		c.StateDir = d
	}
	return nil
}

func (c *Config) validate() error {
	switch {
	case !protocol.ValidRegion(c.Region):
		return fmt.Errorf("region %q is not an AWS region name (like us-east-1): %w", c.Region, ErrInvalidArgument)
	case !accountRe.MatchString(c.AccountID):
		return fmt.Errorf("account id %q must be 12 digits: %w", c.AccountID, ErrInvalidArgument)
	case c.NoAuth && c.Credentials != nil:
		return fmt.Errorf("no-auth and credentials exclude each other: %w", ErrInvalidArgument)
	case c.MaxOpenTunnels < 0:
		return fmt.Errorf("max open tunnels %d must be positive: %w", c.MaxOpenTunnels, ErrInvalidArgument)
	case c.Bandwidth < 0:
		return fmt.Errorf("bandwidth %d must be positive: %w", c.Bandwidth, ErrInvalidArgument)
	case c.IdleTimeout < 0:
		return fmt.Errorf("idle timeout %s must be positive: %w", c.IdleTimeout, ErrInvalidArgument)
	case c.Retention < 0:
		return fmt.Errorf("retention %s must be positive: %w", c.Retention, ErrInvalidArgument)
	case strings.Count(c.NotifyTopicFormat, "%s") != 1:
		return fmt.Errorf("notify topic format %q must contain %%s once: %w", c.NotifyTopicFormat, ErrInvalidArgument)
	case c.MQTTURL != "" && !strings.HasPrefix(c.MQTTURL, "tcp://") && !strings.HasPrefix(c.MQTTURL, "ssl://") &&
		!strings.HasPrefix(c.MQTTURL, "tls://"):
		return fmt.Errorf("mqtt url %q must start with tcp://, ssl:// or tls://: %w", c.MQTTURL, ErrInvalidArgument)
	}
	return nil
}
