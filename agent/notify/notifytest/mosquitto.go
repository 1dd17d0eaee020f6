package notifytest

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

	"github.com/tunnel-agent/tunnel-agent/agent/tunnel/tunneltest"
)

// MosquittoOptions shapes the broker StartMosquitto runs.
type MosquittoOptions struct {
	// Plain adds a plain-TCP listener (e.g. for the emulator's publisher).
	Plain bool
	// Extra is appended to the configuration (e.g. "allow_anonymous true").
	Extra string
}

// Mosquitto is a running mosquitto broker.
type Mosquitto struct {
	TLSPort   int // mutual TLS with the PKI's server certificate
	PlainPort int // 0 unless MosquittoOptions.Plain
	// Log is what mosquitto printed (log_dest stderr); add "log_type all"
	// to Extra for packet-level lines such as "Received PINGREQ from <id>".
	Log *tunneltest.SyncBuffer
}

// StartMosquitto runs Debian's mosquitto with a mutual-TLS listener for p
// (and a plain one when asked) until the test ends; it skips the test when
// mosquitto is not installed.
func StartMosquitto(t *testing.T, p *PKI, o MosquittoOptions) Mosquitto {
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
	// mosquitto cannot be handed a listener: it gets ports that were free a
	// moment ago, and others if something took one in between.
	for try := 1; ; try++ {
		var m Mosquitto
		var plain string
		if o.Plain {
			m.PlainPort = freePort(t)
			plain = fmt.Sprintf("listener %d 127.0.0.1\n", m.PlainPort)
		}
		m.TLSPort = freePort(t)
		// Run as the test's user: mosquitto started as root would otherwise
		// drop to "mosquitto", which cannot read the test's private files.
		// The TLS options follow the listener they belong to.
		conf := fmt.Sprintf(`user %s
per_listener_settings false
persistence false
log_dest stderr
%slistener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
%s
`, me.Username, plain, m.TLSPort, p.CAFile, p.ServerCertFile, p.ServerKeyFile, o.Extra)
		path := filepath.Join(t.TempDir(), "mosquitto.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if m.Log = startOnce(t, bin, path, try); m.Log != nil {
			return m
		}
		t.Logf("a port of %+v was taken before mosquitto bound it; other ports", m)
	}
}

// startOnce starts mosquitto with the configuration at path and waits for it
// to run and returns its output; nil means a port was taken meanwhile and
// another try is allowed.
func startOnce(t *testing.T, bin, path string, try int) *tunneltest.SyncBuffer {
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
		// "running" comes once every listener is bound (a dial could reach
		// whatever else took a port).
		if strings.Contains(out.String(), "mosquitto version") && strings.Contains(out.String(), " running") {
			return out
		}
		select {
		case <-exited:
			if strings.Contains(out.String(), "Address already in use") && try < 3 {
				return nil
			}
			t.Fatalf("mosquitto exited: %s", out.String())
		case <-deadline:
			t.Fatalf("mosquitto not running after 10 s: %s", out.String())
		case <-time.After(20 * time.Millisecond):
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
