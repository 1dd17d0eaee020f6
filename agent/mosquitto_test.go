package agent

import (
	"context"
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
	"github.com/tunnel-agent/tunnel-agent/platform/emulator"
)

const mosquittoBin = "/usr/sbin/mosquitto"

// freePort returns a loopback port that was free a moment ago (mosquitto
// cannot be handed a listener).
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startMosquitto runs mosquitto with a plain listener (for the emulator's
// publisher) and a mutual-TLS listener (for the agent).
func startMosquitto(t *testing.T, p *notifytest.PKI) (plain, tlsPort int) {
	bin := mosquittoBin
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("mosquitto"); err != nil {
			t.Skip("mosquitto not installed (apt-get install mosquitto); skipping the external-broker test")
		}
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// mosquitto cannot be handed a listener: it gets ports that were free a
	// moment ago, and others if something took one in between.
	for try := 1; ; try++ {
		plain, tlsPort = freePort(t), freePort(t)
		// Run as the test's user: mosquitto started as root would otherwise
		// drop to "mosquitto", which cannot read the test's private files.
		conf := fmt.Sprintf(`user %s
per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
listener %d 127.0.0.1
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
`, me.Username, plain, tlsPort, p.CAFile, p.ServerCertFile, p.ServerKeyFile)
		path := filepath.Join(t.TempDir(), "mosquitto.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin, "-c", path)
		out := &logBuf{}
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
			// reach whatever else took a port).
			if strings.Contains(out.String(), "mosquitto version") && strings.Contains(out.String(), " running") {
				return plain, tlsPort
			}
			select {
			case <-exited:
				if strings.Contains(out.String(), "Address already in use") && try < 3 {
					t.Logf("port %d or %d taken before mosquitto bound it; other ports", plain, tlsPort)
				} else {
					t.Fatalf("mosquitto exited: %s", out.String())
				}
			case <-deadline:
				t.Fatalf("mosquitto not listening on %d and %d: %s", plain, tlsPort, out.String())
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
	}
}

// The same end-to-end path with mosquitto instead of the embedded broker.
func TestE2EMosquitto(t *testing.T) {
	p := notifytest.NewPKI(t, thingName)
	plain, tlsPort := startMosquitto(t, p)
	w := newWorld(t, func(c *emulator.Config) {
		c.MQTTURL = fmt.Sprintf("tcp://127.0.0.1:%d", plain)
		c.MQTTPlainAddr = ""
	})
	w.cfg.Cert, w.cfg.Key = p.ClientCertFile, p.ClientKeyFile
	w.mqttHost, w.mqttPort, w.rootCA = "localhost", tlsPort, p.CAFile
	ag := w.startAgent()
	tun := w.open("ECHO", "HTTP")
	src := w.source(tun.srcToken, "ECHO", "HTTP")
	retryEcho(t, src.Addr("ECHO").String())
	if body, err := httpGet(src.Addr("HTTP").String()); err != nil || body != "hello from /hello" {
		t.Fatalf("http through tunnel: %q %v", body, err)
	}

	// Offline delivery through mosquitto's persistent session.
	ag.stop(t)
	tun2 := w.open("HTTP")
	src2 := w.source(tun2.srcToken, "HTTP")
	w.startAgent()
	deadline := time.Now().Add(20 * time.Second)
	for {
		body, err := httpGet(src2.Addr("HTTP").String())
		if err == nil && body == "hello from /hello" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notification published while offline never served: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
