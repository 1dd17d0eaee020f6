package notify

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// The MQTT source reports its state and publishes at QoS 1 on its own
// connection; without one, Publish fails at once.
func TestMQTTStateAndPublish(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	got := make(chan string, 4)
	b := notifytest.StartBroker(t, p, notifytest.BrokerOptions{Setup: func(sub notifytest.Subscriber) {
		if err := sub("tunnel-agent/+/events", func(b []byte) { got <- string(b) }); err != nil {
			t.Fatal(err)
		}
	}})
	src, err := NewMQTTSource(MQTTConfig{Endpoint: "localhost", Port: b.Port(), ThingName: thing,
		CertFile: p.ClientCertFile, KeyFile: p.ClientKeyFile, RootCAFile: p.CAFile, MinReconnectInterval: 20 * time.Millisecond, MaxReconnectInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if st := src.State(); st.Kind != "mqtt" || st.State != StateConnecting.String() || st.Topic != Topic(thing) {
		t.Fatalf("state before Run: %+v", st)
	}
	if err := src.Publish(t.Context(), "tunnel-agent/pi-1/events", []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish before Run: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{}, 4)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func([]byte) bool { return true }, func() { ready <- struct{}{} }) }()
	defer func() { cancel(); <-done }()
	wait(t, ready, "subscribed")
	if st := src.State(); st.State != StateSubscribed.String() || st.Connects != 1 {
		t.Fatalf("state: %+v", st)
	}
	if err := src.Publish(t.Context(), "tunnel-agent/pi-1/events", []byte(`{"event":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if m := wait(t, got, "the published message"); m != `{"event":"x"}` {
		t.Fatalf("broker got %q", m)
	}
	b.Close()
	tunneltest.Poll(10*time.Second, func() bool { return src.State().State != StateSubscribed.String() })
	if st := src.State(); st.State == StateSubscribed.String() || st.LastError == "" {
		t.Fatalf("state after the broker went: %+v", st)
	}
	// Back on the same port (and stopping only once connected: paho leaves
	// its reconnect goroutine behind when disconnected mid-backoff).
	notifytest.StartBroker(t, p, notifytest.BrokerOptions{Addr: b.Addr})
	wait(t, ready, "subscribed again")
	if st := src.State(); st.State != StateSubscribed.String() || st.Connects != 2 {
		t.Fatalf("state after the broker came back: %+v", st)
	}
}
