package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// ALPNProtocol is what AWS IoT needs to speak MQTT on port 443.
const ALPNProtocol = "x-amzn-mqtt-ca"

const (
	// takeoverWindow: a connection the broker drops sooner than this after
	// accepting it was most likely taken over by a client with the same id.
	takeoverWindow = 10 * time.Second
	// retryWarnEvery rate-limits the warning for a cause that keeps recurring
	// (every attempt is still logged at debug level).
	retryWarnEvery = 5 * time.Minute
)

// Source delivers raw notify payloads. Run calls ready after each successful
// subscription, returns nil when ctx is cancelled and an error when it cannot
// go on. deliver reports whether the agent took the payload (it may wait a
// little for room, never long); a payload it did not take is not
// acknowledged, so a source that can redeliver it does.
type Source interface {
	Run(ctx context.Context, deliver func(payload []byte) bool, ready func()) error
}

// MQTTConfig configures the MQTT source.
type MQTTConfig struct {
	Endpoint  string // broker host (name, IPv4 or IPv6 literal)
	Port      int    // 8883, or 443 with ALPN x-amzn-mqtt-ca
	ThingName string
	ClientID  string // defaults to ThingName
	// CertFile, KeyFile: device certificate and key (mutual TLS).
	CertFile, KeyFile string
	// RootCAFile verifies the broker; empty uses the system roots.
	RootCAFile string
	// TLSConfig replaces the files above when set (tests).
	TLSConfig *tls.Config
	// Proxy is an http:// or https:// proxy URL reached with CONNECT; empty
	// uses HTTPS_PROXY / NO_PROXY from the environment.
	Proxy string
	// KeepAlive defaults to 60 s.
	KeepAlive time.Duration
	// MinReconnectInterval and MaxReconnectInterval bound the full-jitter
	// backoff between attempts (default 1 s and 2 min).
	MinReconnectInterval, MaxReconnectInterval time.Duration
	// StableAfter: a connection that stayed up this long resets the backoff
	// (default 30 s).
	StableAfter time.Duration
	// ConnectTimeout bounds one connection attempt (TCP, TLS and CONNACK),
	// so that a broker that takes the connection and never answers is left
	// for the next attempt; default 30 s.
	ConnectTimeout time.Duration
	// RedeliverAfter: when the agent could not take a notification, the
	// source reconnects this much later so that the broker delivers it
	// again (it stays unacknowledged); default 5 s.
	RedeliverAfter time.Duration
	Logger         *slog.Logger
	// OnState, if set, is called on every change of the connection state
	// (from Run's goroutine; it must not block).
	OnState func(StateInfo)
}

// MQTTSource is a Source over a paho MQTT client with a persistent session.
// It drives the connection itself (paho's retry has neither jitter nor a
// reason), so every failed attempt has a classified Cause.
type MQTTSource struct {
	log    *slog.Logger
	reconf chan struct{}

	mu  sync.Mutex
	cur *conf

	book   stateBook                   // for State
	client atomic.Pointer[mqtt.Client] // the connected client, for Publish

	// Owned by Run's goroutine.
	lastKind   CauseKind
	lastWarn   time.Time
	suppressed int
}

// conf is the part of the source a reload replaces as a whole.
type conf struct {
	cfg          MQTTConfig
	tls          *tls.Config
	topic        string
	addr         string // host:port
	proxy        *url.URL
	certNotAfter time.Time
}

// NewMQTTSource validates cfg and loads the TLS material.
func NewMQTTSource(cfg MQTTConfig) (*MQTTSource, error) {
	c, err := newConf(cfg)
	if err != nil {
		return nil, err
	}
	s := &MQTTSource{cur: c, log: c.cfg.Logger, reconf: make(chan struct{}, 1)}
	s.book.s = SourceState{Kind: "mqtt", Broker: c.addr, ClientID: c.cfg.ClientID, Topic: c.topic,
		State: StateConnecting.String(), Since: time.Now()}
	return s, nil
}

