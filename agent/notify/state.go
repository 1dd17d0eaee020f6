package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Source states, as SourceState.State.
const (
	StateConnecting   = "connecting"
	StateConnected    = "connected" // not yet subscribed
	StateSubscribed   = "subscribed"
	StateDisconnected = "disconnected" // lost; reconnecting
)

// ErrNotConnected: a publish was attempted while the source has no
// connection; the caller keeps the message and retries.
var ErrNotConnected = errors.New("not connected to the broker")

// SourceState is a notification source's connection as `tunnel-agent
// status` shows it.
type SourceState struct {
	Kind        string    `json:"kind"` // mqtt or greengrass
	Broker      string    `json:"broker,omitempty"`
	ClientID    string    `json:"client_id,omitempty"`
	Topic       string    `json:"topic"`
	State       string    `json:"state"`
	Since       time.Time `json:"since"`
	Connects    int       `json:"connects"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// StateReporter is a Source that reports its connection state.
type StateReporter interface {
	State() SourceState
}

// stateBook keeps a SourceState behind a lock for the source's callbacks.
type stateBook struct {
	mu sync.Mutex
	s  SourceState
}

func (b *stateBook) get() SourceState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.s
}

// set moves to state; err, when not nil, becomes the last error.
func (b *stateBook) set(state string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if state != "" && state != b.s.State {
		b.s.State, b.s.Since = state, time.Now()
		if state == StateConnected {
			b.s.Connects++
		}
	}
	if err != nil {
		b.s.LastError, b.s.LastErrorAt = err.Error(), time.Now()
	}
}

// State returns the MQTT connection's state.
func (s *MQTTSource) State() SourceState { return s.state.get() }

// Publish sends payload to topic at QoS 1 on the source's MQTT connection
// and waits for the broker's PUBACK (audit.Publisher). Without a
// connection it fails at once with ErrNotConnected rather than leaving the
// message to paho's unbounded store.
func (s *MQTTSource) Publish(ctx context.Context, topic string, payload []byte) error {
	c := s.client.Load()
	if c == nil || !(*c).IsConnectionOpen() {
		return ErrNotConnected
	}
	tok := (*c).Publish(topic, 1, false, payload)
	select {
	case <-ctx.Done():
		return fmt.Errorf("publish to %s: no PUBACK: %w", topic, context.Cause(ctx))
	case <-tok.Done():
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	return nil
}

// noteConnection records why a connection attempt failed (paho's
// connection notifications), so that status shows the cause.
func (s *MQTTSource) noteConnection(_ mqtt.Client, n mqtt.ConnectionNotification) {
	switch n := n.(type) {
	case mqtt.ConnectionNotificationBrokerFailed:
		s.state.set("", fmt.Errorf("connect to %s: %w", n.Broker.Host, n.Reason))
	case mqtt.ConnectionNotificationFailed:
		s.state.set("", fmt.Errorf("connect: %w", n.Reason))
	}
}
