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

func newSettings(name string, greengrass bool) *settings {
	s := &settings{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	fs := s.fs
	fs.StringVar(&s.configPath, "config", "", "config file (default "+config.DefaultConfigPath+" if it exists)")
	if greengrass {
		fs.StringVar(&s.configJSON, "config-json", "", "component configuration as JSON (the recipe passes {configuration:/agent})")
	}
	str := func(name, usage string, set func(*config.Config, string)) {
		fs.Func(name, usage, func(v string) error {
			s.apply = append(s.apply, func(c *config.Config) error { set(c, v); return nil })
			return nil
		})
	}
	num := func(name, usage string, set func(*config.Config, int)) {
		fs.Func(name, usage, func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return errors.New("not a number")
			}
			s.apply = append(s.apply, func(c *config.Config) error { set(c, n); return nil })
			return nil
		})
	}
	str("thing-name", "thing_name: AWS IoT thing name", func(c *config.Config, v string) { c.ThingName = v })
	str("endpoint", "endpoint: AWS IoT data endpoint host", func(c *config.Config, v string) { c.Endpoint = v })
	num("port", "port: 8883, or 443 (ALPN x-amzn-mqtt-ca)", func(c *config.Config, v int) { c.Port = v })
	str("cert", "cert: device certificate file", func(c *config.Config, v string) { c.Cert = v })
	str("key", "key: device private key file", func(c *config.Config, v string) { c.Key = v })
	str("root-ca", "root_ca: CA file for the MQTT broker", func(c *config.Config, v string) { c.RootCA = v })
	str("client-id", "client_id: MQTT client id (default: thing name)", func(c *config.Config, v string) { c.ClientID = v })
	fs.Func("service", "services: ID=ADDR (repeatable; replaces the file's map), e.g. SSH=127.0.0.1:22", func(v string) error {
		id, addr, ok := strings.Cut(v, "=")
		if !ok {
			return errors.New("use ID=ADDR, e.g. SSH=127.0.0.1:22")
		}
		if s.services == nil {
			s.services = map[string]string{}
			s.apply = append(s.apply, func(c *config.Config) error { c.Services = s.services; return nil })
		}
		s.services[id] = addr
		return nil
	})
	num("max-tunnels", "max_tunnels: concurrent tunnel cap", func(c *config.Config, v int) { c.MaxTunnels = v })
	fs.Func("max-tunnel-lifetime", "max_tunnel_lifetime: e.g. 2h (0: service maximum)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("not a duration (e.g. 90m)")
		}
		s.apply = append(s.apply, func(c *config.Config) error { c.MaxTunnelLifetime = d; return nil })
		return nil
	})
	str("data-endpoint", "data_endpoint: data-plane endpoint override", func(c *config.Config, v string) { c.DataEndpoint = v })
	str("ca-file", "ca_file: extra CA for the data plane", func(c *config.Config, v string) { c.CAFile = v })
	str("https-proxy", "https_proxy: proxy URL for the data plane", func(c *config.Config, v string) { c.HTTPSProxy = v })
	str("log-level", "log_level: debug, info, warn, error", func(c *config.Config, v string) { c.LogLevel = v })
	str("log-format", "log_format: text or json", func(c *config.Config, v string) { c.LogFormat = v })
	str("state-dir", "state_dir: directory for resumable tunnels", func(c *config.Config, v string) { c.StateDir = v })
	fs.Func("allow-plaintext-data-plane", "allow_plaintext_data_plane: permit ws:// (testing only): true|false", func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("use true or false")
		}
		s.apply = append(s.apply, func(c *config.Config) error { c.AllowPlaintextDataPlane = b; return nil })
		return nil
	})
	return s
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
