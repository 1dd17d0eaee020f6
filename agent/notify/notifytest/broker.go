package notifytest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/mochi-mqtt/server/v2/listeners"

	mqttsrv "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is an in-process MQTT broker speaking mutual TLS on loopback.
type Broker struct {
	Server *mqttsrv.Server
	Addr   string // 127.0.0.1:port
	once   sync.Once
}

// BrokerOptions tune StartBroker.
type BrokerOptions struct {
	// Addr to listen on; "" picks a free loopback port.
	Addr string
	// DenySubscribe makes the broker refuse every subscription (SUBACK 0x80),
	// as AWS IoT does when the policy lacks iot:Subscribe.
	DenySubscribe bool
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
	if err := s.AddListener(newListener("tls", ln, &s.Listeners.ClientsWg)); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	b := &Broker{Server: s, Addr: ln.Addr().String()}
	t.Cleanup(b.Close)
	return b
}

// Close stops the broker and waits for its connections to end; calling it
// twice is harmless.
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

// listener is the broker's listener. It stands in for mochi's listeners.Net,
// whose accept loop starts a goroutine per connection that calls
// ClientsWg.Add(1) only inside Server.EstablishConnection: a connection
// accepted as the broker closed made that Add race with the
// ClientsWg.Wait in Server.Close (a DATA RACE under -race, and Close could
// return with the client still running). Here the accept loop counts each
// connection on the server's ClientsWg itself, before handing it over, and
// Close stops the accept loop and waits for it before ClientsWg.Wait runs;
// it also closes connections that never got as far as CONNECT, which
// mochi's disconnect of known clients does not reach.
type listener struct {
	id     string
	ln     net.Listener
	wg     *sync.WaitGroup // the server's Listeners.ClientsWg
	served chan struct{}   // closed when Serve returns
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id string, ln net.Listener, wg *sync.WaitGroup) *listener {
	return &listener{id: id, ln: ln, wg: wg, served: make(chan struct{}), conns: map[net.Conn]struct{}{}}
}

func (l *listener) Init(*slog.Logger) error { return nil }
func (l *listener) ID() string              { return l.id }
func (l *listener) Address() string         { return l.ln.Addr().String() }
func (l *listener) Protocol() string        { return "tcp" }

// Serve accepts until the listener is closed.
func (l *listener) Serve(establish listeners.EstablishFn) {
	defer close(l.served)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1) // ordered before Close's Wait by l.served
		l.mu.Lock()
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			_ = establish(l.id, c)
			_ = c.Close()
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
	}
}

// Close stops accepting, waits for the accept loop, disconnects the
// clients and closes the connections still being set up.
func (l *listener) Close(closeClients listeners.CloseFn) {
	_ = l.ln.Close()
	<-l.served
	closeClients(l.id)
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
	}
}
