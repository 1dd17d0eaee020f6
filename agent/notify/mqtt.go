package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// ALPNProtocol is what AWS IoT needs to speak MQTT on port 443.
const ALPNProtocol = "x-amzn-mqtt-ca"

// Source delivers raw notify payloads. Run calls ready after each successful
// subscription, returns nil when ctx is cancelled and an error when it cannot
// go on. deliver must not block for long.
type Source interface {
	Run(ctx context.Context, deliver func(payload []byte), ready func()) error
}

// MQTTConfig configures the MQTT source.
type MQTTConfig struct {
	Endpoint  string // broker host
	Port      int    // 8883, or 443 with ALPN x-amzn-mqtt-ca
	ThingName string
	ClientID  string // defaults to ThingName
	// CertFile, KeyFile: device certificate and key (mutual TLS).
	CertFile, KeyFile string
	// RootCAFile verifies the broker; empty uses the system roots.
	RootCAFile string
	// TLSConfig replaces the files above when set (tests).
	TLSConfig *tls.Config
	// KeepAlive defaults to 60 s; MaxReconnectInterval to 2 min.
	KeepAlive            time.Duration
	MaxReconnectInterval time.Duration
	// ConnectTimeout bounds one connection attempt (TCP, TLS and CONNACK),
	// so that a broker that takes the connection and never answers is left
	// for the next attempt; default 30 s.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// MQTTSource is a Source over a paho MQTT client with a persistent session.
type MQTTSource struct {
	cfg    MQTTConfig
	tls    *tls.Config
	topic  string
	log    *slog.Logger
	state  stateBook
	client atomic.Pointer[mqtt.Client] // while Run runs, for Publish
}

// NewMQTTSource validates cfg and loads the TLS material.
func NewMQTTSource(cfg MQTTConfig) (*MQTTSource, error) {
	if cfg.Endpoint == "" || cfg.ThingName == "" {
		return nil, errors.New("mqtt: endpoint and thing name are required")
	}
	if cfg.Port == 0 {
		cfg.Port = 8883
	}
	if cfg.ClientID == "" {
		cfg.ClientID = cfg.ThingName
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 60 * time.Second
	}
	if cfg.MaxReconnectInterval == 0 {
		cfg.MaxReconnectInterval = 2 * time.Minute
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
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
	s := &MQTTSource{cfg: cfg, tls: tc, topic: Topic(cfg.ThingName), log: cfg.Logger}
	s.state.s = SourceState{Kind: "mqtt", Broker: cfg.Endpoint + ":" + strconv.Itoa(cfg.Port), ClientID: cfg.ClientID,
		Topic: s.topic, State: StateConnecting, Since: time.Now()}
	return s, nil
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
func (s *MQTTSource) Topic() string { return s.topic }

// Run connects (retrying with backoff while the broker is unreachable),
// subscribes on every (re)connect and hands each payload to deliver.
func (s *MQTTSource) Run(ctx context.Context, deliver func([]byte), ready func()) error {
	connected := make(chan struct{}, 1)
	client := mqtt.NewClient(s.options(deliver, connected))
	client.Connect() // with ConnectRetry the token completes only once connected
	s.client.Store(&client)
	defer client.Disconnect(250)
	defer s.client.Store(nil)

	var wg sync.WaitGroup
	defer wg.Wait()
	failed := make(chan error, 1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-connected:
			wg.Go(func() {
				ok, err := s.subscribe(ctx, client)
				if err != nil {
					select {
					case failed <- err:
					default:
					}
					return
				}
				if ok && ctx.Err() == nil {
					s.state.set(StateSubscribed, nil)
					ready()
				}
			})
		}
	}
}

func (s *MQTTSource) options(deliver func([]byte), connected chan<- struct{}) *mqtt.ClientOptions {
	u := url.URL{Scheme: "tls", Host: s.cfg.Endpoint + ":" + strconv.Itoa(s.cfg.Port)}
	o := mqtt.NewClientOptions().
		AddBroker(u.String()).
		SetClientID(s.cfg.ClientID).
		SetTLSConfig(s.tls).
		SetCleanSession(false). // the broker keeps QoS 1 messages while we are away
		SetOrderMatters(true).
		SetKeepAlive(s.cfg.KeepAlive).
		SetConnectTimeout(s.cfg.ConnectTimeout).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(s.cfg.MaxReconnectInterval).
		SetResumeSubs(false)
	// The route exists before Connect: a stored session can deliver before
	// we subscribe again.
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		if m.Topic() == s.topic {
			deliver(m.Payload())
		}
	})
	o.SetConnectionNotificationHandler(s.noteConnection)
	var attempts atomic.Int64
	o.SetOnConnectHandler(func(mqtt.Client) {
		attempts.Store(0)
		s.state.set(StateConnected, nil)
		s.log.Info("mqtt connected", "broker", u.Host, "client_id", s.cfg.ClientID)
		select {
		case connected <- struct{}{}:
		default:
		}
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		s.state.set(StateDisconnected, fmt.Errorf("connection lost: %w", err))
		s.log.Warn("mqtt connection lost; reconnecting", "err", err)
	})
	o.SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
		s.log.Debug("mqtt reconnecting", "broker", u.Host)
	})
	o.SetConnectionAttemptHandler(func(_ *url.URL, tc *tls.Config) *tls.Config {
		// Failed attempts are retried silently by paho; say so now and then
		// (not every time: device flash is finite).
		if n := attempts.Add(1); n == 3 || n%30 == 0 {
			s.log.Warn("still connecting to the MQTT broker; check the network, endpoint and port, and that the "+
				"certificate is active and its policy allows iot:Connect for this client id",
				"broker", u.Host, "client_id", s.cfg.ClientID, "attempt", n)
		} else {
			s.log.Debug("mqtt connecting", "broker", u.Host, "attempt", n)
		}
		return tc
	})
	return o
}

// subscribe makes the subscription and checks the SUBACK code. ok is false
// when the attempt did not complete (the next OnConnect retries); err is set
// when the broker refused it for lack of permission, which retrying cannot
// fix. Other failure codes (seen with some brokers after a session resume)
// are retried with backoff.
func (s *MQTTSource) subscribe(ctx context.Context, c mqtt.Client) (ok bool, err error) {
	delay := 250 * time.Millisecond
	for {
		tok := c.Subscribe(s.topic, 1, nil)
		select {
		case <-ctx.Done():
			return false, nil
		case <-tok.Done():
		}
		if err := tok.Error(); err != nil {
			s.state.set("", fmt.Errorf("subscribe: %w", err))
			s.log.Warn("mqtt subscribe failed; will retry on reconnect", "topic", s.topic, "err", err)
			return false, nil
		}
		code := byte(0)
		if st, isSub := tok.(*mqtt.SubscribeToken); isSub {
			code = st.Result()[s.topic]
		}
		switch {
		case code <= 2:
			s.log.Info("subscribed", "topic", s.topic, "qos", code)
			return true, nil
		case code == 0x80 || code == 0x87:
			s.state.set("", fmt.Errorf("subscription refused (SUBACK 0x%02x)", code))
			return false, fmt.Errorf("%w: AWS IoT refused the subscription to %s (SUBACK 0x%02x): check the device policy allows "+
				"iot:Subscribe on arn:aws:iot:<region>:<account>:topicfilter/%s and iot:Receive on "+
				"arn:aws:iot:<region>:<account>:topic/%s", ErrSubscribeRefused, s.topic, code, s.topic, s.topic)
		}
		s.log.Warn("mqtt subscription failed; retrying", "topic", s.topic, "code", code, "retry_in", delay)
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
