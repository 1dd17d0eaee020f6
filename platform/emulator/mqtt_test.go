package emulator

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// deviceTLS issues a device certificate for thing and returns a client TLS config.
func deviceTLS(t *testing.T, e *Emulator, thing string) *tls.Config {
	t.Helper()
	certFile, keyFile, err := e.IssueDeviceCert(thing, t.TempDir())
	if err != nil {
		t.Fatalf("IssueDeviceCert: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load device cert: %v", err)
	}
	return &tls.Config{RootCAs: e.CAPool(), Certificates: []tls.Certificate{cert}, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// device is a paho client subscribed to the notify topic.
type device struct {
	c    paho.Client
	msgs chan []byte
}

func connectDevice(t *testing.T, broker string, tlsCfg *tls.Config, clientID string, clean bool) *device {
	t.Helper()
	d := &device{msgs: make(chan []byte, 10)}
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetTLSConfig(tlsCfg).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectTimeout(15 * time.Second). // a TLS handshake under -race on a loaded machine
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { d.msgs <- m.Payload() })
	d.c = paho.NewClient(opts)
	if tok := d.c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect to %s: %v", broker, tok.Error())
	}
	return d
}

func (d *device) subscribe(t *testing.T, topic string) {
	t.Helper()
	if tok := d.c.Subscribe(topic, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
}

func (d *device) next(t *testing.T) notification {
	t.Helper()
	select {
	case b := <-d.msgs:
		var n notification
		if err := json.Unmarshal(b, &n); err != nil {
			t.Fatalf("notification %q: %v", b, err)
		}
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s")
	}
	return notification{}
}

func TestNotifyOverMutualTLS(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.Region = "eu-west-1" })
	d := connectDevice(t, "ssl://"+env.e.MQTTAddr(), deviceTLS(t, env.e, "pi-1"), "pi-1", true)
	defer d.c.Disconnect(100)
	d.subscribe(t, "$aws/things/pi-1/tunnels/notify")

	tun := env.open(t, `{"destinationConfig":{"thingName":"pi-1","services":["SSH","HTTP"]}}`)
	n := d.next(t)
	want := notification{ClientAccessToken: tun.dst, ClientMode: "destination", Region: "eu-west-1", Services: []string{"SSH", "HTTP"}}
	if js(n) != js(want) {
		t.Fatalf("notification %+v, want %+v", n, want)
	}

	env.open(t, `{"destinationConfig":{"services":["SSH"]}}`) // no thing: nothing to publish
	env.mustCall(t, "RotateTunnelAccessToken", js(map[string]string{"tunnelId": tun.id, "clientMode": "SOURCE"}))
	res := env.mustCall(t, "RotateTunnelAccessToken", js(map[string]any{"tunnelId": tun.id, "clientMode": "DESTINATION",
		"destinationConfig": map[string]any{"thingName": "pi-1", "services": []string{"SSH"}}}))
	n = d.next(t)
	if n.ClientAccessToken != res.str("destinationAccessToken") || js(n.Services) != `["SSH"]` {
		t.Fatalf("rotation notification %+v", n)
	}
	select {
	case b := <-d.msgs:
		t.Fatalf("unexpected extra notification %s", b)
	default:
	}
	if strings.Contains(env.logs.String(), tun.dst) {
		t.Fatal("a token appears in the log")
	}
}

// TestNotifyPersistentSession: a notification published while the device is
// offline reaches it when it reconnects with CleanSession=false.
func TestNotifyPersistentSession(t *testing.T) {
	env := startEmulator(t, nil)
	tlsCfg := deviceTLS(t, env.e, "pi-2")
	broker := "ssl://" + env.e.MQTTAddr()
	d := connectDevice(t, broker, tlsCfg, "pi-2", false)
	d.subscribe(t, "$aws/things/pi-2/tunnels/notify")
	d.c.Disconnect(100)

	tun := env.open(t, `{"destinationConfig":{"thingName":"pi-2","services":["SSH"]}}`)

	d = connectDevice(t, broker, tlsCfg, "pi-2", false)
	defer d.c.Disconnect(100)
	if n := d.next(t); n.ClientAccessToken != tun.dst {
		t.Fatalf("offline notification not delivered: %+v", n)
	}
}

