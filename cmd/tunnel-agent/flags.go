package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/config"
)

// settings collects the flags of a subcommand. Flags are applied on top of
// the config file, so each one overrides its key.
type settings struct {
	fs         *flag.FlagSet
	configPath string
	configJSON string // greengrass: the component configuration
	greengrass bool   // the nucleus provides the MQTT connection: no MQTT flags
	apply      []func(*config.Config) error
	services   map[string]string
	loaded     string // the file the last load read, "" if none
}

// usageError is a command-line mistake (exit status 2, as tunnelctl).
type usageError struct {
	err     error
	printed bool // flag printed it already, with the usage
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parse parses the command line; a bad flag is a usageError (flag has
// already printed it with the usage).
func (s *settings) parse(args []string) error {
	var help bytes.Buffer
	s.fs.SetOutput(&help)
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = os.Stdout.Write(help.Bytes())
			return err
		}
		return usageError{err: fmt.Errorf("%w (see tunnel-agent %s -h)", err, s.fs.Name())}
	}
	if s.fs.NArg() > 0 {
		return usageError{err: fmt.Errorf("unexpected argument %q: every setting is a flag (see -h)", s.fs.Arg(0))}
	}
	return nil
}

// loadValid loads and validates the standalone (MQTT) configuration. When
// no file was read, the error says so: most of the time that is the cause.
func (s *settings) loadValid() (config.Config, error) {
	cfg, err := s.load(nil)
	if err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		if s.loaded == "" {
			return cfg, fmt.Errorf("no config file: %s does not exist and no --config was given (write one, e.g. from configs/tunnel-agent.yaml, or pass every setting as a flag): %w",
				config.DefaultConfigPath, err)
		}
		return cfg, err
	}
	return cfg, nil
}

// source describes where the configuration comes from, for logs.
func (s *settings) source() string {
	switch {
	case s.configJSON != "":
		return "--config-json"
	case s.configPath != "":
		return s.configPath
	}
	return config.DefaultConfigPath
}

type stringFlag struct {
	name, usage string
	set         func(*config.Config, string)
}

var stringFlags = []stringFlag{
	{"thing-name", "thing_name: AWS IoT thing `name`", func(c *config.Config, v string) { c.ThingName = v }},
	{"endpoint", "endpoint: AWS IoT data endpoint `host` (aws iot describe-endpoint --endpoint-type iot:Data-ATS)", func(c *config.Config, v string) { c.Endpoint = v }},
	{"cert", "cert: device certificate PEM `file`", func(c *config.Config, v string) { c.Cert = v }},
	{"key", "key: device private key PEM `file`", func(c *config.Config, v string) { c.Key = v }},
	{"root-ca", "root_ca: CA PEM `file` for the MQTT broker (AmazonRootCA1.pem)", func(c *config.Config, v string) { c.RootCA = v }},
	{"client-id", "client_id: MQTT client `id` (default: the thing name)", func(c *config.Config, v string) { c.ClientID = v }},
	{"data-endpoint", "data_endpoint: data-plane endpoint override, `host[:port]` or wss://host:port (default: from the region)", func(c *config.Config, v string) { c.DataEndpoint = v }},
	{"ca-file", "ca_file: extra CA PEM `file` for the data plane", func(c *config.Config, v string) { c.CAFile = v }},
	{"https-proxy", "https_proxy: http(s):// proxy `URL` for the data plane and MQTT (default: $HTTPS_PROXY)", func(c *config.Config, v string) { c.HTTPSProxy = v }},
	{"log-level", "log_level: `level`: debug, info, warn or error (default " + config.DefaultLogLevel + ")", func(c *config.Config, v string) { c.LogLevel = v }},
	{"log-format", "log_format: `format`: text or json (default " + config.DefaultLogFormat + ")", func(c *config.Config, v string) { c.LogFormat = v }},
	{"state-dir", "state_dir: `directory` for resumable tunnels (default " + config.DefaultStateDir + ")", func(c *config.Config, v string) { c.StateDir = v }},
	{"control-socket", "control_socket: the status socket `path`, or off (default " + config.DefaultControlSocket + ")", func(c *config.Config, v string) { c.ControlSocket = v }},
	{"metrics-listen", "metrics_listen: Prometheus metrics on a loopback `host:port` or unix:/path (default off)", func(c *config.Config, v string) { c.MetricsListen = v }},
	{"audit-topic", "audit_topic: also publish the audit events to this `topic`, e.g. tunnel-agent/{thing}/events (default off)", func(c *config.Config, v string) { c.AuditTopic = v }},
}

func newSettings(name string, greengrass bool) *settings {
	s := &settings{fs: flag.NewFlagSet(name, flag.ContinueOnError), greengrass: greengrass}
	s.fs.StringVar(&s.configPath, "config", "", "config `file` (default "+config.DefaultConfigPath+" if it exists)")
	if greengrass {
		s.fs.StringVar(&s.configJSON, "config-json", "", "component configuration as JSON (the recipe passes {configuration:/agent})")
		s.fs.Usage = greengrassUsage(s.fs)
	}
	for _, f := range stringFlags {
		if greengrass && nucleusProvidedFlag(f.name) {
			continue
		}
		s.fs.Func(f.name, f.usage, func(v string) error {
			s.later(func(c *config.Config) { f.set(c, v) })
			return nil
		})
	}
	s.bindTyped()
	return s
}

