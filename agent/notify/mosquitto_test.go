package notify

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-agent/tunnel-agent/agent/notify/notifytest"
	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// startMosquitto runs mosquitto with one mutual-TLS listener for the PKI,
// plus extra configuration lines, and returns its port.
func startMosquitto(t *testing.T, p *notifytest.PKI, extra string) int {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/mosquitto"); err != nil {
			t.Skip("mosquitto not installed (apt-get install mosquitto)")
		}
		bin = "/usr/sbin/mosquitto"
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// mosquitto cannot be handed a listener: it gets a port that was free a
	// moment ago, and another one if something took it in between.
	for try := 1; ; try++ {
		port := freePort(t)
		conf := fmt.Sprintf(`user %s
per_listener_settings false
persistence false
log_dest stderr
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
%s
`, me.Username, port, p.CAFile, p.ServerCertFile, p.ServerKeyFile, extra)
		path := filepath.Join(t.TempDir(), "mosquitto.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin, "-c", path)
		out := &tunneltest.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cancel(); <-exited })
		deadline := time.After(10 * time.Second)
		for {
			// "running" comes once every listener is bound (a dial could
			// reach whatever else took the port).
			if strings.Contains(out.String(), "mosquitto version") && strings.Contains(out.String(), " running") {
				return port
			}
			select {
			case <-exited:
				if strings.Contains(out.String(), "Address already in use") && try < 3 {
					t.Logf("port %d taken before mosquitto bound it; another port", port)
				} else {
					t.Fatalf("mosquitto exited: %s", out.String())
				}
			case <-deadline:
				t.Fatalf("mosquitto not listening on %d: %s", port, out.String())
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
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
