package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

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
	raw, err := io.ReadAll(io.LimitReader(r, maxConfigSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	if len(raw) > maxConfigSize {
		return Config{}, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, maxConfigSize)
	}
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		if !unknownFieldRe.MatchString(err.Error()) {
			if msg := typeErrors(raw); msg != "" {
				return Config{}, fmt.Errorf("%w: %s", ErrInvalid, msg)
			}
		}
		msg := unknownFieldRe.ReplaceAllString(err.Error(), `unknown key "$1"`)
		return Config{}, fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	if cfg.Services == nil {
		cfg.Services = map[string]string{}
	}
	return cfg, nil
}

// maxConfigSize bounds a configuration file (real ones are < 4 KiB).
const maxConfigSize = 1 << 20

// forms says what a key of each type looks like, for type errors.
var forms = map[reflect.Type]string{
	reflect.TypeFor[time.Duration]():     "a duration such as 2s, 90m or 12h",
	reflect.TypeFor[ByteSize]():          "a size such as 256KiB or 1MiB",
	reflect.TypeFor[int]():               "a whole number",
	reflect.TypeFor[bool]():              "true or false",
	reflect.TypeFor[string]():            "a string (quote it)",
	reflect.TypeFor[map[string]string](): "a map of service id to address, e.g. {SSH: 127.0.0.1:22}",
}

// typeErrors re-decodes each top-level key on its own to name the key, its
// line and the expected form, where yaml.v3 only says
// "cannot unmarshal !!int `2` into time.Duration".
func typeErrors(raw []byte) string {
	var doc yaml.Node
	if yaml.Unmarshal(raw, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return ""
	}
	fields := map[string]reflect.Type{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		fields[key] = t.Field(i).Type
	}
	var msgs []string
	m := doc.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		k, v := m[i], m[i+1]
		typ, ok := fields[k.Value]
		if !ok {
			continue
		}
		if err := v.Decode(reflect.New(typ).Interface()); err != nil {
			val := v.Value
			if len(val) > 40 {
				val = val[:40] + "..."
			}
			msgs = append(msgs, fmt.Sprintf("line %d: %s: `%s` is not %s", v.Line, k.Value, val, forms[typ]))
		}
	}
	return strings.Join(msgs, "; ")
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
