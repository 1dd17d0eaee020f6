package fakenucleus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// MQTT is the nucleus' own connection to the broker (AWS IoT Core on a real
// core device). deliver may be called from any goroutine.
type MQTT interface {
	Subscribe(filter string, qos byte, deliver func(topic string, payload []byte)) error
	Unsubscribe(filter string) error
	Publish(topic string, qos byte, payload []byte) error
}

// MQTTDial says how to reach the broker with mutual TLS, as the nucleus does.
type MQTTDial struct {
	Addr                      string // host:port
	CertFile, KeyFile, CAFile string
	ClientID                  string // the thing name on a real core device
}

// PahoMQTT is MQTT over a paho client.
type PahoMQTT struct {
	c       paho.Client
	timeout time.Duration
}

// DialMQTT connects to the broker and waits for the CONNACK.
func DialMQTT(d MQTTDial) (*PahoMQTT, error) {
	cert, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("nucleus mqtt: load cert/key: %w", err)
	}
	caPEM, err := os.ReadFile(d.CAFile)
	if err != nil {
		return nil, fmt.Errorf("nucleus mqtt: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("nucleus mqtt: CA file has no PEM certificate")
	}
	opts := paho.NewClientOptions().AddBroker("ssl://" + d.Addr).SetClientID(d.ClientID).
		SetTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	c := paho.NewClient(opts)
	m := &PahoMQTT{c: c, timeout: 10 * time.Second}
	if err := m.wait(c.Connect(), "connect to "+d.Addr); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *PahoMQTT) wait(t paho.Token, what string) error {
	if !t.WaitTimeout(m.timeout) {
		return fmt.Errorf("nucleus mqtt: %s: no answer within %s", what, m.timeout)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("nucleus mqtt: %s: %w", what, err)
	}
	return nil
}

// Subscribe implements MQTT.
func (m *PahoMQTT) Subscribe(filter string, qos byte, deliver func(topic string, payload []byte)) error {
	t := m.c.Subscribe(filter, qos, func(_ paho.Client, msg paho.Message) { deliver(msg.Topic(), msg.Payload()) })
	if err := m.wait(t, "subscribe "+filter); err != nil {
		return err
	}
	if st, ok := t.(*paho.SubscribeToken); ok {
		if rc := st.Result()[filter]; rc == 0x80 {
			return fmt.Errorf("nucleus mqtt: broker refused the subscription to %s", filter)
		}
	}
	return nil
}

// Unsubscribe implements MQTT.
func (m *PahoMQTT) Unsubscribe(filter string) error {
	return m.wait(m.c.Unsubscribe(filter), "unsubscribe "+filter)
}

// Publish implements MQTT.
func (m *PahoMQTT) Publish(topic string, qos byte, payload []byte) error {
	return m.wait(m.c.Publish(topic, qos, false, payload), "publish to "+topic)
}

// Close disconnects.
func (m *PahoMQTT) Close() { m.c.Disconnect(250) }

// router shares one broker subscription per filter among the IPC streams
// subscribed to it, as the nucleus' MQTT client does.
type router struct {
	mqtt MQTT
	mu   sync.Mutex
	subs map[string]map[*subscription]struct{}
}

// subscription is one SubscribeToIoTCore stream's interest in a filter.
type subscription struct {
	filter  string
	forward func(topic string, payload []byte)
}

func newRouter(m MQTT) *router {
	return &router{mqtt: m, subs: map[string]map[*subscription]struct{}{}}
}

func (r *router) add(s *subscription, qos byte) error {
	r.mu.Lock()
	set, ok := r.subs[s.filter]
	if !ok {
		set = map[*subscription]struct{}{}
		r.subs[s.filter] = set
	}
	set[s] = struct{}{}
	r.mu.Unlock()
	if ok {
		return nil
	}
	// Not under the lock: paho may deliver (dispatch) before the SUBACK.
	err := r.mqtt.Subscribe(s.filter, qos, func(topic string, payload []byte) {
		r.dispatch(s.filter, topic, payload)
	})
	if err != nil {
		r.remove(s)
	}
	return err
}

func (r *router) remove(s *subscription) {
	r.mu.Lock()
	set, ok := r.subs[s.filter]
	_, member := set[s]
	if !ok || !member {
		r.mu.Unlock()
		return
	}
	delete(set, s)
	last := len(set) == 0
	if last {
		delete(r.subs, s.filter)
	}
	r.mu.Unlock()
	if last {
		_ = r.mqtt.Unsubscribe(s.filter)
	}
}

func (r *router) dispatch(filter, topic string, payload []byte) {
	r.mu.Lock()
	targets := make([]*subscription, 0, len(r.subs[filter]))
	for s := range r.subs[filter] {
		targets = append(targets, s)
	}
	r.mu.Unlock()
	for _, s := range targets {
		s.forward(topic, payload)
	}
}