func TestBrokerRequiresClientCert(t *testing.T) {
	env := startEmulator(t, func(c *Config) { c.MQTTPlainAddr = "127.0.0.1:0" })
	opts := paho.NewClientOptions().AddBroker("ssl://" + env.e.MQTTAddr()).SetClientID("anon").
		SetTLSConfig(&tls.Config{RootCAs: env.e.CAPool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(opts)
	if tok := c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		c.Disconnect(100)
		t.Fatal("broker accepted a client without a certificate")
	}
	// The plain listener (debugging) takes anyone.
	d := connectDevice(t, "tcp://"+env.e.MQTTPlainAddr(), nil, "plain", true)
	defer d.c.Disconnect(100)
	d.subscribe(t, "$aws/things/pi-3/tunnels/notify")
	tun := env.open(t, `{"destinationConfig":{"thingName":"pi-3","services":["SSH"]}}`)
	if n := d.next(t); n.ClientAccessToken != tun.dst {
		t.Fatalf("plain listener notification %+v", n)
	}
}

func TestNotifyTopicFormat(t *testing.T) {
	env := startEmulator(t, func(c *Config) {
		c.MQTTPlainAddr = "127.0.0.1:0"
		c.NotifyTopicFormat = "aws/things/%s/tunnels/notify"
	})
	d := connectDevice(t, "tcp://"+env.e.MQTTPlainAddr(), nil, "fmt", true)
	defer d.c.Disconnect(100)
	d.subscribe(t, "aws/things/+/tunnels/notify")
	env.open(t, `{"destinationConfig":{"thingName":"pi-4","services":["SSH"]}}`)
	d.next(t)
}

// TestExternalBroker publishes through --mqtt-url to another emulator's
// embedded broker, standing in for a local mosquitto.
func TestExternalBroker(t *testing.T) {
	ext := startEmulator(t, func(c *Config) { c.MQTTPlainAddr = "127.0.0.1:0" })
	env := startEmulator(t, func(c *Config) { c.MQTTURL = "tcp://" + ext.e.MQTTPlainAddr() })
	if env.e.MQTTAddr() != "" {
		t.Fatalf("embedded broker started despite MQTTURL")
	}
	d := connectDevice(t, "tcp://"+ext.e.MQTTPlainAddr(), nil, "ext", true)
	defer d.c.Disconnect(100)
	d.subscribe(t, "$aws/things/pi-5/tunnels/notify")
	tun := env.open(t, `{"destinationConfig":{"thingName":"pi-5","services":["SSH"]}}`)
	if n := d.next(t); n.ClientAccessToken != tun.dst {
		t.Fatalf("external broker notification %+v", n)
	}
}

// TestExternalBrokerTLS publishes over ssl:// with mutual TLS to another
// emulator's broker that shares the CA (same state directory).
func TestExternalBrokerTLS(t *testing.T) {
	state := t.TempDir()
	ext := startEmulator(t, func(c *Config) { c.StateDir = state })
	env := startEmulator(t, func(c *Config) { c.StateDir = state; c.MQTTURL = "ssl://" + ext.e.MQTTAddr() })
	d := connectDevice(t, "ssl://"+ext.e.MQTTAddr(), deviceTLS(t, ext.e, "pi-6"), "pi-6", true)
	defer d.c.Disconnect(100)
	d.subscribe(t, "$aws/things/pi-6/tunnels/notify")
	tun := env.open(t, `{"destinationConfig":{"thingName":"pi-6","services":["SSH"]}}`)
	if n := d.next(t); n.ClientAccessToken != tun.dst {
		t.Fatalf("external TLS broker notification %+v", n)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"region", func(c *Config) { c.Region = "US_EAST" }},
		{"account", func(c *Config) { c.AccountID = "12" }},
		{"max open", func(c *Config) { c.MaxOpenTunnels = -1 }},
		{"retention", func(c *Config) { c.Retention = -time.Second }},
		{"topic", func(c *Config) { c.NotifyTopicFormat = "no/thing" }},
		{"mqtt url", func(c *Config) { c.MQTTURL = "http://x" }},
		{"busy port", nil},
	}
	busy := startEmulator(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{StateDir: t.TempDir()}
			if tt.mod != nil {
				tt.mod(&cfg)
			} else {
				cfg.DataAddr = busy.e.DataEndpoint()
			}
			if e, err := New(cfg); err == nil {
				e.closeListeners()
				t.Fatal("New accepted a bad config")
			} else if tt.mod != nil && !strings.Contains(fmt.Sprint(err), "invalid argument") {
				t.Fatalf("error %v does not wrap ErrInvalidArgument", err)
			}
		})
	}
}
