package notifytest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"

	mqttsrv "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is an in-process MQTT broker speaking mutual TLS on loopback.
type Broker struct {
	Server    *mqttsrv.Server
	Addr      string // 127.0.0.1:port
	PlainAddr string // plain TCP listener, when BrokerOptions.PlainAddr was set
	once      sync.Once
}

// Subscriber subscribes inside the broker (its inline client) to a topic
// filter; handler gets each payload published to it.
type Subscriber func(filter string, handler func(payload []byte)) error

// BrokerOptions tune StartBroker.
type BrokerOptions struct {
	// Addr to listen on; "" picks a free loopback port.
	Addr string
	// DenySubscribe makes the broker refuse every subscription (SUBACK 0x80),
	// as AWS IoT does when the policy lacks iot:Subscribe.
	DenySubscribe bool
	// PlainAddr, when set, adds a plain TCP listener ("127.0.0.1:0" picks a
	// port), e.g. for the emulator's --mqtt-url.
	PlainAddr string
	// Setup runs before the broker serves: subscriptions made there see
	// every message, also right after a restart.
	Setup func(Subscriber)
	// CloseOnConnect makes the broker close the connection after CONNECT
	// without a CONNACK, as AWS IoT does when the policy denies iot:Connect.
	CloseOnConnect bool
	// RefuseConnect makes the broker answer CONNECT with a refusal CONNACK.
	RefuseConnect bool
}

// StartBroker starts a broker with the PKI's server certificate and stops it
// when the test ends.
func StartBroker(t testing.TB, p *PKI, o BrokerOptions) *Broker {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	ln, err := tls.Listen("tcp", o.Addr, p.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	s := mqttsrv.New(&mqttsrv.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(&policy{o: o}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewNet("tls", ln)); err != nil {
		t.Fatal(err)
	}
	b := &Broker{Server: s, Addr: ln.Addr().String()}
	if o.PlainAddr != "" {
		pl, err := net.Listen("tcp", o.PlainAddr)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AddListener(listeners.NewNet("plain", pl)); err != nil {
			t.Fatal(err)
		}
		b.PlainAddr = pl.Addr().String()
	}
	if o.Setup != nil {
		id := 0
		o.Setup(func(filter string, handler func([]byte)) error {
			id++
			return s.Subscribe(filter, id, func(_ *mqttsrv.Client, _ packets.Subscription, pk packets.Packet) {
				handler(bytes.Clone(pk.Payload))
			})
		})
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// Close stops the broker; calling it twice is harmless.
func (b *Broker) Close() { b.once.Do(func() { _ = b.Server.Close() }) }

// Port is the broker's TCP port.
func (b *Broker) Port() int { return b.tcpAddr().Port }

func (b *Broker) tcpAddr() *net.TCPAddr {
	a, _ := net.ResolveTCPAddr("tcp", b.Addr)
	return a
}

// Publish sends payload to topic at QoS 1 from the broker itself.
func (b *Broker) Publish(t testing.TB, topic string, payload []byte) {
	t.Helper()
	if err := b.Server.Publish(topic, payload, false, 1); err != nil {
		t.Fatal(err)
	}
}

// policy is the broker's access control, like an AWS IoT policy.
type policy struct {
	auth.AllowHook
	o BrokerOptions
}

// errConnectDenied ends the connection without a CONNACK.
var errConnectDenied = errors.New("policy denies connect")

func (h *policy) ID() string { return "policy" }

func (h *policy) Provides(b byte) bool {
	return bytes.Contains([]byte{mqttsrv.OnConnect, mqttsrv.OnConnectAuthenticate, mqttsrv.OnACLCheck}, []byte{b})
}

func (h *policy) OnConnect(*mqttsrv.Client, packets.Packet) error {
	if h.o.CloseOnConnect {
		return errConnectDenied
	}
	return nil
}

func (h *policy) OnConnectAuthenticate(*mqttsrv.Client, packets.Packet) bool {
	return !h.o.RefuseConnect
}

func (h *policy) OnACLCheck(_ *mqttsrv.Client, _ string, write bool) bool {
	return write || !h.o.DenySubscribe
}
