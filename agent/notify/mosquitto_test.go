package notify

import (
	"crypto/x509"
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
