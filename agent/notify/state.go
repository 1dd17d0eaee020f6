package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrNotConnected: a publish was attempted while the source has no
// connection; the caller keeps the message and retries.
var ErrNotConnected = errors.New("not connected to the broker")

// SourceState is a notification source's connection as `tunnel-agent
// status` shows it. State is a State's text (connecting, connected,
// subscribed, retrying).
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

// stateBook keeps the SourceState the connection's state changes make.
type stateBook struct {
	mu sync.Mutex
	s  SourceState
}

func (b *stateBook) note(i StateInfo, c *conf) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.Broker, b.s.ClientID, b.s.Topic = c.addr, c.cfg.ClientID, c.topic
	if st := i.State.String(); st != b.s.State {
		b.s.State, b.s.Since = st, time.Now()
		if i.State == StateConnected {
			b.s.Connects++
		}
	}
	if i.Cause != nil {
		b.s.LastError, b.s.LastErrorAt = i.Cause.Error(), time.Now()
	}
}

// State returns the MQTT connection's state and its last failure.
func (s *MQTTSource) State() SourceState {
	s.book.mu.Lock()
	defer s.book.mu.Unlock()
	return s.book.s
}

// Publish sends payload to topic at QoS 1 on the source's MQTT connection
// and waits for the broker's PUBACK (audit.Publisher). Without a
// connection it fails at once with ErrNotConnected rather than leaving the
// message to paho's unbounded store, and so it does when the connection is
// lost before the PUBACK.
func (s *MQTTSource) Publish(ctx context.Context, topic string, payload []byte) error {
	c := s.client.Load()
	if c == nil || !(*c).IsConnectionOpen() {
		return ErrNotConnected
	}
	tok := (*c).Publish(topic, 1, false, payload)
	// A connection lost meanwhile never acknowledges: give up on it then
	// rather than at ctx's deadline (the caller publishes again).
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish to %s: no PUBACK: %w", topic, context.Cause(ctx))
		case <-tok.Done():
			done = true
		case <-tick.C:
			if s.client.Load() != c || !(*c).IsConnectionOpen() {
				return fmt.Errorf("publish to %s: %w (the connection was lost)", topic, ErrNotConnected)
			}
		}
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	return nil
}
