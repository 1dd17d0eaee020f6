package notify

import (
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// startMosquitto runs mosquitto with one mutual-TLS listener for the PKI,
// plus extra configuration lines, and returns its port.
func startMosquitto(t *testing.T, p *notifytest.PKI, extra string) int {
	t.Helper()
	return notifytest.StartMosquitto(t, p, notifytest.MosquittoOptions{Extra: extra}).TLSPort
}

// The same failures against mosquitto (OpenSSL's TLS alerts and CONNACK
// codes). Its acl_file checks read access when delivering, not when
// subscribing (SUBACK stays 0x01), so the SUBACK failure is driven against
// the in-process broker only.
func TestMQTTFailuresMosquitto(t *testing.T) {
	withMosquitto := func(extra string, edit func(t *testing.T, p *notifytest.PKI, c *MQTTConfig)) func(t *testing.T) MQTTConfig {
		return func(t *testing.T) MQTTConfig {
			p := notifytest.NewPKI(t, thing)
			c := testConfig(t, p, startMosquitto(t, p, extra), nil)
			if edit != nil {
				edit(t, p, &c)
			}
			return c
		}
	}
	anon := "allow_anonymous true"
	runFailures(t, []failureCase{
		{"untrusted client certificate", withMosquitto(anon, func(t *testing.T, _ *notifytest.PKI, c *MQTTConfig) {
			other := notifytest.NewPKI(t, thing)
			c.CertFile, c.KeyFile = other.ClientCertFile, other.ClientKeyFile
		}), CauseClientCert, "ACTIVE"},
		{"expired client certificate", withMosquitto(anon, func(t *testing.T, p *notifytest.PKI, c *MQTTConfig) {
			c.CertFile, c.KeyFile = p.IssueClient(t, "expired", thing, x509.ExtKeyUsageClientAuth,
				time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		}), CauseClientCert, "expired"},
		{"wrong root CA", withMosquitto(anon, func(t *testing.T, _ *notifytest.PKI, c *MQTTConfig) {
			c.RootCAFile = notifytest.NewPKI(t, thing).CAFile
		}), CauseServerCert, "AmazonRootCA1"},
		{"CONNACK refused", withMosquitto("allow_anonymous false", nil), CauseConnack, "iot:Connect"},
	})
}

// mosquitto takes a client id over like AWS IoT: the older connection is
// dropped, and the cause says so.
func TestMQTTDuplicateClientIDMosquitto(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	port := startMosquitto(t, p, "allow_anonymous true")
	logsA, logsB := &tunneltest.SyncBuffer{}, &tunneltest.SyncBuffer{}
	a := testConfig(t, p, port, jsonLogger(logsA))
	b := a
	b.Logger = jsonLogger(logsB)
	startSourceCfg(t, a)
	startSourceCfg(t, b)
	waitTakeovers(t, logsA, logsB)
}

// freezer relays TCP to target; freeze makes the connections open so far
// drop every byte both ways while they stay open, as a dead NAT mapping or
// a pulled cable does. Later connections relay normally.
type freezer struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen []*atomic.Bool
}

func startFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			dead := &atomic.Bool{}
			f.mu.Lock()
			f.frozen = append(f.frozen, dead)
			f.mu.Unlock()
			t.Cleanup(func() { c.Close(); u.Close() })
			pipe := func(dst, src net.Conn) {
				b := make([]byte, 32<<10)
				for {
					n, err := src.Read(b)
					if err != nil {
						if !dead.Load() { // a dead link carries no FIN either
							dst.Close()
						}
						return
					}
					if !dead.Load() {
						_, _ = dst.Write(b[:n])
					}
				}
			}
			go pipe(c, u)
			go pipe(u, c)
		}
	}()
	return f
}

func (f *freezer) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.frozen {
		d.Store(true)
	}
}

// The keepalive against mosquitto: the CONNECT carries the interval, a
// PINGREQ goes out each interval so mosquitto (which drops a client silent
// for 1.5 intervals) keeps us, and a link that goes dead under an open
// connection is left after the ping timeout, then connected again.
func TestMQTTKeepaliveMosquitto(t *testing.T) {
	p := notifytest.NewPKI(t, thing)
	m := notifytest.StartMosquitto(t, p, notifytest.MosquittoOptions{Extra: "allow_anonymous true\nlog_type all"})
	relay := startFreezer(t, fmt.Sprintf("127.0.0.1:%d", m.TLSPort))
	logs := &tunneltest.SyncBuffer{}
	cfg := testConfig(t, p, relay.port(), jsonLogger(logs))
	// 2 s: mosquitto drops a client silent for 3 s, which leaves a loaded
	// machine a second of slack for the PINGREQ.
	cfg.KeepAlive = 2 * time.Second
	r := startSourceCfg(t, cfg)
	wait(t, r.ready, "ready")

	time.Sleep(5 * time.Second)
	log := m.Log.String()
	if !strings.Contains(log, "as "+cfg.ClientID+" (p2, c0, k2)") {
		t.Fatalf("mosquitto did not see keepalive 2 s in the CONNECT:\n%s", log)
	}
	if n := strings.Count(log, "Received PINGREQ from "+cfg.ClientID); n < 2 || strings.Contains(log, "exceeded timeout") {
		t.Fatalf("%d PINGREQs in 5 s at keepalive 2 s:\n%s", n, log)
	}
	select {
	case <-r.ready:
		t.Fatalf("connected again while the link was up:\n%s", logs.String())
	default:
	}

	relay.freeze()
	wait(t, r.ready, "ready again after the link went dead")
	if !strings.Contains(logs.String(), errPingUnanswered.Error()) {
		t.Fatalf("the cause does not name the unanswered PINGREQ:\n%s", logs.String())
	}
	t.Logf("PINGREQs seen by mosquitto: %d", strings.Count(m.Log.String(), "Received PINGREQ from "+cfg.ClientID))
}
