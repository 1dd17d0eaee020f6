package main

import (
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
	apply      []func(*config.Config) error
	services   map[string]string
}

type stringFlag struct {
	name, usage string
	set         func(*config.Config, string)
}

var stringFlags = []stringFlag{
	{"thing-name", "thing_name: AWS IoT thing name", func(c *config.Config, v string) { c.ThingName = v }},
	{"endpoint", "endpoint: AWS IoT data endpoint host", func(c *config.Config, v string) { c.Endpoint = v }},
	{"cert", "cert: device certificate file", func(c *config.Config, v string) { c.Cert = v }},
	{"key", "key: device private key file", func(c *config.Config, v string) { c.Key = v }},
	{"root-ca", "root_ca: CA file for the MQTT broker", func(c *config.Config, v string) { c.RootCA = v }},
	{"client-id", "client_id: MQTT client id (default: thing name)", func(c *config.Config, v string) { c.ClientID = v }},
	{"data-endpoint", "data_endpoint: data-plane endpoint override", func(c *config.Config, v string) { c.DataEndpoint = v }},
	{"ca-file", "ca_file: extra CA for the data plane", func(c *config.Config, v string) { c.CAFile = v }},
	{"https-proxy", "https_proxy: proxy URL for the data plane", func(c *config.Config, v string) { c.HTTPSProxy = v }},
	{"log-level", "log_level: debug, info, warn, error", func(c *config.Config, v string) { c.LogLevel = v }},
	{"log-format", "log_format: text or json", func(c *config.Config, v string) { c.LogFormat = v }},
	{"state-dir", "state_dir: directory for resumable tunnels", func(c *config.Config, v string) { c.StateDir = v }},
	{"control-socket", "control_socket: the status socket, or off (default " + config.DefaultControlSocket + ")", func(c *config.Config, v string) { c.ControlSocket = v }},
	{"metrics-listen", "metrics_listen: Prometheus metrics on a loopback host:port or unix:/path (default off)", func(c *config.Config, v string) { c.MetricsListen = v }},
	{"audit-topic", "audit_topic: also publish audit events here, e.g. tunnel-agent/{thing}/events (default off)", func(c *config.Config, v string) { c.AuditTopic = v }},
}

func newSettings(name string, greengrass bool) *settings {
	s := &settings{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	s.fs.StringVar(&s.configPath, "config", "", "config file (default "+config.DefaultConfigPath+" if it exists)")
	if greengrass {
		s.fs.StringVar(&s.configJSON, "config-json", "", "component configuration as JSON (the recipe passes {configuration:/agent})")
	}
	for _, f := range stringFlags {
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
	num("port", "port: 8883, or 443 (ALPN x-amzn-mqtt-ca)", func(c *config.Config, v int) { c.Port = v })
	num("max-tunnels", "max_tunnels: concurrent tunnel cap", func(c *config.Config, v int) { c.MaxTunnels = v })
	num("audit-queue", "audit_queue: audit events kept while offline (default 1000)", func(c *config.Config, v int) { c.AuditQueue = v })
	s.fs.Func("service", "services: ID=ADDR (repeatable; replaces the file's map), e.g. SSH=127.0.0.1:22", func(v string) error {
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
	s.fs.Func("max-tunnel-lifetime", "max_tunnel_lifetime: e.g. 2h (0: service maximum)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("not a duration (e.g. 90m)")
		}
		s.later(func(c *config.Config) { c.MaxTunnelLifetime = d })
		return nil
	})
	s.fs.Func("conn-buffer", "conn_buffer: bytes queued per local connection, e.g. 1MiB (32KiB..64MiB)", func(v string) error {
		n, err := config.ParseByteSize(v)
		if err != nil {
			return err
		}
		s.later(func(c *config.Config) { c.ConnBuffer = n })
		return nil
	})
	s.fs.Func("conn-stall-timeout", "conn_stall_timeout: wait for room in a full conn_buffer before resetting that connection, e.g. 1s (0..1m)", func(v string) error {
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
	default:
		if _, statErr := os.Stat(config.DefaultConfigPath); statErr == nil {
			if cfg, err = config.Load(config.DefaultConfigPath); err != nil {
				return cfg, err
			}
		}
	}
	for _, f := range s.apply {
		if err := f(&cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}
