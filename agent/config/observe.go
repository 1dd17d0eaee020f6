package config

import (
	"fmt"
	"net"
	"strings"
	"unicode/utf8"
)

// Defaults of the observability settings.
const (
	// DefaultControlSocket is in the unit's RuntimeDirectory=tunnel-agent.
	DefaultControlSocket = "/run/tunnel-agent/control.sock"
	// ControlSocketOff disables the control socket.
	ControlSocketOff     = "off"
	DefaultAuditQueue    = 1000
	MaxAuditQueue        = 100000
	maxUnixPath          = 107 // sun_path holds 108 bytes with the NUL
	maxTopicBytes        = 256 // AWS IoT's limit on a topic name
	thingPlaceholder     = "{thing}"
	maxTopicLevelsAWSIoT = 8 // forward slashes in a topic, AWS IoT's limit is 7 slashes
)

// AuditTopicFor is audit_topic with {thing} replaced by the thing name.
func (c *Config) AuditTopicFor(thing string) string {
	return strings.ReplaceAll(c.AuditTopic, thingPlaceholder, thing)
}

func (c *Config) observeErrors() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s := c.ControlSocket; s != ControlSocketOff && s != "" {
		if !strings.HasPrefix(s, "/") || len(s) > maxUnixPath {
			add("control_socket: %q: use an absolute path of at most %d bytes (default %s), or %q", s, maxUnixPath, DefaultControlSocket, ControlSocketOff)
		}
	}
	if err := validateMetricsListen(c.MetricsListen); err != nil {
		errs = append(errs, err)
	}
	if err := validateTopic(c.AuditTopicFor("thing")); err != nil {
		add("audit_topic: %q: %w", c.AuditTopic, err)
	}
	if c.AuditQueue < 1 || c.AuditQueue > MaxAuditQueue {
		add("audit_queue: %d: must be between 1 and %d events", c.AuditQueue, MaxAuditQueue)
	}
	return errs
}

// validateMetricsListen accepts "", a loopback host:port or unix:/path: the
// metrics are not for the network at large.
func validateMetricsListen(s string) error {
	if s == "" {
		return nil
	}
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(p, "/") || len(p) > maxUnixPath {
			return fmt.Errorf("metrics_listen: %q: a unix socket needs an absolute path of at most %d bytes, e.g. unix:/run/tunnel-agent/metrics.sock", s, maxUnixPath)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return fmt.Errorf("metrics_listen: %q: use a loopback address such as 127.0.0.1:9470, or unix:/path", s)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("metrics_listen: %q: only loopback addresses (127.0.0.1, ::1, localhost) are allowed; expose metrics further with a reverse proxy that adds authentication", s)
	}
	return nil
}

// validateTopic checks an MQTT topic name to publish to (AWS IoT rules).
func validateTopic(t string) error {
	switch {
	case t == "":
		return nil
	case len(t) > maxTopicBytes || !utf8.ValidString(t):
		return fmt.Errorf("must be valid UTF-8 of at most %d bytes", maxTopicBytes)
	case strings.ContainsAny(t, "+#\x00"):
		return fmt.Errorf("a topic to publish to cannot hold the wildcards + or #")
	case strings.HasPrefix(t, "$"):
		return fmt.Errorf("topics starting with $ are reserved by AWS IoT; use e.g. tunnel-agent/{thing}/events")
	case strings.Count(t, "/") >= maxTopicLevelsAWSIoT:
		return fmt.Errorf("AWS IoT allows at most %d forward slashes in a topic", maxTopicLevelsAWSIoT-1)
	}
	return nil
}
