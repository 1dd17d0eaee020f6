package greengrass

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/protocol"
)

// Environment variables the Greengrass nucleus sets for every component process.
const (
	EnvSocketPath = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
	EnvAuthToken  = "SVCUID"
	EnvThingName  = "AWS_IOT_THING_NAME"
)

// Defaults for the optional Config fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultResubscribeMin   = time.Second
	DefaultResubscribeMax   = time.Minute
)

// Config configures a Source. ConfigFromEnv fills the first three fields the way
// the nucleus provides them.
type Config struct {
	SocketPath string // the nucleus IPC socket
	AuthToken  string // SVCUID: secret, never logged
	ThingName  string // the core device's thing; the notify topic is built from it
	Logger     *slog.Logger

	// Optional; zero means the default above.
	HandshakeTimeout time.Duration // socket connect + ConnectAck
	WriteTimeout     time.Duration // each write to the socket
	ResubscribeMin   time.Duration // backoff after a failed subscription
	ResubscribeMax   time.Duration
}

// ConfigFromEnv reads the variables the nucleus sets for a component process.
// It fails with ErrNotGreengrass when one is missing.
func ConfigFromEnv() (Config, error) {
	return configFromLookup(os.LookupEnv)
}

func configFromLookup(lookup func(string) (string, bool)) (Config, error) {
	var cfg Config
	for _, v := range []struct {
		name string
		dst  *string
	}{
		{EnvSocketPath, &cfg.SocketPath},
		{EnvAuthToken, &cfg.AuthToken},
		{EnvThingName, &cfg.ThingName},
	} {
		val, ok := lookup(v.name)
		if !ok || val == "" {
			return Config{}, fmt.Errorf("%w: %s is not set: run `tunnel-agent greengrass` "+
				"as a Greengrass v2 component (see configs/greengrass/recipe.yaml); the nucleus sets it",
				ErrNotGreengrass, v.name)
		}
		*v.dst = val
	}
	return cfg, cfg.Validate()
}

// Validate checks the required fields. It never echoes the auth token.
func (c Config) Validate() error {
	var errs []error
	if c.SocketPath == "" {
		errs = append(errs, fmt.Errorf("socket path is empty (%s)", EnvSocketPath))
	}
	if c.AuthToken == "" {
		errs = append(errs, fmt.Errorf("auth token is empty (%s)", EnvAuthToken))
	}
	if !protocol.ValidThingName(c.ThingName) {
		errs = append(errs, fmt.Errorf("thing name %q is not a valid AWS IoT thing name (%s)",
			c.ThingName, EnvThingName))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// LogValue keeps the auth token out of logs when a Config is logged.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String(logKeySocket, c.SocketPath),
		slog.String(logKeyThing, c.ThingName),
		slog.Bool(logKeyAuthTokenSet, c.AuthToken != ""),
	)
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.ResubscribeMin, DefaultResubscribeMin)
	setDefault(&c.ResubscribeMax, DefaultResubscribeMax)
	if c.ResubscribeMax < c.ResubscribeMin {
		c.ResubscribeMax = c.ResubscribeMin
	}
	return c
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Topic is the notify topic of a thing: "$aws/things/<thing>/tunnels/notify".
// (Same value as notify.Topic; kept here so the package stands alone.)
func Topic(thing string) string {
	return "$aws/things/" + thing + "/tunnels/notify"
}
