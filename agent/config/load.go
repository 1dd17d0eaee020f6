package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var unknownFieldRe = regexp.MustCompile(`field (\S+) not found in type config\.Config`)

// Load reads the YAML file at path on top of Default(). Unknown keys are an
// error naming the key and its line.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(bytes.NewReader(b))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML from r on top of Default().
func Parse(r io.Reader) (Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		msg := unknownFieldRe.ReplaceAllString(err.Error(), `unknown key "$1"`)
		return Config{}, fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	if cfg.Services == nil {
		cfg.Services = map[string]string{}
	}
	return cfg, nil
}

// ParseLevel maps log_level to a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log_level: %q: use debug, info, warn or error", s)
}

// Effective renders the settings as YAML for `check-config`. Paths are shown,
// never file contents; a password in https_proxy is masked.
func (c *Config) Effective() string {
	out := *c
	out.ClientID = c.EffectiveClientID()
	out.HTTPSProxy = RedactURL(c.HTTPSProxy)
	b, err := yaml.Marshal(&out)
	if err != nil { // cannot happen for this struct
		return fmt.Sprintf("# cannot render: %v\n", err)
	}
	return string(b)
}

// RedactURL masks the password of a URL with user info.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}