func newConf(cfg MQTTConfig) (*conf, error) {
	if cfg.Endpoint == "" || cfg.ThingName == "" {
		return nil, errors.New("mqtt: endpoint and thing name are required")
	}
	setDefaults(&cfg)
	// An IPv6 literal may come bracketed; JoinHostPort adds the brackets.
	cfg.Endpoint = strings.TrimSuffix(strings.TrimPrefix(cfg.Endpoint, "["), "]")
	tc := cfg.TLSConfig
	if tc == nil {
		var err error
		if tc, err = loadTLS(cfg.CertFile, cfg.KeyFile, cfg.RootCAFile); err != nil {
			return nil, err
		}
	}
	tc = tc.Clone()
	if tc.ServerName == "" {
		tc.ServerName = cfg.Endpoint
	}
	if cfg.Port == 443 {
		tc.NextProtos = []string{ALPNProtocol}
	}
	addr := net.JoinHostPort(cfg.Endpoint, strconv.Itoa(cfg.Port))
	proxy, err := proxyFor(cfg.Proxy, addr)
	if err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	c := &conf{cfg: cfg, tls: tc, topic: Topic(cfg.ThingName), addr: addr, proxy: proxy}
	if len(tc.Certificates) > 0 && len(tc.Certificates[0].Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0]); err == nil {
			c.certNotAfter = leaf.NotAfter
		}
	}
	return c, nil
}

func setDefaults(cfg *MQTTConfig) {
	if cfg.Port == 0 {
		cfg.Port = 8883
	}
	if cfg.ClientID == "" {
		cfg.ClientID = cfg.ThingName
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 60 * time.Second
	}
	if cfg.MinReconnectInterval == 0 {
		cfg.MinReconnectInterval = time.Second
	}
	if cfg.MaxReconnectInterval == 0 {
		cfg.MaxReconnectInterval = 2 * time.Minute
	}
	if cfg.StableAfter == 0 {
		cfg.StableAfter = 30 * time.Second
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.RedeliverAfter == 0 {
		cfg.RedeliverAfter = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}

func loadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		// The key pair error text names files, never key bytes.
		return nil, fmt.Errorf("mqtt: load device certificate %s and key %s: %w", certFile, keyFile, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: read root CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt: root CA %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Topic is the topic this source subscribes to.
func (s *MQTTSource) Topic() string { return s.current().topic }

func (s *MQTTSource) current() *conf {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Reconfigure replaces the connection settings (a configuration reload).
// When they differ from the running ones, the source disconnects cleanly
// and connects again with the new ones at once; tunnels are not affected.
// It reports whether anything changed. The logger is kept.
func (s *MQTTSource) Reconfigure(cfg MQTTConfig) (bool, error) {
	cfg.Logger = s.log
	next, err := newConf(cfg)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	old := s.cur.cfg
	changed := old.Endpoint != cfg.Endpoint || old.Port != cfg.Port || old.ThingName != cfg.ThingName ||
		old.ClientID != next.cfg.ClientID || old.CertFile != cfg.CertFile || old.KeyFile != cfg.KeyFile ||
		old.RootCAFile != cfg.RootCAFile || old.Proxy != cfg.Proxy || cfg.TLSConfig != nil || !sameTLS(s.cur.tls, next.tls)
	if changed {
		next.cfg.OnState = old.OnState
		s.cur = next
	}
	s.mu.Unlock()
	if changed {
		select {
		case s.reconf <- struct{}{}:
		default:
		}
	}
	return changed, nil
}

// sameTLS compares the material a reload may have replaced in place (a
// renewed certificate written over the old file).
func sameTLS(a, b *tls.Config) bool {
	if len(a.Certificates) != len(b.Certificates) {
		return false
	}
	for i := range a.Certificates {
		if !slices.EqualFunc(a.Certificates[i].Certificate, b.Certificates[i].Certificate, bytes.Equal) {
			return false
		}
	}
	if a.RootCAs == nil || b.RootCAs == nil {
		return a.RootCAs == b.RootCAs
	}
	return a.RootCAs.Equal(b.RootCAs)
}
