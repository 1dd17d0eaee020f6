package fakenucleus

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	rpc "github.com/tunnel-agent/tunnel-agent/platform/greengrass/internal/eventrpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	token  = "svcuid-1"
	thing  = "pi-1"
	notify = "$aws/things/pi-1/tunnels/notify"
)

// memMQTT is an in-memory broker for the unit tests (the end-to-end tests in
// package greengrass and scripts/greengrass-sdk use the emulator's broker).
type memMQTT struct {
	mu        sync.Mutex
	subs      map[string]func(string, []byte)
	published []string
}

func (m *memMQTT) Subscribe(f string, _ byte, d func(string, []byte)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs[f] = d
	return nil
}

func (m *memMQTT) Unsubscribe(f string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.subs, f)
	return nil
}

func (m *memMQTT) Publish(t string, _ byte, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.published = append(m.published, t+" "+string(p))
	return nil
}

func (m *memMQTT) deliver(filter, topic string, p []byte) bool {
	m.mu.Lock()
	d := m.subs[filter]
	m.mu.Unlock()
	if d != nil {
		d(topic, p)
	}
	return d != nil
}

func startNucleus(t *testing.T, ac AccessControl, interpolate bool) (*Nucleus, *memMQTT) {
	t.Helper()
	dir, err := os.MkdirTemp("", "fn")
	if err != nil {
		t.Fatal(err)
	}
	mq := &memMQTT{subs: map[string]func(string, []byte){}}
	n, err := New(Config{SocketPath: filepath.Join(dir, "s"), ThingName: thing, MQTT: mq,
		InterpolateComponentConfiguration: interpolate,
		Components:                        map[string]Component{token: {Name: "com.example.C", AccessControl: ac}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = os.RemoveAll(dir)
	})
	return n, mq
}

// client is a raw event-stream client, as the official ones behave: no
// service-model-type or :content-type on requests.
type client struct {
	t *testing.T
	c net.Conn
}

func dialRaw(t *testing.T, n *Nucleus, tok string) (*client, rpc.Message) {
	t.Helper()
	c, err := net.Dial("unix", n.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cl := &client{t: t, c: c}
	body, _ := json.Marshal(map[string]string{"authToken": tok})
	cl.send(rpc.Message{Type: rpc.TypeConnect, Version: rpc.ProtocolVersion, Payload: body})
	return cl, cl.recv()
}

func (c *client) send(m rpc.Message) {
	c.t.Helper()
	if err := rpc.NewEncoder().Encode(c.c, m.Encode()); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) recv() rpc.Message {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := rpc.ReadMessage(c.c, rpc.NewDecoder())
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return m
}

func (c *client) request(stream int32, op string, body any) rpc.Message {
	c.t.Helper()
	b, _ := json.Marshal(body)
	c.send(rpc.Message{Type: rpc.TypeApplicationMessage, StreamID: stream, Operation: op, Payload: b})
	return c.recv()
}

func errorText(t *testing.T, m rpc.Message) string {
	t.Helper()
	var body struct{ Message string }
	if err := json.Unmarshal(m.Payload, &body); err != nil {
		t.Fatalf("error payload %q: %v", m.Payload, err)
	}
	return body.Message
}

var recipeAC = AccessControl{rpc.IPCServiceMQTTProxy: {
	"p1": {Operations: []string{rpc.OpSubscribeToIoTCore}, Resources: []string{"$aws/things/+/tunnels/notify"}},
	"p2": {Operations: []string{rpc.OpPublishToIoTCore}, Resources: []string{"tunnel-agent/{iot:thingName}/events"}},
}}

func TestConnect(t *testing.T) {
	n, _ := startNucleus(t, recipeAC, false)
	_, ack := dialRaw(t, n, token)
	if ack.Type != rpc.TypeConnectAck || ack.Flags&rpc.FlagConnectionAccepted == 0 {
		t.Fatalf("good token: %+v", ack)
	}
	bad, ack := dialRaw(t, n, "wrong")
	if ack.Type != rpc.TypeConnectAck || ack.Flags != 0 {
		t.Fatalf("wrong token: %+v", ack)
	}
	if _, err := rpc.ReadMessage(bad.c, rpc.NewDecoder()); !errors.Is(err, io.EOF) {
		t.Fatalf("wrong token: connection not closed: %v", err)
	}
}

func TestSubscribeDeliverAndTerminate(t *testing.T) {
	n, mq := startNucleus(t, recipeAC, false)
	c, _ := dialRaw(t, n, token)
	resp := c.request(1, rpc.OpSubscribeToIoTCore, map[string]string{"topicName": notify, "qos": "1"})
	if resp.Type != rpc.TypeApplicationMessage || resp.ModelType != rpc.ModelSubscribeResponse || resp.Terminates() {
		t.Fatalf("subscribe response: %+v", resp)
	}
	if !mq.deliver(notify, notify, []byte{0, 1, 255}) {
		t.Fatal("no broker subscription")
	}
	ev := c.recv()
	var msg struct {
		Message struct {
			TopicName string
			Payload   []byte
		}
	}
	if err := json.Unmarshal(ev.Payload, &msg); err != nil || ev.ModelType != rpc.ModelIoTCoreMessage ||
		ev.StreamID != 1 || msg.Message.TopicName != notify || string(msg.Message.Payload) != "\x00\x01\xff" {
		t.Fatalf("IoTCoreMessage: %+v %s (%v)", ev, ev.Payload, err)
	}
	c.send(rpc.Message{Type: rpc.TypeApplicationMessage, StreamID: 1, Flags: rpc.FlagTerminateStream})
	c.send(rpc.Message{Type: rpc.TypePing, Payload: []byte("p")}) // a barrier: the nucleus handled the terminate
	if m := c.recv(); m.Type != rpc.TypePingResponse || string(m.Payload) != "p" {
		t.Fatalf("ping: %+v", m)
	}
	if mq.deliver(notify, notify, []byte("x")) {
		t.Fatal("still subscribed after the client's TerminateStream")
	}
}

func TestRefusals(t *testing.T) {
	n, mq := startNucleus(t, recipeAC, false)
	c, _ := dialRaw(t, n, token)
	for i, tt := range []struct {
		op    string
		body  map[string]any
		model string
		text  string
	}{
		{rpc.OpSubscribeToIoTCore, map[string]any{"topicName": "$aws/things/pi-1/jobs/notify", "qos": "1"}, rpc.ModelUnauthorized, "Not Authorized"},
		{rpc.OpSubscribeToIoTCore, map[string]any{"topicName": "$aws/things/#", "qos": "1"}, rpc.ModelUnauthorized, "Not Authorized"},
		{rpc.OpSubscribeToIoTCore, map[string]any{"qos": "1"}, rpc.ModelInvalidArguments, "Topic is required"},
		{rpc.OpSubscribeToIoTCore, map[string]any{"topicName": notify, "qos": "2"}, rpc.ModelInvalidArguments, "Invalid QoS value: 2"},
		{rpc.OpPublishToIoTCore, map[string]any{"topicName": notify, "qos": "1", "payload": "eA=="}, rpc.ModelUnauthorized, "Not Authorized"},
		// Without interpolateComponentConfiguration {iot:thingName} stays literal.
		{rpc.OpPublishToIoTCore, map[string]any{"topicName": "tunnel-agent/pi-1/events", "qos": "1", "payload": "eA=="}, rpc.ModelUnauthorized, "Not Authorized"},
	} {
		m := c.request(int32(i+1), tt.op, tt.body)
		if m.Type != rpc.TypeApplicationError || !m.Terminates() || m.ModelType != tt.model ||
			m.ContentType != rpc.ContentTypeJSON || errorText(t, m) != tt.text {
			t.Errorf("%d: %s %v: got %s %q %s, want %s %q", i, tt.op, tt.body, m.Type, m.ModelType, m.Payload, tt.model, tt.text)
		}
	}
	m := c.request(20, "aws.greengrass#NoSuchOperation", map[string]any{})
	if m.Type != rpc.TypeApplicationError || !m.Terminates() || m.ModelType != "" {
		t.Errorf("unknown operation: %+v", m)
	}
	if len(mq.published) != 0 {
		t.Errorf("refused publishes reached the broker: %v", mq.published)
	}
}

func TestPublishInterpolated(t *testing.T) {
	n, mq := startNucleus(t, recipeAC, true)
	c, _ := dialRaw(t, n, token)
	m := c.request(1, rpc.OpPublishToIoTCore, map[string]any{"topicName": "tunnel-agent/pi-1/events", "qos": "1", "payload": "aGk="})
	if m.Type != rpc.TypeApplicationMessage || m.ModelType != rpc.ModelPublishResponse || !m.Terminates() {
		t.Fatalf("publish: %+v %s", m, m.Payload)
	}
	m = c.request(2, rpc.OpPublishToIoTCore, map[string]any{"topicName": "tunnel-agent/pi-2/events", "qos": "1", "payload": "aGk="})
	if m.ModelType != rpc.ModelUnauthorized {
		t.Fatalf("another thing's topic: %+v", m)
	}
	if len(mq.published) != 1 || mq.published[0] != "tunnel-agent/pi-1/events hi" {
		t.Fatalf("broker got %q", mq.published)
	}
}

func TestDropConnections(t *testing.T) {
	n, _ := startNucleus(t, recipeAC, false)
	c, _ := dialRaw(t, n, token)
	n.DropConnections()
	if _, err := rpc.ReadMessage(c.c, rpc.NewDecoder()); err == nil {
		t.Fatal("connection still open")
	}
}

func TestFilterCovers(t *testing.T) {
	for _, tt := range []struct {
		super, sub string
		want       bool
	}{
		{"$aws/things/+/tunnels/notify", notify, true},
		{"$aws/things/+/tunnels/notify", "$aws/things/+/tunnels/notify", true},
		{"$aws/things/+/tunnels/notify", "$aws/things/#", false},
		{"$aws/things/#", notify, true},
		{"$aws/things/pi-1/tunnels/notify", "$aws/things/pi-2/tunnels/notify", false},
		{"$aws/things/+/tunnels", notify, false},
		{"$aws/things/+/tunnels/notify/x", notify, false},
	} {
		if got := filterCovers(tt.super, tt.sub); got != tt.want {
			t.Errorf("filterCovers(%q, %q) = %v", tt.super, tt.sub, got)
		}
	}
}

func TestComponentFromRecipes(t *testing.T) {
	for _, p := range []string{"../../../configs/greengrass/recipe.yaml", "../../../configs/greengrass/recipe-thingname.yaml"} {
		c, err := ComponentFromRecipe(p)
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != "io.github.tunnelagent.TunnelAgent" || len(c.AccessControl[rpc.IPCServiceMQTTProxy]) != 2 {
			t.Errorf("%s: %+v", p, c)
		}
	}
	if _, err := ComponentFromRecipe("nucleus_test.go"); err == nil {
		t.Error("a file that is not a recipe was accepted")
	}
}