// later queues a change applied after the file is loaded.
func (s *settings) later(f func(*config.Config)) {
	s.apply = append(s.apply, func(c *config.Config) error { f(c); return nil })
}

// bindTyped adds the flags whose values need parsing.
func (s *settings) bindTyped() {
	num := func(name, usage string, set func(*config.Config, int)) {
		s.fs.Func(name, usage, func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return errors.New("not a number")
			}
			s.later(func(c *config.Config) { set(c, n) })
			return nil
		})
	}
	if !s.greengrass {
		num("port", "port: MQTT `port`, 8883 or 443 (ALPN x-amzn-mqtt-ca) (default 8883)", func(c *config.Config, v int) { c.Port = v })
	}
	num("max-tunnels", fmt.Sprintf("max_tunnels: concurrent tunnel cap, a `number` (default %d)", config.DefaultMaxTunnels), func(c *config.Config, v int) { c.MaxTunnels = v })
	num("audit-queue", fmt.Sprintf("audit_queue: audit events kept while offline, a `number` (default %d)", config.DefaultAuditQueue), func(c *config.Config, v int) { c.AuditQueue = v })
	num("max-connections", fmt.Sprintf("max_connections: local connections per tunnel, a `number` (default %d)", config.DefaultMaxConnections),
		func(c *config.Config, v int) { c.MaxConnections = v })
	num("max-total-connections", fmt.Sprintf("max_total_connections: local connections across all tunnels, a `number` (default %d)", config.DefaultMaxTotalConnections),
		func(c *config.Config, v int) { c.MaxTotalConnections = v })
	s.fs.Func("service", "services: `ID=ADDR` (repeatable; replaces the file's map), e.g. SSH=127.0.0.1:22", func(v string) error {
		id, addr, ok := strings.Cut(v, "=")
		if !ok {
			return errors.New("use ID=ADDR, e.g. SSH=127.0.0.1:22")
		}
		if s.services == nil {
			s.services = map[string]string{}
			s.later(func(c *config.Config) { c.Services = s.services })
		}
		s.services[id] = addr
		return nil
	})
	s.fs.Func("max-tunnel-lifetime", "max_tunnel_lifetime: a `duration` such as 2h (default 0: the service's 12h)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("not a duration (e.g. 90m)")
		}
		s.later(func(c *config.Config) { c.MaxTunnelLifetime = d })
		return nil
	})
	s.fs.Func("conn-buffer", "conn_buffer: `size` queued per local connection, 32KiB..64MiB (default 1MiB)", func(v string) error {
		n, err := config.ParseByteSize(v)
		if err != nil {
			return err
		}
		s.later(func(c *config.Config) { c.ConnBuffer = n })
		return nil
	})
	s.fs.Func("queue-budget", "queue_budget: `bytes` queued toward local connections across all tunnels, at least conn_buffer (default 16MiB)", func(v string) error {
		n, err := config.ParseByteSize(v)
		if err != nil {
			return err
		}
		s.later(func(c *config.Config) { c.QueueBudget = n })
		return nil
	})
	s.fs.Func("conn-stall-timeout", "conn_stall_timeout: `duration` to wait for room in a full conn_buffer before resetting that connection, 0..1m (default 1s)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("not a duration (e.g. 1s)")
		}
		s.later(func(c *config.Config) { c.ConnStallTimeout = d })
		return nil
	})
	s.fs.BoolFunc("allow-plaintext-data-plane", "allow_plaintext_data_plane: permit ws:// (testing only)", func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("use true or false")
		}
		s.later(func(c *config.Config) { c.AllowPlaintextDataPlane = b })
		return nil
	})
}

// load builds the effective config: defaults, then the file (or JSON),
// then the flags. It does not validate.
func (s *settings) load(normalizeJSON func([]byte) ([]byte, error)) (config.Config, error) {
	cfg := config.Default()
	var err error
	switch {
	case s.configJSON != "":
		b := []byte(s.configJSON)
		if normalizeJSON != nil {
			if b, err = normalizeJSON(b); err != nil {
				return cfg, err
			}
		}
		if cfg, err = config.Parse(strings.NewReader(string(b))); err != nil {
			return cfg, fmt.Errorf("component configuration: %w", err)
		}
	case s.configPath != "":
		if cfg, err = config.Load(s.configPath); err != nil {
			return cfg, err
		}
		s.loaded = s.configPath
	default:
		if _, statErr := os.Stat(config.DefaultConfigPath); statErr == nil {
			if cfg, err = config.Load(config.DefaultConfigPath); err != nil {
				return cfg, err
			}
			s.loaded = config.DefaultConfigPath
		}
	}
	for _, f := range s.apply {
		if err := f(&cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}
