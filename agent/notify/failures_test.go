package notify

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/backoff"
	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// failureCase is one way the connection fails, driven against a real broker.
type failureCase struct {
	name string
	cfg  func(t *testing.T) MQTTConfig
	kind CauseKind
	hint string // the hint must contain this
}

// refusedPort returns a loopback port nothing listens on, held for the test.
func refusedPort(t *testing.T) int {
	_, port, _ := net.SplitHostPort(tunneltest.RefusedAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

// brokerFailures are the cases against the in-process (mochi) broker.
func brokerFailures() []failureCase {
	withBroker := func(o notifytest.BrokerOptions, edit func(t *testing.T, p *notifytest.PKI, c *MQTTConfig)) func(t *testing.T) MQTTConfig {
		return func(t *testing.T) MQTTConfig {
			p := notifytest.NewPKI(t, thing)
			b := notifytest.StartBroker(t, p, o)
			c := testConfig(t, p, b.Port(), nil)
			if edit != nil {
				edit(t, p, &c)
			}
			return c
		}
	}
	none := notifytest.BrokerOptions{}
	return []failureCase{
		{"untrusted client certificate", withBroker(none, func(t *testing.T, _ *notifytest.PKI, c *MQTTConfig) {
			other := notifytest.NewPKI(t, thing)
			c.CertFile, c.KeyFile = other.ClientCertFile, other.ClientKeyFile
		}), CauseClientCert, "ACTIVE"},
		{"expired client certificate", withBroker(none, func(t *testing.T, p *notifytest.PKI, c *MQTTConfig) {
			c.CertFile, c.KeyFile = p.IssueClient(t, "expired", thing, x509.ExtKeyUsageClientAuth,
				time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		}), CauseClientCert, "expired"},
		{"wrong root CA", withBroker(none, func(t *testing.T, _ *notifytest.PKI, c *MQTTConfig) {
			c.RootCAFile = notifytest.NewPKI(t, thing).CAFile
		}), CauseServerCert, "AmazonRootCA1"},
		{"unknown host", withBroker(none, func(_ *testing.T, _ *notifytest.PKI, c *MQTTConfig) {
			c.Endpoint = "no-such-endpoint.invalid"
		}), CauseDNS, "describe-endpoint"},
		{"refused port", withBroker(none, func(t *testing.T, _ *notifytest.PKI, c *MQTTConfig) {
			c.Port = refusedPort(t)
		}), CauseRefused, "port"},
		{"broker closes after CONNECT", withBroker(notifytest.BrokerOptions{CloseOnConnect: true}, nil), CauseClosedConnect, "iot:Connect"},
		{"CONNACK refused", withBroker(notifytest.BrokerOptions{RefuseConnect: true}, nil), CauseConnack, "iot:Connect"},
		{"SUBACK failure", withBroker(notifytest.BrokerOptions{DenySubscribe: true}, nil), CauseSubscribe, "iot:Subscribe"},
	}
}

func TestMQTTFailuresClassified(t *testing.T) { runFailures(t, brokerFailures()) }

func runFailures(t *testing.T, cases []failureCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg(t)
			// One attempt through Check: the classified error.
			src, err := NewMQTTSource(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var cause Cause
			if err := src.Check(context.Background()); !errors.As(err, &cause) || cause.Kind != tc.kind {
				t.Fatalf("Check: got %v, want cause %s", err, tc.kind)
			}
			if !strings.Contains(cause.Hint, tc.hint) {
				t.Errorf("hint %q lacks %q", cause.Hint, tc.hint)
			}
			// Run: every retry logs the same cause, with growing jittered delays.
			logs := &tunneltest.SyncBuffer{}
			cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cfg.MinReconnectInterval, cfg.MaxReconnectInterval = 10*time.Millisecond, 160*time.Millisecond
			r := startSourceCfg(t, cfg)
			lines := waitRetries(t, logs, 7)
			r.stop(t)
			checkRetries(t, lines, tc.kind, cfg)
		})
	}
}

// retryLine is a "mqtt connection failed; retrying" log record.
type retryLine struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Cause   string    `json:"cause"`
	Err     string    `json:"err"`
	Hint    string    `json:"hint"`
	Attempt int       `json:"attempt"`
	RetryIn string    `json:"retry_in"`
	Msg     string    `json:"msg"`
}

func parseRetries(t *testing.T, logs string) []retryLine {
	var out []retryLine
	for l := range strings.Lines(logs) {
		var r retryLine
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if r.Msg == "mqtt connection failed; retrying" {
			out = append(out, r)
		}
	}
	return out
}

func waitRetries(t *testing.T, logs *tunneltest.SyncBuffer, n int) []retryLine {
	var lines []retryLine
	if !tunneltest.Poll(20*time.Second, func() bool {
		lines = parseRetries(t, logs.String())
		return len(lines) >= n
	}) {
		t.Fatalf("fewer than %d retries logged:\n%s", n, logs.String())
	}
	return lines[:n]
}

// checkRetries: same cause each time, a warning first then debug lines,
// attempts counting up, each delay within the full-jitter bound, and the
// time between attempts at least the announced delay.
func checkRetries(t *testing.T, lines []retryLine, kind CauseKind, cfg MQTTConfig) {
	bo := backoff.Backoff{Min: cfg.MinReconnectInterval, Max: cfg.MaxReconnectInterval}
	var report []string
	distinct := map[time.Duration]bool{}
	for i, l := range lines {
		if l.Cause != string(kind) || l.Hint == "" || l.Err == "" {
			t.Errorf("line %d: cause %q err %q hint %q, want cause %s", i, l.Cause, l.Err, l.Hint, kind)
		}
		if want := "DEBUG"; i > 0 && l.Level != want {
			t.Errorf("line %d at %s: repeats of a cause must be rate-limited to debug", i, l.Level)
		}
		if l.Attempt != i+1 {
			t.Errorf("line %d: attempt %d", i, l.Attempt)
		}
		d, err := time.ParseDuration(l.RetryIn)
		if err != nil || d > bo.Ceiling(l.Attempt) {
			t.Errorf("attempt %d: retry_in %s above the bound %s", l.Attempt, l.RetryIn, bo.Ceiling(l.Attempt))
		}
		distinct[d] = true
		if i > 0 {
			prev, _ := time.ParseDuration(lines[i-1].RetryIn)
			gap := l.Time.Sub(lines[i-1].Time)
			if gap < prev-time.Millisecond {
				t.Errorf("attempt %d came %s after the previous one, which announced %s", l.Attempt, gap, prev)
			}
			report = append(report, gap.Round(time.Millisecond).String())
		}
	}
	if len(distinct) < 3 {
		t.Errorf("delays %v: no jitter", distinct)
	}
	t.Logf("%s: first line: %s: %s; gaps between attempts (bound %s doubling to %s): %s",
		kind, lines[0].Level, lines[0].Err, bo.Min, bo.Max, strings.Join(report, " "))
}

func asCause(err error, c *Cause) bool { return errors.As(err, c) }
