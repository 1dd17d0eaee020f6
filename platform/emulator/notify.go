package emulator

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultNotifyTopicFormat is the AWS IoT reserved notify topic; %s is the thing name.
const DefaultNotifyTopicFormat = "$aws/things/%s/tunnels/notify"

const publishTimeout = 10 * time.Second

// notification is the payload AWS publishes to the device (protocol.md §2.2).
type notification struct {
	ClientAccessToken string   `json:"clientAccessToken"`
	ClientMode        string   `json:"clientMode"`
	Region            string   `json:"region"`
	Services          []string `json:"services"`
}

// publisher delivers a QoS 1 message to a broker.
type publisher interface {
	publish(topic string, payload []byte) error
	close()
}

// notifyDestination publishes the destination token to the thing's notify
// topic. A failure is logged, not returned: like AWS, the API call succeeds.
func (e *Emulator) notifyDestination(_ context.Context, tunnelID, thing, token string, services []string) {
	if services == nil {
		services = []string{}
	}
	payload, err := json.Marshal(notification{ClientAccessToken: token, ClientMode: "destination", Region: e.cfg.Region, Services: services})
	if err != nil {
		e.log.Error("encode notification", "error", err)
		return
	}
	topic := strings.Replace(e.cfg.NotifyTopicFormat, "%s", thing, 1)
	if err := e.pub.publish(topic, payload); err != nil {
		e.log.Warn("notification not published: the device will not learn the token; check the broker", attrTunnel, tunnelID, "topic", topic, "error", err)
		return
	}
	e.log.Info("notification published", attrTunnel, tunnelID, "topic", topic)
}

// broker is the embedded mochi-mqtt broker: mutual TLS on MQTTAddr like AWS
// IoT Core, optional plain TCP for debugging, publishing through its inline client.
type broker struct {
	srv       *mqtt.Server
	addr      string
	plainAddr string
}

func newBroker(cfg *Config, ca *CA, cert tls.Certificate, log *slog.Logger) (*broker, error) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: log.With("component", "mqtt")})
	// AWS IoT Core answers a refused subscription with 0x80, the only
	// failure code of MQTT 3.1.1 (mochi would send 0x87).
	srv.Options.Capabilities.Compatibilities.ObscureNotAuthorized = true
	var hook mqtt.Hook = &thingPolicy{topicFormat: cfg.NotifyTopicFormat, clientIDs: cfg.ClientIDs, publish: cfg.PublishTopicFormats, log: log}
	if cfg.BrokerAllowAll {
		hook = new(auth.AllowHook)
	}
	if err := srv.AddHook(hook, nil); err != nil {
		return nil, fmt.Errorf("configure mqtt broker: %w", err)
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	mtls := listeners.NewTCP(listeners.Config{ID: "mtls", Address: cfg.MQTTAddr, TLSConfig: tlsCfg})
	if err := srv.AddListener(mtls); err != nil {
		return nil, fmt.Errorf("listen for mqtt (mutual TLS) on %s: %w", cfg.MQTTAddr, err)
	}
	b := &broker{srv: srv, addr: mtls.Address()}
	if cfg.MQTTPlainAddr != "" {
		plain := listeners.NewTCP(listeners.Config{ID: "plain", Address: cfg.MQTTPlainAddr})
		if err := srv.AddListener(plain); err != nil {
			srv.Listeners.CloseAll(func(string) {})
			return nil, fmt.Errorf("listen for plain mqtt on %s: %w", cfg.MQTTPlainAddr, err)
		}
		b.plainAddr = plain.Address()
	}
	return b, nil
}

func (b *broker) publish(topic string, payload []byte) error {
	if err := b.srv.Publish(topic, payload, false, 1); err != nil {
		return fmt.Errorf("%w: embedded broker: %w", ErrNotify, err)
	}
	return nil
}

func (b *broker) close() { _ = b.srv.Close() }

// pahoPublisher publishes to an external broker (--mqtt-url).
type pahoPublisher struct{ c paho.Client }

func newPahoPublisher(url string, tlsCfg *tls.Config) *pahoPublisher {
	opts := paho.NewClientOptions().AddBroker(url).
		SetClientID("tunnel-emulator-" + newUUID()[:8]).
		SetTLSConfig(tlsCfg).
		SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetAutoReconnect(true).SetCleanSession(true)
	c := paho.NewClient(opts)
	c.Connect() // retries in the background; publish waits for the connection
	return &pahoPublisher{c: c}
}

// publish waits until the client is connected: paho wipes its store when a
// clean session connects, so a message queued while connecting would be lost.
func (p *pahoPublisher) publish(topic string, payload []byte) error {
	deadline := time.Now().Add(publishTimeout)
	for !p.c.IsConnectionOpen() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: not connected to the external broker after %s: check --mqtt-url", ErrNotify, publishTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok := p.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(time.Until(deadline)) {
		return fmt.Errorf("%w: external broker did not acknowledge within %s: check --mqtt-url", ErrNotify, publishTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%w: external broker: %w", ErrNotify, err)
	}
	return nil
}

func (p *pahoPublisher) close() { p.c.Disconnect(250) }
