package emulator

import (
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// subackCode subscribes and returns the broker's SUBACK code for topic.
func subackCode(t *testing.T, d *device, topic string) byte {
	t.Helper()
	tok := d.c.Subscribe(topic, 1, nil)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("no SUBACK for %s", topic)
	}
	return tok.(*paho.SubscribeToken).Result()[topic]
}

// TestThingPolicy checks the embedded broker's default per-thing policy:
// client id, subscription and publish rights follow the certificate's
// thing, with AWS IoT Core's refusals.
func TestThingPolicy(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.ClientIDs = map[string][]string{"pi-1": {"pi-1-tool"}} })
	url := "ssl://" + env.e.MQTTAddr()
	pi1 := deviceTLS(t, env.e, "pi-1")

	d := connectDevice(t, url, pi1, "pi-1", true)
	defer d.c.Disconnect(100)
	if code := subackCode(t, d, "$aws/things/pi-2/tunnels/notify"); code != 0x80 {
		t.Errorf("pi-1 on pi-2's topic: SUBACK 0x%02x, want 0x80", code)
	}
	if code := subackCode(t, d, "$aws/things/+/tunnels/notify"); code != 0x80 {
		t.Errorf("pi-1 on a wildcard: SUBACK 0x%02x, want 0x80", code)
	}
	if code := subackCode(t, d, "$aws/things/pi-1/tunnels/notify"); code != 1 {
		t.Errorf("pi-1 on its own topic: SUBACK 0x%02x, want 0x01", code)
	}
	tun := env.open(t, `{"destinationConfig":{"thingName":"pi-1","services":["SSH"]}}`)
	if n := d.next(t); n.ClientAccessToken != tun.dst {
		t.Fatalf("notification %+v", n)
	}

	// Another client id than the thing name: closed without CONNACK.
	opts := paho.NewClientOptions().AddBroker(url).SetClientID("pi-2").SetTLSConfig(pi1).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() == nil {
		c.Disconnect(100)
		t.Fatal("pi-1's certificate connected as client id pi-2")
	} else if strings.Contains(tok.Error().Error(), "not Authorized") || strings.Contains(tok.Error().Error(), "bad user name") {
		t.Errorf("refusal came as a CONNACK (%v); AWS closes the connection", tok.Error())
	}
	if !strings.Contains(env.logs.String(), "mqtt connection refused by the thing policy") {
		t.Error("connect refusal not logged")
	}

	// A configured client id is allowed.
	tool := connectDevice(t, url, pi1, "pi-1-tool", true)
	tool.c.Disconnect(100)

	// Publishing is not in the policy: the client is disconnected.
	lost := make(chan struct{})
	opts = paho.NewClientOptions().AddBroker(url).SetClientID("pi-1").SetTLSConfig(pi1).SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	p := paho.NewClient(opts)
	if tok := p.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	p.Publish("$aws/things/pi-1/tunnels/notify", 1, false, []byte("{}"))
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a publishing device was not disconnected")
	}
}

// TestBrokerAllowAll checks the relaxing switch: pi-1's certificate may then
// subscribe to pi-2's topic and receive its notification.
func TestBrokerAllowAll(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.BrokerAllowAll = true })
	d := connectDevice(t, "ssl://"+env.e.MQTTAddr(), deviceTLS(t, env.e, "pi-1"), "anything", true)
	defer d.c.Disconnect(100)
	if code := subackCode(t, d, "$aws/things/pi-2/tunnels/notify"); code != 1 {
		t.Fatalf("SUBACK 0x%02x", code)
	}
	tun := env.open(t, `{"destinationConfig":{"thingName":"pi-2","services":["SSH"]}}`)
	if n := d.next(t); n.ClientAccessToken != tun.dst {
		t.Fatalf("notification %+v", n)
	}
}

// TestThingPolicyPublishTopic: with the README's iot:Publish statement for
// audit_topic, a thing may publish to its own audit topic, not another's.
func TestThingPolicyPublishTopic(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.PublishTopicFormats = []string{"tunnel-agent/%s/events"} })
	url := "ssl://" + env.e.MQTTAddr()
	pi1 := deviceTLS(t, env.e, "pi-1")
	lost := make(chan struct{}, 1)
	opts := paho.NewClientOptions().AddBroker(url).SetClientID("pi-1").SetTLSConfig(pi1).SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { lost <- struct{}{} })
	p := paho.NewClient(opts)
	if tok := p.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer p.Disconnect(100)
	if tok := p.Publish("tunnel-agent/pi-1/events", 1, false, []byte(`{"event":"x"}`)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish to the own audit topic: %v", tok.Error())
	}
	select {
	case <-lost:
		t.Fatal("disconnected for publishing to its own audit topic")
	default:
	}
	p.Publish("tunnel-agent/pi-2/events", 1, false, []byte(`{}`))
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("publishing to another thing's audit topic was not refused")
	}
}
